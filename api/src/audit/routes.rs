//! Reading the audit log: per organization, and system-wide for system
//! admins, who can also verify the chain and take signed checkpoints of it.
//! Verifying and checkpointing are reads: they are not audited.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::keys::AuditKeys;
use super::{Checkpoint, Verdict};
use crate::auth::{check, load_org, Auth};
use crate::db::entities::{audit_entry, project};
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::{ApiJsonOrDefault, ApiPath, ApiQuery, Validate};
use crate::rbac::{Domain, Permission};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(org_audit))
        .routes(routes!(system_audit))
        .routes(routes!(checkpoint))
        .routes(routes!(verify))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Exact action, e.g. `project.create`.
    pub action: Option<String>,
    /// Actor id (user UUID).
    pub actor: Option<Uuid>,
    /// Project slug (org audit only).
    pub project: Option<String>,
    /// `success`, `failure` or `denied`.
    #[param(pattern = "^(success|failure|denied)$")]
    pub outcome: Option<String>,
    /// Entries at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
    /// Page size, 1-500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub actor: String,
    pub org_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub client_addr: String,
    pub user_agent: String,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub items: Vec<AuditEntry>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

impl From<audit_entry::Model> for AuditEntry {
    fn from(m: audit_entry::Model) -> Self {
        Self {
            seq: m.seq,
            at: m.at,
            actor_id: m.actor_id,
            actor: m.actor,
            org_id: m.org_id,
            project_id: m.project_id,
            action: m.action,
            target: m.target,
            outcome: m.outcome,
            client_addr: m.client_addr,
            user_agent: m.user_agent,
            details: serde_json::from_str(&m.details).unwrap_or(serde_json::Value::Null),
            prev_hash: m.prev_hash,
            hash: m.hash,
        }
    }
}

fn apply_filters(
    mut q: Select<audit_entry::Entity>,
    f: &AuditQuery,
) -> Result<(Select<audit_entry::Entity>, u64), ApiError> {
    if let Some(a) = &f.action {
        q = q.filter(audit_entry::Column::Action.eq(a.as_str()));
    }
    if let Some(a) = f.actor {
        q = q.filter(audit_entry::Column::ActorId.eq(a));
    }
    if let Some(o) = &f.outcome {
        if !["success", "failure", "denied"].contains(&o.as_str()) {
            return Err(ApiError::invalid(
                "outcome",
                "must be success, failure or denied",
            ));
        }
        q = q.filter(audit_entry::Column::Outcome.eq(o.as_str()));
    }
    if let Some(s) = f.since {
        q = q.filter(audit_entry::Column::At.gte(s));
    }
    if let Some(u) = f.until {
        q = q.filter(audit_entry::Column::At.lt(u));
    }
    if let Some(c) = f.cursor {
        q = q.filter(audit_entry::Column::Seq.lt(c));
    }
    let limit = f.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 500"));
    }
    Ok((q.order_by_desc(audit_entry::Column::Seq), limit))
}

async fn page(
    st: &AppState,
    q: Select<audit_entry::Entity>,
    limit: u64,
) -> Result<AuditPage, ApiError> {
    let mut rows = q.limit(limit + 1).all(&st.db).await?;
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.seq)
    } else {
        None
    };
    Ok(AuditPage {
        items: rows.into_iter().map(AuditEntry::from).collect(),
        next_cursor,
    })
}

/// Audit log of one organization.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/audit", tag = "audit",
    params(("org" = String, Path, description = "Organization slug"), AuditQuery),
    responses((status = 200, body = AuditPage), ProblemResponses))]
async fn org_audit(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath(org): ApiPath<String>,
    ApiQuery(f): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let (org, grants) = load_org(&st, &auth, &org).await?;
    check(&grants, &st, Permission::OrgAuditRead, Domain::Org(org.id))?;
    let mut q = audit_entry::Entity::find().filter(audit_entry::Column::OrgId.eq(org.id));
    if let Some(p) = &f.project {
        let pid = project::Entity::find()
            .filter(project::Column::OrgId.eq(org.id))
            .filter(project::Column::Slug.eq(p.as_str()))
            .one(&st.db)
            .await?
            .map(|p| p.id)
            .unwrap_or_else(Uuid::nil);
        q = q.filter(audit_entry::Column::ProjectId.eq(pid));
    }
    let (q, limit) = apply_filters(q, &f)?;
    Ok(Json(page(&st, q, limit).await?))
}

