//! `PATCH` of a cluster: title, the external broker's URL and credentials
//! (a new endpoint drops the stored password), a merge patch of a
//! kubernetes cluster's spec (through the allow-list), and `shared_with`.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
use serde_json::Value;

use super::{
    external, find_cluster, kubernetes, require_share_right, share, Cluster, UpdateCluster,
    BACKEND_EXTERNAL,
};
use crate::audit::{self, AuditEvent};
use crate::auth::ClientMeta;
use crate::db::entities::{org, project};
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{ApiJson, ApiPath};
use crate::fleet::entities::cluster;
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

/// Fields a request may only send for one backend.
fn backend_errors(req: &UpdateCluster, external: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if external && req.spec.is_some() {
        errs.push(FieldError::new("spec", "only for kubernetes clusters"));
    }
    if !external {
        for (f, set) in [
            ("url", req.url.is_some()),
            ("username", req.username.is_some()),
            ("password", req.password.is_some()),
        ] {
            if set {
                errs.push(FieldError::new(f, "only for external clusters"));
            }
        }
        if req.auth_mode.is_some() {
            errs.push(FieldError::new(
                "auth_mode",
                "kubernetes clusters always use apiJwt: agents get api-issued JWTs with topic ACLs",
            ));
        }
    }
    errs
}

/// Title, URL, username, password and auth mode into `am`; the names of the
/// changed fields.
fn external_changes(
    st: &AppState,
    c: &cluster::Model,
    req: &UpdateCluster,
    am: &mut cluster::ActiveModel,
) -> Result<Vec<&'static str>, ApiError> {
    let mut changed = Vec::new();
    if let Some(t) = &req.title {
        am.name = Set(if t.trim().is_empty() {
            c.slug.clone()
        } else {
            t.trim().to_string()
        });
        changed.push("title");
    }
    if let Some(u) = &req.url {
        am.url = Set(Some(u.clone()));
        changed.push("url");
        // The password was given for the old endpoint: never carry it to
        // another one (a probe would send it there).
        if req.password.is_none()
            && c.password_enc.is_some()
            && external::endpoint_changed(c.url.as_deref(), u)
        {
            am.password_enc = Set(None);
            changed.push("password_cleared");
        }
    }
    if let Some(u) = &req.username {
        am.username = Set(Some(u.clone()).filter(|u| !u.is_empty()));
        changed.push("username");
    }
    if let Some(pw) = &req.password {
        am.password_enc = Set(if pw.is_empty() {
            None
        } else {
            Some(st.fleet.master()?.seal(pw.as_bytes(), &c.id.to_string()))
        });
        changed.push("password");
    }
    if let Some(m) = &req.auth_mode {
        am.auth_mode = Set(m.clone());
        changed.push("auth_mode");
    }
    Ok(changed)
}

/// The kubernetes spec after merge patch `patch`, checked (schema, allow-list,
/// Secrets) and applied; its status into `am`.
async fn apply_spec_patch(
    st: &AppState,
    o: &org::Model,
    p: &project::Model,
    c: &cluster::Model,
    patch: &Value,
    am: &mut cluster::ActiveModel,
) -> Result<(), ApiError> {
    let old: Value = c
        .spec
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let mut new = old.clone();
    json_patch::merge(&mut new, patch);
    let spec = kubernetes::check_spec(st, &new, Some(&old), patch)?;
    let Some(client) = &st.fleet.kube else {
        return Err(ApiError::Unavailable(
            "this api has no Kubernetes config".into(),
        ));
    };
    kubernetes::check_secrets(client, &o.slug, &p.slug, &spec).await?;
    am.spec = Set(Some(serde_json::to_string(&spec).expect("spec serializes")));
    let status =
        crate::fleet::kube_backend::apply_cluster(client, &o.slug, &p.slug, &c.slug, &spec).await?;
    am.status = Set(status.map(|s| serde_json::to_string(&s).expect("status serializes")));
    Ok(())
}

/// Change a cluster: credentials and URL (external), scale, upgrade,
/// listeners and limits through a merge patch of the spec (kubernetes),
/// and the projects it is shared with.
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}", tag = "fleet", request_body = UpdateCluster,
    params(("org" = String, Path), ("project" = String, Path), ("cluster" = String, Path)), responses((status = 200, body = Cluster), ProblemResponses))]
pub(super) async fn update_cluster(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, name)): ApiPath<(String, String, String)>,
    ApiJson(req): ApiJson<UpdateCluster>,
) -> Result<Json<Cluster>, ApiError> {
    let at = scope.load().await?;
    let c = find_cluster(&st, &at.project, &name).await?;
    at.require(Permission::ProjectUpdate)?;
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        grants,
        ..
    } = at;
    let errs = backend_errors(&req, c.backend == BACKEND_EXTERNAL);
    if !errs.is_empty() {
        return Err(ApiError::Validation(errs));
    }
    let shares = match &req.shared_with {
        None => None,
        Some(names) => {
            let now = share::shared_with(&st.db, &[c.id])
                .await?
                .remove(&c.id)
                .unwrap_or_default();
            // Withdrawing is the owner's; adding crosses a wall.
            if names.iter().any(|n| !now.contains(n)) {
                require_share_right(&st, &grants, &o)?;
            }
            Some(share::resolve_projects(&st.db, &o, p.id, names).await?)
        }
    };
    let tx = st.write().await?;
    let mut am = c.clone().into_active_model();
    let mut changed = external_changes(&st, &c, &req, &mut am)?;
    if let Some(patch) = &req.spec {
        apply_spec_patch(&st, &o, &p, &c, patch, &mut am).await?;
        changed.push("spec");
    }
    if let Some(to) = &shares {
        share::set_shares(&*tx, c.id, to).await?;
        changed.push("shared_with");
    }
    am.updated_at = Set(Utc::now());
    let c = am.update(&*tx).await?;
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "cluster.update",
            format!("cluster:{}/{}", o.slug, c.slug),
        )
        .org(o.id)
        .project(p.id)
        // Names of the changed fields only: never the password.
        .details(serde_json::json!({"changed": changed, "spec_patch": req.spec, "shared_with": req.shared_with})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.clusters_changed().await;
    Ok(Json(Cluster::load(&st.db, &o, &p, c).await?))
}
