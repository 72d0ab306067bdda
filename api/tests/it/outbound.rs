//! Outbound targets (issue 18): a webhook, SMTP server or broker on a
//! non-public address is refused unless the operator allows its range
//! (`WEIR_OUTBOUND_ALLOW_CIDRS`), judged on the address actually
//! connected to, so "send test" cannot scan the api's own network; SMTP
//! is encrypted unless a channel explicitly opts out.
//!
//! Apps here clear the loopback allowance the common test config gives
//! (except where a local SMTP server must be reached). No traffic ever
//! leaves the machine: private and metadata addresses are only created
//! as channels (refused or accepted), never sent to.

use crate::alerts_support::{wait_port, webhook_receiver};
use crate::common::{Backend, Cred, TestApp};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use weir_testkit::{free_port, Proc};

async fn app(allow: &[&str]) -> TestApp {
    let allow: Vec<weir_api::outbound::Cidr> = allow.iter().map(|c| c.parse().unwrap()).collect();
    TestApp::start_with(Backend::Sqlite, move |c| c.outbound_allow_cidrs = allow).await
}

/// An org and project; the project's channels path.
async fn project(app: &TestApp, admin: &Cred) -> String {
    format!("{}/alerts/channels", project_base(app, admin).await)
}

/// An org and project; the project's path.
async fn project_base(app: &TestApp, admin: &Cred) -> String {
    let org = format!("o{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    app.post_ok("/api/v1/orgs", admin, json!({"slug": org, "name": "Plant"}))
        .await;
    app.post_ok(
        &format!("/api/v1/orgs/{org}/projects"),
        admin,
        json!({"slug": "north", "name": "North"}),
    )
    .await;
    format!("/api/v1/orgs/{org}/projects/north")
}

fn webhook(url: &str) -> Value {
    json!({"name": "hook", "kind": "webhook", "url": url})
}

/// The message of the 409 answer's error on `field`.
fn refusal(body: &Value, field: &str) -> String {
    body["errors"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["field"] == field))
        .and_then(|e| e["message"].as_str())
        .unwrap_or_else(|| panic!("no error on {field}: {body}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_internal_addresses_are_refused_at_create() {
    let app = app(&[]).await;
    let admin = app.admin().await;
    let path = project(&app, &admin).await;
    let (hook, url) = webhook_receiver(0).await;
    let r = app.post(&path, &admin, webhook(&url)).await;
    // 409, not 422: the refusal depends on this server's allow-list, which
    // the OpenAPI document cannot state.
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["type"], "https://weir.dev/problems/outbound-refused");
    assert_eq!(
        refusal(&r.body, "url"),
        "127.0.0.1 is a loopback address; outbound targets must be public or in WEIR_OUTBOUND_ALLOW_CIDRS"
    );
    for (u, words) in [
        ("http://[::1]:9/x", "loopback"),
        ("http://[::ffff:127.0.0.1]:9/x", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://100.100.100.200/", "cloud metadata"),
        ("http://0.0.0.0:9/", "unspecified"),
        ("http://169.254.3.4/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.1.20/hook", "private"),
        ("http://[fd12::1]/hook", "private"),
    ] {
        let r = app.post(&path, &admin, webhook(u)).await;
        assert_eq!(r.status, 409, "{u}: {:?}", r.body);
        assert!(refusal(&r.body, "url").contains(words), "{u}: {:?}", r.body);
    }
    let r = app
        .post(
            &path,
            &admin,
            json!({"name": "mail", "kind": "email", "email": {"smtp_host": "127.0.0.1", "smtp_port": 25,
                   "from": "weir@example.org", "to": ["ops@example.org"]}}),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(refusal(&r.body, "email.smtp_host").contains("loopback"));
    assert_eq!(hook.count(), 0);
    app.stop().await;
}

/// A name that resolves to loopback passes the create check (names are
/// judged at connect time) and is refused at every send, without a
/// connection: an open and a closed port answer alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolving_to_loopback_are_refused_at_send_alike_for_any_port() {
    let app = app(&[]).await;
    let admin = app.admin().await;
    let path = project(&app, &admin).await;
    let (hook, url) = webhook_receiver(0).await;
    let open = url.replace("127.0.0.1", "localhost");
    let closed = format!("http://localhost:{}/hook", free_port());
    let mut answers = vec![];
    for u in [&open, &closed] {
        let ch = app.post_ok(&path, &admin, webhook(u)).await;
        let id = ch["id"].as_str().unwrap();
        let r = app
            .post_ok(&format!("{path}/{id}/test"), &admin, json!({}))
            .await;
        assert_eq!(r["ok"], false, "{r}");
        let e = r["error"].as_str().unwrap().to_string();
        assert!(
            e.starts_with("url: ") && e.contains("is a loopback address; outbound targets must be public or in WEIR_OUTBOUND_ALLOW_CIDRS"),
            "{e}"
        );
        answers.push((r["attempts"].clone(), r["http_status"].clone(), e));
    }
    assert_eq!(answers[0], answers[1], "open and closed ports look alike");
    assert_eq!(hook.count(), 0, "nothing reached the receiver");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_opens_private_ranges_but_never_metadata() {
    let app = app(&["10.0.0.0/8", "169.254.0.0/16", "127.0.0.0/8"]).await;
    let admin = app.admin().await;
    let path = project(&app, &admin).await;
    // Created, never sent to: no traffic leaves this machine.
    app.post_ok(&path, &admin, webhook("http://10.1.2.3/hook"))
        .await;
    app.post_ok(&path, &admin, webhook("http://169.254.3.4/hook"))
        .await;
    let r = app
        .post(&path, &admin, webhook("http://192.168.1.20/hook"))
        .await;
    assert!(refusal(&r.body, "url").contains("private"), "{:?}", r.body);
    let r = app
        .post(&path, &admin, webhook("http://169.254.169.254/latest"))
        .await;
    assert_eq!(
        refusal(&r.body, "url"),
        "169.254.169.254 is a cloud metadata address; outbound targets may never be one"
    );
    // An allowed loopback receiver gets the test notice.
    let (hook, url) = webhook_receiver(0).await;
    let ch = app.post_ok(&path, &admin, webhook(&url)).await;
    let id = ch["id"].as_str().unwrap();
    let r = app
        .post_ok(&format!("{path}/{id}/test"), &admin, json!({}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(hook.count(), 1);
    app.stop().await;
}

/// An adopted broker on a refused address is never connected to: not by
/// the probe, not to make the api's login there; the cluster's health
/// says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_broker_is_never_contacted() {
    let app = app(&[]).await;
    let admin = app.admin().await;
    let base = project_base(&app, &admin).await;
    let (port, accepted) = tripwire().await;
    for (name, host) in [("lit", "127.0.0.1"), ("named", "localhost")] {
        let r = app
            .post(
                &format!("{base}/clusters"),
                &admin,
                json!({"name": name, "backend": "external", "url": format!("mqtt://{host}:{port}"),
                       "username": "weir", "password": "admin-pw"}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let h = &r.body["health"];
        assert_eq!(h["reachable"], false, "{h}");
        let e = h["error"].as_str().unwrap();
        assert!(
            e.starts_with("url: ")
                && e.contains("is a loopback address; outbound targets must be public or in WEIR_OUTBOUND_ALLOW_CIDRS"),
            "{e}"
        );
        let r = app
            .post(&format!("{base}/clusters/{name}/probe"), &admin, json!({}))
            .await;
        assert_eq!(r.body["health"]["reachable"], false, "{:?}", r.body);
    }
    // An open broker (no login) is one the alerts would read, for a
    // tenant with rules.
    let r = app
        .post(
            &format!("{base}/clusters"),
            &admin,
            json!({"name": "open", "backend": "external", "url": format!("mqtt://localhost:{port}")}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    app.post_ok(
        &format!("{base}/alerts/rules"),
        &admin,
        json!({"name": "Level high", "kind": "threshold", "tag": "level", "op": ">", "threshold": 5.0}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "nothing connected");
    app.stop().await;
}

/// Counts connections to a loopback port that nothing should reach.
async fn tripwire() -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = accepted.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, accepted)
}

/// Enrolling an agent of a gateway on a refused broker with a
/// dynamic-security admin login does not log in there to make the
/// agent's client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynsec_admin_login_is_not_used_on_a_refused_broker() {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;
    let app = app(&[]).await;
    let admin = app.admin().await;
    let base = project_base(&app, &admin).await;
    let (port, accepted) = tripwire().await;
    app.post_ok(
        &format!("{base}/clusters"),
        &admin,
        json!({"name": "b", "backend": "external", "url": format!("mqtt://localhost:{port}"),
               "username": "admin", "password": "admin-pw"}),
    )
    .await;
    app.post_ok(
        &format!("{base}/gateways"),
        &admin,
        json!({"name": "ps-a", "spec": {"clusterRef": "b"}}),
    )
    .await;
    let t = app
        .post_ok(
            &format!("{base}/gateways/ps-a/enrollment-tokens"),
            &admin,
            json!({}),
        )
        .await;
    let key = weir_crds::bundle::generate_key();
    let r = app
        .post(
            "/api/v1/enroll",
            &Cred::None,
            json!({"token": t["token"],
                   "publicKey": B64.encode(key.verifying_key().as_bytes()),
                   "facts": {"hostname": "ps-a", "os": "linux", "arch": "x86_64", "agentVersion": "0.1.0"}}),
        )
        .await;
    assert!(
        r.body.to_string().contains("is a loopback address"),
        "{} {:?}",
        r.status,
        r.body
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "nothing connected");
    app.stop().await;
}

// ---------------------------------------------------------------- SMTP

/// A self-signed certificate for localhost (cert, key) in `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("this test needs openssl")
        .status
        .success();
    assert!(ok, "openssl req failed");
    (cert, key)
}

/// aiosmtpd on 127.0.0.1 into a maildir; with `tls`, it offers STARTTLS
/// and requires it before anything else (aiosmtpd's default then).
async fn smtp_server(dir: &Path, tls: Option<(&Path, &Path)>) -> (Proc, u16, PathBuf) {
    let port = free_port();
    let mbox = dir.join(format!("mail-{port}"));
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
    if let Some((cert, key)) = tls {
        cmd.arg("--tlscert").arg(cert).arg("--tlskey").arg(key);
    }
    cmd.args(["-c", "aiosmtpd.handlers.Mailbox"]).arg(&mbox);
    let p = Proc::spawn("aiosmtpd", &mut cmd, dir).expect("start aiosmtpd (pip install aiosmtpd)");
    wait_port(port, "aiosmtpd to listen").await;
    (p, port, mbox)
}

fn mail_count(mbox: &Path) -> usize {
    std::fs::read_dir(mbox.join("new")).map_or(0, |d| d.count())
}

fn email(port: u16, extra: Value) -> Value {
    let mut e = json!({"smtp_host": "localhost", "smtp_port": port,
        "from": "weir@example.org", "to": ["ops@example.org"]});
    e.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({"name": "mail", "kind": "email", "email": e})
}

/// Email goes over STARTTLS by default (verified against the channel's
/// CA); a server without STARTTLS gets nothing unless the channel opts out
/// with `tls: none`, and the channel shows which applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_uses_starttls_unless_the_channel_opts_out() {
    let app = TestApp::start(Backend::Sqlite).await; // loopback allowed
    let admin = app.admin().await;
    let path = project(&app, &admin).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let pem = std::fs::read_to_string(&cert).unwrap();
    let (_tls_srv, tls_port, tls_mbox) = smtp_server(dir.path(), Some((&cert, &key))).await;
    let (_plain_srv, plain_port, plain_mbox) = smtp_server(dir.path(), None).await;
    let test = |ch: Value| {
        let id = ch["id"].as_str().unwrap().to_string();
        let (app, admin, path) = (&app, &admin, &path);
        async move {
            app.post_ok(&format!("{path}/{id}/test"), admin, json!({}))
                .await
        }
    };

    // STARTTLS (the default), trusting the server's certificate.
    let ch = app
        .post_ok(&path, &admin, email(tls_port, json!({"tls_ca_pem": pem})))
        .await;
    assert_eq!(ch["email"]["tls"], "starttls", "{ch}");
    let r = test(ch).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(mail_count(&tls_mbox), 1);

    // An untrusted certificate is not accepted.
    let ch = app.post_ok(&path, &admin, email(tls_port, json!({}))).await;
    let r = test(ch).await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(mail_count(&tls_mbox), 1);

    // A server that offers no STARTTLS gets no mail (and no password).
    let ch = app
        .post_ok(
            &path,
            &admin,
            email(plain_port, json!({"smtp_username": "weir"})),
        )
        .await;
    let r = test(ch).await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(mail_count(&plain_mbox), 0, "nothing sent in clear");

    // Explicit opt-out: plain text, shown as such.
    let ch = app
        .post_ok(&path, &admin, email(plain_port, json!({"tls": "none"})))
        .await;
    assert_eq!(ch["email"]["tls"], "none");
    let r = test(ch).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(mail_count(&plain_mbox), 1);
    app.stop().await;
}

/// The SMTP server's name is judged by what it resolves to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_server_resolving_to_loopback_is_refused_at_send() {
    let app = app(&[]).await;
    let admin = app.admin().await;
    let path = project(&app, &admin).await;
    let dir = tempfile::tempdir().unwrap();
    let (_srv, port, mbox) = smtp_server(dir.path(), None).await;
    let ch = app
        .post_ok(&path, &admin, email(port, json!({"tls": "none"})))
        .await;
    let id = ch["id"].as_str().unwrap();
    let r = app
        .post_ok(&format!("{path}/{id}/test"), &admin, json!({}))
        .await;
    assert_eq!(r["ok"], false);
    let e = r["error"].as_str().unwrap();
    assert!(
        e.starts_with("email.smtp_host: ") && e.contains("is a loopback address"),
        "{e}"
    );
    assert_eq!(mail_count(&mbox), 0);
    app.stop().await;
}
