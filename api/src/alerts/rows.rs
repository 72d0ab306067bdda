//! Stored rows as the runtime uses them: channels (secrets opened),
//! silences, rules with their tenant, and the gateways' projects.

use std::collections::HashMap;

use sea_orm::{DatabaseConnection, EntityTrait, QuerySelect};
use uuid::Uuid;

use super::engine::RuleDef;
use super::notify::{Channel, ChannelKind};
use super::rules::RuleSpec;
use super::silences::{ActiveSilence, Matcher};
use super::store::{alert_channel, alert_rule, alert_silence};
use crate::db::entities::org;
use crate::error::ApiError;
use crate::fleet::entities::gateway;
use crate::secrets::{channel, MasterKey};

/// A stored channel as the notifier uses it (its secret opened with the
/// master key; `None` when the row is unreadable).
pub fn channel_from_row(m: &alert_channel::Model, key: Option<&MasterKey>) -> Option<Channel> {
    let secret = match channel::open(key, m.id, &m.secret) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(channel = %m.id, error = %e, "alerts: cannot open the channel's secret");
            return None;
        }
    };
    let kind = match m.kind.as_str() {
        "webhook" => {
            let v: serde_json::Value = serde_json::from_str(&m.config).ok()?;
            ChannelKind::Webhook {
                url: v.get("url")?.as_str()?.to_string(),
                secret,
            }
        }
        "email" => ChannelKind::Email {
            cfg: serde_json::from_str(&m.config).ok()?,
            password: secret,
        },
        _ => return None,
    };
    Some(Channel {
        id: m.id,
        project_id: m.project_id,
        name: m.name.clone(),
        kind,
        group_by: serde_json::from_str(&m.group_by).unwrap_or_default(),
        group_wait_ms: m.group_wait_secs.saturating_mul(1000),
        group_interval_ms: m.group_interval_secs.saturating_mul(1000),
        repeat_interval_ms: m.repeat_interval_secs.saturating_mul(1000),
    })
}

pub fn silence_from_row(m: &alert_silence::Model) -> ActiveSilence {
    let matchers: Vec<Matcher> = serde_json::from_str(&m.matchers).unwrap_or_default();
    ActiveSilence::new(
        m.id,
        m.project_id,
        &matchers,
        m.starts_at.timestamp_millis(),
        m.ends_at.timestamp_millis(),
    )
}

/// Rule rows with their tenant (organization slug).
pub async fn load_rule_defs(db: &DatabaseConnection) -> Result<Vec<RuleDef>, ApiError> {
    let orgs: HashMap<Uuid, String> = org::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|o| (o.id, o.slug))
        .collect();
    let rows = alert_rule::Entity::find().all(db).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let spec: RuleSpec = serde_json::from_str(&r.spec).ok()?;
            Some(RuleDef {
                id: r.id,
                project_id: r.project_id,
                tenant: orgs.get(&r.org_id)?.clone(),
                spec,
            })
        })
        .collect())
}

/// (tenant, gateway, project) of every gateway: a reading on
/// `{prefix}/{tenant}/{gateway}/...` belongs to that project.
pub async fn load_gateways(
    db: &DatabaseConnection,
) -> Result<Vec<(String, String, Uuid)>, ApiError> {
    let orgs: HashMap<Uuid, String> = org::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|o| (o.id, o.slug))
        .collect();
    // Three columns, not the rows: a gateway's signed bundle can be large.
    let rows: Vec<(Uuid, String, Uuid)> = gateway::Entity::find()
        .select_only()
        .columns([
            gateway::Column::OrgId,
            gateway::Column::Slug,
            gateway::Column::ProjectId,
        ])
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(o, slug, p)| Some((orgs.get(&o)?.clone(), slug, p)))
        .collect())
}
