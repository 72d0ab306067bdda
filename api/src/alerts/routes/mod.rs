//! `/api/v1/orgs/{org}/projects/{project}/alerts/...`: one file per
//! resource: [`rules`], [`alerts`] (active and history), [`silences`],
//! [`channels`] (with "send test" and the delivery log).
//! Viewers read (`project.read`), editors change (`project.write`); every
//! change is audited.

mod alerts;
mod channels;
mod rules;
mod silences;

use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::audit::AuditEvent;
use crate::auth::{check, load_project, Auth};
use crate::db::entities::{org, project};
use crate::error::ApiError;
use crate::rbac::{Domain, Permission};
use crate::state::AppState;

pub use alerts::{ActiveAlert, AlertStatus, HistoryEntry, HistoryQuery};
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
        .routes(routes!(silences::list_silences, silences::create_silence))
        .routes(routes!(silences::expire_silence))
        .routes(routes!(channels::list_channels, channels::create_channel))
        .routes(routes!(channels::get_channel, channels::delete_channel))
        .routes(routes!(channels::test_channel))
        .routes(routes!(channels::list_deliveries))
}

pub(super) struct Ctx {
    pub(super) org: org::Model,
    pub(super) project: project::Model,
}

pub(super) async fn ctx(
    st: &AppState,
    auth: &Auth,
    org: &str,
    project: &str,
    perm: Permission,
) -> Result<Ctx, ApiError> {
    let (o, p, grants) = load_project(st, auth, org, project).await?;
    check(
        &grants,
        st,
        perm,
        Domain::Project {
            org: o.id,
            project: p.id,
        },
    )?;
    Ok(Ctx { org: o, project: p })
}

impl Ctx {
    pub(super) fn event(&self, auth: &Auth, action: &str, target: String) -> AuditEvent {
        AuditEvent::by(auth, action, target)
            .org(self.org.id)
            .project(self.project.id)
    }
    pub(super) fn target(&self, what: &str, id: Uuid) -> String {
        format!("{what}:{}/{}/{id}", self.org.slug, self.project.slug)
    }
}
