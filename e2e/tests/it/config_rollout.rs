//! Scenario 1: two agents enroll with real tokens, run their signed configs
//! and publish readings; a change of a gateway's rules in the api reaches
//! both within 5 s.

use std::time::{Duration, Instant};

use serde_json::json;
use weir_e2e::api::{start_api, ADMIN_EMAIL, ADMIN_PASSWORD};
use weir_e2e::fleet::{
    gateway_with_token, rollout, seed_project, simulated_spec, start_agent, wait_applied,
};
use weir_e2e::{broker, ApiClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_apply_a_rule_change_within_five_seconds() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = broker().await;
    let (_api, base_url) = start_api(dir.path(), None).await?;
    let admin = ApiClient::login(&base_url, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let base = seed_project(&admin, "riverside", "north-plant", &broker.url()).await?;

    // Readings must reach the broker under the gateway's topics.
    let (client, mut events) = rumqttc::AsyncClient::new(
        rumqttc::MqttOptions::new("e2e-watch", "127.0.0.1", broker.port),
        100,
    );
    client
        .subscribe("weir/riverside/#", rumqttc::QoS::AtLeastOnce)
        .await?;

    let mut agents = Vec::new();
    for gw in ["filtration", "chlorination"] {
        let token =
            gateway_with_token(&admin, &base, gw, simulated_spec(&["level", "flow"], 200)).await?;
        agents.push(start_agent(dir.path(), gw, &base_url, Some(&token))?);
    }
    let mut first = Vec::new();
    for gw in ["filtration", "chlorination"] {
        first.push(wait_applied(&admin, &base, gw, Duration::from_secs(60)).await?);
    }

    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 2 && Instant::now() < deadline {
        if let Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) =
            tokio::time::timeout(Duration::from_secs(1), events.poll()).await
        {
            let msg: weir_crds::message::UplinkMessage = serde_json::from_slice(&p.payload)?;
            assert!(!msg.frames.is_empty());
            seen.insert(p.topic.split('/').nth(2).unwrap_or_default().to_string());
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "readings from both gateways reach the broker: {seen:?}"
    );

    // Change the rules of both gateways: add a deadband pipeline.
    let started = Instant::now();
    for gw in ["filtration", "chlorination"] {
        let mut spec = simulated_spec(&["level", "flow"], 200);
        spec["pipelines"] = json!([{"name": "level-band", "select": {"device": "plc", "tag": "level"},
                                    "steps": [{"deadband": {"absolute": 0.5}}]}]);
        admin
            .ok(
                reqwest::Method::PATCH,
                &format!("{base}/gateways/{gw}"),
                Some(json!({"spec": spec, "comment": "deadband on level"})),
            )
            .await?;
    }
    for (i, gw) in ["filtration", "chlorination"].iter().enumerate() {
        let v = wait_applied(&admin, &base, gw, Duration::from_secs(10)).await?;
        assert!(v > first[i], "{gw}: version {v} is newer than {}", first[i]);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "both applied the new version in {took:?}"
    );
    for gw in ["filtration", "chlorination"] {
        let e = rollout(&admin, &base, gw).await?;
        assert_eq!(e["last_error"], serde_json::Value::Null, "{e}");
    }
    drop(agents);
    Ok(())
}
