//! Where the browser goes after sign-in: only a plain path of this site.

use url::Url;

/// `p` when it is a plain same-origin path, else `/`. Never a way to another
/// host after sign-in, however the browser or the console's router decodes it.
pub(super) fn safe_return_to(p: Option<&str>) -> String {
    match p {
        Some(p) if is_plain_path(p) => p.to_string(),
        _ => "/".to_string(),
    }
}

fn is_plain_path(p: &str) -> bool {
    if p.len() > 1024 {
        return false;
    }
    // Check every decoding of it: a router may decode once more than the
    // browser does, and `%2F%2F` or `%5C` must not become `//` or `\`.
    let mut cur = p.to_string();
    for _ in 0..4 {
        if !looks_plain(&cur) {
            return false;
        }
        match percent_decode(&cur) {
            Some(d) if d == cur => return true,
            Some(d) => cur = d,
            None => return false,
        }
    }
    false
}

/// A path from the root with nothing a URL parser could read as a host.
fn looks_plain(p: &str) -> bool {
    // Browsers drop tabs and newlines and read `\` as `/`, so `/\t/evil` and
    // `/\evil` would be `//evil`, another host.
    if !p.starts_with('/')
        || p.contains("//")
        || p.chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
    {
        return false;
    }
    let base = Url::parse("http://weir.invalid/").expect("a valid base");
    base.join(p)
        .is_ok_and(|u| u.scheme() == "http" && u.host_str() == Some("weir.invalid"))
}

/// Percent-decoding as a browser does it (a `%` without two hex digits
/// stays); None when the bytes are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_of_this_site_are_kept() {
        for p in [
            "/",
            "/orgs/a",
            "/orgs/riverside/projects/north?tab=devices#top",
            "/search?q=100%25",
        ] {
            assert_eq!(safe_return_to(Some(p)), p, "{p:?}");
        }
        assert_eq!(safe_return_to(None), "/");
    }

    #[test]
    fn anything_that_could_reach_another_host_becomes_the_root() {
        for p in [
            "",
            "orgs/a",
            "//evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/%09/evil.example",
            "/\t/evil",
            "/\n/evil",
            "/\r/evil",
            "/\\evil",
            "/\\\\evil",
            "\\\\evil",
            "/%2F%2Fevil",
            "/%2f%2fevil",
            "/%2F/evil",
            "/%5Cevil",
            "/%5cevil",
            "/%252F%252Fevil",
            "/%255Cevil",
            "/%00",
            "/a%0Ab",
            "/a b",
            "/a%20b",
            "/a\u{a0}b",
            "/a\u{2028}b",
            "/a\u{7f}b",
            "/%E2%80%A8evil",
            "/%ff",
            "/orgs?next=https://evil.example",
            "/https:%2F%2Fevil.example",
        ] {
            assert_eq!(safe_return_to(Some(p)), "/", "{p:?} must not be kept");
        }
        assert_eq!(safe_return_to(Some(&format!("/{}", "a".repeat(1100)))), "/");
    }
}
