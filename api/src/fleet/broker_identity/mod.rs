//! Broker identities on an adopted Mosquitto (an `external` cluster in
//! `password` mode with a stored username, which is the broker's
//! dynamic-security admin login): every gateway gets a client of its own,
//! `weir-{tenant}-{gateway}`, with a fresh random password and a role
//! `weir-gw-{tenant}-{gateway}` holding exactly its row of the ACL table
//! ([`weir_crds::acl::rules`], see [`acl`]); the api reads with its own
//! restricted client per cluster (`weir-api.{tenant}.{cluster}`). The
//! passwords are stored sealed under the master key
//! (`fleet_broker_identities`); no agent ever gets the admin login.
//!
//! Enrollment creates or re-keys the gateway's client (the previous agent's
//! login stops: the plugin kicks it); a gateway whose cluster changed gets
//! a client on the new broker at its next credentials call (and loses the
//! old one); deleting a gateway deletes its client and role. A cluster
//! without a username is an open broker: agents get no credentials.

pub mod acl;
pub mod dynsec;
pub mod entity;

use std::collections::BTreeSet;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;
use uuid::Uuid;
use weir_crds::acl::{Action, Identity, Permission, Rule};

use super::clusters::{AUTH_JWT, AUTH_PASSWORD};
use super::entities::{cluster, gateway};
use crate::db::entities::org;
use crate::error::ApiError;
use crate::secrets::random_token;
use crate::state::AppState;
use dynsec::{AdminLogin, Answer, Session};

/// `agent_identities` of a cluster whose agents get dynamic-security clients.
pub const IDENTITIES_DYNSEC: &str = "dynamicSecurity";
/// `agent_identities` of an open broker: agents get no credentials.
pub const IDENTITIES_NONE: &str = "none";
/// `agent_identities` of an EMQX cluster checking api-issued JWTs.
pub const IDENTITIES_JWT: &str = "apiJwt";

/// The principal of the api's own identity.
const API: &str = "api";
/// Topic of the cluster health probe (`mqtt_probe`), which the api identity may use.
const PROBE_TOPIC: &str = "weir-probe/+";
/// The broker's `$SYS` figures, which the api identity may read.
const SYS_TOPICS: &str = "$SYS/broker/#";
const DEFAULT_PREFIX: &str = "weir";

/// The plugin's answers that mean "already gone".
const GONE: [&str; 2] = ["Client not found", "Role not found"];

/// A broker login: username and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "Login({})", self.username)
    }
}

/// Whether the api makes dynamic-security identities on `c`'s broker.
pub fn uses_dynsec(c: &cluster::Model) -> bool {
    c.auth_mode == AUTH_PASSWORD && c.username.as_deref().is_some_and(|u| !u.is_empty())
}

/// How the agents of `c` get their broker identity: `dynamicSecurity`,
/// `none` (an open broker) or `apiJwt`.
pub fn agent_identities(c: &cluster::Model) -> &'static str {
    if c.auth_mode == AUTH_JWT {
        IDENTITIES_JWT
    } else if uses_dynsec(c) {
        IDENTITIES_DYNSEC
    } else {
        IDENTITIES_NONE
    }
}

pub fn gateway_username(tenant: &str, gateway: &str) -> String {
    format!("weir-{tenant}-{gateway}")
}

pub fn gateway_rolename(tenant: &str, gateway: &str) -> String {
    format!("weir-gw-{tenant}-{gateway}")
}

/// The api's login on one cluster. Per cluster, because one broker may be
/// adopted as several clusters (one per project) and each keeps its own
/// password; dots, which slugs never hold, keep it apart from gateway names.
pub fn api_username(tenant: &str, cluster: &str) -> String {
    format!("weir-api.{tenant}.{cluster}")
}

fn gateway_principal(id: Uuid) -> String {
    format!("gateway:{id}")
}

/// The `uplink.topicPrefix` of the gateway's current config.
pub async fn topic_prefix<C: ConnectionTrait>(
    db: &C,
    g: &gateway::Model,
) -> Result<String, ApiError> {
    let spec = super::gateways::current_spec(db, g).await?;
    Ok(spec["uplink"]["topicPrefix"]
        .as_str()
        .unwrap_or(DEFAULT_PREFIX)
        .to_string())
}

