//! Silences: list, create, expire (an expired silence stays in the list).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::target;
use crate::alerts::silences::{CreateSilence, Matcher};
use crate::alerts::store::{self, alert_silence};
use crate::audit;
use crate::auth::ClientMeta;
use crate::error::{ApiError, ProblemResponses};
use crate::extract::{ApiJson, ApiPath};
use crate::rbac::Permission;
use crate::scope::ProjectScope;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Silence {
    pub id: Uuid,
    pub matchers: Vec<Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub author: String,
    pub comment: String,
    pub created_at: DateTime<Utc>,
    /// In effect now.
    pub active: bool,
}

fn silence_out(m: alert_silence::Model, now_ms: i64) -> Silence {
    Silence {
        id: m.id,
        matchers: serde_json::from_str(&m.matchers).unwrap_or_default(),
        active: m.starts_at.timestamp_millis() <= now_ms && now_ms < m.ends_at.timestamp_millis(),
        starts_at: m.starts_at,
        ends_at: m.ends_at,
        author: m.author,
        comment: m.comment,
        created_at: m.created_at,
    }
}

/// Silences of a project, newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/alerts/silences", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 200, body = Vec<Silence>), ProblemResponses))]
pub(super) async fn list_silences(
    State(st): State<AppState>,
    scope: ProjectScope,
) -> Result<Json<Vec<Silence>>, ApiError> {
    let c = scope.require(Permission::ProjectRead).await?;
    let now = st.alerts.now_ms();
    let rows = alert_silence::Entity::find()
        .filter(alert_silence::Column::ProjectId.eq(c.project.id))
        .order_by_desc(alert_silence::Column::CreatedAt)
        .all(&st.db)
        .await?;
    Ok(Json(
        rows.into_iter().map(|m| silence_out(m, now)).collect(),
    ))
}

/// Silence alerts whose labels match, from `starts_in_secs` from now (default
/// now) for `duration_secs`; the answer states the absolute window.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/alerts/silences", tag = "alerts", request_body = CreateSilence,
    params(("org" = String, Path), ("project" = String, Path)), responses((status = 201, body = Silence), ProblemResponses))]
pub(super) async fn create_silence(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiJson(req): ApiJson<CreateSilence>,
) -> Result<(StatusCode, Json<Silence>), ApiError> {
    let c = scope.require(Permission::ProjectWrite).await?;
    let now_ms = st.alerts.now_ms();
    // Validate bounds both to a year, so these cannot overflow.
    let starts_ms = now_ms + i64::from(req.starts_in_secs) * 1000;
    let starts = store::to_time(starts_ms);
    let duration = req.duration_secs;
    let ends = store::to_time(starts_ms + i64::from(duration) * 1000);
    let tx = st.write().await?;
    let m = alert_silence::ActiveModel {
        id: Set(Uuid::new_v4()),
        project_id: Set(c.project.id),
        matchers: Set(serde_json::to_string(&req.matchers).map_err(ApiError::internal)?),
        starts_at: Set(starts),
        ends_at: Set(ends),
        author: Set(c.auth.user.email.clone()),
        comment: Set(req.comment.clone()),
        created_at: Set(Utc::now()),
    }
    .insert(&*tx)
    .await?;
    audit::append(
        &*tx,
        c.event("alert_silence.create", target(&c, "alert-silence", m.id))
            .details(serde_json::json!({"matchers": req.matchers, "starts_at": starts, "ends_at": ends, "comment": req.comment})),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.reload().await;
    Ok((StatusCode::CREATED, Json(silence_out(m, now_ms))))
}

/// End a silence now (it stays in the list, inactive).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/alerts/silences/{silence}", tag = "alerts",
    params(("org" = String, Path), ("project" = String, Path), ("silence" = Uuid, Path)), responses((status = 204, description = "Expired"), ProblemResponses))]
pub(super) async fn expire_silence(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiPath((_org, _project, id)): ApiPath<(String, String, Uuid)>,
) -> Result<StatusCode, ApiError> {
    let c = scope.require(Permission::ProjectWrite).await?;
    let m = alert_silence::Entity::find_by_id(id)
        .one(&st.db)
        .await?
        .filter(|s| s.project_id == c.project.id)
        .ok_or(ApiError::NotFound)?;
    let now = store::to_time(st.alerts.now_ms());
    let tx = st.write().await?;
    let mut am: alert_silence::ActiveModel = m.clone().into();
    if m.ends_at > now {
        am.ends_at = Set(now.max(m.starts_at));
        am.update(&*tx).await?;
    }
    audit::append(
        &*tx,
        c.event("alert_silence.expire", target(&c, "alert-silence", id)),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.reload().await;
    Ok(StatusCode::NO_CONTENT)
}
