//! MQTT clusters of a project, behind one interface with two backends:
//! `external` adopts an existing broker by URL (+ credentials, the password
//! encrypted under the master key) and probes it over MQTT; `kubernetes`
//! server-side applies an `MqttCluster` in the tenant namespace and reads
//! its status (only when a Kubernetes config is available).
//!
//! About 840 lines, kept as one file for now: one resource whose handlers
//! share the backend switch, the probe and the spec checks. The next split
//! is along the backends (`external` probing, `kubernetes` apply/status).

use std::sync::OnceLock;
use std::time::Duration as StdDuration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use weir_crds::{MqttCluster, MqttClusterSpec, MqttClusterStatus};

use super::entities::{cluster, gateway};
use super::mqtt_probe;
use crate::audit::{self, AuditEvent};
use crate::auth::ClientMeta;
use crate::db::entities::{org, project};
use crate::db::is_unique_violation;
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, ApiQuery, Validate};
use crate::fleet_events::FleetEvent;
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

pub const BACKEND_EXTERNAL: &str = "external";
pub const BACKEND_KUBERNETES: &str = "kubernetes";
/// Agents get the adopted broker's username/password.
pub const AUTH_PASSWORD: &str = "password";
/// Agents get an api-issued JWT with topic ACLs.
pub const AUTH_JWT: &str = "apiJwt";

const PROBE_TIMEOUT: StdDuration = StdDuration::from_secs(5);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clusters, create_cluster))
        .routes(routes!(get_cluster, update_cluster, delete_cluster))
        .routes(routes!(transfer_cluster))
        .routes(routes!(probe_cluster))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterHealth {
    pub checked_at: DateTime<Utc>,
    pub reachable: bool,
    /// MQTT publish → receive round trip in milliseconds.
    pub rtt_ms: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Cluster {
    pub id: Uuid,
    pub name: String,
    pub title: String,
    pub org: String,
    pub project: String,
    /// `external` or `kubernetes`.
    pub backend: String,
    /// How agents authenticate: `password` or `apiJwt`.
    pub auth_mode: String,
    /// Broker URL (external).
    pub url: Option<String>,
    pub username: Option<String>,
    /// A password is stored (never shown).
    pub has_password: bool,
    /// The `MqttClusterSpec` (kubernetes).
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
    /// The `MqttClusterStatus` last read from Kubernetes.
    #[schema(value_type = Option<Object>)]
    pub status: Option<Value>,
    /// Client endpoints agents connect to.
    pub endpoints: Vec<String>,
    pub health: Option<ClusterHealth>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Broker URLs agents use.
pub fn endpoints(c: &cluster::Model) -> Vec<String> {
    if let Some(u) = &c.url {
        return vec![u.clone()];
    }
    c.status
        .as_deref()
        .and_then(|s| serde_json::from_str::<MqttClusterStatus>(s).ok())
        .map(|s| s.endpoints)
        .unwrap_or_default()
}

impl Cluster {
    fn build(o: &org::Model, p: &project::Model, c: cluster::Model) -> Self {
        let health = c.probe_at.map(|at| ClusterHealth {
            checked_at: at,
            reachable: c.probe_ok.unwrap_or(false),
            rtt_ms: c.probe_rtt_us.map(|us| us as f64 / 1000.0),
            error: c.probe_error.clone(),
        });
        Self {
            endpoints: endpoints(&c),
            id: c.id,
            name: c.slug,
            title: c.name,
            org: o.slug.clone(),
            project: p.slug.clone(),
            backend: c.backend,
            auth_mode: c.auth_mode,
            url: c.url,
            username: c.username,
            has_password: c.password_enc.is_some(),
            spec: c.spec.as_deref().and_then(|s| serde_json::from_str(s).ok()),
            status: c
                .status
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            health,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCluster {
    /// Resource name, unique in the organization.
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "main")]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 128)]
    pub title: String,
    /// `external` (adopt a broker) or `kubernetes` (the operator runs EMQX).
    #[schema(example = "external")]
    pub backend: String,
    /// external: `mqtt://host:port` or `mqtts://host:port`.
    pub url: Option<String>,
    pub username: Option<String>,
    /// Stored encrypted; never returned.
    pub password: Option<String>,
    /// `password` (default for external: agents get the username/password) or `apiJwt`.
    pub auth_mode: Option<String>,
    /// kubernetes: the `MqttClusterSpec` (replicas, version, listeners, config, ...).
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
}

fn check_auth_mode(e: &mut Vec<FieldError>, m: &Option<String>) {
    if let Some(m) = m {
        if m != AUTH_PASSWORD && m != AUTH_JWT {
            e.push(FieldError::new(
                "auth_mode",
                "must be 'password' or 'apiJwt'",
            ));
        }
    }
}

fn check_url(e: &mut Vec<FieldError>, url: &str) {
    if let Err(msg) = mqtt_probe::parse_broker_url(url) {
        e.push(FieldError::new("url", msg));
    }
}

impl Validate for CreateCluster {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::slug(&mut e, "name", &self.name);
        chk::text(&mut e, "title", &self.title, 0, 128);
        check_auth_mode(&mut e, &self.auth_mode);
        match self.backend.as_str() {
            BACKEND_EXTERNAL => {
                match &self.url {
                    Some(u) => check_url(&mut e, u),
                    None => e.push(FieldError::new(
                        "url",
                        "an external cluster needs the broker URL",
                    )),
                }
                if self.spec.is_some() {
                    e.push(FieldError::new("spec", "only for kubernetes clusters"));
                }
            }
            BACKEND_KUBERNETES => {
                for (f, set) in [
                    ("url", self.url.is_some()),
                    ("username", self.username.is_some()),
                    ("password", self.password.is_some()),
                ] {
                    if set {
                        e.push(FieldError::new(f, "only for external clusters"));
                    }
                }
            }
            _ => e.push(FieldError::new(
                "backend",
                "must be 'external' or 'kubernetes'",
            )),
        }
        if let Some(u) = &self.username {
            chk::text(&mut e, "username", u, 0, 256);
        }
        if let Some(p) = &self.password {
            if p.len() > 1024 {
                e.push(FieldError::new("password", "at most 1024 bytes"));
            }
        }
        chk::finish(e)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCluster {
    pub title: Option<String>,
    /// external: a new broker URL.
    pub url: Option<String>,
    /// external: a new username (empty removes it).
    pub username: Option<String>,
    /// external: a new password (empty removes it).
    pub password: Option<String>,
    pub auth_mode: Option<String>,
    /// kubernetes: JSON merge patch of the spec — scale (`replicas`), upgrade
    /// (`version`), `listeners`, limits (`config`, `resources`).
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
}

impl Validate for UpdateCluster {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        if let Some(t) = &self.title {
            chk::text(&mut e, "title", t, 0, 128);
        }
        if let Some(u) = &self.url {
            check_url(&mut e, u);
        }
        check_auth_mode(&mut e, &self.auth_mode);
        chk::finish(e)
    }
}

fn cluster_spec_schema() -> &'static Value {
    static S: OnceLock<Value> = OnceLock::new();
    S.get_or_init(|| {
        let crd = serde_json::to_value(weir_crds::crd::<MqttCluster>()).expect("crd serializes");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    })
}

