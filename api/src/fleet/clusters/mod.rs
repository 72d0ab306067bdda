//! MQTT clusters of a project, behind one interface with two backends:
//! `external` adopts an existing broker by URL (+ credentials, the password
//! encrypted under the master key) and probes it over MQTT
//! ([`external`]); `kubernetes` server-side applies an `MqttCluster` in the
//! tenant namespace and reads its status (only when a Kubernetes config is
//! available), its spec first checked against the platform's allow-list
//! ([`kubernetes`], [`spec_policy`]). A cluster serves its own project's
//! gateways, and other projects' only when shared with them ([`share`]).
//!
//! Here: the resource, its requests, list, create and read; [`update`] and
//! [`lifecycle`] (delete, transfer) hold the other handlers.

mod external;
mod kubernetes;
mod lifecycle;
pub mod share;
pub mod spec_policy;
mod update;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use weir_crds::MqttClusterStatus;

pub use external::{probe_all, stored_login};
pub use share::check_gateway_may_use;

use super::entities::cluster;
use crate::audit::{self, AuditEvent};
use crate::auth::ClientMeta;
use crate::db::entities::{org, project};
use crate::db::is_unique_violation;
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, Validate};
use crate::rbac::{Domain, Grants, Permission};
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;
use external::{check_url, refresh_health};

pub const BACKEND_EXTERNAL: &str = "external";
pub const BACKEND_KUBERNETES: &str = "kubernetes";
/// Agents get the adopted broker's username/password.
pub const AUTH_PASSWORD: &str = "password";
/// Agents get an api-issued JWT with topic ACLs.
pub const AUTH_JWT: &str = "apiJwt";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clusters, create_cluster))
        .routes(routes!(
            get_cluster,
            update::update_cluster,
            lifecycle::delete_cluster
        ))
        .routes(routes!(lifecycle::transfer_cluster))
        .routes(routes!(external::probe_cluster))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterHealth {
    pub checked_at: DateTime<Utc>,
    pub reachable: bool,
    /// MQTT publish → receive round trip in milliseconds.
    pub rtt_ms: Option<f64>,
    pub error: Option<String>,
    /// The broker's own figures (`$SYS`) at that check, when it publishes them.
    pub broker: Option<crate::fleet::broker_stats::BrokerStats>,
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
    /// Where each gateway's own broker login comes from: `dynamicSecurity`
    /// (an adopted Mosquitto; the stored login is its dynamic-security
    /// admin, never given to agents), `apiJwt` (api-issued JWTs with the
    /// gateway's ACL) or `none` (an open broker without authentication:
    /// any client may use any topic).
    #[schema(example = "dynamicSecurity")]
    pub agent_identities: String,
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
    /// Other projects of the organization whose gateways may use this
    /// cluster (each still gets credentials of its own).
    pub shared_with: Vec<String>,
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
    /// One cluster, with the projects it is shared with.
    async fn load<C: ConnectionTrait>(
        db: &C,
        o: &org::Model,
        p: &project::Model,
        c: cluster::Model,
    ) -> Result<Self, ApiError> {
        let shared = share::shared_with(db, &[c.id])
            .await?
            .remove(&c.id)
            .unwrap_or_default();
        Ok(Self::build(o, p, c, shared))
    }

    fn build(
        o: &org::Model,
        p: &project::Model,
        c: cluster::Model,
        shared_with: Vec<String>,
    ) -> Self {
        let health = c.probe_at.map(|at| ClusterHealth {
            checked_at: at,
            reachable: c.probe_ok.unwrap_or(false),
            rtt_ms: c.probe_rtt_us.map(|us| us as f64 / 1000.0),
            error: c.probe_error.clone(),
            broker: c
                .probe_stats
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
        });
        Self {
            endpoints: endpoints(&c),
            agent_identities: crate::fleet::broker_identity::agent_identities(&c).to_string(),
            shared_with,
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
    #[schema(schema_with = crate::extract::schema::slug, example = "main")]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = crate::extract::schema::text::<0, 128>)]
    pub title: String,
    /// `external` (adopt a broker) or `kubernetes` (the operator runs EMQX).
    #[schema(example = "external", schema_with = backend_schema)]
    pub backend: String,
    /// external: `mqtt://host:port` or `mqtts://host:port`.
    #[schema(schema_with = crate::fleet::mqtt_probe::broker_url_schema)]
    pub url: Option<String>,
    #[schema(schema_with = crate::extract::schema::text_opt::<0, 256>)]
    pub username: Option<String>,
    /// Stored encrypted; never returned.
    #[schema(max_length = 1024)]
    pub password: Option<String>,
    /// `password` (default for external: agents get the username/password)
    /// or `apiJwt` (the only one for kubernetes).
    #[schema(schema_with = auth_mode_schema)]
    pub auth_mode: Option<String>,
    /// kubernetes: the `MqttClusterSpec` (replicas, version, listeners, config, ...),
    /// within the platform's allow-list: image from its registry, Secrets
    /// labelled `weir.dev/project=<project>`, listed `config` keys, `apiJwt`
    /// against the api's JWKS.
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
    /// Other projects of the organization (slugs) whose gateways may use
    /// this cluster. Sharing needs an org admin.
    #[schema(max_items = 64)]
    pub shared_with: Option<Vec<String>>,
}

fn backend_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some([BACKEND_EXTERNAL, BACKEND_KUBERNETES]))
        .build()
}

