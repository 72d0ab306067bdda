//! The rollout view (per gateway: desired and applied version, last error,
//! last heartbeat, online) and the fleet monitor: a gateway whose agent
//! missed 3 heartbeats goes offline, a heartbeat brings it back; each
//! change is a `fleet_events` row and a [`FleetEventRecord`] on
//! `Fleet::events`. The monitor also re-signs bundles before they expire.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use weir_crds::EdgeGatewaySpec;

use super::entities::{agent, fleet_event, gateway};
use super::gateways::{current_spec, sign_bundle};
use crate::audit::{self, AuditEvent};
use crate::auth::ClientMeta;
use crate::db::entities::org;
use crate::error::{ApiError, ProblemResponses};
use crate::extract::ApiQuery;
use crate::fleet_events::{FleetEvent, FleetEventRecord};
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

pub const GATEWAY_OFFLINE: &str = "gateway_offline";
pub const GATEWAY_ONLINE: &str = "gateway_online";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rollout))
        .routes(routes!(fleet_events))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutEntry {
    pub gateway: String,
    /// Latest config version.
    pub config_version: i64,
    /// Bundle version the agent should run (the latest signed bundle).
    pub desired_version: i64,
    /// Bundle version the agent reports as applied.
    pub applied_version: Option<i64>,
    /// The agent runs the latest bundle.
    pub up_to_date: bool,
    /// Why the agent refused the last bundle, if it did.
    pub last_error: Option<String>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub heartbeat_interval_s: i32,
    /// Heartbeat within 3 intervals. False before the first heartbeat.
    pub online: bool,
    pub agent_id: Option<Uuid>,
    pub agent_hostname: Option<String>,
    pub agent_version: Option<String>,
}

/// Where every gateway of the project stands.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/rollout", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Vec<RolloutEntry>), ProblemResponses))]
async fn rollout(
    State(st): State<AppState>,
    scope: ProjectScope,
) -> Result<Json<Vec<RolloutEntry>>, ApiError> {
    let ProjectAccess { project: p, .. } = scope.require(Permission::ProjectRead).await?;
    let rows = gateway::Entity::find()
        .filter(gateway::Column::ProjectId.eq(p.id))
        .order_by_asc(gateway::Column::Slug)
        .all(&st.db)
        .await?;
    let agents = agent::Entity::find()
        .filter(agent::Column::ProjectId.eq(p.id))
        .filter(agent::Column::RevokedAt.is_null())
        .all(&st.db)
        .await?;
    let now = Utc::now();
    Ok(Json(
        rows.into_iter()
            .map(|g| {
                let a = agents.iter().find(|a| a.gateway_id == g.id);
                RolloutEntry {
                    up_to_date: g.applied_version == Some(g.bundle_version),
                    online: is_online(&g, now),
                    gateway: g.slug,
                    config_version: g.config_version,
                    desired_version: g.bundle_version,
                    applied_version: g.applied_version,
                    last_error: g.last_error,
                    last_heartbeat: g.last_heartbeat,
                    heartbeat_interval_s: g.heartbeat_interval_s,
                    agent_id: a.map(|a| a.id),
                    agent_hostname: a.map(|a| a.hostname.clone()),
                    agent_version: a.map(|a| a.agent_version.clone()),
                }
            })
            .collect(),
    ))
}

