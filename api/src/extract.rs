//! Extractors that turn every bad input into a problem+json answer naming
//! the field: JSON bodies (unknown fields rejected, then `Validate`), paths
//! and queries.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// Rules a request body checks after it parsed.
pub trait Validate {
    fn validate(&self) -> Result<(), Vec<FieldError>>;
}

/// A body whose `Validate` rules the handler runs itself, after it has
/// checked the caller's access (see the credentials routes).
#[derive(serde::Deserialize)]
#[serde(transparent)]
pub struct ParsedOnly<T>(pub T);

impl<T> Validate for ParsedOnly<T> {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Ok(())
    }
}

/// A JSON body that parsed (unknown fields are rejected by the types'
/// `deny_unknown_fields`) and validated.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = body_bytes(req, state).await?;
        let value = parse_json::<T>(&bytes)?;
        value.validate().map_err(ApiError::Validation)?;
        Ok(ApiJson(value))
    }
}

/// An optional JSON body: none (or `null`) is `T::default()`; otherwise as
/// [`ApiJson`].
pub struct ApiJsonOrDefault<T>(pub T);

impl<S, T> FromRequest<S> for ApiJsonOrDefault<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(&req);
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(ApiJsonOrDefault(T::default()));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let value = parse_json::<Option<T>>(&bytes)?.unwrap_or_default();
        value.validate().map_err(ApiError::Validation)?;
        Ok(ApiJsonOrDefault(value))
    }
}

/// `application/json` or `application/*+json`.
fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let ct = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))
        })
        .unwrap_or(false)
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest {
                detail: e.body_text(),
                fields: vec![],
            }
        }
    })
}

/// Parse JSON and name the field that failed.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        // For "missing field `x`" the path is the parent: name the field
        // itself. (For unknown fields the path already ends with the name.)
        let named = inner
            .split('`')
            .nth(1)
            .filter(|_| inner.starts_with("missing field"));
        let field = match (named, path.as_str()) {
            (Some(n), "." | "") => n.to_string(),
            (Some(n), p) => format!("{p}.{n}"),
            (None, ".") => "body".to_string(),
            (None, p) => p.to_string(),
        };
        ApiError::BadRequest {
            detail: format!("invalid body: {inner}"),
            fields: vec![FieldError::new(field, inner)],
        }
    })
}

/// Path parameters with problem+json rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Query parameters with problem+json rejections.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Field checks shared by the request types. Each rule that has a schema
/// counterpart is written once here: the OpenAPI document takes its pattern
/// from these constants (see [`schema`]), so what the document promises and
/// what the server refuses cannot drift apart.
pub mod check {
    use super::FieldError;
    use std::sync::LazyLock;

    // Control characters (Unicode Cc) other than tab and newline.
    macro_rules! ctrl {
        () => {
            r"\u0000-\u0008\u000B-\u001F\u007F-\u009F"
        };
    }
    // Unicode White_Space, which `str::trim` removes.
    macro_rules! ws {
        () => {
            r"\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"
        };
    }

