//! EdgeGateways → gateway rows. A gateway applied with `kubectl` becomes a
//! gateway with a config version authored by `kubernetes`; a later
//! `kubectl` change is a new version (the same version-writing path as the
//! api's edits, so versions and diffs keep working); the api's own applies
//! come back as no change. A deleted EdgeGateway deletes the gateway.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use futures::TryStreamExt;
use kube::runtime::watcher::Event;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set,
};
use uuid::Uuid;
use weir_crds::EdgeGateway;

use super::mapping::{self, Desired};
use super::{ensure_project, event, find_org, find_project, meta, tokens, ACTOR};
use crate::audit;
use crate::db::entities::org;
use crate::error::ApiError;
use crate::fleet::clusters::share::resolve_cluster_ref;
use crate::fleet::entities::{agent, enrollment_token, gateway};
use crate::fleet::gateways::{current_spec, insert_gateway, record_version, Author};
use crate::state::AppState;

/// (namespace, name)
type Key = (String, String);

fn key(gw: &EdgeGateway) -> Key {
    (gw.namespace().unwrap_or_default(), gw.name_any())
}

fn author() -> Author {
    Author {
        id: None,
        label: ACTOR.into(),
    }
}

async fn find<C: ConnectionTrait>(
    db: &C,
    o: &org::Model,
    name: &str,
) -> Result<Option<gateway::Model>, ApiError> {
    Ok(gateway::Entity::find()
        .filter(gateway::Column::OrgId.eq(o.id))
        .filter(gateway::Column::Slug.eq(name))
        .one(db)
        .await?)
}

/// Whether the row differs from what the object asks (read only).
async fn differs<C: ConnectionTrait>(
    db: &C,
    o: &org::Model,
    g: &gateway::Model,
    d: &Desired<weir_crds::EdgeGatewaySpec>,
) -> Result<bool, ApiError> {
    match find_project(db, o, &d.target.project).await? {
        Some(p) if p.id == g.project_id => {}
        _ => return Ok(true),
    }
    if d.spec_from_api {
        return Ok(false);
    }
    let want = serde_json::to_value(&d.spec).map_err(ApiError::internal)?;
    Ok(current_spec(db, g).await? != want)
}

/// Make the database match one EdgeGateway; the gateway row, or `None`
/// while its organization does not exist in the api.
pub async fn upsert(
    st: &AppState,
    d: &Desired<weir_crds::EdgeGatewaySpec>,
) -> Result<Option<(org::Model, gateway::Model)>, ApiError> {
    let Some(o) = find_org(&st.db, &d.target.org).await? else {
        return Ok(None);
    };
    // Most passes change nothing: read before taking the write lock.
    if let Some(g) = find(&st.db, &o, &d.target.name).await? {
        if !differs(&st.db, &o, &g, d).await? {
            return Ok(Some((o, g)));
        }
    }
    let tx = st.write().await?;
    let p = ensure_project(&*tx, &o, &d.target.project).await?;
    let target = format!("gateway:{}/{}", o.slug, d.target.name);
    let g = match find(&*tx, &o, &d.target.name).await? {
        None => {
            let g = insert_gateway(&*tx, o.id, p.id, &d.target.name).await?;
            let g = record_version(&*tx, &o, g, &d.spec, &author(), "applied in Kubernetes")
                .await?
                .ok_or_else(|| ApiError::internal("first version not written"))?;
            audit::append(
                &*tx,
                event("gateway.import", target, &o, p.id)
                    .details(serde_json::json!({"version": g.config_version})),
                &meta(),
            )
            .await?;
            g
        }
        Some(mut g) => {
            if g.project_id != p.id {
                g = move_to(&*tx, &o, g, p.id, d.spec.cluster_ref.as_deref()).await?;
                audit::append(
                    &*tx,
                    event("gateway.move", target.clone(), &o, p.id)
                        .details(serde_json::json!({"to": p.slug})),
                    &meta(),
                )
                .await?;
            }
            if !d.spec_from_api {
                let written = record_version(
                    &*tx,
                    &o,
                    g.clone(),
                    &d.spec,
                    &author(),
                    "changed in Kubernetes",
                )
                .await?;
                if let Some(g2) = written {
                    audit::append(
                        &*tx,
                        event("gateway.update", target, &o, p.id)
                            .details(serde_json::json!({"version": g2.config_version})),
                        &meta(),
                    )
                    .await?;
                    g = g2;
                }
            }
            g
        }
    };
    tx.commit().await?;
    let _ = st.fleet.bundles.send(g.id);
    Ok(Some((o, g)))
}

/// The label names another project: the gateway, its agents and tokens
/// move there, and its cluster must be one that project may use (else the
/// move is refused, naming `spec.clusterRef`, and tried again next pass).
async fn move_to<C: ConnectionTrait>(
    db: &C,
    o: &org::Model,
    g: gateway::Model,
    project_id: Uuid,
    cluster_ref: Option<&str>,
) -> Result<gateway::Model, ApiError> {
    let cluster_id = match cluster_ref {
        None => None,
        Some(name) => Some(resolve_cluster_ref(db, o.id, project_id, name).await?),
    };
    agent::Entity::update_many()
        .col_expr(agent::Column::ProjectId, Expr::value(project_id))
        .filter(agent::Column::GatewayId.eq(g.id))
        .exec(db)
        .await?;
    enrollment_token::Entity::update_many()
        .col_expr(enrollment_token::Column::ProjectId, Expr::value(project_id))
        .filter(enrollment_token::Column::GatewayId.eq(g.id))
        .exec(db)
        .await?;
    let mut am = g.into_active_model();
    am.project_id = Set(project_id);
    am.cluster_id = Set(cluster_id);
    am.updated_at = Set(Utc::now());
    Ok(am.update(db).await?)
}

