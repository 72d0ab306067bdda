//! Which api server URLs the agent talks to. Enrollment sends the bootstrap
//! token and the agent's public key, and later calls return broker
//! passwords: over plain HTTP anyone on the path reads them (and can answer
//! in the api's place). So `http://` is refused unless the server is on
//! this machine (loopback) or the operator says so with `--insecure-http`.

use std::net::IpAddr;

use reqwest::Url;

/// Why a server URL is refused; the message names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Check `url` (given as `origin`, e.g. "--server") before any request.
/// `https://` always passes; `http://` only to a loopback host
/// (127.0.0.0/8, ::1, `localhost`) or with `insecure_http`.
pub fn check_server_url(origin: &str, url: &str, insecure_http: bool) -> Result<(), Refused> {
    let parsed = Url::parse(url).map_err(|e| {
        Refused(format!(
            "{origin} {url} is not a URL ({e}); use https://HOST"
        ))
    })?;
    if parsed.host().is_none() {
        return Err(Refused(format!(
            "{origin} {url} has no host; use https://HOST"
        )));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if insecure_http || is_loopback(&parsed) => Ok(()),
        "http" => Err(Refused(format!(
            "{origin} {url} is plain HTTP: enrollment tokens and agent keys would travel \
             in clear; use https:// or pass --insecure-http"
        ))),
        other => Err(Refused(format!(
            "{origin} {url} has scheme {other}: the api is reached over https://"
        ))),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // IPv6 hosts come bracketed ("[::1]"); names are lower-cased by the parser.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str, insecure: bool) -> bool {
        check_server_url("--server", url, insecure).is_ok()
    }

    #[test]
    fn https_always_passes() {
        assert!(ok("https://plant-api.example.com", false));
        assert!(ok("https://10.0.0.5:8443/", false));
    }

    #[test]
    fn plain_http_off_this_machine_is_refused_and_names_the_flag() {
        for url in [
            "http://plant-api:8080",
            "http://192.0.2.1:1",
            "http://10.0.0.5",
            "http://[2001:db8::1]:8080",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
        ] {
            let e = check_server_url("--server", url, false).unwrap_err();
            assert!(e.0.contains("--insecure-http"), "{url}: {e}");
            assert!(e.0.contains(url), "{url}: {e}");
        }
        let e = check_server_url("--server", "http://plant-api:8080", false).unwrap_err();
        assert_eq!(
            e.0,
            "--server http://plant-api:8080 is plain HTTP: enrollment tokens and agent keys \
             would travel in clear; use https:// or pass --insecure-http"
        );
    }

    #[test]
    fn plain_http_to_loopback_passes() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.8.9.10",
            "http://[::1]:8080/",
            "http://localhost:8080",
            "http://LOCALHOST",
        ] {
            assert!(ok(url, false), "{url}");
        }
    }

    #[test]
    fn insecure_http_allows_plain_http_anywhere() {
        assert!(ok("http://plant-api:8080", true));
        assert!(ok("http://192.0.2.1:1", true));
    }

    #[test]
    fn other_schemes_and_garbage_are_refused_even_with_the_flag() {
        for url in [
            "ftp://plant-api",
            "plant-api:8080",
            "",
            "https://",
            "file:///etc/passwd",
        ] {
            assert!(!ok(url, true), "{url}");
        }
    }
}