fn aad(cluster: Uuid, principal: &str) -> String {
    format!("broker-identity:{cluster}:{principal}")
}

/// The admin login of `c`, for a broker the outbound policy allows (a
/// refused one is not contacted: no login sent, no port told open or shut).
async fn admin_login(st: &AppState, c: &cluster::Model) -> Result<AdminLogin, ApiError> {
    let url = super::clusters::endpoints(c)
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Unavailable(format!("cluster '{}' has no URL", c.slug)))?;
    if c.backend == super::clusters::BACKEND_EXTERNAL {
        if let Some(e) = super::mqtt_probe::refused(&st.config.outbound(), &url).await {
            return Err(ApiError::Unavailable(format!("cluster '{}': {e}", c.slug)));
        }
    }
    let (username, password) = super::clusters::stored_login(st, c)?;
    Ok(AdminLogin {
        url,
        username: username.unwrap_or_default(),
        password: password.unwrap_or_default(),
    })
}

fn refused(what: &str, why: String) -> ApiError {
    ApiError::Unavailable(format!("the broker refused to {what}: {why}"))
}

fn check(answers: &[Answer], tolerated: &[&str], what: &str) -> Result<(), ApiError> {
    for a in answers {
        a.ok_unless(tolerated).map_err(|e| refused(what, e))?;
    }
    Ok(())
}

/// What a client or role is marked with, so the api never takes over (or
/// deletes) a login someone else made under the same name.
fn mark(principal: &str) -> String {
    format!("weir {principal}")
}

/// Refuse when the broker has `username` and it is not ours for `principal`.
async fn check_owner(s: &mut Session, username: &str, principal: &str) -> Result<bool, ApiError> {
    let a = s
        .call(vec![json!({"command": "getClient", "username": username})])
        .await?;
    let Some(a) = a.first() else {
        return Ok(false);
    };
    if a.error.as_deref() == Some("Client not found") {
        return Ok(false);
    }
    a.ok_unless(&[])
        .map_err(|e| refused("read its clients", e))?;
    let desc = a
        .data
        .as_ref()
        .and_then(|d| d["client"]["textdescription"].as_str())
        .unwrap_or_default();
    if desc != mark(principal) {
        return Err(ApiError::conflict(
            format!(
                "the broker already has a client '{username}' that Weir did not make for this \
                 identity; remove or rename it on the broker"
            ),
            None,
        ));
    }
    Ok(true)
}

/// Make (or make again) `username` with `password` and a role `rolename`
/// holding `rules`: whatever was there under those names is replaced, and
/// a client connected with the old password is disconnected.
async fn provision(
    admin: &AdminLogin,
    principal: &str,
    login: &Login,
    rolename: &str,
    rules: &[Rule],
    what: &str,
) -> Result<(), ApiError> {
    let mut s = Session::open(admin).await?;
    check_owner(&mut s, &login.username, principal).await?;
    let acls = acl::role_acls(rules);
    let answers = s
        .call(vec![
            json!({"command": "deleteClient", "username": login.username}),
            json!({"command": "deleteRole", "rolename": rolename}),
            json!({"command": "createRole", "rolename": rolename,
                   "textdescription": mark(principal), "acls": acls}),
            json!({"command": "createClient", "username": login.username,
                   "password": login.password, "textdescription": mark(principal),
                   "roles": [{"rolename": rolename}]}),
        ])
        .await;
    s.close().await;
    check(&answers?, &GONE, what)
}

/// Delete `username` and `rolename` (if they are ours).
async fn unprovision(
    admin: &AdminLogin,
    principal: &str,
    username: &str,
    rolename: &str,
) -> Result<(), ApiError> {
    let mut s = Session::open(admin).await?;
    let answers = match check_owner(&mut s, username, principal).await {
        Ok(_) => {
            s.call(vec![
                json!({"command": "deleteClient", "username": username}),
                json!({"command": "deleteRole", "rolename": rolename}),
            ])
            .await
        }
        // Someone else's client of that name: not ours to delete.
        Err(ApiError::Conflict { .. }) => Ok(vec![]),
        Err(e) => Err(e),
    };
    s.close().await;
    check(&answers?, &GONE, "delete the gateway's identity")
}

