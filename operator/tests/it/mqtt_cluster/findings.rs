//! Specs the API server accepts but that cannot work, reported with what
//! to fix.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ObjectMeta;
use kube::runtime::controller::Action;
use weir_crds::MqttCluster;
use weir_operator::testing::FakeApiServer;

use super::*;
use crate::support::*;

#[tokio::test]
async fn unrealisable_specs_are_degraded_with_what_to_fix() {
    let fake = FakeApiServer::new();
    let mut c: MqttCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "MqttCluster",
        "metadata": {"name": "riverside-mqtt", "namespace": NS},
        "spec": {"replicas": 3, "version": "5.9.1",
                 "storage": {"storageClassName": "fast-ssd"},
                 "listeners": [{"name": "mqtts", "protocol": "tls", "port": 8883, "tlsSecretRef": "mqtt-tls"}]}
    }))
    .unwrap();
    c.metadata.generation = Some(1);
    fake.put(&c);
    let ctx = context(&fake, Arc::default());
    let action = reconcile_cluster(&fake, &ctx).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let d = condition(&stored_cluster(&fake), "Degraded");
    assert_eq!(d.reason, "LicenseRequired");
    for needle in ["spec.license.secretRef", "mqtt-tls", "fast-ssd"] {
        assert!(
            d.message.contains(needle),
            "{needle} missing in: {}",
            d.message
        );
    }
    // Fix what can be fixed: the messages go away.
    fake.put(&StorageClass {
        metadata: ObjectMeta {
            name: Some("fast-ssd".into()),
            ..Default::default()
        },
        provisioner: "x".into(),
        ..Default::default()
    });
    fake.put(&Secret {
        metadata: ObjectMeta {
            name: Some("mqtt-tls".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        ..Default::default()
    });
    reconcile_cluster(&fake, &ctx).await;
    let d = condition(&stored_cluster(&fake), "Degraded");
    assert!(
        !d.message.contains("fast-ssd") && !d.message.contains("mqtt-tls"),
        "{}",
        d.message
    );
}

#[tokio::test]
async fn missing_tls_secret_is_requested_from_cert_manager_when_installed() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let fake = FakeApiServer::new();
    let mut c = cluster(3);
    c.spec.listeners.push(
        serde_json::from_value(serde_json::json!(
            {"name": "mqtts", "protocol": "tls", "port": 8883, "tlsSecretRef": "riverside-mqtt-tls"}
        ))
        .unwrap(),
    );
    fake.put(&c);
    let mut crd = CustomResourceDefinition::default();
    crd.metadata.name = Some("certificates.cert-manager.io".into());
    fake.put(&crd);
    let ctx = context(&fake, Arc::default());
    reconcile_cluster(&fake, &ctx).await;
    let path = "PATCH /apis/cert-manager.io/v1/namespaces/weir-riverside-water/certificates/riverside-mqtt-tls";
    assert!(
        fake.calls().contains(&path.to_string()),
        "{:?}",
        fake.calls()
    );
    let p = condition(&stored_cluster(&fake), "Progressing");
    assert_eq!(p.reason, "CertificatePending");
    assert_eq!(
        condition(&stored_cluster(&fake), "Degraded").status,
        weir_crds::ConditionStatus::False
    );
    fake.clear_calls();
    reconcile_cluster(&fake, &ctx).await;
    assert!(
        !fake.calls().contains(&path.to_string()),
        "the Certificate is requested once"
    );
}

#[tokio::test]
async fn a_historian_waits_for_its_broker_identity_from_the_api() {
    let fake = FakeApiServer::new();
    let mut c = cluster(3);
    c.spec.historian = Some(
        serde_json::from_value(serde_json::json!({"databaseSecretRef": "historian-db"})).unwrap(),
    );
    fake.put(&c);
    let secret = |name: &str| Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    fake.put(&secret("historian-db"));
    let ctx = context(&fake, Arc::default());
    reconcile_cluster(&fake, &ctx).await;
    let p = condition(&stored_cluster(&fake), "Progressing");
    assert_eq!(p.reason, "HistorianIdentityPending");
    assert!(p.message.contains("weir-historian-mqtt"), "{}", p.message);
    // The api wrote it: nothing to wait for.
    fake.put(&secret("weir-historian-mqtt"));
    reconcile_cluster(&fake, &ctx).await;
    let p = condition(&stored_cluster(&fake), "Progressing");
    assert_ne!(p.reason, "HistorianIdentityPending");
}

#[tokio::test]
async fn quota_exceeded_is_reported_from_the_statefulset_events() {
    use k8s_openapi::api::core::v1::{Event, ObjectReference};
    let (fake, ctx, _emqx, _) = steady_cluster(3).await;
    fake.remove::<Pod>(Some(NS), "riverside-mqtt-2");
    fake.put(&Event {
        metadata: ObjectMeta { name: Some("riverside-mqtt.1".into()), namespace: Some(NS.into()), ..Default::default() },
        involved_object: ObjectReference {
            kind: Some("StatefulSet".into()),
            name: Some("riverside-mqtt".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        reason: Some("FailedCreate".into()),
        message: Some("create Pod riverside-mqtt-2 in StatefulSet riverside-mqtt failed error: pods \"riverside-mqtt-2\" is forbidden: exceeded quota: weir-quota, requested: limits.memory=1Gi, used: limits.memory=16Gi, limited: limits.memory=16Gi".into()),
        ..Default::default()
    });
    reconcile_cluster(&fake, &ctx).await;
    let d = condition(&stored_cluster(&fake), "Degraded");
    assert_eq!(d.reason, "PodCreationFailed");
    assert!(
        d.message.contains("exceeded quota: weir-quota"),
        "{}",
        d.message
    );
}
