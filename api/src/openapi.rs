//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! annotations as the router is composed (so a route cannot be served
//! without being documented), at `GET /api/v1/openapi.json`.

use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{FieldError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Weir API",
        description = "Control plane of Weir: organizations, projects, members, sign-in, API tokens and the audit log. Errors are application/problem+json.",
        license(name = "Apache-2.0")
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Sign-in, sessions, SSO"),
        (name = "orgs", description = "Organizations"),
        (name = "projects", description = "Projects"),
        (name = "members", description = "Members and invitations"),
        (name = "tokens", description = "API tokens"),
        (name = "audit", description = "Audit log"),
        (name = "users", description = "Accounts"),
        (name = "health", description = "Health and metrics"),
        (name = "alerts", description = "Alert rules, active alerts, history, silences, notification channels"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::SESSION_COOKIE,
            ))),
        );
        openapi.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("session", Vec::<String>::new()),
        ]);
    }
}

#[cfg(test)]
mod tests {
    /// A parameter documented `in: path` that is not in its route's path
    /// cannot be sent, and a generated client makes it required: the
    /// console could not filter alert history by rule while that was so.
    #[test]
    fn every_path_parameter_is_in_its_path() {
        let doc = serde_json::to_value(crate::openapi_doc()).unwrap();
        let mut wrong = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let name = p["name"].as_str().unwrap();
                    if p["in"] == "path" && !path.contains(&format!("{{{name}}}")) {
                        wrong.push(format!("{method} {path}: {name}"));
                    }
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "query parameters documented as path parameters: {wrong:?}"
        );
    }
}
