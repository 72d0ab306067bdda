//! The Secrets the operator generates for a cluster: the Erlang cookie and
//! EMQX's API key (also used as the dashboard's bootstrap key). Created
//! once, never rotated by the operator: nodes and clients hold them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use kube::{Api, Resource, ResourceExt};
use rand::distributions::Alphanumeric;
use rand::Rng;
use weir_crds::MqttCluster;

use super::builders as b;
use super::findings::Findings;
use crate::apply::{create_once, labels};
use crate::emqx::ApiKey;
use crate::error::Result;
use weir_crds::names::labels as label;

fn random(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn secret(c: &MqttCluster, name: String, data: BTreeMap<String, String>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: c.namespace(),
            labels: Some(labels(label::MQTT_CLUSTER, &c.name_any())),
            owner_references: c.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        string_data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone()).ok();
    }
    s.string_data.as_ref().and_then(|d| d.get(key)).cloned()
}

/// Create the cookie and API key Secrets if missing; the API key to use,
/// or None (with a finding) when its Secret was emptied by hand.
pub(super) async fn ensure(
    c: &MqttCluster,
    secrets: &Api<Secret>,
    f: &mut Findings,
) -> Result<Option<ApiKey>> {
    create_once(secrets, || {
        secret(
            c,
            b::cookie_secret_name(c),
            [("cookie".to_string(), random(64))].into(),
        )
    })
    .await?;
    let (api_secret, _) = create_once(secrets, || {
        let (key, sec) = (format!("weir-{}", random(12)), random(40));
        secret(
            c,
            b::api_secret_name(c),
            [
                ("username".to_string(), "admin".to_string()),
                ("password".to_string(), random(24)),
                ("api-key".to_string(), key.clone()),
                ("api-secret".to_string(), sec.clone()),
                ("bootstrap".to_string(), format!("{key}:{sec}\n")),
            ]
            .into(),
        )
    })
    .await?;
    let api_key = match (
        secret_value(&api_secret, "api-key"),
        secret_value(&api_secret, "api-secret"),
    ) {
        (Some(key), Some(secret)) => Some(ApiKey { key, secret }),
        _ => {
            f.degraded("CredentialsInvalid", format!("Secret {} lacks api-key/api-secret; delete it and the operator generates a new one", b::api_secret_name(c)));
            None
        }
    };
    Ok(api_key)
}
