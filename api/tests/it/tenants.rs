//! Kubernetes-managed organizations: applying a Tenant's desired state to the
//! database (the watch itself needs a cluster; the mapping is pure and
//! unit-tested in `tenants_sync`).

use crate::common;

use common::{Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;
use weir_api::tenants_sync::{apply, desired_org, remove};
use weir_crds::tenant::{AdminKind, Tenant, TenantAdmin, TenantSpec};

fn tenant(admins: Vec<(AdminKind, &str)>) -> Tenant {
    Tenant::new(
        "riverside-water",
        TenantSpec {
            display_name: "Riverside Water".into(),
            admins: admins
                .into_iter()
                .map(|(kind, n)| TenantAdmin {
                    kind,
                    name: n.into(),
                })
                .collect(),
            quota: Default::default(),
            network_isolation: true,
            cascade_delete: false,
        },
    )
}

async fn tenant_becomes_a_managed_org(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    let (_, ops) = app.user(&admin, "ops@riverside.test").await;
    let st = app.running.state.clone();

    let t = tenant(vec![
        (AdminKind::Email, "ops@riverside.test"),
        (AdminKind::Email, "later@riverside.test"),
        (AdminKind::Group, "riverside-admins"),
    ]);
    apply(&st, &desired_org(&t).unwrap()).await.unwrap();
    let r = app.get("/api/v1/orgs/riverside-water", &ops).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["managed_by"], "kubernetes");
    let members = app.get("/api/v1/orgs/riverside-water/members", &ops).await;
    assert_eq!(members.body[0]["role"], "org-admin");
    assert_eq!(members.body[0]["source"], "kubernetes");
    let inv = app
        .get("/api/v1/orgs/riverside-water/invitations", &ops)
        .await;
    assert_eq!(
        inv.body[0]["email"], "later@riverside.test",
        "unknown admins are invited"
    );
    let maps = app
        .get("/api/v1/orgs/riverside-water/sso/group-mappings", &ops)
        .await;
    assert_eq!(maps.body["mappings"][0]["group"], "riverside-admins");
    assert_eq!(maps.body["mappings"][0]["source"], "kubernetes");
    // Deleting through the api is refused: the Tenant owns it.
    let r = app
        .call(Method::DELETE, "/api/v1/orgs/riverside-water", &admin, None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // The admin leaves the Tenant: the role the sync gave is taken back.
    apply(&st, &desired_org(&tenant(vec![])).unwrap())
        .await
        .unwrap();
    assert_eq!(
        app.get("/api/v1/orgs/riverside-water", &ops).await.status,
        StatusCode::NOT_FOUND
    );

    // The Tenant is deleted: so is the org.
    assert!(remove(&st, "riverside-water").await.unwrap());
    let r = app.get("/api/v1/orgs", &admin).await;
    assert_eq!(r.body, json!([]));
    app.stop().await;
}
on_both_databases!(
    tenant_becomes_a_managed_org,
    super::tenant_becomes_a_managed_org
);
