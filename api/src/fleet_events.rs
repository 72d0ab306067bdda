//! Fleet health events, the one thing `fleet` tells `alerts`: gateways
//! online or offline, the devices of their last heartbeat, clusters healthy
//! or degraded. The fleet code makes them (heartbeats, the monitor's offline
//! sweep, the cluster prober) and hands them to `AppState::alerts`; the
//! alerts runtime evaluates them. Neither side names the other's modules:
//! both use this one.
//!
//! [`FleetEventRecord`] is the stored form of a gateway going offline or
//! online (table `fleet_events`, `GET .../fleet-events`, schema
//! `FleetEvent` in the OpenAPI document).

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::fleet::entities::gateway;

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
    /// `gateway_offline` or `gateway_online`.
    pub kind: String,
    pub at: DateTime<Utc>,
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
