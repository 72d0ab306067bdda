//! Webhook channel: a JSON POST signed with HMAC-SHA256 of the body in
//! `X-Weir-Signature: sha256=<hex>`, retried with exponential back-off on
//! 5xx, 429, timeouts and connection errors. Only to targets the outbound
//! policy allows (`crate::outbound`); a refusal is final and says why
//! without connecting, so a refused port looks like any other.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Attempts, DeliveryResult};
use crate::outbound::{refusal_in, Policy};

pub const SIGNATURE_HEADER: &str = "x-weir-signature";

/// `sha256=<hex hmac of body with secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // Hmac accepts keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Refusal of a URL whose host is a literal address (reqwest resolves
/// names through the policy's resolver, but never literal addresses).
pub fn check_url(outbound: &Policy, url: &str) -> Result<(), String> {
    let u = url::Url::parse(url).map_err(|_| "url: not a URL".to_string())?;
    match u.host() {
        Some(url::Host::Ipv4(ip)) => outbound.check(ip.into()),
        Some(url::Host::Ipv6(ip)) => outbound.check(ip.into()),
        _ => Ok(()),
    }
    .map_err(|r| format!("url: {r}"))
}

/// The `http` client must be the policy's (`Policy::http_client`).
pub async fn send(
    http: &reqwest::Client,
    outbound: &Policy,
    url: &str,
    secret: &str,
    body: Vec<u8>,
    policy: &Attempts,
) -> DeliveryResult {
    let sig = signature(secret, &body);
    let mut res = DeliveryResult::default();
    if let Err(e) = check_url(outbound, url) {
        res.error = e;
        return res;
    }
    for attempt in 1..=policy.max_attempts.max(1) {
        res.attempts = attempt;
        let r = http
            .post(url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, &sig)
            .header("user-agent", "weir-alerts")
            .timeout(policy.timeout)
            .body(body.clone())
            .send()
            .await;
        let retry = match r {
            Ok(resp) => {
                let code = resp.status();
                res.http_status = Some(code.as_u16() as i32);
                if code.is_success() {
                    res.ok = true;
                    res.error.clear();
                    return res;
                }
                res.error = format!("HTTP {code}");
                code.is_server_error() || code.as_u16() == 429
            }
            Err(e) => {
                res.http_status = None;
                if let Some(r) = refusal_in(&e) {
                    res.error = format!("url: {r}");
                    break;
                }
                // reqwest errors name the URL, which may carry a token: keep the kind only.
                res.error = if e.is_timeout() {
                    "timeout".into()
                } else if e.is_connect() {
                    "connection failed".into()
                } else {
                    "request failed".into()
                };
                true
            }
        };
        if !retry || attempt == policy.max_attempts {
            break;
        }
        tokio::time::sleep(policy.backoff(attempt)).await;
    }
    res
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
