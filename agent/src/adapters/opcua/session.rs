//! Opening an OPC UA session: the agent's application certificate, the
//! server's endpoint and certificate (pinned or trusted), the user identity.
//!
//! Every (re)connect runs the whole sequence: a server that was replaced
//! with another certificate is refused again, not trusted from memory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use opcua::client::{ClientBuilder, IdentityToken, Password, Session, SessionPollResult};
use opcua::crypto::{CertificateStore, PrivateKey, SecurityPolicy, X509};
use opcua::types::{EndpointDescription, MessageSecurityMode};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_crds::agent_api::DeviceCredential;
use weir_crds::gateway::{self, OpcUaSettings};

use super::CredentialSource;

/// Where the agent keeps its OPC UA certificates, under its data dir.
#[derive(Clone, Debug)]
pub struct Pki {
    /// `{data_dir}/opcua/pki`: `own/` (the agent's certificate and 0600
    /// key), `trusted/` (server certificates trusted by hand), `rejected/`.
    pub root: PathBuf,
}

impl Pki {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("opcua").join("pki"),
        }
    }
    fn own_cert(&self) -> PathBuf {
        self.root.join("own").join("cert.der")
    }
    fn own_key(&self) -> PathBuf {
        self.root.join("own").join("private.pem")
    }
    /// A store of its own per pinned certificate, holding only that one as
    /// trusted, so a pin never widens what other devices trust.
    fn pinned(&self, sha256: &str) -> PathBuf {
        self.root
            .parent()
            .unwrap_or(&self.root)
            .join("pinned")
            .join(sha256)
    }
}

/// An open session and the task driving it.
pub struct Connected {
    pub session: Arc<Session>,
    /// Fires with the reason when the connection is lost.
    pub lost: oneshot::Receiver<String>,
    driver: JoinHandle<()>,
}

impl Connected {
    /// Close the session politely (bounded), then stop its driver.
    pub async fn close(self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.session.disconnect()).await;
        self.driver.abort();
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

pub fn policy(p: gateway::SecurityPolicy) -> SecurityPolicy {
    match p {
        gateway::SecurityPolicy::None => SecurityPolicy::None,
        gateway::SecurityPolicy::Basic256Sha256 => SecurityPolicy::Basic256Sha256,
        gateway::SecurityPolicy::Aes128Sha256RsaOaep => SecurityPolicy::Aes128Sha256RsaOaep,
        gateway::SecurityPolicy::Aes256Sha256RsaPss => SecurityPolicy::Aes256Sha256RsaPss,
    }
}

pub fn mode(m: gateway::SecurityMode) -> MessageSecurityMode {
    match m {
        gateway::SecurityMode::None => MessageSecurityMode::None,
        gateway::SecurityMode::Sign => MessageSecurityMode::Sign,
        gateway::SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    }
}

/// Lower-case hex SHA-256 of a certificate's DER bytes.
pub fn sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Two devices starting at once must not both create the agent's key.
static OWN_CERT: Mutex<()> = Mutex::new(());

/// A client whose certificate store is `store_dir`, with the agent's own
/// certificate (created on first use, key 0600).
pub fn client(
    pki: &Pki,
    store_dir: &Path,
    verify_server_cert: bool,
    timeout: Duration,
    endpoint: &str,
) -> Result<opcua::client::Client, String> {
    let _g = OWN_CERT.lock().unwrap_or_else(|e| e.into_inner());
    let own_dir = pki.root.join("own");
    create_private_dir(&own_dir)?;
    let client = ClientBuilder::new()
        .application_name("weir-agent")
        .application_uri("urn:weir:agent")
        .product_uri("urn:weir:agent")
        .create_sample_keypair(true)
        .certificate_path(pki.own_cert())
        .private_key_path(pki.own_key())
        .pki_dir(store_dir)
        // The session's endpoint is chosen from the server's list; this
        // one only keeps the stack from warning about an empty config.
        .endpoint("server", opcua::client::ClientEndpoint::new(endpoint))
        .default_endpoint("server")
        .trust_server_certs(false)
        .verify_server_certs(verify_server_cert)
        // The device task reconnects with its own back-off and recreates
        // its subscriptions; the stack must not reconnect behind its back.
        .session_retry_limit(0)
        .request_timeout(timeout)
        .keep_alive_interval(Duration::from_secs(2))
        .max_failed_keep_alive_count(2)
        .recreate_subscriptions(false)
        .client()
        .map_err(|e| format!("OPC UA client settings: {}", e.join("; ")))?;
    let key = pki.own_key();
    if key.exists() {
        set_mode(&key, 0o600)?;
    }
    Ok(client)
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    set_mode(dir, 0o700)
}

fn set_mode(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("setting permissions of {}: {e}", p.display()))
}