/// The whole audit log, including sign-ins (system admins).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(AuditQuery),
    responses((status = 200, body = AuditPage), ProblemResponses))]
async fn system_audit(
    State(st): State<AppState>,
    auth: Auth,
    ApiQuery(f): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    auth.require(&st, Permission::SystemAuditRead, Domain::System)
        .await?;
    let (q, limit) = apply_filters(audit_entry::Entity::find(), &f)?;
    Ok(Json(page(&st, q, limit).await?))
}

/// The audit keys of this api: 503 without a master key.
fn audit_keys(st: &AppState) -> Result<AuditKeys, ApiError> {
    st.fleet.master().map(AuditKeys::derive)
}

/// A signed checkpoint of the chain's head (system admins). Keep it outside
/// the database and pass it to `POST /api/v1/audit/verify` (or `weir-api
/// audit verify --checkpoint FILE`) later: deleted newest entries then show
/// as truncation. The chain is verified first; a broken chain gets no
/// checkpoint (409).
#[utoipa::path(get, path = "/api/v1/audit/checkpoint", tag = "audit",
    responses((status = 200, body = Checkpoint),
        (status = 503, description = "No master key configured", body = crate::error::Problem,
            content_type = "application/problem+json"),
        ProblemResponses))]
async fn checkpoint(State(st): State<AppState>, auth: Auth) -> Result<Json<Checkpoint>, ApiError> {
    auth.require(&st, Permission::SystemAuditRead, Domain::System)
        .await?;
    let keys = audit_keys(&st)?;
    let r = super::verify_with(&st.db, Some(&keys), None).await?;
    if let Some((seq, reason)) = r.verdict.problem() {
        return Err(ApiError::conflict(
            format!(
                "the audit chain is broken at entry {seq} ({reason}): no checkpoint vouches for it"
            ),
            None,
        ));
    }
    let entries = i64::try_from(r.entries).map_err(ApiError::internal)?;
    Ok(Json(Checkpoint::sign(
        &keys,
        r.head_seq,
        &r.head_hash,
        entries,
    )))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// A checkpoint from `GET /api/v1/audit/checkpoint`: also check that
    /// its entry is still there, unchanged.
    pub checkpoint: Option<Checkpoint>,
}

impl Validate for VerifyRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let errs = self
            .checkpoint
            .as_ref()
            .map(|c| c.field_errors("checkpoint."))
            .unwrap_or_default();
        crate::extract::check::finish(errs)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResult {
    /// True when every entry matches its hash and link (and the checkpoint, if given).
    pub intact: bool,
    /// Entries checked (up to the first problem).
    #[schema(minimum = 0)]
    pub entries: u64,
    /// Of those, entries written before the chain was keyed (plain SHA-256).
    #[schema(minimum = 0)]
    pub legacy_entries: u64,
    /// The first entry that does not match (or the checkpoint's missing
    /// entry); absent when intact.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub broken_at: Option<i64>,
    /// Why the chain is not intact; starts with `TRUNCATED:` when entries
    /// after the checkpoint's were deleted. Absent when intact.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
}

/// Recompute the whole chain (system admins); with a checkpoint, also
/// detect deleted newest entries. A chain that is not intact still answers
/// 200, with `intact: false`; a checkpoint that does not verify is 422.
#[utoipa::path(post, path = "/api/v1/audit/verify", tag = "audit",
    request_body(content = Option<VerifyRequest>,
        description = "Optional: without a body (or `null`, `{}`) the chain alone is checked"),
    responses((status = 200, body = VerifyResult),
        (status = 503, description = "No master key configured", body = crate::error::Problem,
            content_type = "application/problem+json"),
        ProblemResponses))]
async fn verify(
    State(st): State<AppState>,
    auth: Auth,
    // No body, `null` and `{}` all mean "the chain alone".
    ApiJsonOrDefault(req): ApiJsonOrDefault<VerifyRequest>,
) -> Result<Json<VerifyResult>, ApiError> {
    auth.require(&st, Permission::SystemAuditRead, Domain::System)
        .await?;
    let keys = st.fleet.master().ok().map(AuditKeys::derive);
    let r = super::verify_with(&st.db, keys.as_ref(), req.checkpoint.as_ref()).await?;
    let problem = r.verdict.problem();
    Ok(Json(VerifyResult {
        intact: matches!(r.verdict, Verdict::Intact { .. }),
        entries: r.entries,
        legacy_entries: r.legacy_entries,
        broken_at: problem.as_ref().map(|p| p.0),
        reason: problem.map(|p| p.1),
    }))
}
