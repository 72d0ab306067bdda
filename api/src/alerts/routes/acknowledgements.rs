//! `POST .../alerts/acknowledgements`: acknowledge or shelve one active
//! alert (see [`crate::alerts::acknowledgements`] for what each does).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::alerts::acknowledgements::{Acknowledge, Acknowledgement};
use crate::alerts::engine::AlertState;
use crate::alerts::store::{alert_acknowledgement, alert_history, alert_rule, alert_state};
use crate::audit;
use crate::auth::ClientMeta;
use crate::error::{ApiError, ProblemResponses};
use crate::extract::ApiJson;
use crate::rbac::Permission;
use crate::scope::ProjectScope;
use crate::state::AppState;

/// Acknowledge a pending or firing alert (no repeat notices until it
/// resolves; its resolution is still announced), or with `shelve_until`
/// shelve it (hidden from the active list and silent until then). The
/// latest one for an alert replaces the one before.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/alerts/acknowledgements", tag = "alerts", request_body = Acknowledge,
    params(("org" = String, Path), ("project" = String, Path)),
    responses((status = 201, body = Acknowledgement), ProblemResponses))]
pub(super) async fn acknowledge(
    State(st): State<AppState>,
    scope: ProjectScope,
    meta: ClientMeta,
    ApiJson(req): ApiJson<Acknowledge>,
) -> Result<(StatusCode, Json<Acknowledgement>), ApiError> {
    // Operators, editors and admins (`project.operate`); viewers 403.
    let c = scope.require(Permission::ProjectOperate).await?;
    let now_ms = st.alerts.now_ms();
    req.check_shelve(now_ms)?;
    let rule = alert_rule::Entity::find_by_id(req.rule_id)
        .one(&st.db)
        .await?
        .filter(|r| r.project_id == c.project.id)
        .ok_or_else(|| {
            ApiError::NotFoundBecause(format!(
                "rule_id: no alert rule {} in this project",
                req.rule_id
            ))
        })?;
    let tx = st.write().await?;
    let alert = alert_state::Entity::find()
        .filter(alert_state::Column::RuleId.eq(rule.id))
        .filter(alert_state::Column::Series.eq(req.series.as_str()))
        .one(&*tx)
        .await?
        .filter(|a| {
            AlertState::parse(&a.state)
                .is_some_and(|s| matches!(s, AlertState::Pending | AlertState::Firing))
        })
        .ok_or_else(|| ApiError::Refused {
            kind: "not-active",
            detail: format!(
                "the rule {} has no pending or firing alert on the series {:?}",
                rule.name, req.series
            ),
            fields: vec![crate::error::FieldError::new(
                "series",
                "no pending or firing alert of this rule on this series",
            )],
        })?;
    let now = Utc::now();
    let row = alert_acknowledgement::ActiveModel {
        rule_id: Set(rule.id),
        series: Set(req.series.clone()),
        project_id: Set(c.project.id),
        alert_since: Set(alert.since),
        author: Set(c.auth.user.email.clone()),
        comment: Set(req.comment.clone()),
        created_at: Set(now),
        shelve_until: Set(req.shelve_until),
    };
    alert_acknowledgement::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                alert_acknowledgement::Column::RuleId,
                alert_acknowledgement::Column::Series,
            ])
            .update_columns([
                alert_acknowledgement::Column::AlertSince,
                alert_acknowledgement::Column::Author,
                alert_acknowledgement::Column::Comment,
                alert_acknowledgement::Column::CreatedAt,
                alert_acknowledgement::Column::ShelveUntil,
            ])
            .to_owned(),
        )
        .exec(&*tx)
        .await?;
    let (event, action) = match req.shelve_until {
        Some(_) => ("shelved", "alert.shelve"),
        None => ("acknowledged", "alert.acknowledge"),
    };
    // The history shows it beside the transitions, with the alert as it is.
    alert_history::Entity::insert(alert_history::ActiveModel {
        id: Set(Uuid::new_v4()),
        rule_id: Set(rule.id),
        project_id: Set(c.project.id),
        rule_name: Set(rule.name.clone()),
        series: Set(req.series.clone()),
        from_state: Set(alert.state.clone()),
        to_state: Set(alert.state.clone()),
        at: Set(now),
        value: Set(alert.value),
        summary: Set(alert.summary.clone()),
        labels: Set(alert.labels.clone()),
        event: Set(event.into()),
        actor: Set(Some(c.auth.user.email.clone())),
        comment: Set(Some(req.comment.clone())),
        shelve_until: Set(req.shelve_until),
    })
    .exec(&*tx)
    .await?;
    let target = format!(
        "alert:{}/{}/{}/{}",
        c.org.slug, c.project.slug, rule.id, req.series
    );
    audit::append(
        &*tx,
        c.event(action, target).details(serde_json::json!({
            "rule_id": rule.id,
            "rule": rule.name,
            "series": req.series,
            "comment": req.comment,
            "shelve_until": req.shelve_until,
        })),
        &meta,
    )
    .await?;
    tx.commit().await?;
    st.alerts.acks_changed().await;
    Ok((
        StatusCode::CREATED,
        Json(Acknowledgement {
            rule_id: rule.id,
            series: req.series,
            by: c.auth.user.email.clone(),
            at: now,
            comment: req.comment,
            shelve_until: req.shelve_until,
        }),
    ))
}
