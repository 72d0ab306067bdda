//! Edge gateways: the config (`weir_crds::EdgeGatewaySpec`, validated with
//! the CRD's rules and messages), every change an immutable version with
//! author and comment, versions, diff and rollback. In the embedded mode
//! each new version is signed into a new bundle at once; with the
//! Kubernetes backend the spec is applied as an `EdgeGateway` and the
//! operator signs.
//!
//! The versions of a gateway (list, one, diff, rollback) are [`versions`].

pub mod spec_cache;
pub mod versions;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    FromQueryResult, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use weir_crds::agent_api::AgentStatus;
use weir_crds::bundle::{self, BundlePayload};
use weir_crds::EdgeGatewaySpec;

use super::entities::{gateway, gateway_version};
use super::keys;
use crate::audit::{self, AuditEvent};
use crate::auth::{Auth, ClientMeta};
use crate::db::entities::{org, project};
use crate::db::is_unique_violation;
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{check as chk, ApiJson, ApiPath, ApiQuery, Validate};
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_gateways, create_gateway))
        .routes(routes!(get_gateway, update_gateway, delete_gateway))
        .merge(versions::router())
}

/// The CRD's field errors as the api's (same field paths and messages).
pub fn spec_errors(errs: Vec<weir_crds::gateway::FieldError>) -> ApiError {
    ApiError::Validation(
        errs.into_iter()
            .map(|e| FieldError::new(e.field, e.message))
            .collect(),
    )
}

/// Validate a raw spec value exactly like the CRD does.
pub fn validate_spec(value: &Value) -> Result<EdgeGatewaySpec, ApiError> {
    if !value.is_object() {
        return Err(ApiError::invalid("spec", "must be an object"));
    }
    weir_crds::gateway::validate::validate_spec_value(value).map_err(spec_errors)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Gateway {
    pub id: Uuid,
    /// Gateway name, unique in the organization (used in MQTT topics).
    pub name: String,
    pub org: String,
    pub project: String,
    /// The MQTT cluster (`spec.clusterRef`), if any.
    pub cluster: Option<String>,
    /// Latest config version.
    pub version: i64,
    /// The config of the latest version (an `EdgeGatewaySpec`).
    #[schema(value_type = Object)]
    pub spec: Box<RawValue>,
    /// Version of the latest signed bundle (what agents are offered).
    pub bundle_version: i64,
    /// Bundle version the agent reports as applied.
    pub applied_version: Option<i64>,
    pub online: Option<bool>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// What the agent reported on its last heartbeat (device health, queue,
    /// dropped readings, refused bundle); null before the first one.
    pub agent_status: Option<AgentStatus>,
    /// Readings per second the agent sent between its last two heartbeats;
    /// null before the second. Not current when the gateway is offline.
    pub readings_per_sec: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Gateway {
    pub fn build(o: &org::Model, p: &project::Model, g: gateway::Model, spec: Value) -> Self {
        let spec = serde_json::value::to_raw_value(&spec).unwrap_or_else(|_| empty_raw());
        Self::build_raw(o, p, g, spec)
    }

    /// [`Self::build`] from the stored text of the config, which goes into
    /// the answer as it is rather than parsed into a tree and written out
    /// again (most of the cost of a list).
    pub fn build_raw(
        o: &org::Model,
        p: &project::Model,
        g: gateway::Model,
        spec: Box<RawValue>,
    ) -> Self {
        #[derive(Deserialize)]
        struct Refs<'a> {
            #[serde(rename = "clusterRef", borrow, default)]
            cluster_ref: Option<std::borrow::Cow<'a, str>>,
        }
        let cluster = serde_json::from_str::<Refs>(spec.get())
            .ok()
            .and_then(|r| r.cluster_ref)
            .map(|c| c.into_owned());
        Self {
            id: g.id,
            name: g.slug,
            org: o.slug.clone(),
            project: p.slug.clone(),
            cluster,
            version: g.config_version,
            spec,
            bundle_version: g.bundle_version,
            applied_version: g.applied_version,
            online: g.online,
            last_heartbeat: g.last_heartbeat,
            agent_status: agent_status(g.status.as_deref()),
            readings_per_sec: g.readings_rate,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

/// The last heartbeat's report, stored as the agent sent it; a row the
/// current type cannot read shows as no report rather than failing the
/// whole answer (a gateway or a list).
pub(crate) fn agent_status(stored: Option<&str>) -> Option<AgentStatus> {
    stored.and_then(|s| serde_json::from_str(s).ok())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGateway {
    #[schema(schema_with = crate::extract::schema::slug, example = "pump-station-1")]
    pub name: String,
    /// The gateway config (`EdgeGatewaySpec`: site, mode, clusterRef, devices, pipelines, uplink).
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub spec: Value,
    #[serde(default)]
    #[schema(schema_with = crate::extract::schema::text::<0, 1000>)]
    pub comment: String,
}

pub(super) fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl Validate for CreateGateway {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        chk::slug(&mut e, "name", &self.name);
        chk::text(&mut e, "comment", &self.comment, 0, 1000);
        chk::finish(e)
    }
}

/// A change: either the whole new `spec`, or a JSON merge patch (RFC 7396) of it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGateway {
    #[schema(value_type = Option<Object>)]
    pub spec: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub merge_patch: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = crate::extract::schema::text::<0, 1000>)]
    pub comment: String,
}

crate::body_rule!(
    UpdateGatewayBody,
    UpdateGateway,
    serde_json::json!({"oneOf": [
        {"required": ["spec"], "properties": {"spec": {"type": "object"}, "merge_patch": {"type": "null"}}},
        {"required": ["merge_patch"], "properties": {"merge_patch": {"type": "object"}, "spec": {"type": "null"}}},
    ]})
);

impl Validate for UpdateGateway {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut e = Vec::new();
        match (&self.spec, &self.merge_patch) {
            (Some(_), Some(_)) => e.push(FieldError::new(
                "merge_patch",
                "send either spec or merge_patch, not both",
            )),
            (None, None) => e.push(FieldError::new("spec", "send spec or merge_patch")),
            _ => {}
        }
        chk::text(&mut e, "comment", &self.comment, 0, 1000);
        chk::finish(e)
    }
}

