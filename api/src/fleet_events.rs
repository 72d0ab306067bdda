//! Fleet health events, the one thing `fleet` tells `alerts`: gateways
//! online or offline, the devices of their last heartbeat, clusters healthy
//! or degraded, readings lost for good (data gaps). The fleet code makes
//! them (heartbeats, the monitor's offline sweep, the cluster prober, the
//! data-gap poller of `fleet::data_gaps`) and hands them to
//! `AppState::alerts`; the alerts runtime evaluates them. Neither side
//! names the other's modules: both use this one.
//!
//! [`FleetEventRecord`] is the stored form of a gateway going offline or
//! online and of a data gap (table `fleet_events`, `GET .../fleet-events`,
//! schema `FleetEvent` in the OpenAPI document).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::fleet::entities::{fleet_event, gateway};

/// Fleet health, sent by the fleet code into `Alerts::fleet_event`. Each
/// names the project the gateway or cluster belongs to: only that project's
/// rules see it. Observations, not decisions: the engine alone turns them
/// into pending, firing and resolved (repeating a state changes nothing).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FleetEvent {
    GatewayOnline {
        project: Uuid,
        gateway: String,
    },
    GatewayOffline {
        project: Uuid,
        gateway: String,
    },
    /// A heartbeat's device report: `(device, up)`; up unless the agent says `down`.
    Devices {
        project: Uuid,
        gateway: String,
        devices: Vec<(String, bool)>,
    },
    ClusterHealthy {
        project: Uuid,
        cluster: String,
    },
    ClusterDegraded {
        project: Uuid,
        cluster: String,
    },
    /// The historian recorded `seq_from..=seq_to` of the gateway as lost
    /// for good (a `reading_gaps` row, see [`DataGapInfo`]).
    DataGap {
        project: Uuid,
        gateway: String,
        seq_from: i64,
        seq_to: i64,
        reason: String,
    },
}

/// Kind of the fleet event recorded for a data gap.
pub const DATA_GAP: &str = "data_gap";

/// A range of a gateway's readings the historian could not get: frames
/// `seq_from..=seq_to` (inclusive) never reached its table and cannot be
/// replayed any more.
#[derive(Clone, Debug, Serialize, serde::Deserialize, ToSchema, PartialEq, Eq)]
pub struct DataGapInfo {
    /// First lost frame (`seq` of the uplink frames), inclusive.
    pub seq_from: i64,
    /// Last lost frame, inclusive.
    pub seq_to: i64,
    /// Read time of the last frame stored before the gap (null: none).
    pub ts_from: Option<DateTime<Utc>>,
    /// Read time of the first frame stored after the gap (null: none yet).
    pub ts_to: Option<DateTime<Utc>>,
    /// When the historian gave up on the range.
    pub detected_at: DateTime<Utc>,
    /// `not-retained` (the agent no longer holds the frames) or
    /// `agent-unreachable` (it did not answer replay requests in time).
    pub reason: String,
}

/// A change in fleet health, stored in `fleet_events` and broadcast.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
#[schema(as = FleetEvent)]
pub struct FleetEventRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub gateway_id: Uuid,
    /// Gateway name.
    pub gateway: String,
    /// `gateway_offline`, `gateway_online` or `data_gap`.
    pub kind: String,
    pub at: DateTime<Utc>,
    /// For `data_gap`: the lost range, its time window and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap: Option<DataGapInfo>,
}

/// The `data_gap` events of `projects` recorded since `since`, oldest
/// first, as alert input: a replica that takes a tenant over replays them,
/// since a one-shot event sent while the tenant changed hands reached no
/// rule (alerts already firing are restored first, so a gap seen again
/// changes nothing).
pub async fn recent_data_gaps(
    db: &DatabaseConnection,
    projects: &HashSet<Uuid>,
    since: DateTime<Utc>,
) -> Result<Vec<FleetEvent>, sea_orm::DbErr> {
    if projects.is_empty() {
        return Ok(vec![]);
    }
    let rows = fleet_event::Entity::find()
        .filter(fleet_event::Column::Kind.eq(DATA_GAP))
        .filter(fleet_event::Column::At.gte(since))
        .filter(fleet_event::Column::ProjectId.is_in(projects.iter().copied()))
        .order_by_asc(fleet_event::Column::At)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|m| {
            let gap: DataGapInfo = serde_json::from_str(&m.details).ok()?;
            Some(FleetEvent::DataGap {
                project: m.project_id,
                gateway: m.gateway,
                seq_from: gap.seq_from,
                seq_to: gap.seq_to,
                reason: gap.reason,
            })
        })
        .collect())
}

/// The devices of the gateway's last heartbeat, as a fleet event.
pub async fn gateway_devices(
    db: &DatabaseConnection,
    project: Uuid,
    slug: &str,
) -> Result<Option<FleetEvent>, sea_orm::DbErr> {
    let g = gateway::Entity::find()
        .filter(gateway::Column::ProjectId.eq(project))
        .filter(gateway::Column::Slug.eq(slug))
        .one(db)
        .await?;
    Ok(g.and_then(|g| device_event(&g)))
}

/// A gateway row's last device report, as a fleet event.
pub fn device_event(g: &gateway::Model) -> Option<FleetEvent> {
    use weir_crds::agent_api::{AgentStatus, DeviceState};
    let st = g
        .status
        .as_deref()
        .and_then(|s| serde_json::from_str::<AgentStatus>(s).ok())?;
    (!st.devices.is_empty()).then(|| FleetEvent::Devices {
        project: g.project_id,
        gateway: g.slug.clone(),
        devices: st
            .devices
            .into_iter()
            .map(|d| (d.name, d.state != DeviceState::Down))
            .collect(),
    })
}
