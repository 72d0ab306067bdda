//! With the Kubernetes backend, the `MqttCluster` and `EdgeGateway`
//! resources in tenant namespaces are the truth for clusters and gateways:
//! this watch mirrors them into the database ([`clusters`], [`gateways`];
//! the mapping is [`mapping`]) — also what was applied with `kubectl` — and
//! removes rows whose object is gone. Edits made through the api are
//! server-side applied ([`super::kube_backend`]) and come back through the
//! watch as no change. For each EdgeGateway the api issues the enrollment
//! token into Secret `<gateway>-enrollment` ([`tokens`]).
//!
//! Events are handled as they come; a periodic pass over the objects
//! retries what could not be mirrored yet (its organization's Tenant not
//! synced) and replaces expired or used-up tokens. Every pass reads first
//! and takes the write lock only when something changes.

pub mod clusters;
pub mod gateways;
pub mod mapping;
pub mod tokens;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::audit::{self, AuditEvent};
use crate::auth::ClientMeta;
use crate::db::entities::{org, project};
use crate::error::ApiError;
use crate::state::AppState;

/// The actor of what the watch records (versions, audit entries).
pub const ACTOR: &str = "kubernetes";

/// Settings of the watch; flattened into [`crate::Config`].
#[derive(Args, Clone, Debug)]
pub struct KubeSyncConfig {
    /// Hours an enrollment token the api writes to an EdgeGateway's Secret
    /// `<gateway>-enrollment` stays valid (1-720); a new one replaces it when
    /// it expires or is used up.
    #[arg(long, env = "WEIR_KUBE_TOKEN_TTL_HOURS", default_value_t = 72,
          value_parser = clap::value_parser!(i64).range(1..=720))]
    pub kube_token_ttl_hours: i64,

    /// How many agents may enroll with one such token (1-1000).
    #[arg(long, env = "WEIR_KUBE_TOKEN_MAX_USES", default_value_t = 1,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub kube_token_max_uses: i32,

    /// Seconds between passes over the watched objects (retries, token expiry).
    #[arg(long, env = "WEIR_KUBE_SYNC_INTERVAL_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub kube_sync_interval_secs: u64,
}

/// Start the watches (with the Kubernetes backend only).
pub fn spawn(st: &AppState) {
    let Some(client) = st.fleet.kube.clone() else {
        return;
    };
    tracing::info!("watching MqttClusters and EdgeGateways in tenant namespaces");
    tokio::spawn(clusters::run(st.clone(), client.clone()));
    tokio::spawn(gateways::run(st.clone(), client));
}

pub(crate) fn interval(st: &AppState) -> tokio::time::Interval {
    let mut t = tokio::time::interval(Duration::from_secs(
        st.config.kube_sync.kube_sync_interval_secs,
    ));
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

pub(crate) fn meta() -> ClientMeta {
    ClientMeta {
        addr: String::new(),
        user_agent: "weir-api kubernetes sync".into(),
    }
}

/// An error for the log, with the fields a refusal names (e.g.
/// `spec.clusterRef: no cluster named 'main' in this project`).
pub(crate) fn describe(e: &ApiError) -> String {
    match e {
        ApiError::Validation(f) | ApiError::BadRequest { fields: f, .. } if !f.is_empty() => f
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// After a full list: the (org slug, name) of each row whose object is not
/// in `live`. Rows younger than a minute are left alone: the api may have
/// just made one whose object the list predates.
pub(crate) async fn gone(
    st: &AppState,
    live: &HashSet<(String, String)>,
    rows: impl IntoIterator<Item = (Uuid, String, DateTime<Utc>)>,
) -> Result<Vec<(String, String)>, ApiError> {
    let orgs: HashMap<_, _> = org::Entity::find()
        .all(&st.db)
        .await?
        .into_iter()
        .map(|o| (o.id, o.slug))
        .collect();
    let young = Utc::now() - chrono::Duration::minutes(1);
    Ok(rows
        .into_iter()
        .filter(|(_, _, created)| *created < young)
        .filter_map(|(org_id, name, _)| Some((orgs.get(&org_id)?.clone(), name)))
        .filter(|key| !live.contains(key))
        .collect())
}

/// An audit entry by the watch.
pub(crate) fn event(action: &str, target: String, o: &org::Model, p: Uuid) -> AuditEvent {
    AuditEvent::anonymous(ACTOR, action, target)
        .org(o.id)
        .project(p)
}

pub(crate) async fn find_org<C: ConnectionTrait>(
    db: &C,
    slug: &str,
) -> Result<Option<org::Model>, ApiError> {
    Ok(org::Entity::find()
        .filter(org::Column::Slug.eq(slug))
        .one(db)
        .await?)
}

pub(crate) async fn find_project<C: ConnectionTrait>(
    db: &C,
    o: &org::Model,
    slug: &str,
) -> Result<Option<project::Model>, ApiError> {
    Ok(project::Entity::find()
        .filter(project::Column::OrgId.eq(o.id))
        .filter(project::Column::Slug.eq(slug))
        .one(db)
        .await?)
}

/// The project an object's label names, made (and audited) when missing:
/// the label is the platform admin's say-so, and an object must never be
/// in Kubernetes but not in the api.
pub(crate) async fn ensure_project<C: ConnectionTrait>(
    db: &C,
    o: &org::Model,
    slug: &str,
) -> Result<project::Model, ApiError> {
    if let Some(p) = find_project(db, o, slug).await? {
        return Ok(p);
    }
    let now = Utc::now();
    let p = project::ActiveModel {
        id: Set(Uuid::new_v4()),
        org_id: Set(o.id),
        slug: Set(slug.to_string()),
        name: Set(slug.to_string()),
        description: Set("Made for resources applied in Kubernetes".into()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    audit::append(
        db,
        event(
            "project.create",
            format!("project:{}/{}", o.slug, p.slug),
            o,
            p.id,
        ),
        &meta(),
    )
    .await?;
    Ok(p)
}
