//! `emqx.conf` and its ConfigMap: the settings EMQX reads at boot, the ones
//! applied at runtime through its API, and the tenant's connection limits.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use weir_crds::mqtt_cluster::{AuthMode, ListenerProtocol};
use weir_crds::MqttCluster;

use crate::apply::hash_of;

use super::*;

/// ConfigMap annotation: hash of the runtime settings pushed through the API.
pub const RUNTIME_CONFIG_ANNOTATION: &str = "weir.dev/runtime-config-hash";
/// ConfigMap annotation: the runtime settings' keys, so a key removed from
/// `spec.config` can be reset on the running nodes.
pub const RUNTIME_KEYS_ANNOTATION: &str = "weir.dev/runtime-config-keys";

/// HOCON roots EMQX reads only when a node starts; changing them needs a
/// rolling restart. Everything else is applied at runtime through the API.
pub const RESTART_ROOTS: &[&str] = &[
    "node.",
    "cluster.",
    "rpc.",
    "dashboard.",
    "api_key.",
    "license.",
];

/// `spec.config` split into (runtime, restart-needing) settings.
pub fn split_config(c: &MqttCluster) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    c.spec
        .config
        .clone()
        .into_iter()
        .partition(|(k, _)| !RESTART_ROOTS.iter().any(|r| k.starts_with(r)))
}

/// HOCON lines `path = value` for settings.
pub fn hocon_lines(settings: &BTreeMap<String, String>) -> String {
    settings
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect()
}

pub(super) fn listener_kind(p: ListenerProtocol) -> &'static str {
    match p {
        ListenerProtocol::Tcp => "tcp",
        ListenerProtocol::Tls => "ssl",
        ListenerProtocol::Ws => "ws",
        ListenerProtocol::Wss => "wss",
    }
}

pub(super) fn cert_dir(listener: &str) -> String {
    format!("/opt/emqx/etc/certs/{listener}")
}

/// `max_connections` of each listener under a per-listener limit (the
/// tenant's quota share), keyed by HOCON path. A lower limit in `spec.config`
/// is kept; a higher one (or `infinity`) is not: the quota wins.
pub fn listener_limits(c: &MqttCluster, per_listener: Option<u32>) -> BTreeMap<String, String> {
    let Some(limit) = per_listener else {
        return BTreeMap::new();
    };
    c.spec
        .listeners
        .iter()
        .map(|l| {
            let key = format!(
                "listeners.{}.{}.max_connections",
                listener_kind(l.protocol),
                l.name
            );
            let own = c
                .spec
                .config
                .get(&key)
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|v| *v < limit);
            (key, own.unwrap_or(limit).to_string())
        })
        .collect()
}

/// `authentication` and `authorization` as `spec.authentication` says.
/// Both are runtime settings: a change reaches running nodes through the
/// config API, not only the file they read at their next start.
pub fn auth_settings(c: &MqttCluster, default_jwks_url: &str) -> BTreeMap<String, String> {
    // `apiJwt` is the only mode (see `AuthMode`).
    let AuthMode::ApiJwt = c.spec.authentication.mode;
    let url = c
        .spec
        .authentication
        .jwks_url
        .as_deref()
        .unwrap_or(default_jwks_url);
    let authentication = format!("[\n  {{\n    mechanism = jwt\n    from = password\n    use_jwks = true\n    endpoint = \"{url}\"\n    refresh_interval = 300\n    acl_claim_name = acl\n    verify_claims {{ username = \"${{username}}\" }}\n  }}\n]");
    // Only what the api's JWT grants.
    let authorization = "{\n  no_match = deny\n  sources = []\n}".to_string();
    [
        ("authentication".to_string(), authentication),
        ("authorization".to_string(), authorization),
    ]
    .into()
}

/// Settings applied to running nodes through EMQX's config API:
/// authentication, the runtime part of `spec.config` (after, so it wins)
/// and the tenant's connection limits.
pub fn runtime_settings(
    c: &MqttCluster,
    default_jwks_url: &str,
    per_listener: Option<u32>,
) -> BTreeMap<String, String> {
    let mut settings = auth_settings(c, default_jwks_url);
    settings.extend(split_config(c).0);
    settings.extend(listener_limits(c, per_listener));
    settings
}

