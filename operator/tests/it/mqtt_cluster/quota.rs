//! The tenant's connection quota, enforced as EMQX listener limits.

use weir_crds::{MqttCluster, Tenant};
use weir_operator::testing::FakeApiServer;

use super::*;
use crate::support::*;
use crate::tenant::tenant;

fn tenant_with_connections(max: u32) -> Tenant {
    let mut t = tenant();
    t.spec.quota.max_mqtt_connections = max;
    t
}

#[tokio::test]
async fn tenant_connection_quota_is_enforced_as_listener_limits() {
    let fake = FakeApiServer::new();
    fake.put(&tenant_with_connections(9000));
    let (fake, ctx, emqx, _) = steady_cluster_in(fake, 3).await;
    // One cluster of 3 nodes with one listener: 3000 per node.
    assert!(
        emqx_conf(&fake).ends_with("listeners.tcp.mqtt.max_connections = 3000\n"),
        "{}",
        emqx_conf(&fake)
    );
    let limit = stored_cluster(&fake)
        .status
        .clone()
        .unwrap()
        .connection_limit
        .expect("status.connectionLimit");
    assert_eq!(
        (
            limit.tenant_quota,
            limit.tenant_nodes,
            limit.per_listener,
            limit.cluster_max
        ),
        (9000, 3, 3000, 9000)
    );

    // A second cluster of the tenant takes its share: running nodes get the
    // new limit through EMQX's config API, without a restart.
    let mut other = cluster(3);
    other.metadata.name = Some("backup-mqtt".into());
    fake.put(&other);
    let before = sts(&fake);
    reconcile_cluster(&fake, &ctx).await;
    let pushed = emqx.with(|s| s.configs.clone());
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert!(
        pushed[0].contains("listeners.tcp.mqtt.max_connections = 1500\n"),
        "{}",
        pushed[0]
    );
    assert!(emqx_conf(&fake).ends_with("listeners.tcp.mqtt.max_connections = 1500\n"));
    assert_eq!(
        sts(&fake).spec,
        before.spec,
        "a new limit never restarts nodes"
    );
    let limit = stored_cluster(&fake)
        .status
        .clone()
        .unwrap()
        .connection_limit
        .unwrap();
    assert_eq!(
        (limit.tenant_nodes, limit.per_listener, limit.cluster_max),
        (6, 1500, 4500)
    );

    // spec.config cannot raise the limit; it may lower it.
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.config.insert(
            "listeners.tcp.mqtt.max_connections".into(),
            "infinity".into(),
        );
    });
    reconcile_cluster(&fake, &ctx).await;
    assert!(emqx_conf(&fake).ends_with("listeners.tcp.mqtt.max_connections = 1500\n"));
    let pushed = emqx.with(|s| s.configs.last().cloned()).unwrap_or_default();
    assert!(
        pushed.ends_with("listeners.tcp.mqtt.max_connections = 1500\n"),
        "{pushed}"
    );
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec
            .config
            .insert("listeners.tcp.mqtt.max_connections".into(), "100".into());
    });
    reconcile_cluster(&fake, &ctx).await;
    assert!(emqx_conf(&fake).ends_with("listeners.tcp.mqtt.max_connections = 100\n"));

    // The platform admin raises the quota.
    fake.edit::<Tenant, _>(None, "riverside-water", |t| {
        t.spec.quota.max_mqtt_connections = 60_000
    });
    fake.edit::<MqttCluster, _>(Some(NS), "riverside-mqtt", |c| {
        c.spec.config.clear();
    });
    reconcile_cluster(&fake, &ctx).await;
    assert!(emqx_conf(&fake).ends_with("listeners.tcp.mqtt.max_connections = 10000\n"));
    let pushed = emqx.with(|s| s.configs.last().cloned()).unwrap_or_default();
    assert!(
        pushed.ends_with("listeners.tcp.mqtt.max_connections = 10000\n"),
        "{pushed}"
    );
    // Then nothing more to do.
    let applied = emqx.with(|s| s.configs.len());
    assert_steady(&fake, reconcile_cluster(&fake, &ctx)).await;
    assert_eq!(emqx.with(|s| s.configs.len()), applied);
}