/// Store (insert or replace) an identity row.
#[allow(clippy::too_many_arguments)]
async fn store<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    cluster_id: Uuid,
    principal: &str,
    gateway_id: Option<Uuid>,
    login: &Login,
    rolename: &str,
    prefixes: &BTreeSet<String>,
) -> Result<(), ApiError> {
    let sealed = st
        .fleet
        .master()?
        .seal(login.password.as_bytes(), &aad(cluster_id, principal));
    entity::Entity::delete_by_id((cluster_id, principal.to_string()))
        .exec(db)
        .await?;
    let now = Utc::now();
    entity::ActiveModel {
        cluster_id: Set(cluster_id),
        principal: Set(principal.to_string()),
        gateway_id: Set(gateway_id),
        username: Set(login.username.clone()),
        rolename: Set(rolename.to_string()),
        password_enc: Set(sealed),
        prefixes: Set(prefixes.iter().cloned().collect::<Vec<_>>().join(",")),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(())
}

fn open_row(st: &AppState, row: &entity::Model) -> Result<Login, ApiError> {
    open_sealed(&st.fleet, row)
}

fn open_sealed(fleet: &super::Fleet, row: &entity::Model) -> Result<Login, ApiError> {
    let plain = fleet
        .master()?
        .open(&row.password_enc, &aad(row.cluster_id, &row.principal))?;
    Ok(Login {
        username: row.username.clone(),
        password: String::from_utf8(plain).map_err(ApiError::internal)?,
    })
}

fn prefix_set(s: &str) -> BTreeSet<String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

async fn find<C: ConnectionTrait>(
    db: &C,
    cluster_id: Uuid,
    principal: &str,
) -> Result<Option<entity::Model>, ApiError> {
    Ok(
        entity::Entity::find_by_id((cluster_id, principal.to_string()))
            .one(db)
            .await?,
    )
}

/// The gateway's login on `c`, made when it has none there yet (its
/// cluster changed) or its role is for another topic prefix. Takes the
/// write lock only then: never call it inside a write transaction.
pub async fn gateway_login(
    st: &AppState,
    c: &cluster::Model,
    o: &org::Model,
    g: &gateway::Model,
) -> Result<Login, ApiError> {
    let prefix = topic_prefix(&st.db, g).await?;
    if let Some(row) = find(&st.db, c.id, &gateway_principal(g.id)).await? {
        if row.prefixes == prefix {
            return open_row(st, &row);
        }
    }
    let tx = st.write().await?;
    let login = ensure_gateway(&*tx, st, c, o, g, false).await?;
    tx.commit().await?;
    Ok(login)
}

/// The gateway's login on `c` inside the caller's write transaction:
/// with `rotate` (enrollment) always a new password, else the stored one
/// unless it is missing or for another prefix.
pub async fn ensure_gateway<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    c: &cluster::Model,
    o: &org::Model,
    g: &gateway::Model,
    rotate: bool,
) -> Result<Login, ApiError> {
    let principal = gateway_principal(g.id);
    let prefix = topic_prefix(db, g).await?;
    if !rotate {
        if let Some(row) = find(db, c.id, &principal).await? {
            if row.prefixes == prefix {
                return open_row(st, &row);
            }
        }
    }
    // Another cluster's client first: it may be the same broker.
    forget_elsewhere(db, st, g.id, c.id).await;
    let login = Login {
        username: gateway_username(&o.slug, &g.slug),
        password: random_token(),
    };
    let rolename = gateway_rolename(&o.slug, &g.slug);
    let rules = weir_crds::acl::rules(&prefix, &o.slug, Identity::Agent { gateway: &g.slug });
    provision(
        &admin_login(st, c).await?,
        &principal,
        &login,
        &rolename,
        &rules,
        "create the gateway's identity",
    )
    .await?;
    let prefixes = BTreeSet::from([prefix.clone()]);
    store(
        db,
        st,
        c.id,
        &principal,
        Some(g.id),
        &login,
        &rolename,
        &prefixes,
    )
    .await?;
    grant_api_prefix(db, st, c, &o.slug, &prefix).await?;
    Ok(login)
}

