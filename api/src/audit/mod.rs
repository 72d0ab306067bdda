//! Append-only, hash-chained audit log. Each entry stores the hash of the
//! previous one and its own hash over its content; `weir-api audit verify`
//! recomputes the chain and names the first entry that does not match.

pub mod routes;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryOrder,
    QuerySelect, Set,
};
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

/// The bytes an entry's hash covers: every field but the hash itself, in a
/// fixed order, timestamps in microseconds (what both databases keep).
fn digest(m: &audit_entry::Model) -> String {
    let content = serde_json::json!([
        m.seq,
        fmt_time(&m.at),
        m.actor_id.map(|u| u.to_string()),
        m.actor,
        m.org_id.map(|u| u.to_string()),
        m.project_id.map(|u| u.to_string()),
        m.action,
        m.target,
        m.outcome,
        m.client_addr,
        m.user_agent,
        m.details,
        m.prev_hash,
    ]);
    hex::encode(Sha256::digest(content.to_string().as_bytes()))
}

fn fmt_time(t: &DateTime<Utc>) -> String {
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
    };
    m.hash = digest(&m);
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
    };
    am.insert(db).await?;
    Ok(m)
}

/// Result of checking the chain.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact { entries: u64 },
    Broken { seq: i64, reason: String },
}

/// Walk the whole chain in order and recompute every hash.
pub async fn verify(db: &DatabaseConnection) -> Result<Verdict, ApiError> {
    let mut prev = GENESIS.to_string();
    let mut expected_seq = 1i64;
    let mut pages = audit_entry::Entity::find()
        .order_by_asc(audit_entry::Column::Seq)
        .paginate(db, 1000);
    let mut n = 0u64;
    while let Some(page) = pages.fetch_and_next().await? {
        for e in page {
            if e.seq != expected_seq {
                return Ok(Verdict::Broken {
                    seq: e.seq,
                    reason: format!("expected entry {expected_seq}: entries are missing"),
                });
            }
            if e.prev_hash != prev {
                return Ok(Verdict::Broken {
                    seq: e.seq,
                    reason: "prev_hash does not match the previous entry's hash".into(),
                });
            }
            if digest(&e) != e.hash {
                return Ok(Verdict::Broken {
                    seq: e.seq,
                    reason: "content does not match its hash (entry was altered)".into(),
                });
            }
            prev = e.hash.clone();
            expected_seq += 1;
            n += 1;
        }
    }
    Ok(Verdict::Intact { entries: n })
}