/// Who made a version.
#[derive(Clone, Debug)]
pub struct Author {
    pub id: Option<Uuid>,
    pub label: String,
}

impl From<&Auth> for Author {
    fn from(a: &Auth) -> Self {
        Self {
            id: Some(a.user.id),
            label: a.actor_label(),
        }
    }
}

/// A gateway of the project by name (404 when there is none).
pub async fn find_gateway(
    st: &AppState,
    p: &project::Model,
    name: &str,
) -> Result<gateway::Model, ApiError> {
    gateway::Entity::find()
        .filter(gateway::Column::ProjectId.eq(p.id))
        .filter(gateway::Column::Slug.eq(name))
        .one(&st.db)
        .await?
        .ok_or(ApiError::NotFound)
}

/// The spec of one version.
pub async fn version_spec<C: ConnectionTrait>(
    db: &C,
    gateway_id: Uuid,
    version: i64,
) -> Result<Option<(gateway_version::Model, Value)>, ApiError> {
    let Some(v) = gateway_version::Entity::find_by_id((gateway_id, version))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let spec = serde_json::from_str(&v.spec).map_err(ApiError::internal)?;
    Ok(Some((v, spec)))
}

pub async fn current_spec<C: ConnectionTrait>(
    db: &C,
    g: &gateway::Model,
) -> Result<Value, ApiError> {
    Ok(version_spec(db, g.id, g.config_version)
        .await?
        .map(|(_, s)| s)
        .unwrap_or_else(empty_object))
}

fn empty_raw() -> Box<RawValue> {
    RawValue::from_string("{}".to_string()).expect("{} is JSON")
}

