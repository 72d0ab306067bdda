//! Fleet health as the rules observe it: gateways online or offline, their
//! devices, clusters healthy or degraded.

use uuid::Uuid;

/// Fleet health, sent by the fleet code into [`Alerts::fleet_event`]. Each
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