/// Validate an `MqttClusterSpec` with the CRD's schema and CEL rules
/// (transition rules against `old`).
fn validate_cluster_spec(value: &Value, old: Option<&Value>) -> Result<MqttClusterSpec, ApiError> {
    let errs = weir_crds::gateway::validate::check_against_schema(
        cluster_spec_schema(),
        value,
        old,
        "spec",
    );
    if !errs.is_empty() {
        return Err(super::gateways::spec_errors(errs));
    }
    serde_json::from_value(value.clone()).map_err(|e| ApiError::invalid("spec", e.to_string()))
}

/// A cluster of the project by name (404 when there is none).
async fn find_cluster(
    st: &AppState,
    p: &project::Model,
    name: &str,
) -> Result<cluster::Model, ApiError> {
    cluster::Entity::find()
        .filter(cluster::Column::ProjectId.eq(p.id))
        .filter(cluster::Column::Slug.eq(name))
        .one(&st.db)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Probe an external cluster (or read a kubernetes one's status) and store the result.
async fn refresh_health<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    o: &org::Model,
    c: cluster::Model,
) -> Result<cluster::Model, ApiError> {
    let health_before = c.probe_ok;
    let mut am = c.clone().into_active_model();
    am.probe_at = Set(Some(Utc::now()));
    if c.backend == BACKEND_EXTERNAL {
        let password = match &c.password_enc {
            Some(p) => Some(
                String::from_utf8(st.fleet.master()?.open(p, &c.id.to_string())?)
                    .map_err(ApiError::internal)?,
            ),
            None => None,
        };
        let r = mqtt_probe::probe(
            c.url.as_deref().unwrap_or_default(),
            c.username.as_deref(),
            password.as_deref(),
            PROBE_TIMEOUT,
        )
        .await;
        am.probe_ok = Set(Some(r.reachable));
        am.probe_rtt_us = Set(r.rtt.map(|d| d.as_micros() as i64));
        am.probe_error = Set(r.error);
    } else {
        let client = st.fleet.kube.as_ref().ok_or_else(|| {
            ApiError::Unavailable(
                "this api has no Kubernetes config; kubernetes clusters cannot be read".into(),
            )
        })?;
        let status = super::kube_backend::cluster_status(client, &o.slug, &c.slug).await?;
        let ready = status
            .as_ref()
            .is_some_and(|s| s.phase.as_deref() == Some("Ready"));
        am.probe_ok = Set(Some(ready));
        am.probe_rtt_us = Set(None);
        am.probe_error = Set((!ready).then(|| {
            format!(
                "phase {}",
                status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "unknown".into())
            )
        }));
        am.status = Set(status.map(|s| serde_json::to_string(&s).expect("status serializes")));
    }
    let c = am.update(db).await?;
    // Cluster-degraded alert rules evaluate a change in what the check found
    // (every replica probes every cluster; the alerts read the table itself
    // on every reload).
    if let Some(ok) = c.probe_ok.filter(|_| c.probe_ok != health_before) {
        let (project, cluster) = (c.project_id, c.slug.clone());
        st.alerts
            .fleet_event(if ok {
                FleetEvent::ClusterHealthy { project, cluster }
            } else {
                FleetEvent::ClusterDegraded { project, cluster }
            })
            .await;
    }
    Ok(c)
}

