//! The EMQX StatefulSet: its pod template (the hash of which drives the
//! rolling upgrade), probes, environment and the nodes' volume claim.

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    KeyToPath, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SecretKeySelector, SecretVolumeSource, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use weir_crds::mqtt_cluster::AntiAffinity;
use weir_crds::MqttCluster;

use crate::apply::hash_of;

use super::*;

/// Pod template annotation: hash of the settings EMQX reads only at boot.
pub const RESTART_CONFIG_ANNOTATION: &str = "weir.dev/restart-config-hash";
/// StatefulSet annotation: hash of the pod template we rendered.
pub const TEMPLATE_HASH_ANNOTATION: &str = "weir.dev/template-hash";

pub(super) fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

pub(super) fn env_secret(name: &str, secret: &str, key: &str) -> EnvVar {
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

pub(super) fn probe(path: &str, initial: i32, period: i32, failures: i32) -> Probe {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::mqtt_cluster::builders::tests::cluster;

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
}