/// The stored configs of the current versions of many gateways (as
/// [`current_spec`], unparsed), from [`spec_cache`] or else in one query
/// per 500 of them rather than one each: a list of N gateways costs at most
/// two queries, not N + 1. It takes the pool, never a transaction (see
/// [`spec_cache`]).
pub async fn current_specs(
    db: &DatabaseConnection,
    gateways: &[(Uuid, i64)],
) -> Result<HashMap<Uuid, Arc<spec_cache::CachedSpec>>, ApiError> {
    let mut out = HashMap::with_capacity(gateways.len());
    let mut missing = Vec::new();
    for &(id, version) in gateways {
        match spec_cache::get(id, version) {
            Some(s) => {
                out.insert(id, s);
            }
            None => missing.push((id, version)),
        }
    }
    for chunk in missing.chunks(500) {
        let wanted = chunk.iter().fold(Condition::any(), |c, (id, version)| {
            c.add(
                Condition::all()
                    .add(gateway_version::Column::GatewayId.eq(*id))
                    .add(gateway_version::Column::Version.eq(*version)),
            )
        });
        let rows: Vec<(Uuid, i64, String)> = gateway_version::Entity::find()
            .select_only()
            .columns([
                gateway_version::Column::GatewayId,
                gateway_version::Column::Version,
                gateway_version::Column::Spec,
            ])
            .filter(wanted)
            .into_tuple()
            .all(db)
            .await?;
        for (id, version, spec) in rows {
            let raw = RawValue::from_string(spec).map_err(ApiError::internal)?;
            let cached = Arc::new(spec_cache::CachedSpec::parse(raw));
            spec_cache::insert(id, version, cached.clone());
            out.insert(id, cached);
        }
    }
    Ok(out)
}

/// Store `spec` as the gateway's next version (unless it equals the
/// current one: then `None`), point the gateway at its cluster, and sign a
/// new bundle in the embedded mode or apply the `EdgeGateway` with the
/// Kubernetes backend.
pub async fn write_version<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    o: &org::Model,
    g: gateway::Model,
    spec: &EdgeGatewaySpec,
    author: &Author,
    comment: &str,
) -> Result<Option<gateway::Model>, ApiError> {
    let Some(g) = record_version(db, o, g, spec, author, comment).await? else {
        return Ok(None);
    };
    let g = if let Some(client) = &st.fleet.kube {
        let p = project::Entity::find_by_id(g.project_id)
            .one(db)
            .await?
            .ok_or_else(|| ApiError::internal("gateway without project"))?;
        super::kube_backend::apply_gateway(client, &o.slug, &p.slug, &g.slug, spec).await?;
        g
    } else {
        let version = g.config_version;
        sign_bundle(db, st, o, g, version, spec).await?
    };
    Ok(Some(g))
}

/// The database half of [`write_version`]: the version row and the
/// gateway's cluster, nothing applied or signed. The Kubernetes watch
/// ([`super::kube_sync`]) records what `kubectl` changed with it.
pub async fn record_version<C: ConnectionTrait>(
    db: &C,
    o: &org::Model,
    g: gateway::Model,
    spec: &EdgeGatewaySpec,
    author: &Author,
    comment: &str,
) -> Result<Option<gateway::Model>, ApiError> {
    let value = serde_json::to_value(spec).map_err(ApiError::internal)?;
    if g.config_version > 0 && current_spec(db, &g).await? == value {
        return Ok(None);
    }
    // A cluster of the gateway's own project, or one shared with it.
    let cluster_id = match &spec.cluster_ref {
        None => None,
        Some(name) => {
            Some(super::clusters::share::resolve_cluster_ref(db, o.id, g.project_id, name).await?)
        }
    };
    let now = Utc::now();
    let version = g.config_version + 1;
    gateway_version::ActiveModel {
        gateway_id: Set(g.id),
        version: Set(version),
        spec: Set(value.to_string()),
        author_id: Set(author.id),
        author: Set(author.label.clone()),
        comment: Set(comment.to_string()),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    let mut am = g.into_active_model();
    am.config_version = Set(version);
    am.cluster_id = Set(cluster_id);
    am.updated_at = Set(now);
    Ok(Some(am.update(db).await?))
}

/// Sign the config of `config_version` into the gateway's next bundle version.
pub async fn sign_bundle<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    o: &org::Model,
    g: gateway::Model,
    config_version: i64,
    spec: &EdgeGatewaySpec,
) -> Result<gateway::Model, ApiError> {
    let key = keys::current_or_create(db, &st.fleet, o.id, keys::PURPOSE_BUNDLE).await?;
    let now = Utc::now();
    let version = g.bundle_version + 1;
    let payload = BundlePayload::new(
        &o.slug,
        &g.slug,
        version as u64,
        spec.config.clone(),
        now,
        Duration::days(st.fleet.config.bundle_validity_days),
    );
    let mut signed = bundle::sign(&payload, &key.key);
    signed.rotation = key.rotation(now);
    let mut am = g.into_active_model();
    am.bundle_version = Set(version);
    am.bundle_config_version = Set(config_version);
    am.bundle = Set(Some(
        serde_json::to_string(&signed).map_err(ApiError::internal)?,
    ));
    am.bundle_expires = Set(Some(payload.expires));
    Ok(am.update(db).await?)
}