fn auth_mode_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            utoipa::openapi::schema::Type::String,
            utoipa::openapi::schema::Type::Null,
        ]))
        .enum_values(Some([Some(AUTH_PASSWORD), Some(AUTH_JWT), None]))
        .build()
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

crate::body_rule!(
    CreateClusterBody,
    CreateCluster,
    serde_json::json!({"oneOf": [
        {"required": ["url"], "properties": {
            "backend": {"const": BACKEND_EXTERNAL},
            "url": {"type": "string"},
            "spec": {"type": "null"},
        }},
        {"properties": {
            "backend": {"const": BACKEND_KUBERNETES},
            "url": {"type": "null"},
            "username": {"type": "null"},
            "password": {"type": "null"},
            "auth_mode": {"enum": [AUTH_JWT, null]},
        }},
    ]})
);

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
                if self.auth_mode.as_deref() == Some(AUTH_PASSWORD) {
                    e.push(FieldError::new(
                        "auth_mode",
                        "kubernetes clusters always use apiJwt: agents get api-issued JWTs with topic ACLs",
                    ));
                }
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
            if p.chars().count() > 1024 {
                e.push(FieldError::new("password", "at most 1024 characters"));
            }
        }
        chk::finish(e)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCluster {
    #[schema(schema_with = crate::extract::schema::text_opt::<0, 128>)]
    pub title: Option<String>,
    /// external: a new broker URL. Another scheme, host or port clears the
    /// stored password unless `password` comes in the same request.
    #[schema(schema_with = crate::fleet::mqtt_probe::broker_url_schema)]
    pub url: Option<String>,
    /// external: a new username (empty removes it).
    pub username: Option<String>,
    /// external: a new password (empty removes it).
    pub password: Option<String>,
    #[schema(schema_with = auth_mode_schema)]
    pub auth_mode: Option<String>,
    /// kubernetes: JSON merge patch of the spec — scale (`replicas`), upgrade
    /// (`version`), `listeners`, limits (`config`, `resources`); the whole
    /// result must keep to the platform's allow-list.
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
    /// The projects (slugs) this cluster is shared with, replacing the list;
    /// `[]` withdraws every share. Adding a project needs an org admin;
    /// the cluster's project admins may withdraw.
    #[schema(max_items = 64)]
    pub shared_with: Option<Vec<String>>,
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

/// Whether the caller may share clusters of this org with other projects.
fn require_share_right(st: &AppState, grants: &Grants, o: &org::Model) -> Result<(), ApiError> {
    crate::auth::check_with(grants, &st.rbac, Permission::OrgUpdate, Domain::Org(o.id))
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
    let ids: Vec<Uuid> = rows.iter().map(|c| c.id).collect();
    let mut shares = share::shared_with(&st.db, &ids).await?;
    Ok(Json(
        rows.into_iter()
            .map(|c| {
                let shared = shares.remove(&c.id).unwrap_or_default();
                Cluster::build(&o, &p, c, shared)
            })
            .collect(),
    ))
}

/// Create a cluster: adopt a broker (external) or have the operator run one (kubernetes).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/clusters", tag = "fleet", request_body = CreateClusterBody,
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
        grants,
        ..
    } = scope.require(Permission::ProjectUpdate).await?;
    let shared_with = req.shared_with.clone().unwrap_or_default();
    if !shared_with.is_empty() {
        require_share_right(&st, &grants, &o)?;
    }
    let share_to = share::resolve_projects(&st.db, &o, p.id, &shared_with).await?;
    let id = Uuid::new_v4();
    let now = Utc::now();
    let (spec, auth_mode) = if req.backend == BACKEND_KUBERNETES {
        let requested = req
            .spec
            .clone()
            .unwrap_or(Value::Object(Default::default()));
        // The spec is judged first: a bad one is refused even here.
        let spec = kubernetes::check_spec(&st, &requested, None, &requested)?;
        let Some(client) = &st.fleet.kube else {
            return Err(ApiError::invalid(
                "backend",
                "this api has no Kubernetes config (in-cluster or KUBECONFIG); only external clusters can be created",
            ));
        };
        kubernetes::check_secrets(client, &o.slug, &p.slug, &spec).await?;
        (Some(spec), AUTH_JWT.to_string())
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
        probe_stats: Set(None),
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
    share::set_shares(&*tx, c.id, &share_to).await?;
    let c = match (&spec, &st.fleet.kube) {
        (Some(spec), Some(client)) => {
            let status =
                crate::fleet::kube_backend::apply_cluster(client, &o.slug, &p.slug, &c.slug, spec)
                    .await?;
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
        .details(serde_json::json!({"backend": c.backend, "url": c.url, "auth_mode": c.auth_mode, "shared_with": shared_with})),
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
    Ok((
        StatusCode::CREATED,
        Json(Cluster::load(&st.db, &o, &p, c).await?),
    ))
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
    Ok(Json(Cluster::load(&st.db, &o, &p, c).await?))
}
