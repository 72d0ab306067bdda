//! Device credentials end to end (issue 22), the real weir-api and
//! weir-agent binaries: the agent fetches the credential its config names
//! and keeps it 0600 in its data dir; a config change fetches the new one
//! and deletes the old copy; a credential the config does not name is
//! refused by the api; a credential replaced in the console reaches the
//! running agent by its periodic re-check; with the api down the kept copy
//! is used; the secrets appear in neither process's log.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use std::process::Command;
use weir_agent::credentials::{CredentialSource, CredentialStore, Origin};
use weir_agent::enroll::{ApiClient as AgentApi, CredentialFetch};
use weir_agent::state::{read_key, DataDir};
use weir_crds::agent_api::DeviceCredential;
use weir_e2e::api::{start_api, ADMIN_EMAIL, ADMIN_PASSWORD};
use weir_e2e::fleet::{gateway_with_token, patch_spec};
use weir_e2e::ApiClient;
use weir_testkit::wait::wait_until;
use weir_testkit::{bin, free_port, Proc};

const SCADA_PASSWORD: &str = "scada-Pass-7f3a91";
const SPARE_PASSWORD: &str = "spare-Pass-0c44d2";
const ROTATED_PASSWORD: &str = "spare-Rotated-9e1b77";

fn opcua_spec(credential: &str) -> Value {
    json!({"devices": [{
        "name": "scada", "adapter": "opcUa",
        "opcUa": {"endpoint": "opc.tcp://127.0.0.1:9/plant", "credential": credential},
        "groups": [{"name": "g", "intervalMs": 1000, "tags": [
            {"name": "flow", "address": "ns=2;s=Pump1.Flow", "dataType": "float64"}]}]
    }]})
}

fn login(user: &str, password: &str) -> Value {
    json!({"kind": "userPassword", "username": user, "password": password})
}

