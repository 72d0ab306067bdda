//! Issue 18: the audit chain is keyed (someone who can write the database
//! but lacks the master key cannot rewrite history and recompute the
//! chain), entries from before the upgrade still verify, and a signed
//! checkpoint of the head catches deleted newest entries — over HTTP
//! (`GET /api/v1/audit/checkpoint`, `POST /api/v1/audit/verify`) and with
//! the CLI (`weir-api audit checkpoint`, `audit verify --checkpoint`).

use crate::common;

use std::process::{Command, Output};

use base64::Engine as _;
use common::{Backend, Cred, TestApp};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, QueryOrder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use weir_api::db::entities::audit_entry;

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Some audited changes: an org and three projects.
async fn make_history(app: &TestApp, admin: &Cred) {
    app.post_ok("/api/v1/orgs", admin, json!({"slug": "aud", "name": "Aud"}))
        .await;
    for i in 0..3 {
        app.post_ok(
            "/api/v1/orgs/aud/projects",
            admin,
            json!({"slug": format!("p{i}"), "name": "P"}),
        )
        .await;
    }
}

async fn rows(db: &DatabaseConnection) -> Vec<audit_entry::Model> {
    audit_entry::Entity::find()
        .order_by_asc(audit_entry::Column::Seq)
        .all(db)
        .await
        .unwrap()
}

/// What a forger with database access but no key does: rewrite entries
/// from `from` on (`edit`), and recompute every hash after it with plain
/// SHA-256 over the same content, re-linking the chain. On the unkeyed
/// chain this went unnoticed.
async fn forge_from(
    db: &DatabaseConnection,
    from: i64,
    mac: Option<&str>,
    edit: impl Fn(&mut audit_entry::Model),
) {
    let mut prev: Option<String> = None;
    for mut m in rows(db).await.into_iter().filter(|m| m.seq >= from) {
        if m.seq == from {
            edit(&mut m);
        }
        if let Some(p) = prev {
            m.prev_hash = p;
        }
        let hash = hex::encode(Sha256::digest(
            weir_api::audit::chain::content(&m).as_bytes(),
        ));
        let set_mac = mac.map(|v| format!(", mac = '{v}'")).unwrap_or_default();
        db.execute_unprepared(&format!(
            "UPDATE audit_log SET target = '{}', prev_hash = '{}', hash = '{hash}'{set_mac} \
             WHERE seq = {}",
            m.target, m.prev_hash, m.seq
        ))
        .await
        .unwrap();
        prev = Some(hash);
    }
}

async fn verify(app: &TestApp, admin: &Cred, body: Option<Value>) -> common::Resp {
    app.call(reqwest::Method::POST, "/api/v1/audit/verify", admin, body)
        .await
}

async fn keyed_chain_defeats_a_forger_without_the_key(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    make_history(&app, &admin).await;
    let r = verify(&app, &admin, None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["intact"], true, "{:?}", r.body);
    assert_eq!(r.body["legacy_entries"], 0);
    let n = r.body["entries"].as_u64().unwrap();
    assert!(n >= 5, "{n}");
    assert!(r.body.get("broken_at").is_none(), "{:?}", r.body);
    // `null` and `{}` mean the same as no body.
    for body in [json!(null), json!({})] {
        let r = verify(&app, &admin, Some(body)).await;
        assert_eq!(r.body["intact"], true, "{:?}", r.body);
    }

    let db = &app.running.state.db;
    let victim = rows(db)
        .await
        .into_iter()
        .find(|m| m.action == "project.create")
        .unwrap()
        .seq;
    forge_from(db, victim, None, |m| m.target = "project:aud/forged".into()).await;
    let r = verify(&app, &admin, None).await;
    assert_eq!(r.body["intact"], false, "forger won: {:?}", r.body);
    assert_eq!(r.body["broken_at"], victim, "{:?}", r.body);
    assert!(
        r.body["reason"].as_str().unwrap().contains("keyed hash"),
        "{:?}",
        r.body
    );
    // The library check the CLI uses agrees.
    match weir_api::audit::verify(db).await.unwrap() {
        weir_api::audit::Verdict::Broken { seq, .. } => assert_eq!(seq, victim),
        other => panic!("forger won: {other:?}"),
    }

    // A smarter forger also labels the rewritten entries as pre-upgrade.
    forge_from(db, victim, Some("sha256"), |m| {
        m.target = "project:aud/x".into()
    })
    .await;
    let r = verify(&app, &admin, None).await;
    assert_eq!(r.body["intact"], false, "forger won: {:?}", r.body);
    assert_eq!(r.body["broken_at"], victim);
    assert!(
        r.body["reason"].as_str().unwrap().contains("unkeyed"),
        "{:?}",
        r.body
    );
    app.stop().await;
}
on_both_databases!(
    keyed_chain_defeats_a_forger_without_the_key,
    super::keyed_chain_defeats_a_forger_without_the_key
);

