//! The one error type of the api. Every failure leaves as
//! `application/problem+json` (RFC 9457) with a stable `type`, a human
//! `detail` and, for bad input, the offending fields.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::ToSchema;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// One offending field of a request.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `slug` or `mappings[2].role`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not the JSON the route expects (syntax, unknown or missing field, wrong type).
    #[error("{detail}")]
    BadRequest {
        detail: String,
        fields: Vec<FieldError>,
    },
    /// Well-formed input that breaks a rule (length, format, allowed values).
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    #[error("authentication required")]
    Unauthenticated,
    #[error("{0}")]
    InvalidCredentials(&'static str),
    #[error("account locked until {0}")]
    Locked(chrono::DateTime<chrono::Utc>),
    /// Sign-in throttled (per address, or no free password-hash slot).
    #[error("too many sign-in attempts; retry after {retry_after} s")]
    TooManyAttempts { retry_after: u64 },
    #[error("CSRF token missing or wrong")]
    Csrf,
    /// The account was disabled by a system administrator.
    #[error("this account is disabled")]
    AccountDisabled,
    #[error("you are not allowed to do this")]
    Forbidden,
    /// Missing, or not visible to the caller: both answer the same.
    #[error("not found")]
    NotFound,
    /// 404 that says why, where the caller may know the thing exists (an
    /// agent asking for a credential its config does not name).
    #[error("{0}")]
    NotFoundBecause(String),
    #[error("{detail}")]
    Conflict {
        detail: String,
        fields: Vec<FieldError>,
    },
    /// Well-formed (the OpenAPI document allows it), but this server's
    /// state or configuration refuses it: 409 with its own `kind`, naming
    /// the field. 422 stays for what the document itself rules out.
    #[error("{detail}")]
    Refused {
        kind: &'static str,
        detail: String,
        fields: Vec<FieldError>,
    },
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type: send application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    Unavailable(String),
    /// Something this server waited on (an agent's answer) did not come in time.
    #[error("{0}")]
    Timeout(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn conflict(detail: impl Into<String>, field: Option<&str>) -> Self {
        ApiError::Conflict {
            detail: detail.into(),
            fields: field
                .map(|f| vec![FieldError::new(f, "already in use")])
                .unwrap_or_default(),
        }
    }

    /// The request names something this organization does not have (an
    /// account, a project): `no-such`.
    pub fn no_such(field: &str, message: impl Into<String>) -> Self {
        Self::refused("no-such", field, message.into())
    }

    /// The outbound policy (`WEIR_OUTBOUND_ALLOW_CIDRS`, a setting of this
    /// server the document cannot state) refuses the target:
    /// `outbound-refused`.
    pub fn outbound_refused(field: &str, message: impl Into<String>) -> Self {
        Self::refused("outbound-refused", field, message.into())
    }

    fn refused(kind: &'static str, field: &str, message: String) -> Self {
        ApiError::Refused {
            kind,
            detail: message.clone(),
            fields: vec![FieldError::new(field, message)],
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthenticated | ApiError::InvalidCredentials(_) => StatusCode::UNAUTHORIZED,
            ApiError::Locked(_) | ApiError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Csrf | ApiError::Forbidden | ApiError::AccountDisabled => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound | ApiError::NotFoundBecause(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } | ApiError::Refused { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Db(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable kind, the last segment of `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad-request",
            ApiError::Validation(_) => "validation",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::InvalidCredentials(_) => "invalid-credentials",
            ApiError::Locked(_) => "account-locked",
            ApiError::TooManyAttempts { .. } => "too-many-attempts",
            ApiError::Csrf => "csrf",
            ApiError::AccountDisabled => "account-disabled",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound | ApiError::NotFoundBecause(_) => "not-found",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Refused { kind, .. } => kind,
            ApiError::PayloadTooLarge => "payload-too-large",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Timeout(_) => "timeout",
            ApiError::Db(_) | ApiError::Internal(_) => "internal",
        }
    }

    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        let (detail, errors) = match self {
            ApiError::BadRequest { detail, fields } => (detail.clone(), fields.clone()),
            ApiError::Conflict { detail, fields } | ApiError::Refused { detail, fields, .. } => {
                (detail.clone(), fields.clone())
            }
            ApiError::Validation(fields) => {
                let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
                (
                    format!("invalid fields: {}", names.join(", ")),
                    fields.clone(),
                )
            }
            // Never leak database or internal details to the client; they are logged.
            ApiError::Db(_) | ApiError::Internal(_) => {
                ("internal error; see the server log".to_string(), vec![])
            }
            other => (other.to_string(), vec![]),
        };
        Problem {
            r#type: format!("https://weir.dev/problems/{}", self.kind()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            errors,
        }
    }
}

/// `application/problem+json` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable URI naming the kind of problem, e.g. `https://weir.dev/problems/validation`.
    pub r#type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Offending fields (for 400, 409 and 422).
    pub errors: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Db(e) => tracing::error!(error = %e, "database error"),
            ApiError::Internal(e) => tracing::error!(error = %e, "internal error"),
            _ => {}
        }
        let problem = self.to_problem();
        let status = self.status();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, ApiError::Unauthenticated) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"weir\""),
            );
        }
        let retry_after = match &self {
            ApiError::TooManyAttempts { retry_after } => Some(*retry_after),
            ApiError::Locked(until) => {
                Some((*until - chrono::Utc::now()).num_seconds().max(1) as u64)
            }
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if matches!(self, ApiError::PayloadTooLarge) {
            // The rest of the body was never read, so this connection cannot
            // carry another request: say so, or a keep-alive client reuses it
            // and its next request fails with an incomplete message.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest {
            detail: r.body_text(),
            fields: vec![FieldError::new("path", r.body_text())],
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        let text = r.body_text();
        // serde_urlencoded names the field in the message; keep the text as is.
        let field = text
            .split('`')
            .nth(1)
            .map(str::to_string)
            .unwrap_or_else(|| "query".to_string());
        ApiError::BadRequest {
            detail: text,
            fields: vec![FieldError::new(field, "invalid query parameter")],
        }
    }
}

/// The error answers every route may give, for the OpenAPI document.
pub struct ProblemResponses;

impl utoipa::IntoResponses for ProblemResponses {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        let mut m = std::collections::BTreeMap::new();
        for (code, desc) in [
            (
                "400",
                "Malformed request (syntax, unknown or missing field)",
            ),
            ("401", "Not signed in"),
            ("403", "Signed in but not allowed"),
            ("404", "Not found or not visible to the caller"),
            (
                "409",
                "Conflicts with existing data, or well-formed but refused by this server's state or settings (kinds no-such, outbound-refused)",
            ),
            ("413", "Body too large"),
            ("415", "Body is not JSON"),
            ("422", "Invalid field values"),
            (
                "429",
                "Too many failed sign-ins from this address, or this address is locked out of the account; see Retry-After",
            ),
        ] {
            let resp = ResponseBuilder::new()
                .description(desc)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                            "Problem",
                        ))))
                        .build(),
                )
                .build();
            m.insert(code.to_string(), RefOr::T(resp));
        }
        m
    }
}
