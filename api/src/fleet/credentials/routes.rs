//! `…/projects/{project}/credentials[/{credential}]`: list (names, kinds,
//! user names), create or replace (PUT; the secret is write-only), delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use weir_crds::agent_api::DeviceCredential;

use super::{check_name, kind_of, seal, CredentialSummary};
use crate::audit;
use crate::auth::ClientMeta;
use crate::db::entities::project;
use crate::error::{ApiError, ProblemResponses};
use crate::extract::{ApiJson, ApiPath, ParsedOnly, Validate};
use crate::fleet::entities::device_credential;
use crate::rbac::Permission;
use crate::scope::ProjectScope;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_credentials))
        .routes(routes!(put_credential, delete_credential))
}

pub(crate) async fn find(
    st: &AppState,
    project: Uuid,
    name: &str,
) -> Result<Option<device_credential::Model>, ApiError> {
    Ok(device_credential::Entity::find()
        .filter(device_credential::Column::ProjectId.eq(project))
        .filter(device_credential::Column::Name.eq(name))
        .one(&st.db)
        .await?)
}

fn target(o: &str, p: &project::Model, name: &str) -> String {
    format!("credential:{o}/{}/{name}", p.slug)
}

/// Device credentials of a project: names, kinds and user names, never the secret.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/credentials", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path)),
    responses((status = 200, body = Vec<CredentialSummary>), ProblemResponses))]
async fn list_credentials(
    State(st): State<AppState>,
    scope: ProjectScope,
) -> Result<Json<Vec<CredentialSummary>>, ApiError> {
    let at = scope.require(Permission::ProjectRead).await?;
    let rows = device_credential::Entity::find()
        .filter(device_credential::Column::ProjectId.eq(at.project.id))
        .order_by_asc(device_credential::Column::Name)
        .all(&st.db)
        .await?;
    Ok(Json(rows.iter().map(Into::into).collect()))
}

/// Create or replace a device credential (201 when created, 200 when
/// replaced). The secret is sealed at rest and never answered again; agents
/// whose config names the credential fetch it.
#[utoipa::path(put, path = "/api/v1/orgs/{org}/projects/{project}/credentials/{credential}", tag = "fleet",
    request_body = DeviceCredential,
    params(("org" = String, Path), ("project" = String, Path),
        ("credential" = String, Path, description = "Credential name, as `devices[].opcUa.credential` names it")),
    responses((status = 200, body = CredentialSummary, description = "Replaced"),
        (status = 201, body = CredentialSummary, description = "Created"), ProblemResponses))]
async fn put_credential(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, name)): ApiPath<(String, String, String)>,
    ApiJson(ParsedOnly(body)): ApiJson<ParsedOnly<DeviceCredential>>,
) -> Result<(StatusCode, Json<CredentialSummary>), ApiError> {
    let at = scope.require(Permission::ProjectWrite).await?;
    check_name(&name)?;
    // Checked only once the caller may write here: a stranger learns
    // nothing from 422s, and an unknown project is 404 whatever the body.
    body.validate().map_err(ApiError::Validation)?;
    let key = st.fleet.master()?;
    let kind = kind_of(&body);
    let username = match &body {
        DeviceCredential::UserPassword { username, .. } => username.clone(),
        DeviceCredential::Certificate { .. } => String::new(),
    };
    let now = Utc::now();
    let tx = st.write().await?;
    // Read inside the write lock: two PUTs of one new name do not both insert.
    let existing = device_credential::Entity::find()
        .filter(device_credential::Column::ProjectId.eq(at.project.id))
        .filter(device_credential::Column::Name.eq(&name))
        .one(&*tx)
        .await?;
    let (m, status, action) = match existing {
        Some(old) => {
            let mut am = old.clone().into_active_model();
            am.kind = Set(kind.into());
            am.username = Set(username);
            am.secret_enc = Set(seal(key, old.id, &body)?);
            am.updated_at = Set(now);
            (
                am.update(&*tx).await?,
                StatusCode::OK,
                "device_credential.replace",
            )
        }
        None => {
            let id = Uuid::new_v4();
            let m = device_credential::ActiveModel {
                id: Set(id),
                org_id: Set(at.org.id),
                project_id: Set(at.project.id),
                name: Set(name.clone()),
                kind: Set(kind.into()),
                username: Set(username),
                secret_enc: Set(seal(key, id, &body)?),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&*tx)
            .await?;
            (m, StatusCode::CREATED, "device_credential.create")
        }
    };
    let ev = at
        .event(action, target(&at.org.slug, &at.project, &name))
        .details(serde_json::json!({ "kind": kind }));
    audit::append(&*tx, ev, &meta).await?;
    tx.commit().await?;
    Ok((status, Json((&m).into())))
}

/// Delete a device credential. Fetches answer 404 from now on; an agent
/// deletes its kept copy at its next fetch (a config change or a restart).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/credentials/{credential}", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("credential" = String, Path)),
    responses((status = 204, description = "Deleted"), ProblemResponses))]
async fn delete_credential(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, name)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let at = scope.require(Permission::ProjectWrite).await?;
    let m = find(&st, at.project.id, &name)
        .await?
        .ok_or(ApiError::NotFound)?;
    let tx = st.write().await?;
    device_credential::Entity::delete_by_id(m.id)
        .exec(&*tx)
        .await?;
    let ev = at
        .event(
            "device_credential.delete",
            target(&at.org.slug, &at.project, &name),
        )
        .details(serde_json::json!({ "kind": m.kind }));
    audit::append(&*tx, ev, &meta).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
