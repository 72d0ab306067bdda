//! How the api reaches a gateway's agent for a write: the broker of the
//! gateway's cluster, with the api's own identity on it, as the alerts
//! ingest reads it ([`crate::alerts::ingest::cluster_broker`]): its
//! dynamic-security login on an adopted Mosquitto (made on first need),
//! anonymously on an open broker, or its own short-lived
//! JWT on an `apiJwt` cluster. Never the cluster's admin login. A gateway
//! without a cluster is reached through `WEIR_ALERTS_MQTT_URL` when that
//! names the broker all tenants use; otherwise the write is refused.

use rumqttc::MqttOptions;
use sea_orm::EntityTrait;

use crate::alerts::ingest::{broker_options, cluster_broker, Broker, BrokerAuth};
use crate::db::entities::org;
use crate::error::ApiError;
use crate::fleet::broker_identity;
use crate::fleet::clusters::{check_gateway_may_use, BACKEND_EXTERNAL};
use crate::fleet::entities::{cluster, gateway};
use crate::state::AppState;

/// Connection options for writing to `g`'s agent.
pub async fn options(
    st: &AppState,
    o: &org::Model,
    g: &gateway::Model,
) -> Result<MqttOptions, ApiError> {
    let broker = broker(st, o, g).await?;
    let replica = st.alerts.replica_name().to_string();
    let mut opts = broker_options(&broker, &replica).ok_or_else(|| {
        ApiError::Unavailable(format!(
            "the broker URL of gateway '{}' is not usable",
            g.slug
        ))
    })?;
    // A client id of its own: the alerts connections keep theirs.
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let id = format!("weir-api-{replica}-write-{suffix}");
    opts.set_client_id(id.chars().take(64).collect::<String>());
    if let BrokerAuth::ApiJwt { org_id, tenant } = &broker.auth {
        let t = st
            .alerts
            .mint_mqtt_token(*org_id, tenant)
            .await?
            .ok_or_else(|| {
                ApiError::Unavailable(format!(
                    "organization '{}' has no MQTT signing key yet (it is made when the first \
                     agent fetches its MQTT credentials)",
                    o.slug
                ))
            })?;
        opts.set_credentials(&t.username, &t.jwt);
    }
    Ok(opts)
}

async fn broker(st: &AppState, o: &org::Model, g: &gateway::Model) -> Result<Broker, ApiError> {
    let c = match g.cluster_id {
        Some(id) => cluster::Entity::find_by_id(id).one(&st.db).await?,
        None => None,
    };
    let Some(c) = c else {
        if let Some(url) = st.alerts.mqtt_url() {
            return Ok(Broker::password(url, None, None));
        }
        return Err(ApiError::Conflict {
            detail: format!(
                "gateway '{}' has no MQTT cluster, so the api cannot reach its agent: choose \
                 its cluster first",
                g.slug
            ),
            fields: vec![],
        });
    };
    check_gateway_may_use(&st.db, g, &c).await?;
    // Made on first need (as the health probe does), with the write lock:
    // nothing here runs inside a transaction.
    let api_login = broker_identity::api_login(st, &c).await?;
    let broker = cluster_broker(&c, &o.slug, api_login).ok_or_else(|| {
        ApiError::Unavailable(format!(
            "cluster '{}' has no MQTT endpoint the api can use",
            c.slug
        ))
    })?;
    if c.backend == BACKEND_EXTERNAL {
        if let Some(e) = crate::fleet::mqtt_probe::refused(&st.config.outbound(), &broker.url).await
        {
            return Err(ApiError::Unavailable(format!("cluster '{}': {e}", c.slug)));
        }
    }
    Ok(broker)
}
