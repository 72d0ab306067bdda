//! `spec.config`: runtime settings through EMQX's API, restart settings
//! by a rolling restart, refusals reported and retried.

use k8s_openapi::api::core::v1::ConfigMap;
use weir_crds::MqttCluster;

use super::*;
use crate::support::*;

#[tokio::test]
async fn a_removed_runtime_setting_is_reset_and_authentication_changes_reach_running_nodes() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    let before = sts(&fake);
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec
            .config
            .insert("mqtt.max_packet_size".into(), "\"2MB\"".into());
    });
    reconcile_cluster(&fake, &ctx).await;
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.config.clear();
        c.spec.authentication.jwks_url = Some("https://idp.example/jwks.json".into());
    });
    reconcile_cluster(&fake, &ctx).await;
    assert!(
        emqx.calls()
            .contains(&"POST /api/v5/configs_reset/mqtt?conf_path=max_packet_size".to_string()),
        "{:?}",
        emqx.calls()
    );
    let pushed = emqx.with(|s| s.configs.clone());
    assert_eq!(pushed.len(), 2, "{pushed:?}");
    assert!(
        pushed[1].contains("endpoint = \"https://idp.example/jwks.json\""),
        "{}",
        pushed[1]
    );
    assert!(!pushed[1].contains("max_packet_size"), "{}", pushed[1]);
    assert!(emqx_conf(&fake).contains("https://idp.example/jwks.json"));
    assert!(!emqx_conf(&fake).contains("max_packet_size"));
    assert_eq!(sts(&fake).spec, before.spec, "no restart for either");
}

#[tokio::test]
async fn runtime_config_change_is_applied_through_the_api_without_restart() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    let before = sts(&fake);
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec
            .config
            .insert("mqtt.max_packet_size".into(), "\"2MB\"".into());
    });
    reconcile_cluster(&fake, &ctx).await;
    assert!(emqx
        .calls()
        .contains(&"PUT /api/v5/configs?mode=merge".to_string()));
    let pushed = emqx.with(|s| s.configs.clone());
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert!(
        pushed[0].contains("mqtt.max_packet_size = \"2MB\"\n"),
        "{}",
        pushed[0]
    );
    let cm = fake
        .get::<ConfigMap>(Some(NS), "riverside-mqtt-config")
        .unwrap();
    assert!(cm.data.unwrap()["emqx.conf"].contains("mqtt.max_packet_size = \"2MB\""));
    assert_eq!(
        sts(&fake).spec,
        before.spec,
        "a runtime setting never restarts nodes"
    );
    assert_steady(&fake, reconcile_cluster(&fake, &ctx)).await;
    assert_eq!(emqx.with(|s| s.configs.len()), 1, "applied once");
}

#[tokio::test]
async fn restart_config_change_rolls_nodes_one_at_a_time() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec
            .config
            .insert("node.process_limit".into(), "4194304".into());
    });
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(partition(&sts(&fake)), 2);
    assert!(!emqx
        .calls()
        .iter()
        .any(|c| c.starts_with("PUT /api/v5/configs")));
}

#[tokio::test]
async fn rejected_config_is_reported_and_retried() {
    let (fake, ctx, emqx, _) = steady_cluster(3).await;
    emqx.with(|s| s.config_error = Some("mqtt.max_packet_size: bad_size".into()));
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec
            .config
            .insert("mqtt.max_packet_size".into(), "lots".into());
    });
    reconcile_cluster(&fake, &ctx).await;
    let d = condition(&stored_cluster(&fake), "Degraded");
    assert_eq!(d.reason, "ConfigRejected");
    assert!(d.message.contains("bad_size"), "{}", d.message);
    let cm = fake
        .get::<ConfigMap>(Some(NS), "riverside-mqtt-config")
        .unwrap();
    assert!(
        !cm.data.unwrap()["emqx.conf"].contains("lots"),
        "the file keeps the last good config"
    );
    emqx.with(|s| s.config_error = None);
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec
            .config
            .insert("mqtt.max_packet_size".into(), "\"1MB\"".into());
    });
    reconcile_cluster(&fake, &ctx).await;
    assert_eq!(
        stored_cluster(&fake)
            .status
            .as_ref()
            .unwrap()
            .phase
            .as_deref(),
        Some("Ready")
    );
}