    /// 1-63 lowercase letters, digits or '-', not starting or ending with '-'.
    pub const SLUG_PATTERN: &str = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
    /// Free text: no control characters but tab and newline.
    pub const TEXT_PATTERN: &str = concat!("^[^", ctrl!(), "]*$");
    /// Free text with at least one character that is not white space.
    pub const NONBLANK_TEXT_PATTERN: &str = concat!(
        "^[^",
        ctrl!(),
        "]*[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^",
        ctrl!(),
        "]*$"
    );
    /// Free text that names an MQTT topic level: not blank, and without the
    /// topic separators '/', '+' and '#'.
    pub const TOPIC_LEVEL_PATTERN: &str = concat!(
        "^[^/+#",
        ctrl!(),
        "]*[^/+#\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^/+#",
        ctrl!(),
        "]*$"
    );
    /// A label name: letters, digits and '_', not starting with a digit.
    pub const LABEL_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]{0,63}$";
    /// local@domain without white space or a second '@' (at most 320 characters).
    pub const EMAIL_PATTERN: &str = concat!("^[^@", ws!(), "]{1,64}@[^@", ws!(), "]{1,255}$");

    // These are written with \uXXXX escapes, which the regex crate, Python and
    // ECMA-262 (the OpenAPI `pattern` dialect) all read the same way.
    static SLUG: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(SLUG_PATTERN).unwrap());
    static TEXT: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(TEXT_PATTERN).unwrap());
    static NONBLANK_TEXT: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(NONBLANK_TEXT_PATTERN).unwrap());
    static EMAIL: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(EMAIL_PATTERN).unwrap());

    pub fn slug(errs: &mut Vec<FieldError>, field: &str, v: &str) {
        if !SLUG.is_match(v) {
            errs.push(FieldError::new(
                field,
                "must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'",
            ));
        }
    }

    /// Free text of `min..=max` characters (`schema::text::<MIN, MAX>` in the document).
    pub fn text(errs: &mut Vec<FieldError>, field: &str, v: &str, min: usize, max: usize) {
        let n = v.chars().count();
        if n < min || n > max {
            errs.push(FieldError::new(
                field,
                format!("length must be between {min} and {max} characters"),
            ));
        } else if !TEXT.is_match(v) {
            errs.push(FieldError::new(
                field,
                "must not contain control characters",
            ));
        } else if min > 0 && !NONBLANK_TEXT.is_match(v) {
            errs.push(FieldError::new(field, "must not be blank"));
        }
    }

    pub fn email(errs: &mut Vec<FieldError>, field: &str, v: &str) {
        if !EMAIL.is_match(v) {
            errs.push(FieldError::new(field, "must be an email address"));
        }
    }

    pub fn finish(errs: Vec<FieldError>) -> Result<(), Vec<FieldError>> {
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

/// The schemas of the [`check`] rules, for `#[schema(schema_with = ...)]`
/// and path parameters: the same constants, so the document states exactly
/// what the checks refuse.
pub mod schema {
    use super::check;
    use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

    fn string(nullable: bool) -> ObjectBuilder {
        let t = if nullable {
            SchemaType::from_iter([Type::String, Type::Null])
        } else {
            SchemaType::Type(Type::String)
        };
        ObjectBuilder::new().schema_type(t)
    }

    fn text_of(min: usize, max: usize, nullable: bool) -> Object {
        let (pattern, min) = if min > 0 {
            (check::NONBLANK_TEXT_PATTERN, Some(min))
        } else {
            (check::TEXT_PATTERN, None)
        };
        string(nullable)
            .min_length(min)
            .max_length(Some(max))
            .pattern(Some(pattern))
            .build()
    }

    /// A slug (`check::slug`).
    pub fn slug() -> Object {
        string(false)
            .min_length(Some(1))
            .max_length(Some(63))
            .pattern(Some(check::SLUG_PATTERN))
            .build()
    }

    /// A slug or null.
    pub fn slug_opt() -> Object {
        string(true)
            .min_length(Some(1))
            .max_length(Some(63))
            .pattern(Some(check::SLUG_PATTERN))
            .build()
    }

    /// Free text of `MIN..=MAX` characters (`check::text`).
    pub fn text<const MIN: usize, const MAX: usize>() -> Object {
        text_of(MIN, MAX, false)
    }

    /// Free text of `MIN..=MAX` characters, or null.
    pub fn text_opt<const MIN: usize, const MAX: usize>() -> Object {
        text_of(MIN, MAX, true)
    }

    // No `format: email`: validators read that format differently (RFC 5321
    // hosts, IDN), so the pattern alone is the contract and says what the
    // api accepts (schemathesis ST201 on "a@b.io*": the format refused what
    // the api and the pattern accept).
    fn email_of(nullable: bool) -> Object {
        string(nullable)
            .description(Some("An email address: local@domain, without white space"))
            .max_length(Some(320))
            .pattern(Some(check::EMAIL_PATTERN))
            .build()
    }

    /// An email address (`check::email`).
    pub fn email() -> Object {
        email_of(false)
    }

    /// An email address or null.
    pub fn email_opt() -> Object {
        email_of(true)
    }

    /// A topic level of `MIN..=MAX` characters, or null (`check::text` and
    /// no '/', '+' or '#').
    pub fn topic_level_opt<const MIN: usize, const MAX: usize>() -> Object {
        string(true)
            .min_length(Some(MIN))
            .max_length(Some(MAX))
            .pattern(Some(check::TOPIC_LEVEL_PATTERN))
            .build()
    }

    /// `allOf` the schema named `fields` and `rule` (JSON Schema).
    pub fn fields_and_rule(
        fields: &str,
        rule: serde_json::Value,
    ) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        // utoipa's schema types have no `const` nor a schema without a type;
        // the rule's keywords ride along as a typeless schema's extra keys.
        let serde_json::Value::Object(keywords) = rule else {
            panic!("a body rule is a JSON object");
        };
        let rule = ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .extensions(Some(keywords.into_iter().collect()))
            .build();
        utoipa::openapi::schema::AllOfBuilder::new()
            .item(utoipa::openapi::Ref::from_schema_name(fields))
            .item(rule)
            .into()
    }

    /// Labels: up to 32 label names, each with free text of at most 256
    /// characters.
    pub fn labels() -> Object {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .max_properties(Some(32))
            .property_names(Some(label_name()))
            .additional_properties(Some(utoipa::openapi::schema::Schema::Object(text_of(
                0, 256, false,
            ))))
            .build()
    }

    /// A label name (`alerts::rules::valid_label_name`).
    pub fn label_name() -> Object {
        string(false)
            .pattern(Some(check::LABEL_NAME_PATTERN))
            .build()
    }
}

