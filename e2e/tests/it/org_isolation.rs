//! Scenario 4: a user of organization A cannot see or touch anything of
//! organization B through any endpoint of the OpenAPI document, and gets the
//! same answer whether B's objects exist or not.

use reqwest::Method;
use serde_json::json;
use weir_e2e::api::{start_api, ADMIN_EMAIL, ADMIN_PASSWORD};
use weir_e2e::ApiClient;

const PASSWORD: &str = "isolation-Password-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_of_one_org_never_reaches_another() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_api, base) = start_api(dir.path(), None).await?;
    let admin = ApiClient::login(&base, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    for (email, name) in [("alice@a.example", "Alice"), ("bob@b.example", "Bob")] {
        admin
            .post(
                "/api/v1/users",
                json!({"email": email, "name": name, "password": PASSWORD}),
            )
            .await?;
    }
    admin
        .post(
            "/api/v1/orgs",
            json!({"slug": "org-a", "name": "A Water", "owner_email": "alice@a.example"}),
        )
        .await?;
    admin
        .post(
            "/api/v1/orgs",
            json!({"slug": "org-b", "name": "B Water", "owner_email": "bob@b.example"}),
        )
        .await?;

    let bob = ApiClient::login(&base, "bob@b.example", PASSWORD).await?;
    bob.post(
        "/api/v1/orgs/org-b/projects",
        json!({"slug": "plant-b", "name": "Plant B"}),
    )
    .await?;
    let spec = json!({"devices": [{"name": "sim", "adapter": "simulator", "groups": [{"name": "g", "intervalMs": 1000,
        "tags": [{"name": "level", "address": "sim", "dataType": "float64", "signal": {"kind": "sine"}}]}]}]});
    bob.post(
        "/api/v1/orgs/org-b/projects/plant-b/gateways",
        json!({"name": "gw-b", "spec": spec, "comment": "first"}),
    )
    .await?;
    let before = bob
        .get("/api/v1/orgs/org-b/projects/plant-b/gateways/gw-b")
        .await?;

    let alice = ApiClient::login(&base, "alice@a.example", PASSWORD).await?;
    let doc = alice.get("/api/v1/openapi.json").await?;
    let paths = doc["paths"]
        .as_object()
        .expect("paths in the OpenAPI document");

    let mut checked = 0;
    let mut leaks = Vec::new();
    for (path, item) in paths {
        if !path.contains("{org}") {
            continue;
        }
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes())?;
            let real = fill(path, "org-b", "plant-b", "gw-b");
            let ghost = fill(path, "org-zz", "plant-zz", "gw-zz");
            let body = (m != Method::GET && m != Method::DELETE).then(|| json!({}));
            let (s_real, b_real) = alice.call(m.clone(), &real, body.clone()).await?;
            let (s_ghost, _) = alice.call(m.clone(), &ghost, body).await?;
            checked += 1;
            if s_real.is_success() || s_real != s_ghost {
                leaks.push(format!(
                    "{method} {real}: {s_real} (nonexistent: {s_ghost}) {b_real}"
                ));
            }
        }
    }
    assert!(
        checked >= 30,
        "expected to check the org routes, checked {checked}"
    );
    assert!(
        leaks.is_empty(),
        "organization B leaked to a user of A:\n{}",
        leaks.join("\n")
    );

    // Nothing of B changed.
    let after = bob
        .get("/api/v1/orgs/org-b/projects/plant-b/gateways/gw-b")
        .await?;
    assert_eq!(before, after);
    let orgs = alice.get("/api/v1/orgs").await?;
    assert!(
        !orgs.to_string().contains("org-b"),
        "A's org list shows B: {orgs}"
    );
    Ok(())
}

fn fill(path: &str, org: &str, project: &str, gateway: &str) -> String {
    let uuid = "00000000-0000-4000-8000-000000000001";
    path.replace("{org}", org)
        .replace("{project}", project)
        .replace("{gateway}", gateway)
        .replace("{cluster}", "local-broker")
        .replace("{template}", "tpl")
        .replace("{version}", "1")
        .replace("{user}", uuid)
        .replace("{token}", uuid)
        .replace("{invitation}", uuid)
        .replace("{id}", uuid)
}
