//! Email channel: SMTP through lettre to a configured host and port
//! (optionally with a user and password), retried on transient failures.
//! Encrypted unless the channel opts out (`tls: none`): STARTTLS, refused
//! when the server does not offer it, or TLS from the first byte (port 465
//! by default). The server's address must pass the outbound policy; the
//! connection goes to the checked address, the certificate is checked
//! against the configured host name.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Attempts, DeliveryResult};
use crate::outbound::Policy;

/// How an email channel protects its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// STARTTLS, required: a server that does not offer it gets nothing.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// Plain text, password included: only when explicitly chosen.
    None,
}

/// Non-secret settings of an email channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    #[schema(example = "smtp.example.org", schema_with = crate::extract::schema::text::<1, 253>)]
    pub smtp_host: String,
    /// Default 25.
    #[serde(default = "default_port", deserialize_with = "crate::extract::int::de")]
    #[schema(minimum = 1, maximum = 65535)]
    pub smtp_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_username: Option<String>,
    #[schema(example = "weir@example.org", schema_with = mailbox_schema)]
    pub from: String,
    /// 1-50 addresses.
    #[schema(example = json!(["operators@example.org"]), schema_with = recipients_schema)]
    pub to: Vec<String>,
    /// `starttls`, `tls` or `none` (plain text). Default: `tls` on port
    /// 465, else `starttls`. Responses always show the one in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SmtpTls>,
    /// PEM certificate(s) to trust for this server besides the public
    /// roots (a private CA or a self-signed server); at most 16384 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 16384)]
    pub tls_ca_pem: Option<String>,
}

impl EmailConfig {
    /// The protection in force (the default follows the port).
    pub fn tls_mode(&self) -> SmtpTls {
        self.tls.unwrap_or(if self.smtp_port == 465 {
            SmtpTls::Tls
        } else {
            SmtpTls::Starttls
        })
    }

    fn tls_parameters(&self) -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(self.smtp_host.clone());
        if let Some(pem) = &self.tls_ca_pem {
            let c = Certificate::from_pem(pem.as_bytes())
                .map_err(|_| "email.tls_ca_pem: not a PEM certificate")?;
            b = b.add_root_certificate(c);
        }
        b.build_rustls().map_err(|e| format!("smtp tls: {e}"))
    }
}

// An address as `local@domain`: a dot-atom local part and a host-name
// domain, the form of lettre's mailbox grammar the channels take.
macro_rules! local {
    () => {
        r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    };
}
macro_rules! domain {
    () => {
        r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    };
}
/// The server's form of an address (the lengths are checked apart).
pub const MAILBOX_PATTERN: &str = concat!("^", local!(), "@", domain!(), "$");
/// The document's: the same form, with lettre's limits (local part 1-64,
/// domain 1-254 characters) as lookaheads, which the regex crate lacks.
pub const MAILBOX_SCHEMA_PATTERN: &str = concat!(
    "^(?=[^@]{1,64}@)(?=[^@]*@[^@]{1,254}$)",
    local!(),
    "@",
    domain!(),
    "$"
);

static MAILBOX: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(MAILBOX_PATTERN).unwrap());

/// A channel's sender or recipient: the document's form, and lettre parses it.
pub fn valid_mailbox(s: &str) -> bool {
    let lengths_fit = s
        .split_once('@')
        .is_some_and(|(l, d)| l.len() <= 64 && d.len() <= 254);
    lengths_fit && MAILBOX.is_match(s) && parse_mailbox(s).is_some()
}

fn mailbox_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(MAILBOX_SCHEMA_PATTERN))
        .build()
}

fn recipients_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(mailbox_schema())
        .min_items(Some(1))
        .max_items(Some(50))
        .build()
}

fn default_port() -> u16 {
    25
}

pub fn parse_mailbox(s: &str) -> Option<Mailbox> {
    s.parse().ok()
}

/// One transport per checked address, each with the channel's TLS.
fn transports(
    cfg: &EmailConfig,
    password: &str,
    addrs: &[std::net::SocketAddr],
    timeout: Duration,
) -> Result<Vec<AsyncSmtpTransport<Tokio1Executor>>, String> {
    let tls = |p| match cfg.tls_mode() {
        SmtpTls::None => Tls::None,
        SmtpTls::Tls => Tls::Wrapper(p),
        SmtpTls::Starttls => Tls::Required(p),
    };
    let params = cfg.tls_parameters()?;
    Ok(addrs
        .iter()
        .map(|a| {
            // "dangerous" is lettre's name for a builder without TLS, which
            // `.tls` then sets; the host is the checked address itself.
            let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(a.ip().to_string())
                .port(a.port())
                .tls(tls(params.clone()))
                .timeout(Some(timeout));
            if let Some(u) = &cfg.smtp_username {
                b = b.credentials(Credentials::new(u.clone(), password.to_string()));
            }
            b.build()
        })
        .collect())
}

pub async fn send(
    cfg: &EmailConfig,
    password: &str,
    outbound: &Policy,
    subject: &str,
    body: String,
    policy: &Attempts,
) -> DeliveryResult {
    let mut res = DeliveryResult::default();
    let msg = (|| {
        let mut b = Message::builder()
            .from(parse_mailbox(&cfg.from).ok_or("bad from address")?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &cfg.to {
            b = b.to(parse_mailbox(to).ok_or("bad to address")?);
        }
        b.body(body).map_err(|_| "cannot build message")
    })();
    let msg = match msg {
        Ok(m) => m,
        Err(e) => {
            res.error = e.to_string();
            return res;
        }
    };
    // Resolved and checked once; every attempt goes to these addresses.
    let addrs = match outbound.resolve(&cfg.smtp_host, cfg.smtp_port).await {
        Ok(a) => a,
        Err(e) => {
            res.error = format!("email.smtp_host: {e}");
            return res;
        }
    };
    let timeout = policy.timeout.max(Duration::from_millis(100));
    let transports = match transports(cfg, password, &addrs, timeout) {
        Ok(t) => t,
        Err(e) => {
            res.error = e;
            return res;
        }
    };
    'attempts: for attempt in 1..=policy.max_attempts.max(1) {
        res.attempts = attempt;
        // The next address (IPv4 after IPv6, say) when one cannot be reached.
        for transport in &transports {
            match transport.send(msg.clone()).await {
                Ok(r) => {
                    res.ok = true;
                    res.http_status = None;
                    res.error.clear();
                    tracing::debug!(code = %r.code(), "mail accepted");
                    return res;
                }
                Err(e) => {
                    res.error = format!("smtp: {e}");
                    if e.is_permanent() {
                        break 'attempts;
                    }
                }
            }
        }
        if attempt == policy.max_attempts {
            break;
        }
        tokio::time::sleep(policy.backoff(attempt)).await;
    }
    res
}