/// Check every cluster this api can check (external ones over MQTT,
/// kubernetes ones when a Kubernetes config is present), a few at a time;
/// the periodic prober that keeps cluster health (and cluster-degraded
/// alerts) current.
pub async fn probe_all(st: &AppState) -> Result<(), ApiError> {
    use futures::StreamExt;
    let orgs: std::collections::HashMap<Uuid, org::Model> = org::Entity::find()
        .all(&st.db)
        .await?
        .into_iter()
        .map(|o| (o.id, o))
        .collect();
    let rows = cluster::Entity::find().all(&st.db).await?;
    futures::stream::iter(rows)
        .for_each_concurrent(8, |c| {
            let o = orgs.get(&c.org_id);
            async move {
                let Some(o) = o else { return };
                if c.backend != BACKEND_EXTERNAL && st.fleet.kube.is_none() {
                    return;
                }
                let slug = c.slug.clone();
                if let Err(e) = refresh_health(&st.db, st, o, c).await {
                    tracing::debug!(cluster = %slug, error = %e, "cluster health check failed");
                }
            }
        })
        .await;
    Ok(())
}

/// MQTT clusters of a project.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/clusters", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Vec<Cluster>), ProblemResponses))]
async fn list_clusters(
    State(st): State<AppState>,
    scope: ProjectScope,
) -> Result<Json<Vec<Cluster>>, ApiError> {
    let ProjectAccess {
        org: o, project: p, ..
    } = scope.require(Permission::ProjectRead).await?;
    let rows = cluster::Entity::find()
        .filter(cluster::Column::ProjectId.eq(p.id))
        .order_by_asc(cluster::Column::Slug)
        .all(&st.db)
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|c| Cluster::build(&o, &p, c))
            .collect(),
    ))
}

