//! `/api/v1/orgs/{org}/projects/{project}/alerts/...`: one file per
//! resource: [`rules`], [`alerts`] (active and history),
//! [`acknowledgements`] (acknowledge or shelve an alert), [`silences`],
//! [`channels`] (with "send test" and the delivery log).
//! Viewers read (`project.read`), editors change (`project.write`); every
//! change is audited.

mod acknowledgements;
mod alerts;
mod channels;
mod rules;
mod silences;

use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::scope::ProjectAccess;
use crate::state::AppState;

pub use alerts::{ActiveAlert, ActiveQuery, AlertStatus, HistoryEntry, HistoryEvent, HistoryQuery};
pub use channels::{
    ChannelType, CreateChannel, CreatedChannel, DeliveriesQuery, Delivery, NotificationChannel,
    TestResult,
};
pub use rules::Rule;
pub use silences::Silence;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rules::list_rules, rules::create_rule))
        .routes(routes!(
            rules::get_rule,
            rules::update_rule,
            rules::delete_rule
        ))
        .routes(routes!(alerts::list_active))
        .routes(routes!(alerts::list_history))
        .routes(routes!(acknowledgements::acknowledge))
        .routes(routes!(silences::list_silences, silences::create_silence))
        .routes(routes!(silences::expire_silence))
        .routes(routes!(channels::list_channels, channels::create_channel))
        .routes(routes!(channels::get_channel, channels::delete_channel))
        .routes(routes!(channels::test_channel))
        .routes(routes!(channels::list_deliveries))
}

/// `{what}:{org}/{project}/{id}`, the audit target of an alerts resource.
fn target(at: &ProjectAccess, what: &str, id: Uuid) -> String {
    format!("{what}:{}/{}/{id}", at.org.slug, at.project.slug)
}
