//! Account and agent lifecycle (issue 18, part 3): changing one's password
//! ends the other sessions, "sign out everywhere", disabling an account
//! (sessions, tokens and sign-in refused at once; enable restores), and the
//! purge of expired sessions.

use crate::common;

use chrono::{Duration, Utc};
use common::{Backend, Cred, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};
use reqwest::{Method, StatusCode};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde_json::{json, Value};
use weir_api::auth::sessions;
use weir_api::db::entities::session;

const PASSWORD: &str = "password-for-tests";
const NEW_PASSWORD: &str = "a much longer new password";

fn field_of(body: &Value) -> &str {
    body["errors"][0]["field"].as_str().unwrap_or("")
}

async fn put_password(app: &TestApp, cred: &Cred, current: &str, new: &str) -> common::Resp {
    app.call(
        Method::PUT,
        "/api/v1/me/password",
        cred,
        Some(json!({"current_password": current, "new_password": new})),
    )
    .await
}

/// An org owned by `email`, and an org-admin API token its owner made there.
async fn org_and_token(app: &TestApp, admin: &Cred, owner: &Cred, email: &str, slug: &str) -> Cred {
    app.post_ok(
        "/api/v1/orgs",
        admin,
        json!({"slug": slug, "name": slug, "owner_email": email}),
    )
    .await;
    let t = app
        .post_ok(
            &format!("/api/v1/orgs/{slug}/tokens"),
            owner,
            json!({"name": "ci", "role": "org-admin"}),
        )
        .await;
    Cred::Bearer(t["token"].as_str().unwrap().to_string())
}

async fn audited(app: &TestApp, admin: &Cred, action: &str) -> Vec<Value> {
    let page = app
        .get_ok(&format!("/api/v1/audit?action={action}"), admin)
        .await;
    page["items"].as_array().unwrap().clone()
}