async fn entries_from_before_the_upgrade_still_verify(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    make_history(&app, &admin).await;
    let db = &app.running.state.db;
    // What an older version wrote: plain SHA-256 entries, `mac` defaulted
    // by the migration.
    forge_from(db, 1, Some("sha256"), |_| {}).await;
    let old = rows(db).await.len() as u64;
    let r = verify(&app, &admin, None).await;
    assert_eq!(r.body["intact"], true, "{:?}", r.body);
    assert_eq!(r.body["legacy_entries"], old);

    // New entries are keyed and chain onto the old ones.
    app.post_ok(
        "/api/v1/orgs/aud/projects",
        &admin,
        json!({"slug": "after", "name": "After"}),
    )
    .await;
    let last = rows(db).await.pop().unwrap();
    assert_eq!(last.mac, "hmac-sha256");
    let r = verify(&app, &admin, None).await;
    assert_eq!(r.body["intact"], true, "{:?}", r.body);
    assert_eq!(r.body["legacy_entries"], old);
    assert_eq!(r.body["entries"], old + 1);

    // An old entry altered behind the api's back is still caught.
    db.execute_unprepared("UPDATE audit_log SET outcome = 'failure' WHERE seq = 2")
        .await
        .unwrap();
    let r = verify(&app, &admin, None).await;
    assert_eq!(r.body["intact"], false, "{:?}", r.body);
    assert_eq!(r.body["broken_at"], 2);
    app.stop().await;
}
on_both_databases!(
    entries_from_before_the_upgrade_still_verify,
    super::entries_from_before_the_upgrade_still_verify
);

fn flip_signature(cp: &Value) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut sig = b64.decode(cp["signature"].as_str().unwrap()).unwrap();
    sig[5] ^= 0x01;
    let mut bad = cp.clone();
    bad["signature"] = json!(b64.encode(sig));
    bad
}

async fn checkpoint_detects_deleted_newest_entries(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    make_history(&app, &admin).await;
    let cp = app.get_ok("/api/v1/audit/checkpoint", &admin).await;
    let seq = cp["seq"].as_i64().unwrap();
    assert!(seq >= 5, "{cp}");
    assert_eq!(cp["entries"], seq);
    assert_eq!(cp["hash"].as_str().unwrap().len(), 64);
    for f in ["at", "public_key", "signature"] {
        assert!(cp[f].is_string(), "{f}: {cp}");
    }
    // Verifying (and checkpointing) is a read: it adds no entry.
    let r = verify(&app, &admin, Some(json!({"checkpoint": cp}))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["intact"], true, "{:?}", r.body);
    assert_eq!(r.body["entries"], seq);

    // Delete the two newest entries.
    let db = &app.running.state.db;
    db.execute_unprepared(&format!("DELETE FROM audit_log WHERE seq > {}", seq - 2))
        .await
        .unwrap();
    // The chain alone cannot tell...
    let r = verify(&app, &admin, None).await;
    assert_eq!(r.body["intact"], true, "{:?}", r.body);
    // ... the checkpoint can.
    let r = verify(&app, &admin, Some(json!({"checkpoint": cp}))).await;
    assert_eq!(r.body["intact"], false, "truncation missed: {:?}", r.body);
    assert_eq!(r.body["broken_at"], seq);
    assert_eq!(
        r.body["reason"],
        format!(
            "TRUNCATED: the checkpoint at entry {seq} is missing (chain ends at {})",
            seq - 2
        )
    );

    // A checkpoint with a flipped signature byte is refused, naming the field.
    let r = verify(
        &app,
        &admin,
        Some(json!({"checkpoint": flip_signature(&cp)})),
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "checkpoint.signature");
    // So is one moved to another entry, or with unknown fields.
    let mut moved = cp.clone();
    moved["seq"] = json!(seq - 3);
    moved["entries"] = json!(seq - 3);
    let r = verify(&app, &admin, Some(json!({"checkpoint": moved}))).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let r = verify(&app, &admin, Some(json!({"checkpoint": cp, "x": 1}))).await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    // Rewriting the whole history as "pre-upgrade" entries contradicts the checkpoint.
    app.post_ok(
        "/api/v1/orgs/aud/projects",
        &admin,
        json!({"slug": "p9", "name": "P"}),
    )
    .await;
    let cp = app.get_ok("/api/v1/audit/checkpoint", &admin).await;
    forge_from(db, 1, Some("sha256"), |_| {}).await;
    let r = verify(&app, &admin, Some(json!({"checkpoint": cp}))).await;
    assert_eq!(r.body["intact"], false, "{:?}", r.body);
    assert_eq!(r.body["broken_at"], cp["seq"]);

    // Only system administrators verify; signed out is 401.
    let r = verify(&app, &Cred::None, None).await;
    assert_eq!(r.status, 401);
    let (_, user) = app.user(&admin, "someone@weir.test").await;
    assert_eq!(verify(&app, &user, None).await.status, 403);
    assert_eq!(app.get("/api/v1/audit/checkpoint", &user).await.status, 403);
    app.stop().await;
}
on_both_databases!(
    checkpoint_detects_deleted_newest_entries,
    super::checkpoint_detects_deleted_newest_entries
);

