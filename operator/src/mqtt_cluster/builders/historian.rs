//! The historian Deployment, run while `spec.historian` asks for one.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodSecurityContext, PodSpec, PodTemplateSpec, SecretVolumeSource,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;
use kube::ResourceExt;
use weir_crds::mqtt_cluster::ListenerProtocol;
use weir_crds::MqttCluster;

use crate::apply::labels;

use super::*;
use weir_crds::names::{historian_mqtt, labels as label};

/// Where the historian's broker identity (the api's Secret) is mounted.
pub const HISTORIAN_MQTT_DIR: &str = "/var/run/weir/mqtt";

/// The historian: subscribes to the cluster and writes readings to PostgreSQL.
/// Its broker identity is the Secret [`historian_mqtt::SECRET`] the api keeps
/// in the tenant namespace: the username from the env, the JWT from the
/// mounted file, which the kubelet refreshes when the api renews it and the
/// historian reads again at every reconnect. Until the api has written it,
/// the pod waits (the kubelet does not start it without the Secret).
pub fn historian(c: &MqttCluster, image: &str) -> Option<Deployment> {
    let h = c.spec.historian.as_ref()?;
    let mut l = labels(label::MQTT_CLUSTER, &c.name_any());
    l.insert(label::COMPONENT.into(), "historian".into());
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
                            env_secret(
                                "WEIR_MQTT_USERNAME",
                                historian_mqtt::SECRET,
                                historian_mqtt::USERNAME,
                            ),
                            env(
                                "WEIR_MQTT_PASSWORD_FILE",
                                &format!("{HISTORIAN_MQTT_DIR}/{}", historian_mqtt::PASSWORD),
                            ),
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
                        volume_mounts: Some(vec![VolumeMount {
                            name: "mqtt-identity".into(),
                            mount_path: HISTORIAN_MQTT_DIR.into(),
                            read_only: Some(true),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: "mqtt-identity".into(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(historian_mqtt::SECRET.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::mqtt_cluster::builders::tests::cluster;
    use weir_crds::mqtt_cluster::HistorianSpec;

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
        let ct = d.spec.template.spec.clone().unwrap().containers[0].clone();
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
        // Its broker identity: the api's Secret, username from the env, the
        // renewed JWT from the mounted file.
        let user = env["WEIR_MQTT_USERNAME"]
            .value_from
            .clone()
            .unwrap()
            .secret_key_ref
            .unwrap();
        assert_eq!(
            (user.name.as_str(), user.key.as_str()),
            ("weir-historian-mqtt", "username")
        );
        assert_eq!(
            env["WEIR_MQTT_PASSWORD_FILE"].value.as_deref(),
            Some("/var/run/weir/mqtt/password")
        );
        assert!(!env.contains_key("WEIR_MQTT_PASSWORD"));
        let mount = &ct.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(mount.mount_path, "/var/run/weir/mqtt");
        let pod = d.spec.template.spec.unwrap();
        let vol = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == mount.name)
            .unwrap();
        assert_eq!(
            vol.secret.unwrap().secret_name.as_deref(),
            Some("weir-historian-mqtt")
        );
    }
}
