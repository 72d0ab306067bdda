//! Pure functions from an MqttCluster to the objects it should produce.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SecretKeySelector, SecretVolumeSource, Service, ServicePort,
    ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use weir_crds::mqtt_cluster::{AntiAffinity, AuthMode, ListenerProtocol, ServiceType};
use weir_crds::MqttCluster;

use crate::apply::{hash_of, labels};
use crate::tenant::builders::BROKER_COMPONENT;

pub const DASHBOARD_PORT: i32 = 18083;
pub const EKKA_PORT: i32 = 4370;
pub const GEN_RPC_PORT: i32 = 5369;
/// Pod template annotation: hash of the settings EMQX reads only at boot.
pub const RESTART_CONFIG_ANNOTATION: &str = "weir.dev/restart-config-hash";
/// StatefulSet annotation: hash of the pod template we rendered.
pub const TEMPLATE_HASH_ANNOTATION: &str = "weir.dev/template-hash";
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

pub fn name(c: &MqttCluster) -> String {
    c.name_any()
}
pub fn headless_name(c: &MqttCluster) -> String {
    format!("{}-headless", c.name_any())
}
pub fn dashboard_name(c: &MqttCluster) -> String {
    format!("{}-dashboard", c.name_any())
}
pub fn config_name(c: &MqttCluster) -> String {
    format!("{}-config", c.name_any())
}
pub fn cookie_secret_name(c: &MqttCluster) -> String {
    format!("{}-erlang-cookie", c.name_any())
}
pub fn api_secret_name(c: &MqttCluster) -> String {
    format!("{}-api-credentials", c.name_any())
}
pub fn historian_name(c: &MqttCluster) -> String {
    format!("{}-historian", c.name_any())
}
pub fn external_policy_name(c: &MqttCluster) -> String {
    format!("{}-allow-external-mqtt", c.name_any())
}
fn ns(c: &MqttCluster) -> String {
    c.namespace().unwrap_or_default()
}
/// Pod name of ordinal `i`.
pub fn pod_name(c: &MqttCluster, i: i32) -> String {
    format!("{}-{i}", c.name_any())
}
/// The Erlang node name of ordinal `i` (its pod's FQDN through the headless Service).
pub fn node_name(c: &MqttCluster, i: i32) -> String {
    format!(
        "emqx@{}.{}.{}.svc.cluster.local",
        pod_name(c, i),
        headless_name(c),
        ns(c)
    )
}
/// Ordinal of an Erlang node name of this cluster, if it is one.
pub fn node_ordinal(c: &MqttCluster, node: &str) -> Option<i32> {
    let host = node.strip_prefix("emqx@")?;
    let pod = host.split('.').next()?;
    pod.strip_prefix(&format!("{}-", c.name_any()))?
        .parse()
        .ok()
}

pub fn selector_labels(c: &MqttCluster) -> BTreeMap<String, String> {
    [
        ("weir.dev/mqttcluster".to_string(), c.name_any()),
        (
            BROKER_COMPONENT.0.to_string(),
            BROKER_COMPONENT.1.to_string(),
        ),
    ]
    .into()
}

fn pod_labels(c: &MqttCluster) -> BTreeMap<String, String> {
    let mut l = labels("mqttcluster", &c.name_any());
    l.extend(selector_labels(c));
    l.insert("app.kubernetes.io/name".into(), "emqx".into());
    l.insert("app.kubernetes.io/instance".into(), c.name_any());
    l
}

fn meta(c: &MqttCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: c.namespace(),
        labels: Some(labels("mqttcluster", &c.name_any())),
        owner_references: c.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

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

fn listener_kind(p: ListenerProtocol) -> &'static str {
    match p {
        ListenerProtocol::Tcp => "tcp",
        ListenerProtocol::Tls => "ssl",
        ListenerProtocol::Ws => "ws",
        ListenerProtocol::Wss => "wss",
    }
}