fn cli(url: &str, key: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir-api"));
    c.args(args)
        .env("WEIR_DATABASE_URL", url)
        .env_remove("WEIR_MASTER_KEY");
    if let Some(k) = key {
        c.env("WEIR_MASTER_KEY", k);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn cli_checkpoint_and_verify(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    make_history(&app, &admin).await;
    let url = app.db.url.clone();
    let dir = tempfile::tempdir().unwrap();

    let out = cli(&url, Some(KEY), &["audit", "checkpoint"]);
    assert!(out.status.success(), "{}", text(&out));
    let cp: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Same key, same signer as the api's checkpoints.
    let api_cp = app.get_ok("/api/v1/audit/checkpoint", &admin).await;
    assert_eq!(cp["public_key"], api_cp["public_key"]);
    let file = dir.path().join("checkpoint.json");
    std::fs::write(&file, &out.stdout).unwrap();
    let file = file.to_str().unwrap();

    let ok = cli(&url, Some(KEY), &["audit", "verify", "--checkpoint", file]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("intact"), "{}", text(&ok));

    // Keyed entries cannot be checked without the key: not "intact".
    let nokey = cli(&url, None, &["audit", "verify"]);
    assert_eq!(nokey.status.code(), Some(2), "{}", text(&nokey));
    assert!(text(&nokey).contains("WEIR_MASTER_KEY"), "{}", text(&nokey));
    // Nor with another key.
    let other = "ff".repeat(32);
    let wrong = cli(&url, Some(&other), &["audit", "verify"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("BROKEN at entry 1"),
        "{}",
        text(&wrong)
    );

    let seq = cp["seq"].as_i64().unwrap();
    app.running
        .state
        .db
        .execute_unprepared(&format!("DELETE FROM audit_log WHERE seq > {}", seq - 2))
        .await
        .unwrap();
    let cut = cli(&url, Some(KEY), &["audit", "verify", "--checkpoint", file]);
    assert_eq!(cut.status.code(), Some(1), "{}", text(&cut));
    assert!(
        text(&cut).contains(&format!(
            "TRUNCATED: the checkpoint at entry {seq} is missing (chain ends at {})",
            seq - 2
        )),
        "{}",
        text(&cut)
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, flip_signature(&cp).to_string()).unwrap();
    let out = cli(
        &url,
        Some(KEY),
        &["audit", "verify", "--checkpoint", bad.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("REFUSED"), "{}", text(&out));
    assert!(text(&out).contains("signature"), "{}", text(&out));
    app.stop().await;
}
on_both_databases!(cli_checkpoint_and_verify, super::cli_checkpoint_and_verify);
