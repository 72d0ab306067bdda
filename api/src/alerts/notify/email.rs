//! Email channel: plain SMTP through lettre to a configured host and port
//! (optionally with a user and password), retried on transient failures.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Attempts, DeliveryResult};

/// Non-secret settings of an email channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    #[schema(example = "smtp.example.org")]
    pub smtp_host: String,
    #[serde(default = "default_port")]
    pub smtp_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_username: Option<String>,
    #[schema(example = "weir@example.org")]
    pub from: String,
    #[schema(example = json!(["operators@example.org"]))]
    pub to: Vec<String>,
}

fn default_port() -> u16 {
    25
}

pub fn parse_mailbox(s: &str) -> Option<Mailbox> {
    s.parse().ok()
}

pub async fn send(
    cfg: &EmailConfig,
    password: &str,
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
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.smtp_host.as_str())
            .port(cfg.smtp_port)
            .timeout(Some(policy.timeout.max(Duration::from_millis(100))));
    if let Some(u) = &cfg.smtp_username {
        builder = builder.credentials(Credentials::new(u.clone(), password.to_string()));
    }
    let transport = builder.build();
    for attempt in 1..=policy.max_attempts.max(1) {
        res.attempts = attempt;
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
                if e.is_permanent() || attempt == policy.max_attempts {
                    break;
                }
            }
        }
        tokio::time::sleep(policy.backoff(attempt)).await;
    }
    res
}
