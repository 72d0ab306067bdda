//! The built console (`WEIR_WEB_DIR`, default `web/dist`) served at `/`,
//! with the SPA fallback to `index.html`. Hashed assets are cached for a
//! year; everything else is revalidated so a deploy shows at once. Unknown
//! `/api/...` paths answer problem+json 404 instead of the console.
//! Every response (api, problem, console) carries the security headers of
//! [`security_headers`].

use std::path::PathBuf;

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

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

/// The console's policy. The built console (web/dist) is one module script
/// and one stylesheet under /assets, no inline script or `<style>`; React
/// and uPlot set styles through the CSSOM, which `style-src` does not
/// cover. The favicon is a `data:` SVG. The OIDC login is a navigation
/// (redirect), not a form post, so forms stay on 'self'.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// HSTS for a year; sent only when the api is reached over TLS (a
/// `Strict-Transport-Security` on plain http would be ignored at best and
/// pin a dev hostname to https at worst).
pub const HSTS: &str = "max-age=31536000";

/// Add the security headers to every response of `app` (outermost, so
/// problem responses, 404s, 405s and the console all get them). A handler
/// that sets one of them itself keeps its own value.
pub fn security_headers(app: Router, https: bool) -> Router {
    let headers: [(HeaderName, &'static str); 4] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    let mut app = app;
    for (name, value) in headers {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    if https {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        ));
    }
    app
}
