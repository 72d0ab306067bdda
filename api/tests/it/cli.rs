//! The `weir-api` binary: `--help` documents every flag with its variable,
//! and `audit verify` names the first broken entry of a tampered chain.

use crate::common;

use std::process::Command;

use common::{Backend, TestApp};
use serde_json::json;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir-api"))
}

#[test]
fn help_lists_every_flag_with_its_variable() {
    let out = bin().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for var in [
        "WEIR_LISTEN",
        "WEIR_DATABASE_URL",
        "WEIR_BOOTSTRAP_ADMIN_EMAIL",
        "WEIR_BOOTSTRAP_ADMIN_PASSWORD",
        "WEIR_PUBLIC_URL",
        "WEIR_WEB_DIR",
        "WEIR_OIDC_ISSUER",
        "WEIR_OIDC_CLIENT_ID",
        "WEIR_OIDC_CLIENT_SECRET",
        "WEIR_LOGIN_MAX_FAILURES",
        "WEIR_LOGIN_LOCKOUT_SECS",
    ] {
        assert!(text.contains(var), "--help does not mention {var}:\n{text}");
    }
    assert!(text.contains("audit"), "{text}");
}

async fn audit_verify_names_the_broken_entry(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.post(
        "/api/v1/orgs",
        &admin,
        json!({"slug": "cli", "name": "Cli"}),
    )
    .await;
    for i in 0..3 {
        app.post(
            "/api/v1/orgs/cli/projects",
            &admin,
            json!({"slug": format!("p{i}"), "name": "P"}),
        )
        .await;
    }
    let url = app.db.url.clone();
    let run = |url: &str| {
        bin()
            .args(["audit", "verify"])
            .env("WEIR_DATABASE_URL", url)
            // The chain is keyed: checking it needs the api's master key.
            .env(
                "WEIR_MASTER_KEY",
                common::test_config(url).fleet.master_key.unwrap(),
            )
            .output()
            .unwrap()
    };
    let ok = run(&url);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("intact"));

    let r = app
        .get("/api/v1/orgs/cli/audit?action=project.create", &admin)
        .await;
    let seq = r.body["items"][1]["seq"].as_i64().unwrap();
    use sea_orm::ConnectionTrait;
    app.running
        .state
        .db
        .execute_unprepared(&format!(
            "UPDATE audit_log SET outcome = 'failure' WHERE seq = {seq}"
        ))
        .await
        .unwrap();
    let bad = run(&url);
    let text = String::from_utf8_lossy(&bad.stdout).to_string();
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("entry {seq}")), "{text}");
    app.stop().await;
}
on_both_databases!(
    audit_verify_names_the_broken_entry,
    super::audit_verify_names_the_broken_entry
);