/// The server's endpoint for our policy and mode, as the server describes it.
pub async fn find_endpoint(
    client: &opcua::client::Client,
    s: &OpcUaSettings,
    timeout: Duration,
) -> Result<EndpointDescription, String> {
    let endpoints = tokio::time::timeout(
        timeout,
        client.get_server_endpoints_from_url(s.endpoint.as_str()),
    )
    .await
    .map_err(|_| {
        format!(
            "{}: no answer within {} ms",
            s.endpoint,
            timeout.as_millis()
        )
    })?
    .map_err(|e| format!("{}: {e}", s.endpoint))?;
    let (p, m) = (policy(s.security_policy), mode(s.security_mode));
    let mut found = endpoints
        .iter()
        .find(|e| e.security_policy_uri.as_ref() == p.to_uri() && e.security_mode == m)
        .cloned()
        .ok_or_else(|| {
            let offered: Vec<String> = endpoints
                .iter()
                .map(|e| {
                    format!(
                        "{}/{:?}",
                        SecurityPolicy::from_uri(e.security_policy_uri.as_ref()),
                        e.security_mode
                    )
                })
                .collect();
            format!(
                "{}: the server has no endpoint with securityPolicy {p} and securityMode {m:?} (it offers {})",
                s.endpoint,
                offered.join(", ")
            )
        })?;
    // Servers often advertise a host name we cannot reach (or 0.0.0.0):
    // connect where we were told to.
    found.endpoint_url = s.endpoint.as_str().into();
    Ok(found)
}

/// Check the server's certificate against the pin, or the trusted dir;
/// returns the certificate store to use.
pub fn trust_server(
    pki: &Pki,
    s: &OpcUaSettings,
    endpoint: &EndpointDescription,
) -> Result<(PathBuf, bool), String> {
    let der = endpoint.server_certificate.as_ref();
    let sha = sha256_hex(der);
    if let Some(pin) = &s.server_certificate_sha256 {
        if !pin.eq_ignore_ascii_case(&sha) {
            return Err(format!(
                "{}: the server's certificate has SHA-256 {sha}, not the pinned serverCertificateSha256 {pin}; refusing to connect",
                s.endpoint
            ));
        }
        let dir = pki.pinned(&sha);
        if s.security_policy != gateway::SecurityPolicy::None {
            let cert = X509::from_der(der).map_err(|e| format!("server certificate: {e}"))?;
            let trusted = dir.join("trusted");
            std::fs::create_dir_all(&trusted)
                .and_then(|_| std::fs::create_dir_all(dir.join("rejected")))
                .and_then(|_| {
                    std::fs::write(trusted.join(CertificateStore::cert_file_name(&cert)), der)
                })
                .map_err(|e| format!("storing the pinned certificate in {}: {e}", dir.display()))?;
        }
        // The pin is the trust decision: host name and validity dates of a
        // self-signed plant certificate are not checked on top of it.
        return Ok((dir, false));
    }
    if s.security_policy != gateway::SecurityPolicy::None {
        let cert = X509::from_der(der).map_err(|e| format!("server certificate: {e}"))?;
        let name = CertificateStore::cert_file_name(&cert);
        let trusted = pki.root.join("trusted");
        if !trusted.join(&name).exists() {
            return Err(format!(
                "{}: the server's certificate (SHA-256 {sha}) is not trusted: set serverCertificateSha256 to {sha}, or copy it to {}",
                s.endpoint,
                trusted.display()
            ));
        }
    }
    Ok((pki.root.clone(), true))
}