/// A request body whose fields a derived schema states and whose rule across
/// fields (one of two fields, a field that another one requires) JSON Schema
/// states on top: `body_rule!(Doc, Fields, json!({...}))` makes `Doc` the
/// document's body type, `allOf` the fields of `Fields` and the rule. Put
/// `request_body = Doc` in the path; the handler still takes `Fields`.
#[macro_export]
macro_rules! body_rule {
    ($doc:ident, $fields:ty, $rule:expr) => {
        #[doc = concat!("The documented body of [`", stringify!($fields), "`], with its rule across fields.")]
        pub struct $doc;

        impl utoipa::PartialSchema for $doc {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::extract::schema::fields_and_rule(
                    &<$fields as utoipa::ToSchema>::name(),
                    $rule,
                )
            }
        }

        impl utoipa::ToSchema for $doc {
            fn schemas(
                out: &mut Vec<(
                    String,
                    utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
                )>,
            ) {
                out.push((
                    <$fields as utoipa::ToSchema>::name().into(),
                    <$fields as utoipa::PartialSchema>::schema(),
                ));
                <$fields as utoipa::ToSchema>::schemas(out);
            }
        }
    };
}

/// Integers in JSON bodies, for `#[serde(deserialize_with = ...)]`. JSON
/// has one number type: `2.0` is the integer 2 to JSON Schema and to
/// JavaScript, so refusing it would refuse what the document allows.
pub mod int {
    use serde::de::{Deserializer, Error, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    struct Int<T>(PhantomData<T>);

    impl<T: TryFrom<i64> + TryFrom<u64>> Visitor<'_> for Int<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
            // Beyond 2^53 a float no longer names one integer.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if v.fract() != 0.0 || !(-EXACT..=EXACT).contains(&v) {
                return Err(E::invalid_type(serde::de::Unexpected::Float(v), &self));
            }
            self.visit_i64(v as i64)
        }
    }

    /// An integer, also written with a zero fraction (`2.0`).
    pub fn de<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i64> + TryFrom<u64>,
    {
        d.deserialize_any(Int(PhantomData))
    }

    struct OptInt<T>(PhantomData<T>);

    impl<'de, T: TryFrom<i64> + TryFrom<u64>> Visitor<'de> for OptInt<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer or null")
        }

        fn visit_unit<E: Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }

        fn visit_none<E: Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
            de(d).map(Some)
        }
    }

    /// An optional integer; use with `#[serde(default)]`.
    pub fn opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i64> + TryFrom<u64>,
    {
        d.deserialize_option(OptInt(PhantomData))
    }
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
