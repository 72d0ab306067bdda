//! The Kubernetes watch's database half: MqttClusters and EdgeGateways
//! (as a `kubectl apply` leaves them) mirrored into clusters and gateways
//! of the label's project, a kubectl change as a new version by
//! "kubernetes", the api's own applies not imported back, deletions and the
//! prune after a full list. The watch and the token Secret need a cluster:
//! e2e/k8s scenarios kubectl-gateway-enrolls and api-sees-kubectl-objects.

use std::collections::HashSet;

use crate::common;

use common::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use weir_api::fleet::kube_sync::{clusters, gateways, mapping};
use weir_api::tenants_sync::{apply, desired_org};
use weir_crds::tenant::{Tenant, TenantSpec};
use weir_crds::{EdgeGateway, MqttCluster};

fn gateway(name: &str, project: Option<&str>, site: &str, by_api: bool) -> EdgeGateway {
    let mut meta = json!({"name": name, "namespace": "weir-riverside"});
    if let Some(p) = project {
        meta["labels"] = json!({"weir.dev/project": p});
    }
    if by_api {
        meta["managedFields"] = json!([{"manager": "weir-api", "operation": "Apply",
            "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]);
    }
    serde_json::from_value(json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "EdgeGateway", "metadata": meta,
        "spec": {"site": {"name": site}, "mode": "external", "clusterRef": "main"},
    }))
    .unwrap()
}

async fn versions(app: &TestApp, tok: &common::Cred, path: &str) -> Vec<(i64, String)> {
    let r = app.get(&format!("{path}/versions"), tok).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .map(|v: &Value| {
            (
                v["version"].as_i64().unwrap(),
                v["author"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn kubectl_objects_become_clusters_and_gateways(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    let st = app.running.state.clone();
    let t = Tenant::new(
        "riverside",
        TenantSpec {
            display_name: "Riverside".into(),
            admins: vec![],
            quota: Default::default(),
            network_isolation: true,
            cascade_delete: false,
        },
    );
    apply(&st, &desired_org(&t).unwrap()).await.unwrap();

    // The cluster first: the gateway names it.
    let c: MqttCluster = serde_json::from_value(json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "MqttCluster",
        "metadata": {"name": "main", "namespace": "weir-riverside", "labels": {"weir.dev/project": "north"}},
        "spec": {"replicas": 3},
        "status": {"phase": "Ready", "endpoints": ["mqtt://main-mqtt.weir-riverside.svc:1883"]},
    }))
    .unwrap();
    let (d, status) = mapping::desired_cluster(&c).unwrap();
    assert!(clusters::upsert(&st, &d, &status).await.unwrap());
    let r = app
        .get(
            "/api/v1/orgs/riverside/projects/north/clusters/main",
            &admin,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the label's project was made: {:?}",
        r.body
    );
    assert_eq!(r.body["backend"], "kubernetes");
    assert_eq!(r.body["spec"]["replicas"], 3);
    assert_eq!(
        r.body["endpoints"][0],
        "mqtt://main-mqtt.weir-riverside.svc:1883"
    );

    // A gateway applied with kubectl: version 1 by kubernetes.
    let path = "/api/v1/orgs/riverside/projects/north/gateways/pump-1";
    let d = mapping::desired_gateway(&gateway("pump-1", Some("north"), "Pump 1", false)).unwrap();
    gateways::upsert(&st, &d)
        .await
        .unwrap()
        .expect("the org exists");
    let r = app.get(path, &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["cluster"], "main");
    assert_eq!(r.body["spec"]["site"]["name"], "Pump 1");
    assert_eq!(
        versions(&app, &admin, path).await,
        vec![(1, "kubernetes".into())]
    );

    // The same object again (every pass of the watch): nothing new.
    gateways::upsert(&st, &d).await.unwrap();
    assert_eq!(versions(&app, &admin, path).await.len(), 1);

    // An edit through the api is version 2; the watch then sees the api's
    // own apply (and, in a race, an older spec by the api): no version.
    let r = app
        .call(
            reqwest::Method::PATCH,
            path,
            &admin,
            Some(json!({"merge_patch": {"site": {"name": "Pump 1 (api)"}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    for site in ["Pump 1 (api)", "Pump 1"] {
        let d = mapping::desired_gateway(&gateway("pump-1", Some("north"), site, true)).unwrap();
        gateways::upsert(&st, &d).await.unwrap();
    }
    assert_eq!(versions(&app, &admin, path).await.len(), 2);
    assert_eq!(
        app.get(path, &admin).await.body["spec"]["site"]["name"],
        "Pump 1 (api)"
    );

    // A kubectl change: version 3 by kubernetes, with its diff.
    let d = mapping::desired_gateway(&gateway("pump-1", Some("north"), "Pump 1 (kubectl)", false))
        .unwrap();
    gateways::upsert(&st, &d).await.unwrap();
    assert_eq!(
        versions(&app, &admin, path).await[0],
        (3, "kubernetes".into())
    );
    let diff = app.get(&format!("{path}/versions/3/diff"), &admin).await;
    assert_eq!(diff.body["changes"][0]["path"], "/site/name");

    // The operator signed its bundle 2 of generation 4 (status): the api's
    // latest bundle is that one, holding config version 3, as kubectl says.
    let mut signed = gateway("pump-1", Some("north"), "Pump 1 (kubectl)", false);
    signed.metadata.generation = Some(4);
    signed.status = Some(weir_crds::EdgeGatewayStatus {
        config_version: Some(2),
        observed_generation: Some(4),
        ..Default::default()
    });
    let row = gateways::upsert(&st, &mapping::desired_gateway(&signed).unwrap())
        .await
        .unwrap()
        .unwrap()
        .1;
    gateways::mirror_bundle(&st, &signed, row).await.unwrap();
    let r = app.get(path, &admin).await;
    assert_eq!(r.body["bundle_version"], 2, "{:?}", r.body);
    assert_eq!(r.body["version"], 3, "{:?}", r.body);

    // No label: project default (made when missing).
    let d = mapping::desired_gateway(&gateway("pump-2", None, "Pump 2", false)).unwrap();
    // Its cluster is north's, not shared with default: refused until it is.
    assert!(gateways::upsert(&st, &d).await.is_err());
    let mut gw = gateway("pump-2", None, "Pump 2", false);
    gw.spec.cluster_ref = None;
    gateways::upsert(&st, &mapping::desired_gateway(&gw).unwrap())
        .await
        .unwrap();
    let r = app
        .get(
            "/api/v1/orgs/riverside/projects/default/gateways/pump-2",
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // The label changes: the gateway moves (with its cluster, which south
    // may not use, refused until its clusterRef is dropped).
    let to_south = gateway("pump-1", Some("south"), "Pump 1 (kubectl)", false);
    let e = gateways::upsert(&st, &mapping::desired_gateway(&to_south).unwrap())
        .await
        .unwrap_err();
    assert!(format!("{e:?}").contains("spec.clusterRef"), "{e:?}");
    let mut to_south = to_south;
    to_south.spec.cluster_ref = None;
    gateways::upsert(&st, &mapping::desired_gateway(&to_south).unwrap())
        .await
        .unwrap();
    let south = "/api/v1/orgs/riverside/projects/south/gateways/pump-1";
    let r = app.get(south, &admin).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        versions(&app, &admin, south).await[0],
        (4, "kubernetes".into())
    );
    assert_eq!(app.get(path, &admin).await.status, StatusCode::NOT_FOUND);
    let back = gateway("pump-1", Some("north"), "Pump 1 (kubectl)", false);
    gateways::upsert(&st, &mapping::desired_gateway(&back).unwrap())
        .await
        .unwrap();
    assert_eq!(versions(&app, &admin, path).await[0].0, 5);

    // Deleted in Kubernetes: deleted in the api.
    assert!(gateways::remove(&st, "riverside", "pump-2").await.unwrap());
    assert_eq!(
        app.get(
            "/api/v1/orgs/riverside/projects/default/gateways/pump-2",
            &admin
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    // A full list that no longer has pump-1 leaves it while it is young
    // (the api may just have made it); the cluster likewise.
    gateways::prune(&st, &HashSet::new()).await.unwrap();
    clusters::prune(&st, &HashSet::new()).await.unwrap();
    assert_eq!(app.get(path, &admin).await.status, StatusCode::OK);
    assert!(clusters::remove(&st, "riverside", "main").await.unwrap());
    assert_eq!(
        app.get(
            "/api/v1/orgs/riverside/projects/north/clusters/main",
            &admin
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    // Its gateway stays, with its config.
    assert_eq!(
        app.get(path, &admin).await.body["spec"]["clusterRef"],
        "main"
    );

    // Older than a minute and not in the list: pruned; in the list: kept.
    use sea_orm::{sea_query::Expr, EntityTrait};
    use weir_api::fleet::entities::gateway as gw_row;
    gw_row::Entity::update_many()
        .col_expr(
            gw_row::Column::CreatedAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::minutes(2)),
        )
        .exec(&st.db)
        .await
        .unwrap();
    let live: HashSet<_> = [("riverside".to_string(), "pump-1".to_string())].into();
    gateways::prune(&st, &live).await.unwrap();
    assert_eq!(app.get(path, &admin).await.status, StatusCode::OK);
    gateways::prune(&st, &HashSet::new()).await.unwrap();
    assert_eq!(app.get(path, &admin).await.status, StatusCode::NOT_FOUND);

    // Audited as kubernetes.
    let audit = app
        .get("/api/v1/orgs/riverside/audit?limit=100", &admin)
        .await;
    let actions: Vec<(&str, &str)> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "kubernetes")
        .map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    for want in [
        ("cluster.import", "cluster:riverside/main"),
        ("gateway.import", "gateway:riverside/pump-1"),
        ("gateway.update", "gateway:riverside/pump-1"),
        ("gateway.delete", "gateway:riverside/pump-2"),
        ("gateway.move", "gateway:riverside/pump-1"),
        ("project.create", "project:riverside/north"),
    ] {
        assert!(actions.contains(&want), "{want:?} not in {actions:?}");
    }
    app.stop().await;
}
on_both_databases!(
    kubectl_objects_become_clusters_and_gateways,
    super::kubectl_objects_become_clusters_and_gateways
);