/// Best effort: a gateway that moved keeps no client on its old brokers.
/// A row whose broker cannot be reached stays, so deleting the gateway
/// tries again.
async fn forget_elsewhere<C: ConnectionTrait>(db: &C, st: &AppState, gateway_id: Uuid, keep: Uuid) {
    let rows = entity::Entity::find()
        .filter(entity::Column::GatewayId.eq(gateway_id))
        .filter(entity::Column::ClusterId.ne(keep))
        .all(db)
        .await
        .unwrap_or_default();
    for row in rows {
        if let Err(e) = forget_row(db, st, &row).await {
            tracing::warn!(username = %row.username, error = %e,
                "could not delete a moved gateway's client on its old broker");
        }
    }
}

async fn forget_row<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    row: &entity::Model,
) -> Result<(), ApiError> {
    if let Some(c) = cluster::Entity::find_by_id(row.cluster_id).one(db).await? {
        if uses_dynsec(&c) {
            unprovision(
                &admin_login(st, &c).await?,
                &row.principal,
                &row.username,
                &row.rolename,
            )
            .await?;
        }
    }
    entity::Entity::delete_by_id((row.cluster_id, row.principal.clone()))
        .exec(db)
        .await?;
    Ok(())
}

/// Delete the gateway's clients and roles on every broker it has one on
/// (gateway deletion, inside its write transaction). Fails when a broker
/// cannot be reached: a login that still works must not be forgotten.
pub async fn forget_gateway<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    gateway_id: Uuid,
) -> Result<(), ApiError> {
    let rows = entity::Entity::find()
        .filter(entity::Column::GatewayId.eq(gateway_id))
        .all(db)
        .await?;
    for row in rows {
        forget_row(db, st, &row).await?;
    }
    Ok(())
}

/// The api's rules on a cluster of `tenant`: its row of the ACL table for
/// every prefix in use there, the health probe's topic and `$SYS`.
fn api_rules(tenant: &str, prefixes: &BTreeSet<String>) -> Vec<Rule> {
    let mut out = Vec::new();
    for p in prefixes {
        let mut r = weir_crds::acl::rules(p, tenant, Identity::Api);
        r.pop(); // the deny-all, once at the end
        out.extend(r);
    }
    for action in [Action::Publish, Action::Subscribe] {
        out.push(Rule {
            permission: Permission::Allow,
            action,
            topic: PROBE_TOPIC.into(),
        });
    }
    // The probe reads the broker's own figures (`broker_stats`).
    out.push(Rule {
        permission: Permission::Allow,
        action: Action::Subscribe,
        topic: SYS_TOPICS.into(),
    });
    out.push(Rule {
        permission: Permission::Deny,
        action: Action::All,
        topic: "#".into(),
    });
    out
}

/// A gateway with a new prefix enrolled: the api's role (when it has one
/// on `c`) gains that prefix's rules, added so the api's connections stay.
async fn grant_api_prefix<C: ConnectionTrait>(
    db: &C,
    st: &AppState,
    c: &cluster::Model,
    tenant: &str,
    prefix: &str,
) -> Result<(), ApiError> {
    let Some(row) = find(db, c.id, API).await? else {
        return Ok(());
    };
    let mut prefixes = prefix_set(&row.prefixes);
    if !prefixes.insert(prefix.to_string()) {
        return Ok(());
    }
    // The role has its deny-all already (priority 0); these come above it,
    // and no other prefix's topics match this prefix's, so their order
    // relative to the rest does not matter.
    let rules = weir_crds::acl::rules(prefix, tenant, Identity::Api);
    let acls: Vec<_> = acl::role_acls(&rules)
        .into_iter()
        .filter(|a| a.priority > 0)
        .collect();
    let mut s = Session::open(&admin_login(st, c).await?).await?;
    let answers = s
        .call(
            acls.iter()
                .map(|a| {
                    json!({"command": "addRoleACL", "rolename": row.rolename,
                           "acltype": a.acltype, "topic": a.topic, "priority": a.priority, "allow": a.allow})
                })
                .collect(),
        )
        .await;
    s.close().await;
    check(&answers?, &[], "extend the api's identity")?;
    let mut am: entity::ActiveModel = row.into();
    am.prefixes = Set(prefixes.into_iter().collect::<Vec<_>>().join(","));
    am.updated_at = Set(Utc::now());
    am.update(db).await?;
    Ok(())
}