fn read_kept(path: &Path) -> (u32, DeviceCredential) {
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let c = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    (mode, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_fetches_keeps_and_falls_back_on_its_credentials() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut api, base_url) = start_api(dir.path(), None).await?;
    let admin = ApiClient::login(&base_url, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    admin
        .post(
            "/api/v1/orgs",
            json!({"slug": "riverside", "name": "Riverside"}),
        )
        .await?;
    admin
        .post(
            "/api/v1/orgs/riverside/projects",
            json!({"slug": "north", "name": "North"}),
        )
        .await?;
    let base = "/api/v1/orgs/riverside/projects/north";
    for (name, body) in [
        ("scada-login", login("operator", SCADA_PASSWORD)),
        ("spare", login("maint", SPARE_PASSWORD)),
    ] {
        let path = format!("{base}/credentials/{name}");
        admin.ok(Method::PUT, &path, Some(body)).await?;
    }
    let token = gateway_with_token(&admin, base, "works", opcua_spec("scada-login")).await?;
    let data = dir.path().join("agent-works");
    // Re-check the credentials every second (the default is 5 minutes).
    let mut run = Command::new(bin("weir-agent"));
    run.args([
        "run",
        "--server",
        &base_url,
        "--token",
        &token,
        "--heartbeat-s",
        "1",
    ])
    .arg("--data-dir")
    .arg(&data)
    .arg("--metrics-listen")
    .arg(format!("127.0.0.1:{}", free_port()))
    .env("WEIR_CREDENTIALS_REFRESH_S", "1");
    let mut agent = Proc::spawn("agent-works", &mut run, dir.path())?;
    let kept = |name: &str| data.join("credentials").join(format!("{name}.json"));

    // Fetched over the agent's channel, kept 0600; only what the config names.
    let scada = kept("scada-login");
    wait_until(Duration::from_secs(30), "scada-login.json kept", || {
        let p = scada.clone();
        async move { p.exists() }
    })
    .await;
    let (mode, c) = read_kept(&scada);
    assert_eq!(mode, 0o600, "kept copy is private");
    assert_eq!(serde_json::to_value(&c)?, login("operator", SCADA_PASSWORD));
    assert!(
        !kept("spare").exists(),
        "a credential the config does not name is not fetched"
    );

    // The config now names `spare`: fetched, and the old copy deleted.
    patch_spec(&admin, base, "works", opcua_spec("spare")).await?;
    let (spare, old) = (kept("spare"), scada.clone());
    wait_until(
        Duration::from_secs(30),
        "spare.json kept, scada-login.json gone",
        || {
            let (s, o) = (spare.clone(), old.clone());
            async move { s.exists() && !o.exists() }
        },
    )
    .await;
    assert_eq!(read_kept(&spare).0, 0o600);

    // Replaced in the console: the running agent has the new secret within
    // a few re-checks, with no config change.
    let rotated = login("maint", ROTATED_PASSWORD);
    admin
        .ok(
            Method::PUT,
            &format!("{base}/credentials/spare"),
            Some(rotated.clone()),
        )
        .await?;
    let (s2, want) = (spare.clone(), rotated.clone());
    wait_until(Duration::from_secs(20), "the replaced secret kept", || {
        let (p, w) = (s2.clone(), want.clone());
        async move {
            std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                == Some(w)
        }
    })
    .await;

    // The agent's own channel, as the agent: refused for what the config
    // does not name, with the api's reason.
    let dd = DataDir::open(&data)?;
    let id = dd.identity()?.expect("enrolled");
    let client = Arc::new(AgentApi::new(
        &base_url,
        &id.agent_id,
        read_key(&data.join("agent.key"))?,
    ));
    match client.device_credential("scada-login", None).await? {
        CredentialFetch::Refused(why) => {
            assert!(why.contains("names no credential 'scada-login'"), "{why}")
        }
        CredentialFetch::Found(..) | CredentialFetch::Unchanged => {
            panic!("the api handed out a credential the config does not name")
        }
    }

    // Neither log holds a secret.
    agent.kill();
    for (who, log) in [("agent", agent.log_text()), ("api", api.log_text())] {
        assert!(
            !log.contains(SCADA_PASSWORD)
                && !log.contains(SPARE_PASSWORD)
                && !log.contains(ROTATED_PASSWORD),
            "{who} log holds a password"
        );
    }
    // Re-checks that change nothing stay out of the log: spare was ready
    // twice (fetched, then replaced), whatever the number of re-checks.
    let readies = plain(&agent.log_text())
        .lines()
        .filter(|l| l.contains("device credential ready") && l.contains("credential=spare"))
        .count();
    assert_eq!(readies, 2, "{}", agent.log_text());
    assert!(
        agent.log_text().contains("device credential ready"),
        "{}",
        agent.log_text()
    );

    // The api is down: the kept copy serves.
    api.kill();
    let store = CredentialStore::new(&dd, Some(client), None)?;
    let config = serde_json::from_value(opcua_spec("spare"))?;
    let from = store.refresh(&config).await;
    assert_eq!(from.get("spare"), Some(&Origin::Stored));
    assert_eq!(serde_json::to_value(store.get("spare").unwrap())?, rotated);
    Ok(())
}

/// Air-gapped: `weir-agent run --bundle … --credentials-file`: the file's
/// credentials serve the devices that name them, one it lacks is reported
/// by name, a file every user may read is used with a warning, and nothing
/// is copied into the data dir nor logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_air_gapped_agent_reads_its_credentials_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let agent = bin("weir-agent");
    let ok = |c: &mut Command| -> anyhow::Result<std::process::Output> {
        let out = c.output()?;
        anyhow::ensure!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(out)
    };
    ok(Command::new(&agent)
        .args(["keygen", "--out"])
        .arg(d.join("sign.key")))?;
    let mut spec = opcua_spec("scada-login");
    let mut second = spec["devices"][0].clone();
    second["name"] = json!("lab");
    second["opcUa"]["credential"] = json!("absent");
    spec["devices"].as_array_mut().unwrap().push(second);
    std::fs::write(d.join("config.json"), spec.to_string())?;
    let signed = ok(Command::new(&agent)
        .args([
            "sign",
            "--tenant",
            "riverside",
            "--gateway",
            "works",
            "--version",
            "1",
            "--key",
        ])
        .arg(d.join("sign.key"))
        .arg(d.join("config.json")))?;
    std::fs::write(d.join("bundle.json"), &signed.stdout)?;
    let creds = d.join("creds.yaml");
    std::fs::write(
        &creds,
        format!(
            "scada-login: {{kind: userPassword, username: operator, password: {SCADA_PASSWORD}}}\n"
        ),
    )?;
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644))?;
    let data = d.join("data");
    let mut run = Command::new(&agent);
    run.arg("run")
        .arg("--bundle")
        .arg(d.join("bundle.json"))
        .arg("--trust")
        .arg(d.join("sign.key.pub.json"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .env("WEIR_AGENT_CREDENTIALS_FILE", &creds);
    let mut p = Proc::spawn("agent-air-gapped", &mut run, d)?;
    wait_until(
        Duration::from_secs(30),
        "both credentials looked at",
        || {
            let log = p.log_text();
            async move {
                log.contains("device credential ready")
                    && log.contains("device credential unavailable")
            }
        },
    )
    .await;
    p.kill();
    let log = plain(&p.log_text());
    assert!(
        log.contains("is readable by every user of this machine (mode 644)"),
        "{log}"
    );
    assert!(log.contains("chmod 600"), "{log}");
    assert!(
        log.contains("credential=scada-login") && log.contains("LocalFile"),
        "{log}"
    );
    assert!(log.contains("has no entry 'absent'"), "{log}");
    assert!(!log.contains(SCADA_PASSWORD), "the password is in the log");
    assert!(
        !data.join("credentials/scada-login.json").exists(),
        "copied into the data dir"
    );
    Ok(())
}

/// The log without ANSI colour codes.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
