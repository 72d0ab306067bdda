//! End-to-end behaviour of weir-api over HTTP, on SQLite and PostgreSQL.

use crate::common;

use common::{Backend, Cred, TestApp, ADMIN_EMAIL};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn health_openapi_and_metrics(b: Backend) {
    let app = TestApp::start(b).await;
    let r = app.get("/healthz", &Cred::None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.get("/readyz", &Cred::None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = app.get("/api/v1/openapi.json", &Cred::None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc.body["paths"]["/api/v1/orgs/{org}/projects"]["get"].is_object());
    // Unknown api paths answer problem+json, not the console.
    let r = app.get("/api/v1/nope", &Cred::None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let m = app.get("/metrics", &Cred::None).await;
    let text = m.body.as_str().unwrap().to_string();
    assert!(text.contains("weir_api_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/readyz\""), "{text}");
    assert!(text.contains("weir_api_http_request_duration_seconds_bucket"));
    app.stop().await;
}
on_both_databases!(
    health_openapi_and_metrics,
    super::health_openapi_and_metrics
);

async fn login_session_csrf_logout(b: Backend) {
    let app = TestApp::start(b).await;
    let r = app.get("/api/v1/me", &Cred::None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["type"], "https://weir.dev/problems/unauthenticated");

    let r = app
        .post(
            "/api/v1/auth/login",
            &Cred::None,
            json!({"email": ADMIN_EMAIL, "password": common::ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let set: Vec<String> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = set.iter().find(|c| c.starts_with("weir_session=")).unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(
        !session.contains("Secure"),
        "plain http must not set Secure"
    );
    assert_eq!(r.body["user"]["system_admin"], true);
    let cred = app.admin().await;

    let me = app.get("/api/v1/me", &cred).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["user"]["email"], ADMIN_EMAIL);

    // A change with the cookie but without the CSRF header is refused.
    let Cred::Session { cookie, .. } = &cred else {
        unreachable!()
    };
    let no_csrf = Cred::Session {
        cookie: cookie.clone(),
        csrf: String::new(),
    };
    let r = app
        .post("/api/v1/orgs", &no_csrf, json!({"slug": "x", "name": "X"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["type"], "https://weir.dev/problems/csrf");

    let r = app
        .call(Method::POST, "/api/v1/auth/logout", &cred, None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.get("/api/v1/me", &cred).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "session ends at logout");
    app.stop().await;
}
on_both_databases!(login_session_csrf_logout, super::login_session_csrf_logout);

async fn failed_logins_lock_the_account(b: Backend) {
    let app = TestApp::start_with(b, |c| {
        c.login_max_failures = 3;
        c.login_lockout_secs = 3600;
    })
    .await;
    let bad = json!({"email": ADMIN_EMAIL, "password": "wrong password"});
    for _ in 0..3 {
        let r = app
            .post("/api/v1/auth/login", &Cred::None, bad.clone())
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Locked now (for this address): even the right password is refused.
    let good = json!({"email": ADMIN_EMAIL, "password": common::ADMIN_PASSWORD});
    let r = app.post("/api/v1/auth/login", &Cred::None, good).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    assert_eq!(r.body["type"], "https://weir.dev/problems/account-locked");
    // The first failure and the lock have entries of their own; the other
    // attempts are tallied into one later (see signin_abuse.rs).
    let n = weir_api::audit::verify(&app.running.state.db)
        .await
        .unwrap();
    match n {
        weir_api::audit::Verdict::Intact { entries } => assert!(entries >= 3, "{entries}"),
        other => panic!("{other:?}"),
    }
    app.stop().await;
}
on_both_databases!(
    failed_logins_lock_the_account,
    super::failed_logins_lock_the_account
);

async fn orgs_projects_crud_and_bad_input(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    let r = app
        .post(
            "/api/v1/orgs",
            &admin,
            json!({"slug": "riverside-water", "name": "Riverside Water"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // Duplicate slug: 409 naming the field.
    let r = app
        .post(
            "/api/v1/orgs",
            &admin,
            json!({"slug": "riverside-water", "name": "Again"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.body["errors"][0]["field"], "slug");
    // Unknown field: 400 naming it; invalid slug: 422 naming it.
    let r = app
        .post(
            "/api/v1/orgs",
            &admin,
            json!({"slug": "a", "name": "A", "colour": "red"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.body["errors"][0]["field"], "colour");
    let r = app
        .post(
            "/api/v1/orgs",
            &admin,
            json!({"slug": "Bad Slug", "name": ""}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["slug", "name"]);
    let r = app
        .post("/api/v1/orgs", &admin, json!({"name": "No slug"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["errors"][0]["field"], "slug");
    // Too large a body.
    let big = "x".repeat(3 * 1024 * 1024);
    let r = app
        .post("/api/v1/orgs", &admin, json!({"slug": "big", "name": big}))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // The unread rest of the body makes the connection unusable; the client is told.
    assert_eq!(r.headers["connection"], "close");

    let r = app
        .post(
            "/api/v1/orgs/riverside-water/projects",
            &admin,
            json!({"slug": "north-plant", "name": "North Plant"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .get("/api/v1/orgs/riverside-water/projects", &admin)
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.body[0]["slug"], "north-plant");
    let r = app
        .call(
            Method::PATCH,
            "/api/v1/orgs/riverside-water/projects/north-plant",
            &admin,
            Some(json!({"name": "North"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["name"], "North");
    let r = app
        .call(
            Method::PATCH,
            "/api/v1/orgs/riverside-water",
            &admin,
            Some(json!({"description": "utility"})),
        )
        .await;
    assert_eq!(r.body["description"], "utility");
    let r = app
        .call(
            Method::DELETE,
            "/api/v1/orgs/riverside-water/projects/north-plant",
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .get("/api/v1/orgs/riverside-water/projects/north-plant", &admin)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(Method::DELETE, "/api/v1/orgs/riverside-water", &admin, None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app.get("/api/v1/orgs", &admin).await;
    assert!(r.body.as_array().unwrap().is_empty());
    app.stop().await;
}
on_both_databases!(
    orgs_projects_crud_and_bad_input,
    super::orgs_projects_crud_and_bad_input
);

async fn members_invitations_roles_and_leaving(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    let (_, owner) = app.user(&admin, "owner@riverside.test").await;
    app.post(
        "/api/v1/orgs",
        &admin,
        json!({"slug": "riverside", "name": "Riverside", "owner_email": "owner@riverside.test"}),
    )
    .await;
    let r = app
        .post(
            "/api/v1/orgs/riverside/projects",
            &owner,
            json!({"slug": "north", "name": "North"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    // Adding someone who has no account is refused (409: the org's state
    // decides), naming the field and pointing at invitations.
    let r = app
        .post(
            "/api/v1/orgs/riverside/projects/north/members",
            &owner,
            json!({"email": "tech@riverside.test", "role": "project-viewer"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "email", "{:?}", r.body);
    assert_eq!(r.body["type"], "https://weir.dev/problems/no-such");
    assert!(
        r.body["detail"].as_str().unwrap().contains("invitation"),
        "{:?}",
        r.body
    );
    // Invite someone who has no account yet; the invitation is claimed at first sign-in.
    let r = app
        .post(
            "/api/v1/orgs/riverside/projects/north/invitations",
            &owner,
            json!({"email": "tech@riverside.test", "role": "project-viewer"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let (tech_id, tech) = app.user(&admin, "tech@riverside.test").await;
    let me = app.get("/api/v1/me", &tech).await;
    assert_eq!(me.body["projects"][0]["project"], "north", "{:?}", me.body);
    assert_eq!(me.body["projects"][0]["role"], "project-viewer");
    // A viewer sees the project but cannot change it.
    assert_eq!(
        app.get("/api/v1/orgs/riverside/projects/north", &tech)
            .await
            .status,
        StatusCode::OK
    );
    let r = app
        .call(
            Method::PATCH,
            "/api/v1/orgs/riverside/projects/north",
            &tech,
            Some(json!({"name": "N"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Promote to editor... still no rename; to admin: rename works.
    let path = format!("/api/v1/orgs/riverside/projects/north/members/{tech_id}");
    let r = app
        .call(
            Method::PATCH,
            &path,
            &owner,
            Some(json!({"role": "project-admin"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .call(
            Method::PATCH,
            "/api/v1/orgs/riverside/projects/north",
            &tech,
            Some(json!({"name": "N"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // A bad role names the field.
    let r = app
        .call(
            Method::PATCH,
            &path,
            &owner,
            Some(json!({"role": "org-owner"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["errors"][0]["field"], "role");
    // The last owner cannot leave; the tech can.
    let r = app
        .call(Method::POST, "/api/v1/orgs/riverside/leave", &owner, None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = app
        .call(
            Method::POST,
            "/api/v1/orgs/riverside/projects/north/leave",
            &tech,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .get("/api/v1/orgs/riverside/projects/north", &tech)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Org members list.
    let r = app.get("/api/v1/orgs/riverside/members", &owner).await;
    assert_eq!(r.body[0]["email"], "owner@riverside.test");
    assert_eq!(r.body[0]["role"], "org-owner");
    app.stop().await;
}
on_both_databases!(
    members_invitations_roles_and_leaving,
    super::members_invitations_roles_and_leaving
);

async fn api_tokens_scope_revoke_and_hashing(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.post(
        "/api/v1/orgs",
        &admin,
        json!({"slug": "a-org", "name": "A"}),
    )
    .await;
    app.post(
        "/api/v1/orgs",
        &admin,
        json!({"slug": "b-org", "name": "B"}),
    )
    .await;
    app.post(
        "/api/v1/orgs/a-org/projects",
        &admin,
        json!({"slug": "p1", "name": "P1"}),
    )
    .await;
    app.post(
        "/api/v1/orgs/a-org/projects",
        &admin,
        json!({"slug": "p2", "name": "P2"}),
    )
    .await;
    let r = app
        .post(
            "/api/v1/orgs/a-org/projects/p1/tokens",
            &admin,
            json!({"name": "reader", "role": "project-viewer", "expires_in_days": 30}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let token = r.body["token"].as_str().unwrap().to_string();
    let token_id = r.body["id"].as_str().unwrap().to_string();
    let bearer = Cred::Bearer(token.clone());
    // Stored hashed: the secret is nowhere in the table.
    use sea_orm::EntityTrait;
    let rows = weir_api::db::entities::api_token::Entity::find()
        .all(&app.running.state.db)
        .await
        .unwrap();
    assert!(rows
        .iter()
        .all(|t| t.token_hash != token && !token.contains(&t.token_hash)));
    // Lists never show it again.
    let r = app
        .get("/api/v1/orgs/a-org/projects/p1/tokens", &admin)
        .await;
    assert!(r.body[0].get("token").is_none());

    assert_eq!(
        app.get("/api/v1/orgs/a-org/projects/p1", &bearer)
            .await
            .status,
        StatusCode::OK
    );
    // Read-only role; other project and other org invisible; no system rights.
    let r = app
        .call(
            Method::PATCH,
            "/api/v1/orgs/a-org/projects/p1",
            &bearer,
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/api/v1/orgs/a-org/projects/p2", &bearer)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/orgs/b-org", &bearer).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/users", &bearer).await.status,
        StatusCode::FORBIDDEN
    );
    let r = app.get("/api/v1/orgs/a-org/projects", &bearer).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1, "{:?}", r.body);
    let r = app
        .get("/api/v1/orgs/a-org/projects/p1/tokens", &admin)
        .await;
    assert!(
        r.body[0]["last_used_at"].is_string(),
        "last use recorded: {:?}",
        r.body
    );

    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/orgs/a-org/projects/p1/tokens/{token_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/orgs/a-org/projects/p1", &bearer)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/me", &Cred::Bearer("weir_nothing_here".into()))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}
on_both_databases!(
    api_tokens_scope_revoke_and_hashing,
    super::api_tokens_scope_revoke_and_hashing
);

/// A new org `slug` and an org-admin API token of it: the bearer and the
/// token's id.
async fn org_with_admin_token(app: &TestApp, admin: &Cred, slug: &str) -> (Cred, String) {
    let r = app
        .post("/api/v1/orgs", admin, json!({"slug": slug, "name": slug}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .post(
            &format!("/api/v1/orgs/{slug}/tokens"),
            admin,
            json!({"name": "ci", "role": "org-admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let bearer = Cred::Bearer(r.body["token"].as_str().unwrap().to_string());
    (bearer, r.body["id"].as_str().unwrap().to_string())
}

/// Tokens are cached for a few seconds (`auth::cache`): a revocation works
/// at once on the replica that made it and within the cache's TTL on a
/// replica that had the token cached.
async fn revocation_reaches_every_replica(b: Backend) {
    let app = TestApp::start(b).await;
    let other = app.replica(|_| {}).await;
    let admin = app.admin().await;
    let (bearer, id) = org_with_admin_token(&app, &admin, "r-org").await;
    let path = "/api/v1/orgs/r-org/projects";
    // Both replicas hold it now.
    for _ in 0..2 {
        assert_eq!(app.get(path, &bearer).await.status, StatusCode::OK);
        assert_eq!(other.get(path, &bearer).await.status, StatusCode::OK);
    }
    let r = app
        .call(
            Method::DELETE,
            &format!("/api/v1/orgs/r-org/tokens/{id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(path, &bearer).await.status,
        StatusCode::UNAUTHORIZED
    );
    let started = std::time::Instant::now();
    let limit = weir_api::auth::cache::TTL + std::time::Duration::from_secs(2);
    while other.get(path, &bearer).await.status != StatusCode::UNAUTHORIZED {
        assert!(
            started.elapsed() < limit,
            "the other replica still accepts a revoked token after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    other.stop().await;
    app.stop().await;
}
on_both_databases!(
    revocation_reaches_every_replica,
    super::revocation_reaches_every_replica
);

/// A token never makes a token with more rights than its own: an org-admin
/// token may make another org-admin token, not an org-owner one.
async fn a_token_cannot_make_a_stronger_token(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    let (bearer, _) = org_with_admin_token(&app, &admin, "e-org").await;
    let r = app
        .post(
            "/api/v1/orgs/e-org/tokens",
            &bearer,
            json!({"name": "owner", "role": "org-owner"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert!(
        r.body.to_string().contains("more rights"),
        "the refusal names why: {:?}",
        r.body
    );
    let r = app
        .post(
            "/api/v1/orgs/e-org/tokens",
            &bearer,
            json!({"name": "admin-2", "role": "org-admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    app.stop().await;
}
on_both_databases!(
    a_token_cannot_make_a_stronger_token,
    super::a_token_cannot_make_a_stronger_token
);

async fn other_orgs_are_invisible(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    let (_, alice) = app.user(&admin, "alice@a.test").await;
    app.user(&admin, "bob@b.test").await;
    app.post(
        "/api/v1/orgs",
        &admin,
        json!({"slug": "org-a", "name": "A", "owner_email": "alice@a.test"}),
    )
    .await;
    app.post(
        "/api/v1/orgs",
        &admin,
        json!({"slug": "org-b", "name": "B", "owner_email": "bob@b.test"}),
    )
    .await;
    app.post(
        "/api/v1/orgs/org-b/projects",
        &admin,
        json!({"slug": "secret", "name": "S"}),
    )
    .await;
    let r = app.get("/api/v1/orgs", &alice).await;
    let slugs: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, vec!["org-a"]);
    // Existing and missing objects of another org answer the same.
    for (existing, missing) in [
        ("/api/v1/orgs/org-b", "/api/v1/orgs/org-zzz"),
        (
            "/api/v1/orgs/org-b/projects",
            "/api/v1/orgs/org-zzz/projects",
        ),
        (
            "/api/v1/orgs/org-b/projects/secret",
            "/api/v1/orgs/org-b/projects/nope",
        ),
        ("/api/v1/orgs/org-b/members", "/api/v1/orgs/org-zzz/members"),
        ("/api/v1/orgs/org-b/audit", "/api/v1/orgs/org-zzz/audit"),
    ] {
        let a = app.get(existing, &alice).await;
        let b = app.get(missing, &alice).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{existing}");
        assert_eq!(a.body, b.body, "{existing} vs {missing}");
    }
    let r = app
        .call(Method::DELETE, "/api/v1/orgs/org-b", &alice, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .post(
            "/api/v1/orgs/org-b/projects",
            &alice,
            json!({"slug": "x", "name": "X"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    app.stop().await;
}
on_both_databases!(other_orgs_are_invisible, super::other_orgs_are_invisible);

async fn audit_log_records_filters_and_detects_tampering(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    app.post(
        "/api/v1/orgs",
        &admin,
        json!({"slug": "aud", "name": "Aud"}),
    )
    .await;
    for i in 0..5 {
        app.post(
            "/api/v1/orgs/aud/projects",
            &admin,
            json!({"slug": format!("p{i}"), "name": "P"}),
        )
        .await;
    }
    let r = app
        .get(
            "/api/v1/orgs/aud/audit?action=project.create&limit=2",
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        r.body["items"][0]["target"], "project:aud/p4",
        "newest first"
    );
    assert_eq!(r.body["items"][0]["actor"], ADMIN_EMAIL);
    assert_eq!(r.body["items"][0]["client_addr"], "127.0.0.1");
    let mut seen = 2;
    let mut cursor = r.body["next_cursor"].as_i64();
    while let Some(c) = cursor {
        let r = app
            .get(
                &format!("/api/v1/orgs/aud/audit?action=project.create&limit=2&cursor={c}"),
                &admin,
            )
            .await;
        seen += r.body["items"].as_array().unwrap().len();
        cursor = r.body["next_cursor"].as_i64();
    }
    assert_eq!(seen, 5);
    let r = app.get("/api/v1/orgs/aud/audit?limit=0", &admin).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"][0]["field"], "limit");
    // Sign-ins are logged system-wide.
    let r = app.get("/api/v1/audit?action=auth.login", &admin).await;
    assert!(!r.body["items"].as_array().unwrap().is_empty());

    let db = &app.running.state.db;
    assert!(matches!(
        weir_api::audit::verify(db).await.unwrap(),
        weir_api::audit::Verdict::Intact { .. }
    ));
    // Tamper: rewrite the target of one entry behind the api's back.
    use sea_orm::ConnectionTrait;
    let victim = r.body["items"].as_array().unwrap().last().unwrap()["seq"]
        .as_i64()
        .unwrap();
    let seq = victim + 2;
    db.execute_unprepared(&format!(
        "UPDATE audit_log SET target = 'project:aud/forged' WHERE seq = {seq}"
    ))
    .await
    .unwrap();
    match weir_api::audit::verify(db).await.unwrap() {
        weir_api::audit::Verdict::Broken { seq: s, .. } => assert_eq!(s, seq),
        other => panic!("tampering not caught: {other:?}"),
    }
    app.stop().await;
}
on_both_databases!(
    audit_log_records_filters_and_detects_tampering,
    super::audit_log_records_filters_and_detects_tampering
);
