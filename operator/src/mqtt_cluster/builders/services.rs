//! The Services: headless (node discovery), client (MQTT) and dashboard,
//! and the client endpoints the status lists.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_crds::mqtt_cluster::{ListenerProtocol, ServiceType};
use weir_crds::MqttCluster;

use super::*;

pub const DASHBOARD_PORT: i32 = 18083;
pub const EKKA_PORT: i32 = 4370;
pub const GEN_RPC_PORT: i32 = 5369;

pub(super) fn port(name: &str, p: i32) -> ServicePort {
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
mod tests {
    use super::*;
    use crate::mqtt_cluster::builders::tests::cluster;
    use weir_crds::mqtt_cluster::Listener;

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
}