/// Create a cluster: adopt a broker (external) or have the operator run one (kubernetes).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/clusters", tag = "fleet", request_body = CreateCluster,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 201, body = Cluster), ProblemResponses))]
async fn create_cluster(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiJson(req): ApiJson<CreateCluster>,
) -> Result<(StatusCode, Json<Cluster>), ApiError> {
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = scope.require(Permission::ProjectUpdate).await?;
    let id = Uuid::new_v4();
    let now = Utc::now();
    let (spec, auth_mode) = if req.backend == BACKEND_KUBERNETES {
        if st.fleet.kube.is_none() {
            return Err(ApiError::invalid(
                "backend",
                "this api has no Kubernetes config (in-cluster or KUBECONFIG); only external clusters can be created",
            ));
        }
        let spec = validate_cluster_spec(
            req.spec
                .as_ref()
                .unwrap_or(&Value::Object(Default::default())),
            None,
        )?;
        let mode = match spec.authentication.mode {
            weir_crds::mqtt_cluster::AuthMode::ApiJwt => AUTH_JWT,
            weir_crds::mqtt_cluster::AuthMode::Password => AUTH_PASSWORD,
        };
        (Some(spec), mode.to_string())
    } else {
        (
            None,
            req.auth_mode
                .clone()
                .unwrap_or_else(|| AUTH_PASSWORD.into()),
        )
    };
    let password_enc = match req.password.as_deref().filter(|p| !p.is_empty()) {
        Some(pw) => Some(st.fleet.master()?.seal(pw.as_bytes(), &id.to_string())),
        None => None,
    };
    let tx = st.write().await?;
    let c = cluster::ActiveModel {
        id: Set(id),
        org_id: Set(o.id),
        project_id: Set(p.id),
        slug: Set(req.name.clone()),
        name: Set(if req.title.trim().is_empty() {
            req.name.clone()
        } else {
            req.title.trim().to_string()
        }),
        backend: Set(req.backend.clone()),
        auth_mode: Set(auth_mode),
        url: Set(req.url.clone()),
        username: Set(req.username.clone().filter(|u| !u.is_empty())),
        password_enc: Set(password_enc),
        spec: Set(spec
            .as_ref()
            .map(|s| serde_json::to_string(s).expect("spec serializes"))),
        status: Set(None),
        probe_at: Set(None),
        probe_ok: Set(None),
        probe_rtt_us: Set(None),
        probe_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&*tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::conflict(
                "a cluster with this name exists in the organization",
                Some("name"),
            )
        } else {
            e.into()
        }
    })?;
    let c = match (&spec, &st.fleet.kube) {
        (Some(spec), Some(client)) => {
            let status = super::kube_backend::apply_cluster(client, &o.slug, &c.slug, spec).await?;
            let mut am = c.into_active_model();
            am.status = Set(status.map(|s| serde_json::to_string(&s).expect("status serializes")));
            am.update(&*tx).await?
        }
        _ => c,
    };
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "cluster.create",
            format!("cluster:{}/{}", o.slug, c.slug),
        )
        .org(o.id)
        .project(p.id)
        .details(serde_json::json!({"backend": c.backend, "url": c.url, "auth_mode": c.auth_mode})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.clusters_changed().await;
    // A first health check, outside the write lock (it may take seconds).
    let c = if c.backend == BACKEND_EXTERNAL {
        refresh_health(&st.db, &st, &o, c).await?
    } else {
        c
    };
    Ok((StatusCode::CREATED, Json(Cluster::build(&o, &p, c))))
}

/// One cluster with its last health check.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("cluster" = String, Path)), responses((status = 200, body = Cluster), ProblemResponses))]
async fn get_cluster(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, name)): ApiPath<(String, String, String)>,
) -> Result<Json<Cluster>, ApiError> {
    let at = scope.load().await?;
    let c = find_cluster(&st, &at.project, &name).await?;
    at.require(Permission::ProjectRead)?;
    let ProjectAccess {
        org: o, project: p, ..
    } = at;
    Ok(Json(Cluster::build(&o, &p, c)))
}

/// Check the cluster now: MQTT round trip (external) or status (kubernetes).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}/probe", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("cluster" = String, Path)), responses((status = 200, body = Cluster), ProblemResponses))]
async fn probe_cluster(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, name)): ApiPath<(String, String, String)>,
) -> Result<Json<Cluster>, ApiError> {
    let at = scope.load().await?;
    let c = find_cluster(&st, &at.project, &name).await?;
    at.require(Permission::ProjectRead)?;
    let ProjectAccess {
        org: o, project: p, ..
    } = at;
    let c = refresh_health(&st.db, &st, &o, c).await?;
    Ok(Json(Cluster::build(&o, &p, c)))
}

/// Change a cluster: credentials and URL (external), or scale, upgrade,
/// listeners and limits through a merge patch of the spec (kubernetes).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}", tag = "fleet", request_body = UpdateCluster,
    params(("org" = String, Path), ("project" = String, Path), ("cluster" = String, Path)), responses((status = 200, body = Cluster), ProblemResponses))]
