//! The built console (`WEIR_WEB_DIR`, default `web/dist`) served at `/`,
//! with the SPA fallback to `index.html`. Hashed assets are cached for a
//! year; everything else is revalidated so a deploy shows at once. Unknown
//! `/api/...` paths answer problem+json 404 instead of the console.

use std::path::PathBuf;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use crate::error::ApiError;

pub async fn fallback(dir: PathBuf, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path == "/api" || path.starts_with("/api/") {
        return ApiError::NotFound.into_response();
    }
    let serve = ServeDir::new(&dir)
        .append_index_html_on_directories(true)
        .fallback(ServeFile::new(dir.join("index.html")));
    let mut resp = match serve.oneshot(req).await {
        Ok(r) => r.into_response(),
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let immutable = path.starts_with("/assets/");
    let value = if immutable && resp.status().is_success() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    resp
}