/// The user identity of a device's `credential`.
pub fn identity(
    s: &OpcUaSettings,
    credentials: Option<&Arc<dyn CredentialSource>>,
) -> Result<IdentityToken, String> {
    let Some(name) = &s.credential else {
        return Ok(IdentityToken::Anonymous);
    };
    let source = credentials.ok_or_else(|| {
        format!("credential '{name}': this agent has no credential store configured")
    })?;
    let credential = source.get(name).ok_or_else(|| {
        source
            .why_missing(name)
            .unwrap_or_else(|| format!("credential '{name}' is not available"))
    })?;
    match credential {
        DeviceCredential::UserPassword { username, password } => {
            Ok(IdentityToken::UserName(username, Password::new(password)))
        }
        DeviceCredential::Certificate {
            certificate_pem,
            private_key_pem,
        } => {
            let cert = X509::from_pem(certificate_pem.as_bytes())
                .map_err(|e| format!("credential '{name}': certificate: {e}"))?;
            // Never echo the key or the parser's view of it.
            let key = PrivateKey::from_pem(private_key_pem.as_bytes())
                .map_err(|_| format!("credential '{name}': private key is not a PEM RSA key"))?;
            Ok(IdentityToken::X509(Box::new(cert), Box::new(key)))
        }
    }
}

/// Connect to the server and activate a session.
pub async fn connect(
    pki: &Pki,
    s: &OpcUaSettings,
    credentials: Option<&Arc<dyn CredentialSource>>,
) -> Result<Connected, String> {
    let timeout = Duration::from_millis(u64::from(s.timeout_ms.max(100)));
    let identity = identity(s, credentials)?;
    // Endpoints are asked on an unsecured discovery channel with a client
    // that trusts nothing; the session uses a client whose store trusts
    // exactly what `trust_server` decided.
    let probe = client(pki, &pki.root, true, timeout, &s.endpoint)?;
    let endpoint = find_endpoint(&probe, s, timeout).await?;
    let (store, verify) = trust_server(pki, s, &endpoint)?;
    let mut c = client(pki, &store, verify, timeout, &s.endpoint)?;
    let (session, event_loop) = c
        .connect_to_endpoint_directly(endpoint, identity)
        .map_err(|e| format!("{}: {e}", s.endpoint))?;
    let (up_tx, up_rx) = oneshot::channel::<Result<(), String>>();
    let (lost_tx, lost) = oneshot::channel::<String>();
    let driver = tokio::spawn(drive(event_loop, up_tx, lost_tx));
    match tokio::time::timeout(timeout, up_rx).await {
        Ok(Ok(Ok(()))) => Ok(Connected {
            session,
            lost,
            driver,
        }),
        Ok(Ok(Err(e))) => {
            driver.abort();
            Err(format!("{}: {e}", s.endpoint))
        }
        Ok(Err(_)) => {
            driver.abort();
            Err(format!(
                "{}: the session ended while connecting",
                s.endpoint
            ))
        }
        Err(_) => {
            driver.abort();
            Err(format!(
                "{}: no session within {} ms",
                s.endpoint,
                timeout.as_millis()
            ))
        }
    }
}

/// Poll the stack's event loop; report the first connect and the loss.
async fn drive(
    event_loop: opcua::client::SessionEventLoop<opcua::client::transport::TcpConnector>,
    up: oneshot::Sender<Result<(), String>>,
    lost: oneshot::Sender<String>,
) {
    let mut up = Some(up);
    let stream = event_loop.enter();
    futures::pin_mut!(stream);
    let reason = loop {
        match stream.next().await {
            Some(Ok(SessionPollResult::Reconnected(_))) => {
                if let Some(u) = up.take() {
                    let _ = u.send(Ok(()));
                }
            }
            Some(Ok(SessionPollResult::ConnectionLost(code))) => {
                break format!("connection lost: {}", super::errors::describe(code))
            }
            Some(Ok(SessionPollResult::ReconnectFailed(code))) => {
                break format!("connecting failed: {}", super::errors::describe(code))
            }
            Some(Ok(_)) => {}
            Some(Err(code)) => break format!("session failed: {}", super::errors::describe(code)),
            None => break "session closed".to_string(),
        }
    };
    match up.take() {
        Some(u) => {
            let _ = u.send(Err(reason));
        }
        None => {
            let _ = lost.send(reason);
        }
    }
}
