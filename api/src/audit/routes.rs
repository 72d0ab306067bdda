//! Reading the audit log: per organization, and system-wide for system admins.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::auth::{check, load_org, Auth};
use crate::db::entities::{audit_entry, project};
use crate::error::{ApiError, ProblemResponses};
use crate::extract::{ApiPath, ApiQuery};
use crate::rbac::{Domain, Permission};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(org_audit))
        .routes(routes!(system_audit))
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
    pub outcome: Option<String>,
    /// Entries at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
    /// Page size, 1-500 (default 100).
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