/// The EdgeGateway is gone: delete the gateway with its versions, tokens and agents.
pub async fn remove(st: &AppState, org_slug: &str, name: &str) -> Result<bool, ApiError> {
    let Some(o) = find_org(&st.db, org_slug).await? else {
        return Ok(false);
    };
    let tx = st.write().await?;
    let Some(g) = find(&*tx, &o, name).await? else {
        return Ok(false);
    };
    crate::fleet::enrollment::delete_gateway_children(&*tx, st, g.id).await?;
    gateway::Entity::delete_by_id(g.id).exec(&*tx).await?;
    audit::append(
        &*tx,
        event(
            "gateway.delete",
            format!("gateway:{}/{}", o.slug, g.slug),
            &o,
            g.project_id,
        ),
        &meta(),
    )
    .await?;
    tx.commit().await?;
    let _ = st.fleet.bundles.send(g.id);
    Ok(true)
}

/// After a full list: delete gateways whose EdgeGateway no longer exists.
pub async fn prune(st: &AppState, live: &HashSet<(String, String)>) -> Result<(), ApiError> {
    let rows = gateway::Entity::find().all(&st.db).await?;
    let rows = rows.into_iter().map(|g| (g.org_id, g.slug, g.created_at));
    for (org_slug, name) in super::gone(st, live, rows).await? {
        tracing::info!(gateway = %name, org = %org_slug, "EdgeGateway is gone: deleting the gateway");
        remove(st, &org_slug, &name).await?;
    }
    Ok(())
}

/// The bundle the operator signed (`status.configVersion`) as the gateway's
/// latest bundle version, so the console's "latest", the rollout view's
/// up-to-date flag and the clearing of an old refusal agree with
/// `kubectl get egw` (in this mode the api signs nothing itself). When the
/// operator has seen the object's generation, that bundle holds the newest
/// config version.
pub async fn mirror_bundle(
    st: &AppState,
    gw: &EdgeGateway,
    g: gateway::Model,
) -> Result<gateway::Model, ApiError> {
    let Some(status) = &gw.status else {
        return Ok(g);
    };
    let Some(bundle) = status.config_version.map(|v| v as i64) else {
        return Ok(g);
    };
    let current = status.observed_generation.is_some()
        && status.observed_generation == gw.metadata.generation;
    let holds = if current {
        g.config_version
    } else {
        g.bundle_config_version
    };
    if g.bundle_version == bundle && g.bundle_config_version == holds {
        return Ok(g);
    }
    let tx = st.write().await?;
    let mut am = g.into_active_model();
    am.bundle_version = Set(bundle);
    am.bundle_config_version = Set(holds);
    let g = am.update(&*tx).await?;
    tx.commit().await?;
    Ok(g)
}

/// Mirror one object and see to its enrollment token.
async fn sync_one(st: &AppState, client: &Client, gw: &EdgeGateway, issued: &mut tokens::Issued) {
    let d = match mapping::desired_gateway(gw) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("{e}");
            return;
        }
    };
    let result = match upsert(st, &d).await {
        Ok(Some((o, g))) => match mirror_bundle(st, gw, g).await {
            Ok(g) => issued.ensure(st, client, gw, &o, &g).await,
            Err(e) => Err(e),
        },
        Ok(None) => {
            tracing::debug!(org = %d.target.org, gateway = %d.target.name, "no such organization yet");
            Ok(())
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(org = %d.target.org, gateway = %d.target.name, error = %super::describe(&e), "mirroring the EdgeGateway failed");
    }
}

fn live_targets(objs: &HashMap<Key, EdgeGateway>) -> HashSet<(String, String)> {
    objs.keys()
        .filter_map(|(ns, name)| Some((mapping::org_of_namespace(ns)?.to_string(), name.clone())))
        .collect()
}

/// Watch EdgeGateways until the stream ends (it retries with backoff).
pub async fn run(st: AppState, client: Client) {
    let api: Api<EdgeGateway> = Api::all(client.clone());
    let mut stream = Box::pin(watcher(api, watcher::Config::default()).default_backoff());
    let mut live: HashMap<Key, EdgeGateway> = HashMap::new();
    let mut listing: HashMap<Key, EdgeGateway> = HashMap::new();
    let mut issued = tokens::Issued::default();
    let mut listed = false;
    let mut tick = super::interval(&st);
    loop {
        tokio::select! {
            ev = stream.try_next() => match ev {
                Ok(Some(Event::Init)) => listing.clear(),
                Ok(Some(Event::InitApply(gw))) => {
                    sync_one(&st, &client, &gw, &mut issued).await;
                    listing.insert(key(&gw), gw);
                }
                Ok(Some(Event::InitDone)) => {
                    live = std::mem::take(&mut listing);
                    listed = true;
                    if let Err(e) = prune(&st, &live_targets(&live)).await {
                        tracing::error!(error = %e, "removing gateways whose EdgeGateway is gone failed");
                    }
                }
                Ok(Some(Event::Apply(gw))) => {
                    sync_one(&st, &client, &gw, &mut issued).await;
                    live.insert(key(&gw), gw);
                }
                Ok(Some(Event::Delete(gw))) => {
                    let (ns, name) = key(&gw);
                    live.remove(&(ns.clone(), name.clone()));
                    issued.forget(&ns, &name);
                    if let Some(org) = mapping::org_of_namespace(&ns) {
                        if let Err(e) = remove(&st, org, &name).await {
                            tracing::error!(org, gateway = %name, error = %e, "deleting the gateway failed");
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => tracing::warn!(error = %e, "EdgeGateway watch error"),
            },
            _ = tick.tick() => if listed {
                for gw in live.values() {
                    sync_one(&st, &client, gw, &mut issued).await;
                }
            },
        }
    }
}
