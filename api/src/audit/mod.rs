//! Append-only, hash-chained audit log. Each entry stores the hash of the
//! previous one and its own hash over its content, keyed with HMAC-SHA256
//! under a key derived from the master key ([`keys`]), so write access to
//! the database is not enough to rewrite history. `weir-api audit verify`
//! (and `POST /api/v1/audit/verify`) recompute the chain ([`chain`]) and
//! name the first entry that does not match; a signed [`checkpoint`] of the
//! head, kept elsewhere, also catches deleted newest entries.

pub mod chain;
pub mod checkpoint;
pub mod keys;
pub mod routes;

pub use chain::{verify, verify_with, Report, Verdict};
pub use checkpoint::Checkpoint;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, QueryOrder, QuerySelect, Set};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::{Auth, ClientMeta};
use crate::db::entities::audit_entry;
use crate::error::ApiError;

/// Hash that the first entry points back to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, before it gets its place in the chain.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub actor_id: Option<Uuid>,
    pub actor: String,
    pub org_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    pub details: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

impl AuditEvent {
    /// A successful action by a signed-in caller.
    pub fn by(auth: &Auth, action: &str, target: impl Into<String>) -> Self {
        Self {
            actor_id: Some(auth.user.id),
            actor: auth.actor_label(),
            org_id: None,
            project_id: None,
            action: action.to_string(),
            target: target.into(),
            outcome: Outcome::Success,
            details: Value::Null,
        }
    }

    /// An action with no signed-in caller (failed login, system job).
    pub fn anonymous(actor: &str, action: &str, target: impl Into<String>) -> Self {
        Self {
            actor_id: None,
            actor: actor.to_string(),
            org_id: None,
            project_id: None,
            action: action.to_string(),
            target: target.into(),
            outcome: Outcome::Success,
            details: Value::Null,
        }
    }

    pub fn org(mut self, id: Uuid) -> Self {
        self.org_id = Some(id);
        self
    }
    pub fn project(mut self, id: Uuid) -> Self {
        self.project_id = Some(id);
        self
    }
    pub fn outcome(mut self, o: Outcome) -> Self {
        self.outcome = o;
        self
    }
    pub fn details(mut self, d: Value) -> Self {
        self.details = d;
        self
    }
}

pub(crate) fn fmt_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Append an entry. Call inside a write transaction (`AppState::write`), so
/// the entry commits or rolls back with the change it records and has a
/// single writer.
pub async fn append<C: ConnectionTrait>(
    db: &C,
    ev: AuditEvent,
    meta: &ClientMeta,
) -> Result<audit_entry::Model, ApiError> {
    let last = audit_entry::Entity::find()
        .order_by_desc(audit_entry::Column::Seq)
        .limit(1)
        .one(db)
        .await?;
    let (seq, prev_hash) = match last {
        Some(l) => (l.seq + 1, l.hash),
        None => (1, GENESIS.to_string()),
    };
    let mut m = audit_entry::Model {
        seq,
        at: Utc::now().trunc_subsecs(6),
        actor_id: ev.actor_id,
        actor: ev.actor,
        org_id: ev.org_id,
        project_id: ev.project_id,
        action: ev.action,
        target: ev.target,
        outcome: ev.outcome.as_str().to_string(),
        client_addr: meta.addr.clone(),
        user_agent: meta.user_agent.clone(),
        details: if ev.details.is_null() {
            "{}".to_string()
        } else {
            ev.details.to_string()
        },
        prev_hash,
        hash: String::new(),
        mac: String::new(),
    };
    // Keyed with the key installed at start-up; without a master key (and
    // only then) entries stay plain SHA-256, as before issue 18.
    let content = chain::content(&m);
    (m.mac, m.hash) = match keys::installed() {
        Some(k) => (keys::MAC_HMAC.into(), k.mac(content.as_bytes())),
        None => (
            keys::MAC_LEGACY.into(),
            hex::encode(Sha256::digest(content.as_bytes())),
        ),
    };
    let am = audit_entry::ActiveModel {
        seq: Set(m.seq),
        at: Set(m.at),
        actor_id: Set(m.actor_id),
        actor: Set(m.actor.clone()),
        org_id: Set(m.org_id),
        project_id: Set(m.project_id),
        action: Set(m.action.clone()),
        target: Set(m.target.clone()),
        outcome: Set(m.outcome.clone()),
        client_addr: Set(m.client_addr.clone()),
        user_agent: Set(m.user_agent.clone()),
        details: Set(m.details.clone()),
        prev_hash: Set(m.prev_hash.clone()),
        hash: Set(m.hash.clone()),
        mac: Set(m.mac.clone()),
    };
    am.insert(db).await?;
    Ok(m)
}
