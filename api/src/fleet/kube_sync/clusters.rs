//! MqttClusters → cluster rows (backend `kubernetes`, agents on api-issued
//! JWTs): spec, status and project follow the object; a deleted
//! MqttCluster deletes the cluster (its gateways keep their config and lose
//! the link until it is back).

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use futures::TryStreamExt;
use kube::runtime::watcher::Event;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set,
};
use uuid::Uuid;
use weir_crds::{MqttCluster, MqttClusterSpec, MqttClusterStatus};

use super::mapping::{self, Desired};
use super::{ensure_project, event, find_org, find_project, meta};
use crate::audit;
use crate::db::entities::org;
use crate::error::ApiError;
use crate::fleet::clusters::{AUTH_JWT, BACKEND_KUBERNETES};
use crate::fleet::entities::{cluster, gateway};
use crate::state::AppState;

type Key = (String, String);

fn key(c: &MqttCluster) -> Key {
    (c.namespace().unwrap_or_default(), c.name_any())
}

async fn find<C: ConnectionTrait>(
    db: &C,
    o: &org::Model,
    name: &str,
) -> Result<Option<cluster::Model>, ApiError> {
    Ok(cluster::Entity::find()
        .filter(cluster::Column::OrgId.eq(o.id))
        .filter(cluster::Column::Slug.eq(name))
        .one(db)
        .await?)
}

fn text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serializes")
}

/// Whether the row differs from what the object asks (read only).
async fn differs<C: ConnectionTrait>(
    db: &C,
    o: &org::Model,
    c: &cluster::Model,
    d: &Desired<MqttClusterSpec>,
    status: &Option<MqttClusterStatus>,
) -> Result<bool, ApiError> {
    match find_project(db, o, &d.target.project).await? {
        Some(p) if p.id == c.project_id => {}
        _ => return Ok(true),
    }
    Ok(c.spec.as_deref() != Some(text(&d.spec).as_str()) || c.status != status.as_ref().map(text))
}