/// Re-sign every gateway of an org (after a key rotation); their ids.
pub async fn resign_org<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    o: &org::Model,
) -> Result<Vec<Uuid>, ApiError> {
    if st.fleet.kube.is_some() {
        // The operator signs in Kubernetes mode.
        return Ok(vec![]);
    }
    let rows = gateway::Entity::find()
        .filter(gateway::Column::OrgId.eq(o.id))
        .all(db)
        .await?;
    let mut ids = Vec::new();
    for g in rows.into_iter().filter(|g| g.config_version > 0) {
        let spec: EdgeGatewaySpec =
            serde_json::from_value(current_spec(db, &g).await?).map_err(ApiError::internal)?;
        let v = g.config_version;
        let g = sign_bundle(db, st, o, g, v, &spec).await?;
        ids.push(g.id);
    }
    Ok(ids)
}

/// A new gateway row without any version yet (409 when the name is taken
/// in the organization).
pub async fn insert_gateway<C: ConnectionTrait>(
    db: &C,
    org_id: Uuid,
    project_id: Uuid,
    name: &str,
) -> Result<gateway::Model, ApiError> {
    let now = Utc::now();
    gateway::ActiveModel {
        id: Set(Uuid::new_v4()),
        org_id: Set(org_id),
        project_id: Set(project_id),
        slug: Set(name.to_string()),
        cluster_id: Set(None),
        config_version: Set(0),
        bundle_version: Set(0),
        bundle_config_version: Set(0),
        bundle: Set(None),
        bundle_expires: Set(None),
        applied_version: Set(None),
        last_error: Set(None),
        last_heartbeat: Set(None),
        heartbeat_interval_s: Set(0),
        online: Set(None),
        status: Set(None),
        readings_rate: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::conflict(
                "a gateway with this name exists in the organization",
                Some("name"),
            )
        } else {
            e.into()
        }
    })
}

/// A gateway as a list shows it: the fields of a Gateway but its config,
/// which `?include=spec` adds, and with the config's site and mode.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewaySummary {
    pub id: Uuid,
    /// Gateway name, unique in the organization (used in MQTT topics).
    pub name: String,
    pub org: String,
    pub project: String,
    /// The MQTT cluster (`spec.clusterRef`), if any.
    pub cluster: Option<String>,
    /// `spec.site` of the latest version (name, location, time zone).
    #[schema(value_type = Object)]
    pub site: Box<RawValue>,
    /// `spec.mode` of the latest version (`external` or `inCluster`).
    pub mode: Option<String>,
    /// Latest config version.
    pub version: i64,
    /// The config of the latest version (an `EdgeGatewaySpec`); only with
    /// `?include=spec`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, required = false)]
    pub spec: Option<Box<RawValue>>,
    /// Version of the latest signed bundle (what agents are offered).
    pub bundle_version: i64,
    /// Bundle version the agent reports as applied.
    pub applied_version: Option<i64>,
    pub online: Option<bool>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// What the agent reported on its last heartbeat; null before the first one.
    pub agent_status: Option<AgentStatus>,
    /// Readings per second the agent sent between its last two heartbeats;
    /// null before the second. Not current when the gateway is offline.
    pub readings_per_sec: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a list adds to each gateway.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ListInclude {
    /// The config of the latest version (`spec`).
    Spec,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// `spec`: each item also carries the config of its latest version.
    #[param(inline)]
    pub include: Option<ListInclude>,
}

