//! The schema side and the check side of each shared rule agree.

use super::{check, int, schema};
use serde::Deserialize;

fn errs(f: impl FnOnce(&mut Vec<crate::error::FieldError>)) -> bool {
    let mut e = Vec::new();
    f(&mut e);
    e.is_empty()
}

fn pattern_of(o: utoipa::openapi::schema::Object) -> String {
    let v = serde_json::to_value(o).unwrap();
    let p = v["pattern"].as_str().unwrap().to_string();
    // The document says what the regex crate enforces only if the same text compiles.
    regex::Regex::new(&p).unwrap();
    p
}

/// The text patterns spell out Rust's own idea of control characters and
/// white space, for every character where either could differ.
#[test]
fn text_patterns_match_char_classes_everywhere() {
    let text = regex::Regex::new(check::TEXT_PATTERN).unwrap();
    let nonblank = regex::Regex::new(check::NONBLANK_TEXT_PATTERN).unwrap();
    let email = regex::Regex::new(check::EMAIL_PATTERN).unwrap();
    for c in (0u32..=0x3100)
        .chain([0xFEFF, 0x1F600])
        .filter_map(char::from_u32)
    {
        let s = c.to_string();
        let plain = !(c.is_control() && c != '\n' && c != '\t');
        assert_eq!(text.is_match(&s), plain, "{c:?} text");
        assert_eq!(
            nonblank.is_match(&s),
            plain && !c.is_whitespace(),
            "{c:?} nonblank"
        );
        let addr = format!("a{c}b@example.com");
        let ok = c != '@' && !c.is_whitespace();
        assert_eq!(email.is_match(&addr), ok, "{c:?} email");
    }
}

#[test]
fn text_schema_and_check_accept_and_refuse_the_same() {
    let o = schema::text::<1, 8>();
    let v = serde_json::to_value(&o).unwrap();
    assert_eq!(v["minLength"], 1);
    assert_eq!(v["maxLength"], 8);
    let re = regex::Regex::new(&pattern_of(o)).unwrap();
    for (s, ok) in [
        ("Riverside", false), // 9 characters
        ("North", true),
        ("ÄÖÜäöü", true),
        ("  x ", true),
        ("a\tb\nc", true),
        ("   ", false),
        ("\u{3000}", false),
        ("", false),
        ("a\u{1}b", false),
        ("a\rb", false),
        ("a\u{85}", false),
        ("\u{FEFF}", true),
    ] {
        let n = s.chars().count();
        let by_schema = re.is_match(s) && (1..=8).contains(&n);
        let by_check = errs(|e| check::text(e, "f", s, 1, 8));
        assert_eq!(by_schema, ok, "schema on {s:?}");
        assert_eq!(by_check, ok, "check on {s:?}");
    }
    let empty_ok = schema::text_opt::<0, 8>();
    let v = serde_json::to_value(&empty_ok).unwrap();
    assert_eq!(v["type"], serde_json::json!(["string", "null"]));
    assert!(v.get("minLength").is_none());
    assert!(regex::Regex::new(&pattern_of(empty_ok))
        .unwrap()
        .is_match(""));
    assert!(errs(|e| check::text(e, "f", "", 0, 8)));
}

#[test]
fn slug_and_email_schema_and_check_agree() {
    let slug = regex::Regex::new(&pattern_of(schema::slug())).unwrap();
    for (s, ok) in [
        ("riverside-water", true),
        ("a", true),
        ("0", true),
        (&"a".repeat(63)[..], true),
        (&"a".repeat(64)[..], false),
        ("-a", false),
        ("a-", false),
        ("A", false),
        ("a_b", false),
        ("", false),
    ] {
        assert_eq!(slug.is_match(s), ok, "schema on {s:?}");
        assert_eq!(errs(|e| check::slug(e, "f", s)), ok, "check on {s:?}");
    }
    let email = regex::Regex::new(&pattern_of(schema::email())).unwrap();
    let long_local = format!("{}@example.com", "a".repeat(65));
    let long_domain = format!("a@{}", "b".repeat(256));
    for (s, ok) in [
        ("ops@riverside.example", true),
        ("ü@ö", true),
        ("no-at-sign", false),
        ("a@b@c", false),
        ("a b@c", false),
        ("a@b\u{2003}c", false),
        ("@b", false),
        ("a@", false),
        (&long_local[..], false),
        (&long_domain[..], false),
    ] {
        assert_eq!(email.is_match(s), ok, "schema on {s:?}");
        assert_eq!(errs(|e| check::email(e, "f", s)), ok, "check on {s:?}");
    }
}

#[derive(Deserialize)]
struct Ints {
    #[serde(deserialize_with = "int::de")]
    n: i32,
    #[serde(default, deserialize_with = "int::opt")]
    m: Option<u64>,
}

#[test]
fn integers_written_with_a_zero_fraction_are_integers() {
    let p = |s: &str| serde_json::from_str::<Ints>(s).map(|v| (v.n, v.m));
    assert_eq!(p(r#"{"n": 2}"#).unwrap(), (2, None));
    assert_eq!(p(r#"{"n": 2.0, "m": 7.0}"#).unwrap(), (2, Some(7)));
    assert_eq!(p(r#"{"n": -3, "m": null}"#).unwrap(), (-3, None));
    for bad in [
        r#"{"n": 2.5}"#,
        r#"{"n": "2"}"#,
        r#"{"n": 3000000000}"#,
        r#"{"n": 1e300}"#,
        r#"{"n": 1, "m": -1}"#,
        r#"{"n": true}"#,
    ] {
        assert!(p(bad).is_err(), "{bad}");
    }
}

#[test]
fn topic_level_and_label_name_patterns_agree_with_the_checks() {
    let topic = regex::Regex::new(&pattern_of(schema::topic_level_opt::<1, 128>())).unwrap();
    for s in [
        "ps-1", "chlorine", " a ", "a/b", "a+", "#", " ", "", "a\u{1}", "ünï",
    ] {
        let by_check = errs(|e| check::text(e, "f", s, 1, 128)) && !s.contains(['/', '+', '#']);
        assert_eq!(topic.is_match(s), by_check, "{s:?}");
    }
    let label = regex::Regex::new(&pattern_of(schema::label_name())).unwrap();
    let long = "a".repeat(65);
    for s in [
        "gateway",
        "_x",
        "a1",
        "1a",
        "",
        "a-b",
        "ä",
        &long[..64],
        &long[..],
    ] {
        let by_check = crate::alerts::rules::valid_label_name(s);
        assert_eq!(label.is_match(s), by_check, "{s:?}");
    }
}