async fn password_change(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    let email = "pat@lifecycle.test";
    let (_, s1) = app.user(&admin, email).await;
    let s2 = app.login(email, PASSWORD).await;
    let token = org_and_token(&app, &admin, &s1, email, "pat-org").await;

    // A token must not change its owner's password.
    let r = put_password(&app, &token, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    // A session change needs its CSRF token.
    let Cred::Session { cookie, .. } = &s1 else {
        unreachable!()
    };
    let no_csrf = Cred::Session {
        cookie: cookie.clone(),
        csrf: "wrong".into(),
    };
    let r = put_password(&app, &no_csrf, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    // Wrong current password, a new one too short or equal to the current.
    let r = put_password(&app, &s1, "not the password", NEW_PASSWORD).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(field_of(&r.body), "current_password");
    let r = put_password(&app, &s1, PASSWORD, "short").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(field_of(&r.body), "new_password");
    let r = put_password(&app, &s1, PASSWORD, PASSWORD).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(field_of(&r.body), "new_password");
    // Nothing changed so far.
    assert_eq!(app.get("/api/v1/me", &s2).await.status, StatusCode::OK);

    let r = put_password(&app, &s1, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(app.get("/api/v1/me", &s1).await.status, StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/me", &s2).await.status,
        StatusCode::UNAUTHORIZED,
        "the other session ends"
    );
    let old = app
        .post(
            "/api/v1/auth/login",
            &Cred::None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    app.login(email, NEW_PASSWORD).await;
    let entries = audited(&app, &admin, "user.password_change").await;
    assert!(
        entries.iter().any(|e| e["outcome"] == "success"),
        "{entries:?}"
    );

    // Guessing the current password spends the sign-in limits: after
    // WEIR_LOGIN_MAX_FAILURES wrong ones, even the right one is refused.
    let (_, guesser) = app.user(&admin, "guess@lifecycle.test").await;
    for _ in 0..5 {
        let r = put_password(&app, &guesser, "not the password", NEW_PASSWORD).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    }
    let r = put_password(&app, &guesser, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
    // ...and counted like refused sign-ins.
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("weir_api_auth_login_refused_total{reason=\"locked\"} 1"),
        "{metrics}"
    );

    // An SSO-only account has no password to change.
    let u = app
        .post_ok(
            "/api/v1/users",
            &admin,
            json!({"email": "sso@lifecycle.test", "name": "SSO"}),
        )
        .await;
    let id = u["id"].as_str().unwrap().parse().unwrap();
    let st = &app.running.state;
    let s = sessions::create(&st.db, st, id).await.unwrap();
    let sso = Cred::Session {
        cookie: s.cookie_value,
        csrf: s.csrf_token,
    };
    let r = put_password(&app, &sso, "anything at all", NEW_PASSWORD).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    app.stop().await;
}
on_both_databases!(password_change, super::password_change);

async fn sign_out_everywhere(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    let email = "sam@lifecycle.test";
    let (_, s1) = app.user(&admin, email).await;
    let s2 = app.login(email, PASSWORD).await;
    let r = app
        .call(Method::DELETE, "/api/v1/me/sessions", &s1, None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let cleared = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with("weir_session=;") && v.contains("Max-Age=0"));
    assert!(cleared, "the cookie is cleared");
    for s in [&s1, &s2] {
        assert_eq!(
            app.get("/api/v1/me", s).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Someone else's session is not touched.
    assert_eq!(app.get("/api/v1/me", &admin).await.status, StatusCode::OK);
    assert_eq!(
        audited(&app, &admin, "auth.logout_everywhere").await.len(),
        1
    );
    app.stop().await;
}
on_both_databases!(sign_out_everywhere, super::sign_out_everywhere);

async fn disable(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    let me = app.get_ok("/api/v1/me", &admin).await;
    assert!(me["user"]["disabled_at"].is_null(), "{me:?}");
    let admin_id = me["user"]["id"].as_str().unwrap().to_string();
    let email = "dana@lifecycle.test";
    let (id, session) = app.user(&admin, email).await;
    let token = org_and_token(&app, &admin, &session, email, "dana-org").await;
    assert_eq!(
        app.get("/api/v1/orgs/dana-org", &token).await.status,
        StatusCode::OK
    );
    // Only system administrators.
    let r = app
        .post(
            &format!("/api/v1/users/{admin_id}/disable"),
            &session,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);

    let r = app
        .post(&format!("/api/v1/users/{id}/disable"), &admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body["disabled_at"].is_string(), "{:?}", r.body);
    // At once: the session and the token are refused.
    assert_eq!(
        app.get("/api/v1/me", &session).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/orgs/dana-org", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A wrong password gets the usual answer; only the right one learns more.
    let login = |password: &'static str| {
        app.post(
            "/api/v1/auth/login",
            &Cred::None,
            json!({"email": email, "password": password}),
        )
    };
    let r = login("not the password").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    let r = login(PASSWORD).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(r.body["detail"], "this account is disabled");
    assert!(common::session_cookie(&r.headers).is_none());
    let users = app.get_ok("/api/v1/users", &admin).await;
    let listed = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == email);
    assert!(listed.unwrap()["disabled_at"].is_string());
    assert_eq!(audited(&app, &admin, "user.disable").await.len(), 1);
    let denied = audited(&app, &admin, "auth.login").await;
    assert!(
        denied
            .iter()
            .any(|e| e["outcome"] == "denied" && e["details"]["reason"] == "disabled"),
        "the refused sign-in is audited: {denied:?}"
    );

    let r = app
        .post(&format!("/api/v1/users/{id}/enable"), &admin, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body["disabled_at"].is_null());
    assert_eq!(
        app.get("/api/v1/orgs/dana-org", &token).await.status,
        StatusCode::OK
    );
    app.login(email, PASSWORD).await;
    assert_eq!(audited(&app, &admin, "user.enable").await.len(), 1);

    // The last enabled system administrator, and oneself, stay enabled.
    let r = app
        .post(
            &format!("/api/v1/users/{admin_id}/disable"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("last"));
    let a2 = app
        .post_ok(
            "/api/v1/users",
            &admin,
            json!({"email": "root2@lifecycle.test", "name": "Root 2", "password": PASSWORD, "system_admin": true}),
        )
        .await;
    let a2_id = a2["id"].as_str().unwrap().to_string();
    let a2_cred = app.login("root2@lifecycle.test", PASSWORD).await;
    let r = app
        .post(
            &format!("/api/v1/users/{a2_id}/disable"),
            &a2_cred,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("own"));
    let r = app
        .post(
            &format!("/api/v1/users/{admin_id}/disable"),
            &a2_cred,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Now a2 is the last one.
    let r = app
        .post(
            &format!("/api/v1/users/{a2_id}/disable"),
            &a2_cred,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("last"));
    let r = app
        .post(
            "/api/v1/auth/login",
            &Cred::None,
            json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    app.stop().await;
}
on_both_databases!(disable, super::disable);

async fn purge(b: Backend) {
    let app = TestApp::start(b).await;
    let admin = app.admin().await;
    let st = &app.running.state;
    let me = app.get_ok("/api/v1/me", &admin).await;
    let id = me["user"]["id"].as_str().unwrap().parse().unwrap();
    let now = Utc::now();
    session::ActiveModel {
        id_hash: Set("expired-session".into()),
        user_id: Set(id),
        csrf_token: Set("x".into()),
        created_at: Set(now - Duration::hours(13)),
        expires_at: Set(now - Duration::hours(1)),
    }
    .insert(&st.db)
    .await
    .unwrap();
    let n = sessions::purge_expired_sessions(&st.db).await.unwrap();
    assert!(n >= 1, "deleted {n}");
    assert!(session::Entity::find_by_id("expired-session".to_string())
        .one(&st.db)
        .await
        .unwrap()
        .is_none());
    // The live session is kept.
    assert_eq!(app.get("/api/v1/me", &admin).await.status, StatusCode::OK);
    assert_eq!(session::Entity::find().all(&st.db).await.unwrap().len(), 1);
    app.stop().await;
}
on_both_databases!(purge, super::purge);

/// An agent's api token past its expiry is purged too (before, only that
/// agent's next sign-in cleared it).
async fn purge_agent_sessions(b: Backend) {
    use crate::fleet_support::{fleet_app, modbus_spec, setup_org, Agent};
    use sea_orm::{ColumnTrait, QueryFilter};
    use weir_api::fleet::entities::agent_session;

    let app = fleet_app(b, |_| {}).await;
    let admin = app.admin().await;
    setup_org(&app, &admin, "acme", "plant").await;
    let gateways = "/api/v1/orgs/acme/projects/plant/gateways";
    let r = app
        .post(
            gateways,
            &admin,
            json!({"name": "ps-1", "spec": modbus_spec(1000)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let agent = Agent::enroll(&app, &admin, gateways, "ps-1").await;
    let db = &app.running.state.db;
    let rows = || async {
        agent_session::Entity::find()
            .filter(agent_session::Column::AgentId.eq(agent.id.parse::<uuid::Uuid>().unwrap()))
            .all(db)
            .await
            .unwrap()
    };
    let held = rows().await;
    assert_eq!(held.len(), 1);
    // A live token survives a purge.
    sessions::purge_expired_sessions(db).await.unwrap();
    assert_eq!(rows().await.len(), 1);
    let mut am: agent_session::ActiveModel = held[0].clone().into();
    am.expires_at = Set(Utc::now() - Duration::minutes(1));
    am.update(db).await.unwrap();
    let n = sessions::purge_expired_sessions(db).await.unwrap();
    assert!(n >= 1, "deleted {n}");
    assert!(
        rows().await.is_empty(),
        "the expired agent token is still stored"
    );
    app.stop().await;
}
on_both_databases!(purge_agent_sessions, super::purge_agent_sessions);