/// The columns of a gateway a list shows: not the signed bundle, which is
/// about as large as the config and only agents fetch.
#[derive(Debug, FromQueryResult)]
struct SummaryRow {
    id: Uuid,
    slug: String,
    config_version: i64,
    bundle_version: i64,
    applied_version: Option<i64>,
    online: Option<bool>,
    last_heartbeat: Option<DateTime<Utc>>,
    status: Option<String>,
    readings_rate: Option<f64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Gateways of a project, by name: each without its config unless
/// `?include=spec`.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/gateways", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ListParams), responses((status = 200, body = Vec<GatewaySummary>), ProblemResponses))]
async fn list_gateways(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Vec<GatewaySummary>>, ApiError> {
    let ProjectAccess {
        org: o, project: p, ..
    } = scope.require(Permission::ProjectRead).await?;
    use gateway::Column as C;
    let rows: Vec<SummaryRow> = gateway::Entity::find()
        .select_only()
        .columns([
            C::Id,
            C::Slug,
            C::ConfigVersion,
            C::BundleVersion,
            C::AppliedVersion,
            C::Online,
            C::LastHeartbeat,
            C::Status,
            C::ReadingsRate,
            C::CreatedAt,
            C::UpdatedAt,
        ])
        .filter(C::ProjectId.eq(p.id))
        .order_by_asc(C::Slug)
        .into_model()
        .all(&st.db)
        .await?;
    let current: Vec<(Uuid, i64)> = rows.iter().map(|r| (r.id, r.config_version)).collect();
    let specs = current_specs(&st.db, &current).await?;
    let with_spec = q.include == Some(ListInclude::Spec);
    let out = rows
        .into_iter()
        .map(|g| {
            let spec = specs.get(&g.id);
            GatewaySummary {
                id: g.id,
                name: g.slug,
                org: o.slug.clone(),
                project: p.slug.clone(),
                cluster: spec.and_then(|s| s.cluster.clone()),
                site: spec.map_or_else(spec_cache::empty_object, |s| s.site.clone()),
                mode: spec.and_then(|s| s.mode.clone()),
                version: g.config_version,
                spec: with_spec.then(|| spec.map_or_else(empty_raw, |s| s.raw.clone())),
                bundle_version: g.bundle_version,
                applied_version: g.applied_version,
                online: g.online,
                last_heartbeat: g.last_heartbeat,
                agent_status: agent_status(g.status.as_deref()),
                readings_per_sec: g.readings_rate,
                created_at: g.created_at,
                updated_at: g.updated_at,
            }
        })
        .collect();
    Ok(Json(out))
}

/// Create a gateway; its config becomes version 1.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/gateways", tag = "fleet", request_body = CreateGateway,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 201, body = Gateway), ProblemResponses))]
async fn create_gateway(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiJson(req): ApiJson<CreateGateway>,
) -> Result<(StatusCode, Json<Gateway>), ApiError> {
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = scope.require(Permission::ProjectWrite).await?;
    let spec = validate_spec(&req.spec)?;
    let tx = st.write().await?;
    let g = insert_gateway(&*tx, o.id, p.id, &req.name).await?;
    let comment = if req.comment.is_empty() {
        "created"
    } else {
        req.comment.as_str()
    };
    let g = write_version(&*tx, &st, &o, g, &spec, &Author::from(&auth), comment)
        .await?
        .ok_or_else(|| ApiError::internal("first version not written"))?;
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "gateway.create",
            format!("gateway:{}/{}", o.slug, g.slug),
        )
        .org(o.id)
        .project(p.id)
        .details(serde_json::json!({"version": g.config_version, "comment": comment})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    let spec = serde_json::to_value(&spec).map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(Gateway::build(&o, &p, g, spec))))
}