/// The complete `emqx.conf`: cluster discovery, dashboard, listeners,
/// authentication, the user's overrides (after those, so they win), and last
/// each listener's `max_connections` capped at `per_listener` (the tenant's
/// quota share), if any.
pub fn emqx_conf(c: &MqttCluster, default_jwks_url: &str, per_listener: Option<u32>) -> String {
    let mut s = String::new();
    s.push_str(
        "# Rendered by weir-operator from the MqttCluster; edit the MqttCluster, not this file.\n",
    );
    s.push_str(&format!(
        "cluster {{\n  name = \"{}\"\n  discovery_strategy = dns\n  dns {{\n    name = \"{}.{}.svc.cluster.local\"\n    record_type = srv\n  }}\n}}\n",
        c.name_any(),
        headless_name(c),
        ns(c)
    ));
    s.push_str("node {\n  data_dir = \"data\"\n}\n");
    s.push_str(&format!(
        "dashboard {{\n  listeners.http.bind = {DASHBOARD_PORT}\n}}\n"
    ));
    // Replace EMQX's default listeners with the ones the spec names.
    for kind in ["tcp", "ssl", "ws", "wss"] {
        if !c
            .spec
            .listeners
            .iter()
            .any(|l| l.name == "default" && listener_kind(l.protocol) == kind)
        {
            s.push_str(&format!("listeners.{kind}.default.enable = false\n"));
        }
    }
    for l in &c.spec.listeners {
        let kind = listener_kind(l.protocol);
        s.push_str(&format!(
            "listeners.{kind}.{} {{\n  enable = true\n  bind = \"0.0.0.0:{}\"\n",
            l.name, l.port
        ));
        if matches!(l.protocol, ListenerProtocol::Tls | ListenerProtocol::Wss) {
            let d = cert_dir(&l.name);
            s.push_str(&format!("  ssl_options {{\n    certfile = \"{d}/tls.crt\"\n    keyfile = \"{d}/tls.key\"\n  }}\n"));
        }
        if matches!(l.protocol, ListenerProtocol::Ws | ListenerProtocol::Wss) {
            s.push_str("  websocket.mqtt_path = \"/mqtt\"\n");
        }
        s.push_str("}\n");
    }
    s.push_str(&hocon_lines(&auth_settings(c, default_jwks_url)));
    s.push_str(&hocon_lines(&c.spec.config));
    let limits = listener_limits(c, per_listener);
    if !limits.is_empty() {
        s.push_str("# The tenant's quota.maxMqttConnections, shared by its nodes and listeners.\n");
        s.push_str(&hocon_lines(&limits));
    }
    s
}

/// The `emqx.conf` ConfigMap; `per_listener` is the tenant's connection
/// quota share of each listener on each node, if the namespace has a Tenant.
pub fn config_map(c: &MqttCluster, default_jwks_url: &str, per_listener: Option<u32>) -> ConfigMap {
    let runtime = runtime_settings(c, default_jwks_url, per_listener);
    let keys: Vec<&str> = runtime.keys().map(String::as_str).collect();
    let mut m = meta(c, config_name(c));
    m.annotations = Some(
        [
            (RUNTIME_CONFIG_ANNOTATION.to_string(), hash_of(&runtime)),
            (RUNTIME_KEYS_ANNOTATION.to_string(), keys.join(",")),
        ]
        .into(),
    );
    ConfigMap {
        metadata: m,
        data: Some(
            [(
                "emqx.conf".to_string(),
                emqx_conf(c, default_jwks_url, per_listener),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

/// How the tenant's `quota.maxMqttConnections` falls on one cluster: every
/// node of the tenant's clusters (`tenant_nodes`) gets an equal share, split
/// equally over the node's listeners, so the sum of all listener limits
/// never exceeds the quota. Each listener keeps at least one connection.
pub fn connection_limit(
    c: &MqttCluster,
    tenant_quota: u32,
    tenant_nodes: u32,
) -> weir_crds::mqtt_cluster::ConnectionLimit {
    let nodes = tenant_nodes.max(1);
    let listeners = (c.spec.listeners.len() as u32).max(1);
    let per_listener = (tenant_quota / nodes / listeners).max(1);
    weir_crds::mqtt_cluster::ConnectionLimit {
        tenant_quota,
        tenant_nodes: nodes,
        per_listener,
        cluster_max: per_listener
            .saturating_mul(listeners)
            .saturating_mul(c.spec.replicas.max(0) as u32),
    }
}

/// Hash of the restart-needing settings.
pub fn restart_config_hash(c: &MqttCluster) -> String {
    hash_of(&split_config(c).1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt_cluster::builders::tests::cluster;

    #[test]
    fn emqx_conf_has_dns_discovery_jwt_and_overrides_last() {
        let mut c = cluster(3);
        c.spec
            .config
            .insert("mqtt.max_packet_size".into(), "\"1MB\"".into());
        let conf = emqx_conf(
            &c,
            "http://weir-api.weir-system.svc:8080/api/v1/jwks.json",
            None,
        );
        assert!(conf.contains("discovery_strategy = dns"));
        assert!(conf
            .contains("name = \"riverside-mqtt-headless.weir-riverside-water.svc.cluster.local\""));
        assert!(conf.contains("mechanism = jwt"));
        assert!(
            conf.contains("endpoint = \"http://weir-api.weir-system.svc:8080/api/v1/jwks.json\"")
        );
        assert!(conf.trim_end().ends_with("mqtt.max_packet_size = \"1MB\""));
    }
}
