//! The `external` backend: a broker adopted by URL, probed over MQTT; and the
//! health checks of both backends (a kubernetes cluster's is its status).
//!
//! Its stored password belongs to the endpoint it was given for: a new URL
//! naming another scheme, host or port clears it unless the same request
//! brings a new one ([`endpoint_changed`]), so a probe never sends the old
//! password to a host the changer picked.

use std::time::Duration as StdDuration;

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Set};
use uuid::Uuid;

use super::{find_cluster, Cluster, BACKEND_EXTERNAL};
use crate::db::entities::org;
use crate::error::{ApiError, FieldError, ProblemResponses};
use crate::extract::ApiPath;
use crate::fleet::entities::cluster;
use crate::fleet::mqtt_probe;
use crate::fleet_events::FleetEvent;
use crate::rbac::Permission;
use crate::scope::{ProjectAccess, ProjectScope};
use crate::state::AppState;

const PROBE_TIMEOUT: StdDuration = StdDuration::from_secs(5);

/// A broker URL: `mqtt(s)://host:port`, without credentials in it (they
/// would be stored and shown in clear; the password has its own field).
pub(super) fn check_url(e: &mut Vec<FieldError>, url: &str) {
    if let Ok(u) = url::Url::parse(url) {
        if !u.username().is_empty() || u.password().is_some() {
            e.push(FieldError::new(
                "url",
                "must not carry credentials: put them in username/password",
            ));
            return;
        }
    }
    if let Err(msg) = mqtt_probe::parse_broker_url(url) {
        e.push(FieldError::new("url", msg));
    }
}

/// Whether `new` names another endpoint than `old` (scheme/TLS, host or
/// port), the change that must not carry the stored password along.
pub(super) fn endpoint_changed(old: Option<&str>, new: &str) -> bool {
    // Host names are case-insensitive (the url crate keeps the case of
    // non-special schemes such as mqtt://).
    let endpoint = |u: &str| {
        mqtt_probe::parse_broker_url(u).map(|(h, port, tls)| (h.to_ascii_lowercase(), port, tls))
    };
    match old.map(endpoint) {
        Some(Ok(o)) => endpoint(new).map_or(true, |n| n != o),
        _ => true,
    }
}

/// The cluster's stored username and password (opened): the one place that
/// unseals it (the probe of a broker without dynamic security, and the
/// dynamic-security admin login).
pub fn stored_login(
    st: &AppState,
    c: &cluster::Model,
) -> Result<(Option<String>, Option<String>), ApiError> {
    let password = match &c.password_enc {
        Some(p) => Some(
            String::from_utf8(st.fleet.master()?.open(p, &c.id.to_string())?)
                .map_err(ApiError::internal)?,
        ),
        None => None,
    };
    Ok((c.username.clone(), password))
}

/// Probe an external cluster (or read a kubernetes one's status) and store the result.
pub(super) async fn refresh_health<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    o: &org::Model,
    c: cluster::Model,
) -> Result<cluster::Model, ApiError> {
    let health_before = c.probe_ok;
    let mut am = c.clone().into_active_model();
    am.probe_at = Set(Some(Utc::now()));
    if c.backend == BACKEND_EXTERNAL {
        // On an adopted Mosquitto the admin login may only manage the
        // dynamic-security plugin; the probe, like every reader, uses the
        // api's own restricted login (made here on first use). Other
        // brokers are probed with the stored login, if any.
        // A broker the outbound policy refuses is not contacted at all,
        // not even to make the api's login (the admin login connects too).
        let outbound = st.config.outbound();
        let refused = mqtt_probe::refused(&outbound, c.url.as_deref().unwrap_or_default()).await;
        let login = if refused.is_some() {
            Ok((None, None))
        } else {
            match crate::fleet::broker_identity::api_login(st, &c).await {
                Ok(Some(l)) => Ok((Some(l.username), Some(l.password))),
                Ok(None) => stored_login(st, &c),
                Err(e) => Err(e),
            }
        };
        let r = match login {
            _ if refused.is_some() => mqtt_probe::ProbeResult {
                reachable: false,
                rtt: None,
                error: refused,
                stats: None,
            },
            Ok((user, password)) => {
                mqtt_probe::probe(
                    &outbound,
                    c.url.as_deref().unwrap_or_default(),
                    user.as_deref(),
                    password.as_deref(),
                    PROBE_TIMEOUT,
                )
                .await
            }
            Err(e) => mqtt_probe::ProbeResult {
                reachable: false,
                rtt: None,
                error: Some(format!("cannot make the api's login on this broker: {e}")),
                stats: None,
            },
        };
        am.probe_ok = Set(Some(r.reachable));
        am.probe_rtt_us = Set(r.rtt.map(|d| d.as_micros() as i64));
        am.probe_error = Set(r.error);
        am.probe_stats = Set(r.stats.and_then(|s| serde_json::to_string(&s).ok()));
    } else {
        let client = st.fleet.kube.as_ref().ok_or_else(|| {
            ApiError::Unavailable(
                "this api has no Kubernetes config; kubernetes clusters cannot be read".into(),
            )
        })?;
        let status = crate::fleet::kube_backend::cluster_status(client, &o.slug, &c.slug).await?;
        let ready = status
            .as_ref()
            .is_some_and(|s| s.phase.as_deref() == Some("Ready"));
        am.probe_ok = Set(Some(ready));
        am.probe_rtt_us = Set(None);
        am.probe_error = Set((!ready).then(|| {
            format!(
                "phase {}",
                status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_else(|| "unknown".into())
            )
        }));
        am.status = Set(status.map(|s| serde_json::to_string(&s).expect("status serializes")));
    }
    let c = am.update(db).await?;
    // Cluster-degraded alert rules evaluate a change in what the check found
    // (every replica probes every cluster; the alerts read the table itself
    // on every reload).
    if let Some(ok) = c.probe_ok.filter(|_| c.probe_ok != health_before) {
        let (project, cluster) = (c.project_id, c.slug.clone());
        st.alerts
            .fleet_event(if ok {
                FleetEvent::ClusterHealthy { project, cluster }
            } else {
                FleetEvent::ClusterDegraded { project, cluster }
            })
            .await;
    }
    Ok(c)
}