/// One gateway with the config of its latest version.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path)), responses((status = 200, body = Gateway), ProblemResponses))]
async fn get_gateway(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, gw)): ApiPath<(String, String, String)>,
) -> Result<Json<Gateway>, ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectRead)?;
    let ProjectAccess {
        org: o, project: p, ..
    } = at;
    let spec = current_specs(&st.db, &[(g.id, g.config_version)])
        .await?
        .remove(&g.id)
        .map_or_else(empty_raw, |s| s.raw.clone());
    Ok(Json(Gateway::build_raw(&o, &p, g, spec)))
}

/// Change the config: a new version (none when nothing changed).
#[utoipa::path(patch, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}", tag = "fleet", request_body = UpdateGatewayBody,
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path)), responses((status = 200, body = Gateway), ProblemResponses))]
async fn update_gateway(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, gw)): ApiPath<(String, String, String)>,
    ApiJson(req): ApiJson<UpdateGateway>,
) -> Result<Json<Gateway>, ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectWrite)?;
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = at;
    let tx = st.write().await?;
    // Re-read under the write lock so concurrent edits each get their own version.
    let g = gateway::Entity::find_by_id(g.id)
        .one(&*tx)
        .await?
        .ok_or(ApiError::NotFound)?;
    let new_value = match (req.spec, req.merge_patch) {
        (Some(s), _) => s,
        (None, Some(patch)) => {
            let mut cur = current_spec(&*tx, &g).await?;
            json_patch::merge(&mut cur, &patch);
            cur
        }
        (None, None) => unreachable!("checked by validate"),
    };
    let spec = validate_spec(&new_value)?;
    let comment = if req.comment.is_empty() {
        "updated"
    } else {
        req.comment.as_str()
    };
    let written = write_version(
        &*tx,
        &st,
        &o,
        g.clone(),
        &spec,
        &Author::from(&auth),
        comment,
    )
    .await?;
    let g = match written {
        Some(g2) => {
            audit::append(
                &*tx,
                AuditEvent::by(
                    &auth,
                    "gateway.update",
                    format!("gateway:{}/{}", o.slug, g2.slug),
                )
                .org(o.id)
                .project(p.id)
                .details(serde_json::json!({"version": g2.config_version, "comment": comment})),
                &meta,
            )
            .await?;
            g2
        }
        None => g,
    };
    tx.commit().await?;
    let _ = st.fleet.bundles.send(g.id);
    let spec = serde_json::to_value(&spec).map_err(ApiError::internal)?;
    Ok(Json(Gateway::build(&o, &p, g, spec)))
}

/// Delete a gateway, its versions, enrollment tokens and agents.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/gateways/{gateway}", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("gateway" = String, Path)), responses((status = 204, description = "Deleted"), ProblemResponses))]
async fn delete_gateway(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, gw)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let at = scope.load().await?;
    let g = find_gateway(&st, &at.project, &gw).await?;
    at.require(Permission::ProjectWrite)?;
    let ProjectAccess {
        auth,
        org: o,
        project: p,
        ..
    } = at;
    let tx = st.write().await?;
    super::enrollment::delete_gateway_children(&*tx, &st, g.id).await?;
    gateway::Entity::delete_by_id(g.id).exec(&*tx).await?;
    if let Some(client) = &st.fleet.kube {
        super::kube_backend::delete_gateway(client, &o.slug, &g.slug).await?;
    }
    audit::append(
        &*tx,
        AuditEvent::by(
            &auth,
            "gateway.delete",
            format!("gateway:{}/{}", o.slug, g.slug),
        )
        .org(o.id)
        .project(p.id),
        &meta,
    )
    .await?;
    tx.commit().await?;
    let _ = st.fleet.bundles.send(g.id);
    Ok(StatusCode::NO_CONTENT)
}