/// Make the database match one MqttCluster (`false`: its organization does
/// not exist in the api yet, or the name is an external cluster's).
pub async fn upsert(
    st: &AppState,
    d: &Desired<MqttClusterSpec>,
    status: &Option<MqttClusterStatus>,
) -> Result<bool, ApiError> {
    let Some(o) = find_org(&st.db, &d.target.org).await? else {
        return Ok(false);
    };
    if let Some(c) = find(&st.db, &o, &d.target.name).await? {
        if c.backend != BACKEND_KUBERNETES {
            tracing::warn!(org = %o.slug, cluster = %c.slug,
                "an MqttCluster has the name of an external cluster of the api: not mirrored");
            return Ok(false);
        }
        if !differs(&st.db, &o, &c, d, status).await? {
            return Ok(true);
        }
    }
    let tx = st.write().await?;
    let p = ensure_project(&*tx, &o, &d.target.project).await?;
    let target = format!("cluster:{}/{}", o.slug, d.target.name);
    let now = Utc::now();
    let spec = text(&d.spec);
    let status = status.as_ref().map(text);
    match find(&*tx, &o, &d.target.name).await? {
        None => {
            cluster::ActiveModel {
                id: Set(Uuid::new_v4()),
                org_id: Set(o.id),
                project_id: Set(p.id),
                slug: Set(d.target.name.clone()),
                name: Set(d.target.name.clone()),
                backend: Set(BACKEND_KUBERNETES.into()),
                auth_mode: Set(AUTH_JWT.into()),
                url: Set(None),
                username: Set(None),
                password_enc: Set(None),
                spec: Set(Some(spec)),
                status: Set(status),
                probe_at: Set(None),
                probe_ok: Set(None),
                probe_rtt_us: Set(None),
                probe_error: Set(None),
                probe_stats: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&*tx)
            .await?;
            audit::append(&*tx, event("cluster.import", target, &o, p.id), &meta()).await?;
        }
        Some(c) => {
            let mut changed = Vec::new();
            if c.project_id != p.id {
                changed.push("project");
            }
            // The api's own applies are already in the row (or newer there).
            if c.spec.as_deref() != Some(spec.as_str()) && !d.spec_from_api {
                changed.push("spec");
            }
            let mut am = c.clone().into_active_model();
            am.project_id = Set(p.id);
            am.spec = Set(Some(spec));
            am.status = Set(status);
            am.updated_at = Set(now);
            am.update(&*tx).await?;
            if !changed.is_empty() {
                audit::append(
                    &*tx,
                    event("cluster.update", target, &o, p.id)
                        .details(serde_json::json!({"changed": changed})),
                    &meta(),
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    st.alerts.clusters_changed().await;
    Ok(true)
}

/// The MqttCluster is gone: delete the cluster (gateways keep their config).
pub async fn remove(st: &AppState, org_slug: &str, name: &str) -> Result<bool, ApiError> {
    let Some(o) = find_org(&st.db, org_slug).await? else {
        return Ok(false);
    };
    let tx = st.write().await?;
    let Some(c) = find(&*tx, &o, name).await? else {
        return Ok(false);
    };
    if c.backend != BACKEND_KUBERNETES {
        return Ok(false);
    }
    gateway::Entity::update_many()
        .col_expr(
            gateway::Column::ClusterId,
            sea_orm::sea_query::Expr::value(Option::<Uuid>::None),
        )
        .filter(gateway::Column::ClusterId.eq(c.id))
        .exec(&*tx)
        .await?;
    crate::fleet::entities::cluster_share::Entity::delete_many()
        .filter(crate::fleet::entities::cluster_share::Column::ClusterId.eq(c.id))
        .exec(&*tx)
        .await?;
    cluster::Entity::delete_by_id(c.id).exec(&*tx).await?;
    audit::append(
        &*tx,
        event(
            "cluster.delete",
            format!("cluster:{}/{}", o.slug, c.slug),
            &o,
            c.project_id,
        ),
        &meta(),
    )
    .await?;
    tx.commit().await?;
    st.alerts.clusters_changed().await;
    Ok(true)
}

/// After a full list: delete kubernetes clusters whose MqttCluster is gone.
pub async fn prune(st: &AppState, live: &HashSet<(String, String)>) -> Result<(), ApiError> {
    let rows = cluster::Entity::find()
        .filter(cluster::Column::Backend.eq(BACKEND_KUBERNETES))
        .all(&st.db)
        .await?;
    let rows = rows.into_iter().map(|c| (c.org_id, c.slug, c.created_at));
    for (org_slug, name) in super::gone(st, live, rows).await? {
        tracing::info!(cluster = %name, org = %org_slug, "MqttCluster is gone: deleting the cluster");
        remove(st, &org_slug, &name).await?;
    }
    Ok(())
}

async fn sync_one(st: &AppState, c: &MqttCluster) {
    let (d, status) = match mapping::desired_cluster(c) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!("{e}");
            return;
        }
    };
    if let Err(e) = upsert(st, &d, &status).await {
        tracing::warn!(org = %d.target.org, cluster = %d.target.name, error = %super::describe(&e), "mirroring the MqttCluster failed");
    }
}

/// Watch MqttClusters until the stream ends (it retries with backoff).
pub async fn run(st: AppState, client: Client) {
    let api: Api<MqttCluster> = Api::all(client);
    let mut stream = Box::pin(watcher(api, watcher::Config::default()).default_backoff());
    let mut live: HashMap<Key, MqttCluster> = HashMap::new();
    let mut listing: HashMap<Key, MqttCluster> = HashMap::new();
    let mut listed = false;
    let mut tick = super::interval(&st);
    loop {
        tokio::select! {
            ev = stream.try_next() => match ev {
                Ok(Some(Event::Init)) => listing.clear(),
                Ok(Some(Event::InitApply(c))) => {
                    sync_one(&st, &c).await;
                    listing.insert(key(&c), c);
                }
                Ok(Some(Event::InitDone)) => {
                    live = std::mem::take(&mut listing);
                    listed = true;
                    let targets = live
                        .keys()
                        .filter_map(|(ns, n)| Some((mapping::org_of_namespace(ns)?.to_string(), n.clone())))
                        .collect();
                    if let Err(e) = prune(&st, &targets).await {
                        tracing::error!(error = %e, "removing clusters whose MqttCluster is gone failed");
                    }
                }
                Ok(Some(Event::Apply(c))) => {
                    sync_one(&st, &c).await;
                    live.insert(key(&c), c);
                }
                Ok(Some(Event::Delete(c))) => {
                    let (ns, name) = key(&c);
                    live.remove(&(ns.clone(), name.clone()));
                    if let Some(org) = mapping::org_of_namespace(&ns) {
                        if let Err(e) = remove(&st, org, &name).await {
                            tracing::error!(org, cluster = %name, error = %e, "deleting the cluster failed");
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => tracing::warn!(error = %e, "MqttCluster watch error"),
            },
            _ = tick.tick() => if listed {
                for c in live.values() {
                    sync_one(&st, c).await;
                }
            },
        }
    }
}