/// Check every cluster this api can check (external ones over MQTT,
/// kubernetes ones when a Kubernetes config is present), a few at a time;
/// the periodic prober that keeps cluster health (and cluster-degraded
/// alerts) current.
pub async fn probe_all(st: &AppState) -> Result<(), ApiError> {
    use futures::StreamExt;
    let orgs: std::collections::HashMap<Uuid, org::Model> = org::Entity::find()
        .all(&st.db)
        .await?
        .into_iter()
        .map(|o| (o.id, o))
        .collect();
    let rows = cluster::Entity::find().all(&st.db).await?;
    futures::stream::iter(rows)
        .for_each_concurrent(8, |c| {
            let o = orgs.get(&c.org_id);
            async move {
                let Some(o) = o else { return };
                if c.backend != BACKEND_EXTERNAL && st.fleet.kube.is_none() {
                    return;
                }
                let slug = c.slug.clone();
                if let Err(e) = refresh_health(&st.db, st, o, c).await {
                    tracing::debug!(cluster = %slug, error = %e, "cluster health check failed");
                }
            }
        })
        .await;
    Ok(())
}

/// Check the cluster now: MQTT round trip (external) or status (kubernetes).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/clusters/{cluster}/probe", tag = "fleet",
    params(("org" = String, Path), ("project" = String, Path), ("cluster" = String, Path)), responses((status = 200, body = Cluster), ProblemResponses))]
pub(super) async fn probe_cluster(
    State(st): State<AppState>,
    scope: ProjectScope,
    ApiPath((_org, _project, name)): ApiPath<(String, String, String)>,
) -> Result<Json<Cluster>, ApiError> {
    let at = scope.load().await?;
    let c = find_cluster(&st, &at.project, &name).await?;
    at.require(Permission::ProjectRead)?;
    let ProjectAccess {
        org: o, project: p, ..
    } = at;
    let c = refresh_health(&st.db, &st, &o, c).await?;
    Ok(Json(Cluster::load(&st.db, &o, &p, c).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_stay_out_of_urls_and_with_their_endpoint() {
        let errs = |u: &str| {
            let mut e = Vec::new();
            check_url(&mut e, u);
            e.into_iter().map(|e| e.message).collect::<Vec<_>>()
        };
        assert!(errs("mqtt://broker:1883").is_empty());
        assert_eq!(
            errs("mqtt://user:pass@broker:1883"),
            ["must not carry credentials: put them in username/password"]
        );
        assert_eq!(errs("mqtts://user@broker").len(), 1);
        let old = Some("mqtt://broker:1883");
        assert!(!endpoint_changed(old, "mqtt://broker"));
        assert!(!endpoint_changed(old, "tcp://BROKER:1883"));
        assert!(endpoint_changed(old, "mqtt://broker:1884"));
        assert!(endpoint_changed(old, "mqtt://other:1883"));
        assert!(endpoint_changed(old, "mqtts://broker:1883"));
        assert!(endpoint_changed(None, "mqtt://broker:1883"));
    }
}