fn cert_dir(listener: &str) -> String {
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
    let (authentication, authorization) = match c.spec.authentication.mode {
        AuthMode::ApiJwt => {
            let url = c
                .spec
                .authentication
                .jwks_url
                .as_deref()
                .unwrap_or(default_jwks_url);
            (
                format!("[\n  {{\n    mechanism = jwt\n    from = password\n    use_jwks = true\n    endpoint = \"{url}\"\n    refresh_interval = 300\n    acl_claim_name = acl\n    verify_claims {{ username = \"${{username}}\" }}\n  }}\n]"),
                // Only what the api's JWT grants.
                "{\n  no_match = deny\n  sources = []\n}".to_string(),
            )
        }
        AuthMode::Password => (
            "[\n  {\n    mechanism = password_based\n    backend = built_in_database\n    user_id_type = username\n  }\n]".to_string(),
            // The cluster is the tenant's own: an authenticated client may use
            // any topic. Stated, so a switch from apiJwt undoes its `deny`.
            "{\n  no_match = allow\n  sources = []\n}".to_string(),
        ),
    };
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

fn port(name: &str, p: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: p,
        target_port: Some(IntOrString::Int(p)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Headless Service for DNS discovery; lists pods before they are ready so
/// nodes can find each other while they start.
pub fn headless_service(c: &MqttCluster) -> Service {
    Service {
        metadata: meta(c, headless_name(c)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(c)),
            ports: Some(vec![
                port("ekka", EKKA_PORT),
                port("gen-rpc", GEN_RPC_PORT),
                port("dashboard", DASHBOARD_PORT),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Service for MQTT clients, one port per listener.
pub fn client_service(c: &MqttCluster) -> Service {
    let type_ = match c.spec.service_type {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata: meta(c, name(c)),
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(selector_labels(c)),
            ports: Some(
                c.spec
                    .listeners
                    .iter()
                    .map(|l| port(&l.name, l.port))
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn dashboard_service(c: &MqttCluster) -> Service {
    Service {
        metadata: meta(c, dashboard_name(c)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(c)),
            ports: Some(vec![port("dashboard", DASHBOARD_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// At most one node down by voluntary disruption.
pub fn pod_disruption_budget(c: &MqttCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(c, name(c)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(c)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Brokers exposed outside the cluster accept MQTT on their listener ports
/// from anywhere (the tenant's default-deny policy would block gateways).
pub fn external_mqtt_policy(c: &MqttCluster) -> Option<NetworkPolicy> {
    if c.spec.service_type == ServiceType::ClusterIP {
        return None;
    }
    Some(NetworkPolicy {
        metadata: meta(c, external_policy_name(c)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(c)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    ip_block: Some(IPBlock {
                        cidr: "0.0.0.0/0".into(),
                        except: None,
                    }),
                    ..Default::default()
                }]),
                ports: Some(
                    c.spec
                        .listeners
                        .iter()
                        .map(|l| NetworkPolicyPort {
                            port: Some(IntOrString::Int(l.port)),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }]),
            ..Default::default()
        }),
    })
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn env_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn probe(path: &str, initial: i32, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(DASHBOARD_PORT),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Default::default()
    }
}

/// The EMQX pod template. `restart_config_hash` changes the template (and so
/// rolls the nodes one at a time) when a setting EMQX reads at boot changed.
pub fn pod_template(c: &MqttCluster, restart_config_hash: &str) -> PodTemplateSpec {
    let headless = headless_name(c);
    let namespace = ns(c);
    let mut envs = vec![
        EnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        env(
            "EMQX_HOST",
            &format!("$(POD_NAME).{headless}.{namespace}.svc.cluster.local"),
        ),
        env("EMQX_NODE__NAME", "emqx@$(EMQX_HOST)"),
        env_secret("EMQX_NODE__COOKIE", &cookie_secret_name(c), "cookie"),
        env("EMQX_DASHBOARD__DEFAULT_USERNAME", "admin"),
        env_secret(
            "EMQX_DASHBOARD__DEFAULT_PASSWORD",
            &api_secret_name(c),
            "password",
        ),
        env(
            "EMQX_API_KEY__BOOTSTRAP_FILE",
            "/opt/emqx/etc/api-key/bootstrap",
        ),
    ];
    if let Some(l) = &c.spec.license {
        envs.push(env_secret("EMQX_LICENSE__KEY", &l.secret_ref, "license"));
    }
    let mut mounts = vec![
        VolumeMount {
            name: "data".into(),
            mount_path: "/opt/emqx/data".into(),
            ..Default::default()
        },
        VolumeMount {
            name: "config".into(),
            mount_path: "/opt/emqx/etc/emqx.conf".into(),
            sub_path: Some("emqx.conf".into()),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: "api-key".into(),
            mount_path: "/opt/emqx/etc/api-key".into(),
            read_only: Some(true),
            ..Default::default()
        },
    ];
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_name(c),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "api-key".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(api_secret_name(c)),
                items: Some(vec![KeyToPath {
                    key: "bootstrap".into(),
                    path: "bootstrap".into(),
                    ..Default::default()
                }]),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    for l in &c.spec.listeners {
        if let Some(secret) = &l.tls_secret_ref {
            let vol = format!("tls-{}", l.name);
            volumes.push(Volume {
                name: vol.clone(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                name: vol,
                mount_path: cert_dir(&l.name),
                read_only: Some(true),
                ..Default::default()
            });
        }
    }
    let mut ports: Vec<ContainerPort> = c
        .spec
        .listeners
        .iter()
        .map(|l| ContainerPort {
            name: Some(l.name.chars().take(15).collect()),
            container_port: l.port,
            protocol: Some("TCP".into()),
            ..Default::default()
        })
        .collect();
    for (n, p) in [
        ("dashboard", DASHBOARD_PORT),
        ("ekka", EKKA_PORT),
        ("gen-rpc", GEN_RPC_PORT),
    ] {
        ports.push(ContainerPort {
            name: Some(n.into()),
            container_port: p,
            protocol: Some("TCP".into()),
            ..Default::default()
        });
    }
    let container = Container {
        name: "emqx".into(),
        image: Some(c.spec.image_ref()),
        env: Some(envs),
        ports: Some(ports),
        resources: c.spec.resources.clone(),
        volume_mounts: Some(mounts),
        readiness_probe: Some(probe("/status", 10, 5, 12)),
        liveness_probe: Some(probe("/status", 60, 30, 3)),
        startup_probe: Some(probe("/status", 5, 5, 60)),
        ..Default::default()
    };
    let selector = LabelSelector {
        match_labels: Some(selector_labels(c)),
        ..Default::default()
    };
    let term = PodAffinityTerm {
        label_selector: Some(selector.clone()),
        topology_key: "kubernetes.io/hostname".into(),
        ..Default::default()
    };
    let anti = match c.spec.placement.anti_affinity {
        AntiAffinity::None => None,
        AntiAffinity::Preferred => Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: term,
                },
            ]),
            ..Default::default()
        }),
        AntiAffinity::Required => Some(PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..Default::default()
        }),
    };
    let spread = c.spec.placement.spread_over_zones.then(|| {
        vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(selector),
            ..Default::default()
        }]
    });
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels(c)),
            annotations: Some(
                [(
                    RESTART_CONFIG_ANNOTATION.to_string(),
                    restart_config_hash.to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            affinity: anti.map(|a| Affinity {
                pod_anti_affinity: Some(a),
                ..Default::default()
            }),
            topology_spread_constraints: spread,
            node_selector: (!c.spec.placement.node_selector.is_empty())
                .then(|| c.spec.placement.node_selector.clone()),
            security_context: Some(PodSecurityContext {
                run_as_user: Some(1000),
                run_as_group: Some(1000),
                fs_group: Some(1000),
                run_as_non_root: Some(true),
                ..Default::default()
            }),
            termination_grace_period_seconds: Some(60),
            ..Default::default()
        }),
    }
}

/// Hash of the restart-needing settings.
pub fn restart_config_hash(c: &MqttCluster) -> String {
    hash_of(&split_config(c).1)
}

/// The volume claim of each node. Immutable once the StatefulSet exists.
pub fn data_claim(size: &str, storage_class: Option<String>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage_class,
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The storage a volume claim requests (`spec.resources.requests.storage`).
pub fn claim_size(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.as_str())
}

/// The EMQX StatefulSet with `replicas` nodes, updating only ordinals >=
/// `partition` (one node at a time during upgrades). `claim` is the live
/// claim template when the StatefulSet exists (it cannot change).
pub fn statefulset(
    c: &MqttCluster,
    replicas: i32,
    partition: i32,
    claim: Option<PersistentVolumeClaim>,
) -> StatefulSet {
    let template = pod_template(c, &restart_config_hash(c));
    let mut m = meta(c, name(c));
    m.annotations = Some([(TEMPLATE_HASH_ANNOTATION.to_string(), hash_of(&template))].into());
    let claim = claim.unwrap_or_else(|| {
        data_claim(
            &c.spec.storage.size,
            c.spec.storage.storage_class_name.clone(),
        )
    });
    StatefulSet {
        metadata: m,
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(headless_name(c)),
            // Nodes discover each other by DNS; starting them together lets
            // a fresh cluster form without waiting on ordinal order.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(c)),
                ..Default::default()
            },
            template,
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(partition),
                    max_unavailable: None,
                }),
            }),
            volume_claim_templates: Some(vec![claim]),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Hash of the pod template a StatefulSet built now would carry.
pub fn template_hash(c: &MqttCluster) -> String {
    hash_of(&pod_template(c, &restart_config_hash(c)))
}

/// The historian: subscribes to the cluster and writes readings to PostgreSQL.
pub fn historian(c: &MqttCluster, image: &str) -> Option<Deployment> {
    let h = c.spec.historian.as_ref()?;
    let mut l = labels("mqttcluster", &c.name_any());
    l.insert("app.kubernetes.io/component".into(), "historian".into());
    let tcp = c
        .spec
        .listeners
        .iter()
        .find(|l| l.protocol == ListenerProtocol::Tcp);
    let mqtt_url = match tcp {
        Some(l) => format!("mqtt://{}.{}.svc:{}", name(c), ns(c), l.port),
        None => format!(
            "mqtts://{}.{}.svc:{}",
            name(c),
            ns(c),
            c.spec.listeners.first().map_or(8883, |l| l.port)
        ),
    };
    Some(Deployment {
        metadata: meta(c, historian_name(c)),
        spec: DeploymentSpec {
            replicas: Some(h.replicas),
            selector: LabelSelector {
                match_labels: Some(l.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(l),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "historian".into(),
                        image: Some(image.into()),
                        env: Some(vec![
                            env_secret(
                                "WEIR_HISTORIAN_DATABASE_URL",
                                &h.database_secret_ref,
                                "url",
                            ),
                            env("WEIR_MQTT_URL", &mqtt_url),
                            env(
                                "WEIR_HISTORIAN_RETENTION_DAYS",
                                &h.retention_days.to_string(),
                            ),
                            // Only this tenant's topics (its namespace is weir-<tenant>).
                            env("WEIR_TENANT", ns(c).strip_prefix("weir-").unwrap_or(&ns(c))),
                            env("WEIR_HISTORIAN_METRICS_LISTEN", "0.0.0.0:9103"),
                        ]),
                        ports: Some(vec![ContainerPort {
                            name: Some("metrics".into()),
                            container_port: 9103,
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    })
}

/// cert-manager's Certificate kind (used only when cert-manager is installed).
pub fn certificate_resource() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "cert-manager.io".into(),
        version: "v1".into(),
        api_version: "cert-manager.io/v1".into(),
        kind: "Certificate".into(),
        plural: "certificates".into(),
    }
}

/// A Certificate asking cert-manager to issue the TLS Secret `secret`
/// for the cluster's client and node names.
pub fn certificate(c: &MqttCluster, secret: &str, issuer: &str) -> kube::api::DynamicObject {
    let ns = ns(c);
    let mut obj = kube::api::DynamicObject::new(secret, &certificate_resource()).within(&ns);
    obj.metadata = meta(c, secret.to_string());
    obj.data = serde_json::json!({
        "spec": {
            "secretName": secret,
            "dnsNames": [
                format!("{}.{ns}.svc", name(c)),
                format!("{}.{ns}.svc.cluster.local", name(c)),
                format!("*.{}.{ns}.svc.cluster.local", headless_name(c)),
            ],
            "issuerRef": {"name": issuer, "kind": "ClusterIssuer", "group": "cert-manager.io"},
        }
    });
    obj
}

/// Client endpoints for the status.
pub fn endpoints(c: &MqttCluster) -> Vec<String> {
    c.spec
        .listeners
        .iter()
        .map(|l| {
            let scheme = match l.protocol {
                ListenerProtocol::Tcp => "mqtt",
                ListenerProtocol::Tls => "mqtts",
                ListenerProtocol::Ws => "ws",
                ListenerProtocol::Wss => "wss",
            };
            format!("{scheme}://{}.{}.svc:{}", name(c), ns(c), l.port)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use weir_crds::mqtt_cluster::{HistorianSpec, Listener};
    use weir_crds::MqttClusterSpec;

    pub fn cluster(replicas: i32) -> MqttCluster {
        let spec: MqttClusterSpec =
            serde_json::from_value(serde_json::json!({"replicas": replicas})).unwrap();
        let mut c = MqttCluster::new("riverside-mqtt", spec);
        c.metadata.namespace = Some("weir-riverside-water".into());
        c.metadata.uid = Some("mqc-uid".into());
        c.metadata.generation = Some(1);
        c
    }

    fn container(s: &StatefulSet) -> Container {
        s.spec.template.spec.as_ref().unwrap().containers[0].clone()
    }

    #[test]
    fn statefulset_runs_emqx_58_with_dns_node_names() {
        let c = cluster(3);
        let s = statefulset(&c, 3, 0, None);
        let spec = s.spec.clone();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.service_name.as_deref(),
            Some("riverside-mqtt-headless")
        );
        let ct = container(&s);
        assert_eq!(ct.image.as_deref(), Some("emqx/emqx:5.8.6"));
        let env: BTreeMap<_, _> = ct
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        assert_eq!(
            env["EMQX_NODE__NAME"].value.as_deref(),
            Some("emqx@$(EMQX_HOST)")
        );
        assert_eq!(
            env["EMQX_HOST"].value.as_deref(),
            Some("$(POD_NAME).riverside-mqtt-headless.weir-riverside-water.svc.cluster.local")
        );
        // Secrets come from Secrets, never as plain values.
        assert!(env["EMQX_NODE__COOKIE"].value.is_none());
        assert_eq!(
            env["EMQX_NODE__COOKIE"]
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap()
                .name,
            "riverside-mqtt-erlang-cookie"
        );
        assert!(env["EMQX_DASHBOARD__DEFAULT_PASSWORD"].value.is_none());
        let ports: Vec<i32> = ct.ports.unwrap().iter().map(|p| p.container_port).collect();
        assert_eq!(ports, vec![1883, 18083, 4370, 5369]);
        assert_eq!(
            ct.readiness_probe
                .unwrap()
                .http_get
                .unwrap()
                .path
                .as_deref(),
            Some("/status")
        );
        assert!(ct.liveness_probe.is_some());
        let owner = &s.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("MqttCluster", Some(true))
        );
        let claim = &spec.volume_claim_templates.unwrap()[0];
        assert_eq!(claim_size(claim), Some("10Gi"));
        assert_eq!(
            spec.update_strategy
                .unwrap()
                .rolling_update
                .unwrap()
                .partition,
            Some(0)
        );
    }

    #[test]
    fn node_names_map_to_ordinals() {
        let c = cluster(3);
        let n = node_name(&c, 2);
        assert_eq!(
            n,
            "emqx@riverside-mqtt-2.riverside-mqtt-headless.weir-riverside-water.svc.cluster.local"
        );
        assert_eq!(node_ordinal(&c, &n), Some(2));
        assert_eq!(node_ordinal(&c, "emqx@other-2.x"), None);
    }

    #[test]
    fn headless_service_publishes_unready_pods_with_cluster_ports() {
        let s = headless_service(&cluster(3)).spec.unwrap();
        assert_eq!(s.cluster_ip.as_deref(), Some("None"));
        assert_eq!(s.publish_not_ready_addresses, Some(true));
        let ports: Vec<i32> = s.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, vec![4370, 5369, 18083]);
    }

    #[test]
    fn client_service_has_one_port_per_listener() {
        let mut c = cluster(3);
        c.spec.listeners.push(Listener {
            name: "mqtts".into(),
            protocol: ListenerProtocol::Tls,
            port: 8883,
            tls_secret_ref: Some("mqtt-tls".into()),
        });
        let s = client_service(&c).spec.unwrap();
        let ports: Vec<(String, i32)> = s
            .ports
            .unwrap()
            .iter()
            .map(|p| (p.name.clone().unwrap(), p.port))
            .collect();
        assert_eq!(ports, vec![("mqtt".into(), 1883), ("mqtts".into(), 8883)]);
        // The TLS secret is mounted where emqx.conf points.
        let conf = emqx_conf(&c, "http://jwks", None);
        assert!(
            conf.contains("certfile = \"/opt/emqx/etc/certs/mqtts/tls.crt\""),
            "{conf}"
        );
        let pod = pod_template(&c, "h").spec.unwrap();
        assert!(pod.volumes.unwrap().iter().any(|v| v
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.as_deref())
            == Some("mqtt-tls")));
    }

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

    #[test]
    fn restart_settings_change_the_template_runtime_ones_do_not() {
        let c = cluster(3);
        let base = template_hash(&c);
        let mut runtime = c.clone();
        runtime
            .spec
            .config
            .insert("mqtt.max_packet_size".into(), "\"2MB\"".into());
        assert_eq!(
            template_hash(&runtime),
            base,
            "runtime settings must not restart nodes"
        );
        let mut restart = c.clone();
        restart
            .spec
            .config
            .insert("node.process_limit".into(), "4000000".into());
        assert_ne!(template_hash(&restart), base);
        let (rt, rs) = split_config(&restart);
        assert!(rt.is_empty() && rs.contains_key("node.process_limit"));
    }

    #[test]
    fn pdb_allows_one_node_down() {
        let p = pod_disruption_budget(&cluster(3)).spec.unwrap();
        assert_eq!(p.max_unavailable, Some(IntOrString::Int(1)));
    }

    #[test]
    fn anti_affinity_and_zone_spread_follow_placement() {
        let mut c = cluster(3);
        let pod = pod_template(&c, "h").spec.unwrap();
        assert!(pod
            .affinity
            .unwrap()
            .pod_anti_affinity
            .unwrap()
            .preferred_during_scheduling_ignored_during_execution
            .is_some());
        c.spec.placement.anti_affinity = AntiAffinity::Required;
        c.spec.placement.spread_over_zones = true;
        let pod = pod_template(&c, "h").spec.unwrap();
        assert!(pod
            .affinity
            .unwrap()
            .pod_anti_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .is_some());
        assert_eq!(
            pod.topology_spread_constraints.unwrap()[0].topology_key,
            "topology.kubernetes.io/zone"
        );
    }

    #[test]
    fn license_secret_is_passed_by_reference() {
        let mut c = cluster(3);
        c.spec.version = "5.9.0".into();
        c.spec.license = Some(weir_crds::mqtt_cluster::LicenseRef {
            secret_ref: "emqx-license".into(),
        });
        let ct = container(&statefulset(&c, 3, 0, None));
        let lic = ct
            .env
            .unwrap()
            .into_iter()
            .find(|e| e.name == "EMQX_LICENSE__KEY")
            .unwrap();
        assert_eq!(
            lic.value_from.unwrap().secret_key_ref.unwrap().name,
            "emqx-license"
        );
    }

    #[test]
    fn historian_reads_database_url_from_secret_and_targets_client_service() {
        let mut c = cluster(3);
        assert!(historian(&c, "img").is_none());
        c.spec.historian = Some(HistorianSpec {
            database_secret_ref: "historian-db".into(),
            retention_days: 30,
            replicas: 1,
        });
        let d = historian(&c, "ghcr.io/weir-dev/weir-historian:0.1.0").unwrap();
        let ct = d.spec.template.spec.unwrap().containers[0].clone();
        let env: BTreeMap<_, _> = ct
            .env
            .unwrap()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        let url = env["WEIR_HISTORIAN_DATABASE_URL"]
            .value_from
            .clone()
            .unwrap()
            .secret_key_ref
            .unwrap();
        assert_eq!(
            (url.name.as_str(), url.key.as_str()),
            ("historian-db", "url")
        );
        assert_eq!(
            env["WEIR_MQTT_URL"].value.as_deref(),
            Some("mqtt://riverside-mqtt.weir-riverside-water.svc:1883")
        );
        assert_eq!(env["WEIR_TENANT"].value.as_deref(), Some("riverside-water"));
    }

    #[test]
    fn external_services_get_an_mqtt_ingress_policy() {
        let mut c = cluster(3);
        assert!(external_mqtt_policy(&c).is_none());
        c.spec.service_type = ServiceType::LoadBalancer;
        let p = external_mqtt_policy(&c).unwrap().spec.unwrap();
        let ports = p.ingress.unwrap()[0].ports.clone().unwrap();
        assert_eq!(ports[0].port, Some(IntOrString::Int(1883)));
    }
}