async fn update_cluster(
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
        ..
    } = at;
    let external = c.backend == BACKEND_EXTERNAL;
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
    }
    if !errs.is_empty() {
        return Err(ApiError::Validation(errs));
    }
    let tx = st.write().await?;
    let mut am = c.clone().into_active_model();
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
        if !external {
            return Err(ApiError::invalid(
                "auth_mode",
                "set spec.authentication.mode for kubernetes clusters",
            ));
        }
        am.auth_mode = Set(m.clone());
        changed.push("auth_mode");
    }
    if let Some(patch) = &req.spec {
        let old: Value = c
            .spec
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let mut new = old.clone();
        json_patch::merge(&mut new, patch);
        let spec = validate_cluster_spec(&new, Some(&old))?;
        am.spec = Set(Some(serde_json::to_string(&spec).expect("spec serializes")));
        if let Some(client) = &st.fleet.kube {
            let status =
                super::kube_backend::apply_cluster(client, &o.slug, &c.slug, &spec).await?;
            am.status = Set(status.map(|s| serde_json::to_string(&s).expect("status serializes")));
        } else {
            return Err(ApiError::Unavailable(
                "this api has no Kubernetes config".into(),
            ));
        }
        changed.push("spec");
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
        .details(serde_json::json!({"changed": changed, "spec_patch": req.spec})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.clusters_changed().await;
    Ok(Json(Cluster::build(&o, &p, c)))
}

/// The raw request body (possibly empty), for DELETE's optional confirmation.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        <axum::body::Bytes as axum::extract::FromRequest<S>>::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|_| ApiError::PayloadTooLarge)
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// The cluster's name again, as confirmation.
    pub confirm: Option<String>,
}

/// Delete a cluster. `?confirm=<name>` (or body `{"confirm": "<name>"}`) must
/// repeat its name; gateways must not use it.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("cluster" = String, Path), DeleteQuery),
    responses((status = 204, description = "Deleted"), ProblemResponses))]
async fn delete_cluster(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, name)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let at = scope.load().await?;
    let c = find_cluster(&st, &at.project, &name).await?;
    at.require(Permission::ProjectUpdate)?;
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = at;
    // The confirmation comes as `?confirm=` or as a JSON body `{"confirm": ...}`.
    let confirm = match q.confirm {
        Some(c) => Some(c),
        None if !body.is_empty() => crate::extract::parse_json::<DeleteQuery>(&body)?.confirm,
        None => None,
    };
    if confirm.as_deref() != Some(c.slug.as_str()) {
        return Err(ApiError::invalid(
            "confirm",
            "must repeat the cluster's name to confirm the deletion",
        ));
    }
    let tx = st.write().await?;
    let users = gateway::Entity::find()
        .filter(gateway::Column::ClusterId.eq(c.id))
        .count(&*tx)
        .await?;
    if users > 0 {
        return Err(ApiError::conflict(
            format!("{users} gateway(s) use this cluster; point them elsewhere first"),
            None,
        ));
    }
    cluster::Entity::delete_by_id(c.id).exec(&*tx).await?;
    if c.backend == BACKEND_KUBERNETES {
        if let Some(client) = &st.fleet.kube {
            super::kube_backend::delete_cluster(client, &o.slug, &c.slug).await?;
        }
    }
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "cluster.delete",
            format!("cluster:{}/{}", o.slug, c.slug),
        )
        .org(o.id)
        .project(p.id),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.clusters_changed().await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferCluster {
    /// Slug of the project (same organization) that takes the cluster over.
    pub project: String,
}

impl Validate for TransferCluster {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::slug(&mut e, "project", &self.project);
        chk::finish(e)
    }
}

/// Move a cluster to another project of the organization (needs the right to change both).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}/transfer", tag = "fleet", request_body = TransferCluster,
    params(("org" = String, Path), ("project" = String, Path), ("cluster" = String, Path)), responses((status = 200, body = Cluster), ProblemResponses))]
async fn transfer_cluster(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, name)): ApiPath<(String, String, String)>,
    ApiJson(req): ApiJson<TransferCluster>,
) -> Result<Json<Cluster>, ApiError> {
    let at = scope.load().await?;
    let c = find_cluster(&st, &at.project, &name).await?;
    at.require(Permission::ProjectUpdate)?;
    let target = project::Entity::find()
        .filter(project::Column::OrgId.eq(at.org.id))
        .filter(project::Column::Slug.eq(req.project.as_str()))
        .one(&st.db)
        .await?
        .ok_or_else(|| ApiError::invalid("project", "no such project in this organization"))?;
    if !at.grants.sees_project(at.org.id, target.id) {
        return Err(ApiError::Forbidden);
    }
    at.require_in(Permission::ProjectUpdate, &target)?;
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = at;
    let tx = st.write().await?;
    let mut am = c.clone().into_active_model();
    am.project_id = Set(target.id);
    am.updated_at = Set(Utc::now());
    let c2 = am.update(&*tx).await?;
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "cluster.transfer",
            format!("cluster:{}/{}", o.slug, c.slug),
        )
        .org(o.id)
        .project(p.id)
        .details(serde_json::json!({"from": p.slug, "to": target.slug})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.clusters_changed().await;
    Ok(Json(Cluster::build(&o, &target, c2)))
}
