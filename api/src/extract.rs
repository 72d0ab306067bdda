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
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let ct = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                ct == "application/json"
                    || (ct.starts_with("application/") && ct.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest {
                    detail: e.body_text(),
                    fields: vec![],
                }
            }
        })?;
        let value = parse_json::<T>(&bytes)?;
        value.validate().map_err(ApiError::Validation)?;
        Ok(ApiJson(value))
    }
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

/// Field checks shared by the request types.
pub mod check {
    use super::FieldError;
    use std::sync::LazyLock;

    static SLUG: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$").unwrap());
    static EMAIL: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"^[^@\s]{1,64}@[^@\s]{1,255}$").unwrap());

    pub const SLUG_PATTERN: &str = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

    pub fn slug(errs: &mut Vec<FieldError>, field: &str, v: &str) {
        if !SLUG.is_match(v) {
            errs.push(FieldError::new(
                field,
                "must be 1-63 lowercase letters, digits or '-', not starting or ending with '-'",
            ));
        }
    }

    pub fn text(errs: &mut Vec<FieldError>, field: &str, v: &str, min: usize, max: usize) {
        let n = v.chars().count();
        if n < min || n > max {
            errs.push(FieldError::new(
                field,
                format!("length must be between {min} and {max} characters"),
            ));
        } else if min > 0 && v.trim().is_empty() {
            errs.push(FieldError::new(field, "must not be blank"));
        } else if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            errs.push(FieldError::new(
                field,
                "must not contain control characters",
            ));
        }
    }

    pub fn email(errs: &mut Vec<FieldError>, field: &str, v: &str) {
        if v.len() > 320 || !EMAIL.is_match(v) {
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