/// Online: the last heartbeat is within 3 heartbeat intervals.
pub fn is_online(g: &gateway::Model, now: DateTime<Utc>) -> bool {
    match g.last_heartbeat {
        Some(hb) => now - hb <= Duration::seconds(3 * i64::from(g.heartbeat_interval_s.max(1))),
        None => false,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events of this gateway.
    pub gateway: Option<String>,
    /// Only events of this kind (`gateway_offline`, `gateway_online`, `data_gap`).
    pub kind: Option<String>,
    /// Page size, 1-500 (default 100).
    pub limit: Option<u64>,
}

/// Fleet-health events of the project (gateway offline / online, data gaps), newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/fleet-events", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), EventsQuery), responses((status = 200, body = Vec<FleetEventRecord>), ProblemResponses))]
async fn fleet_events(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<FleetEventRecord>>, ApiError> {
    let ProjectAccess { project: p, .. } = scope.require(Permission::ProjectRead).await?;
    let mut sel = fleet_event::Entity::find().filter(fleet_event::Column::ProjectId.eq(p.id));
    if let Some(g) = &q.gateway {
        sel = sel.filter(fleet_event::Column::Gateway.eq(g.as_str()));
    }
    if let Some(k) = &q.kind {
        sel = sel.filter(fleet_event::Column::Kind.eq(k.as_str()));
    }
    let rows = sel
        .order_by_desc(fleet_event::Column::At)
        .limit(q.limit.unwrap_or(100).clamp(1, 500))
        .all(&st.db)
        .await?;
    Ok(Json(rows.into_iter().map(to_event).collect()))
}

pub(super) fn to_event(m: fleet_event::Model) -> FleetEventRecord {
    let gap = (m.kind == crate::fleet_events::DATA_GAP)
        .then(|| serde_json::from_str(&m.details).ok())
        .flatten();
    FleetEventRecord {
        gap,
        id: m.id,
        org_id: m.org_id,
        project_id: m.project_id,
        gateway_id: m.gateway_id,
        gateway: m.gateway,
        kind: m.kind,
        at: m.at,
    }
}

/// Store a fleet-health event and broadcast it.
pub async fn record_event(
    st: &AppState,
    g: &gateway::Model,
    kind: &str,
    at: DateTime<Utc>,
) -> Result<FleetEventRecord, ApiError> {
    let m = fleet_event::ActiveModel {
        id: Set(Uuid::new_v4()),
        org_id: Set(g.org_id),
        project_id: Set(g.project_id),
        gateway_id: Set(g.id),
        gateway: Set(g.slug.clone()),
        kind: Set(kind.to_string()),
        at: Set(at),
        details: Set(serde_json::json!({
            "last_heartbeat": g.last_heartbeat,
            "heartbeat_interval_s": g.heartbeat_interval_s,
        })
        .to_string()),
    }
    .insert(&st.db)
    .await?;
    let ev = to_event(m);
    tracing::info!(gateway = %ev.gateway, kind, "fleet health");
    // No receiver is fine: nobody listens yet.
    let _ = st.fleet.events.send(ev.clone());
    // Gateway-offline alert rules (and inhibition of the gateway's device alerts).
    let (project, gateway) = (g.project_id, g.slug.clone());
    st.alerts
        .fleet_event(if kind == GATEWAY_OFFLINE {
            FleetEvent::GatewayOffline { project, gateway }
        } else {
            FleetEvent::GatewayOnline { project, gateway }
        })
        .await;
    Ok(ev)
}

/// One pass of the monitor; returns the events it recorded.
pub async fn monitor_once(st: &AppState) -> Result<Vec<FleetEventRecord>, ApiError> {
    let now = Utc::now();
    let mut events = Vec::new();
    let online = gateway::Entity::find()
        .filter(gateway::Column::Online.eq(true))
        .all(&st.db)
        .await?;
    for g in online {
        if is_online(&g, now) {
            continue;
        }
        // Only flip if nobody reported in the meantime.
        let res = gateway::Entity::update_many()
            .col_expr(
                gateway::Column::Online,
                sea_orm::sea_query::Expr::value(false),
            )
            .filter(gateway::Column::Id.eq(g.id))
            .filter(gateway::Column::Online.eq(true))
            .filter(gateway::Column::LastHeartbeat.eq(g.last_heartbeat))
            .exec(&st.db)
            .await?;
        if res.rows_affected == 1 {
            let offline = gateway::Model {
                online: Some(false),
                ..g.clone()
            };
            super::kube_status::gateway_changed(st, &offline).await;
            events.push(record_event(st, &g, GATEWAY_OFFLINE, now).await?);
        }
    }
    if st.fleet.kube.is_none() {
        resign_expiring(st, now).await?;
    }
    Ok(events)
}

/// Re-sign (as a new version) bundles that expire within `bundle_resign_days`.
async fn resign_expiring(st: &AppState, now: DateTime<Utc>) -> Result<(), ApiError> {
    let soon = now + Duration::days(st.fleet.config.bundle_resign_days);
    let due = gateway::Entity::find()
        .filter(gateway::Column::BundleExpires.lt(soon))
        .all(&st.db)
        .await?;
    for g in due {
        let tx = st.write().await?;
        let Some(g) = gateway::Entity::find_by_id(g.id).one(&*tx).await? else {
            continue;
        };
        if g.bundle_expires.is_none_or(|e| e >= soon) {
            continue;
        }
        let Some(o) = org::Entity::find_by_id(g.org_id).one(&*tx).await? else {
            continue;
        };
        let spec: EdgeGatewaySpec =
            serde_json::from_value(current_spec(&*tx, &g).await?).map_err(ApiError::internal)?;
        let v = g.config_version;
        let g = sign_bundle(&*tx, st, &o, g, v, &spec).await?;
        audit::append(
            &*tx,
            AuditEvent::anonymous(
                "system",
                "gateway.resign",
                format!("gateway:{}/{}", o.slug, g.slug),
            )
            .org(o.id)
            .project(g.project_id)
            .details(serde_json::json!({"bundle_version": g.bundle_version, "reason": "expiring"})),
            &ClientMeta::default(),
        )
        .await?;
        tx.commit().await?;
        let _ = st.fleet.bundles.send(g.id);
    }
    Ok(())
}

/// Run [`monitor_once`] every `fleet_monitor_interval_ms`, and check cluster
/// health ([`super::clusters::probe_all`]) every `cluster_probe_interval_ms`.
pub fn spawn_monitor(st: &AppState) {
    spawn_cluster_prober(st);
    let every = std::time::Duration::from_millis(st.fleet.config.fleet_monitor_interval_ms.max(50));
    super::spawn_periodic(st, every, "fleet monitor pass", |st| async move {
        monitor_once(&st).await.map(drop)
    });
}

/// Check cluster health every `WEIR_CLUSTER_PROBE_INTERVAL_MS` (0: never).
fn spawn_cluster_prober(st: &AppState) {
    let every_ms = st.config.alerts.cluster_probe_interval_ms;
    if every_ms == 0 {
        return;
    }
    let st = st.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(every_ms.max(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = super::clusters::probe_all(&st).await {
                tracing::warn!(error = %e, "cluster health pass failed");
            }
        }
    });
}
