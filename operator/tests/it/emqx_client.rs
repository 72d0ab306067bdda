//! The EMQX API client against a mock EMQX speaking its documented shapes.

use weir_operator::emqx::{ApiKey, EmqxClient, EmqxCluster, EmqxError, EvacuationRequest};
use weir_operator::testing::emqx::{node, MockEmqx};

fn key(secret: &str) -> ApiKey {
    ApiKey {
        key: "k".into(),
        secret: secret.into(),
    }
}

#[tokio::test]
async fn reads_nodes_in_emqx_documented_shape() {
    // A response as EMQX 5.8 documents it, with fields we do not use.
    let body = r#"[{"node":"emqx@10.0.0.1","node_status":"running","version":"5.8.6","uptime":1200,
        "connections":12,"live_connections":11,"otp_release":"26.2.5-3","role":"core",
        "memory_total":"0","memory_used":"0","process_available":2097152,"process_used":400,
        "max_fds":1048576,"load1":0.1,"load5":0.1,"load15":0.1,"sys_path":"/opt/emqx","log_path":"/opt/emqx/log","edition":"Opensource"}]"#;
    let nodes: Vec<weir_operator::emqx::Node> = serde_json::from_str(body).unwrap();
    assert_eq!(
        (
            nodes[0].node.as_str(),
            nodes[0].running(),
            nodes[0].connections
        ),
        ("emqx@10.0.0.1", true, 12)
    );

    let mock = MockEmqx::start(vec![node("emqx@a", "5.8.6", 3)], "k", "s").await;
    let client = EmqxClient::new(
        weir_operator::emqx::http_client(),
        mock.url.clone(),
        key("s"),
    );
    assert_eq!(client.nodes().await.unwrap()[0].node, "emqx@a");
    // Wrong secret: refused with EMQX's code, and the secret is not in the message.
    let bad = EmqxClient::new(
        weir_operator::emqx::http_client(),
        mock.url.clone(),
        key("wrong"),
    );
    let err = bad.nodes().await.unwrap_err();
    assert!(
        matches!(err, EmqxError::Refused { status: 401, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("BAD_API_KEY_OR_SECRET") && !err.to_string().contains("wrong")
    );
    assert!(
        !format!("{:?}", key("topsecret")).contains("topsecret"),
        "Debug never shows the secret"
    );
}

#[tokio::test]
async fn evacuation_and_missing_feature() {
    let mock = MockEmqx::start(
        vec![node("emqx@a", "5.8.6", 3), node("emqx@b", "5.8.6", 0)],
        "k",
        "s",
    )
    .await;
    let client = EmqxClient::new(
        weir_operator::emqx::http_client(),
        mock.url.clone(),
        key("s"),
    );
    let req = EvacuationRequest {
        conn_evict_rate: 10,
        sess_evict_rate: 10,
        wait_takeover: 1,
        migrate_to: vec!["emqx@b".into()],
    };
    // Open-source 5.8: the rebalance API does not exist.
    assert!(matches!(
        client.start_evacuation("emqx@a", &req).await,
        Err(EmqxError::NotAvailable(_))
    ));
    mock.with(|s| s.rebalance_available = true);
    client.start_evacuation("emqx@a", &req).await.unwrap();
    let status = client.rebalance_status().await.unwrap();
    assert_eq!(status.evacuations[0].node, "emqx@a");
    assert!(status.evacuations[0].drained());
    client
        .merge_config("mqtt.max_packet_size = \"1MB\"\n")
        .await
        .unwrap();
    assert_eq!(
        mock.with(|s| s.configs.clone()),
        vec!["mqtt.max_packet_size = \"1MB\"\n".to_string()]
    );
    client.force_leave("emqx@b").await.unwrap();
    assert_eq!(mock.with(|s| s.nodes.len()), 1);
}

#[tokio::test]
async fn cluster_calls_skip_unreachable_nodes_only() {
    let mock = MockEmqx::start(vec![node("emqx@a", "5.8.6", 0)], "k", "s").await;
    let http = weir_operator::emqx::http_client();
    let down = EmqxClient::new(http.clone(), "http://127.0.0.1:9", key("s"));
    let up = EmqxClient::new(http.clone(), mock.url.clone(), key("s"));
    let cluster = EmqxCluster {
        nodes: vec![down.clone(), up],
    };
    assert_eq!(
        cluster
            .call(|c| async move { c.nodes().await })
            .await
            .unwrap()
            .len(),
        1
    );
    let all_down = EmqxCluster { nodes: vec![down] };
    assert!(matches!(
        all_down.call(|c| async move { c.nodes().await }).await,
        Err(EmqxError::NoNodeAnswered { tried: 1 })
    ));
    // A refusal from EMQX is final: it is not retried on other nodes.
    let bad = EmqxCluster {
        nodes: vec![
            EmqxClient::new(http.clone(), mock.url.clone(), key("x")),
            EmqxClient::new(http, mock.url.clone(), key("s")),
        ],
    };
    assert!(matches!(
        bad.call(|c| async move { c.nodes().await }).await,
        Err(EmqxError::Refused { .. })
    ));
}