/// The api's own login on cluster `c` (for the alerts reader and the
/// health probe, instead of the admin login): `None` when `c` has no
/// dynamic-security identities (an open broker, or `apiJwt`). Made on
/// first need, with the prefixes of every gateway on `c`, the alerts'
/// prefix and `weir`. Takes the write lock then: never call it inside a
/// write transaction.
pub async fn api_login(st: &AppState, c: &cluster::Model) -> Result<Option<Login>, ApiError> {
    if !uses_dynsec(c) {
        return Ok(None);
    }
    if let Some(row) = find(&st.db, c.id, API).await? {
        return open_row(st, &row).map(Some);
    }
    let tx = st.write().await?;
    if let Some(row) = find(&*tx, c.id, API).await? {
        return open_row(st, &row).map(Some);
    }
    let o = org::Entity::find_by_id(c.org_id)
        .one(&*tx)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut prefixes = BTreeSet::from([
        DEFAULT_PREFIX.to_string(),
        st.config.alerts.topic_prefix.clone(),
    ]);
    for g in gateway::Entity::find()
        .filter(gateway::Column::ClusterId.eq(c.id))
        .all(&*tx)
        .await?
    {
        prefixes.insert(topic_prefix(&*tx, &g).await?);
    }
    let login = Login {
        username: api_username(&o.slug, &c.slug),
        password: random_token(),
    };
    provision(
        &admin_login(st, c).await?,
        API,
        &login,
        &login.username,
        &api_rules(&o.slug, &prefixes),
        "create the api's identity",
    )
    .await?;
    let rolename = login.username.clone();
    store(&*tx, st, c.id, API, None, &login, &rolename, &prefixes).await?;
    tx.commit().await?;
    // The alerts reader waits for this login (see `stored_api_login`).
    st.alerts.clusters_changed().await;
    Ok(Some(login))
}

/// The api's login on `c` if it was made already (by [`api_login`]); for
/// readers that hold no write lock and must not make one (the alerts
/// ingestion). `None` also for clusters without dynamic security.
pub async fn stored_api_login<C: ConnectionTrait>(
    db: &C,
    fleet: &super::Fleet,
    c: &cluster::Model,
) -> Result<Option<Login>, ApiError> {
    if !uses_dynsec(c) {
        return Ok(None);
    }
    find(db, c.id, API)
        .await?
        .map(|row| open_sealed(fleet, &row))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_crds::acl::allows;

    #[test]
    fn names_do_not_collide_between_gateways_and_the_api() {
        assert_eq!(gateway_username("riverside", "ps-1"), "weir-riverside-ps-1");
        assert_eq!(
            gateway_rolename("riverside", "ps-1"),
            "weir-gw-riverside-ps-1"
        );
        // A gateway `api-x` of tenant `t` is not the api of tenant `t`.
        assert_ne!(gateway_username("api", "t-c"), api_username("t", "c"));
    }

    #[test]
    fn the_api_reads_every_prefix_and_probes_but_publishes_no_readings() {
        let prefixes = BTreeSet::from(["weir".to_string(), "plant".to_string()]);
        let r = api_rules("t", &prefixes);
        assert!(allows(&r, Action::Subscribe, "weir/t/+/+/+"));
        assert!(allows(&r, Action::Subscribe, "plant/t/+/+/+"));
        assert!(allows(&r, Action::Publish, "weir-probe/abc"));
        assert!(allows(&r, Action::Subscribe, "weir-probe/abc"));
        assert!(!allows(&r, Action::Publish, "weir/t/gw/pump/fast"));
        assert!(!allows(&r, Action::Subscribe, "weir/other/+/+/+"));
        assert!(!allows(&r, Action::Subscribe, "#"));
        assert_eq!(r.last().unwrap().topic, "#");
        assert_eq!(r.iter().filter(|x| x.topic == "#").count(), 1);
    }
}
