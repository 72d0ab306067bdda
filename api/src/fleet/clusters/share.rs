//! Clusters behind project walls. A gateway may use a cluster of its own
//! project, or one of another project of the organization that was shared
//! with its project explicitly (`shared_with`, table
//! `fleet_cluster_shares`). Sharing crosses a wall, so adding a project to
//! `shared_with` needs an org admin (`org.update`); the owning project's
//! admins may withdraw a share. The check runs when a gateway's
//! `clusterRef` is resolved and again whenever credentials are issued
//! ([`check_gateway_may_use`]), so a withdrawn share stops new credentials.

use std::collections::{BTreeSet, HashMap};

use chrono::Utc;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::db::entities::{org, project};
use crate::error::{ApiError, FieldError};
use crate::extract::check as chk;
use crate::fleet::entities::{cluster, cluster_share, gateway};

/// At most this many projects per cluster.
pub const MAX_SHARES: usize = 64;

/// Slugs of the projects each cluster is shared with, sorted.
pub async fn shared_with<C: ConnectionTrait>(
    db: &C,
    cluster_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<String>>, ApiError> {
    let rows = cluster_share::Entity::find()
        .filter(cluster_share::Column::ClusterId.is_in(cluster_ids.iter().copied()))
        .all(db)
        .await?;
    let slugs: HashMap<Uuid, String> = project::Entity::find()
        .filter(project::Column::Id.is_in(rows.iter().map(|r| r.project_id)))
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.id, p.slug))
        .collect();
    let mut out: HashMap<Uuid, Vec<String>> = HashMap::new();
    for r in rows {
        if let Some(s) = slugs.get(&r.project_id) {
            out.entry(r.cluster_id).or_default().push(s.clone());
        }
    }
    out.values_mut().for_each(|v| v.sort());
    Ok(out)
}

/// Whether gateways of `project_id` may use cluster `c`.
pub async fn may_use<C: ConnectionTrait>(
    db: &C,
    project_id: Uuid,
    c: &cluster::Model,
) -> Result<bool, ApiError> {
    if c.project_id == project_id {
        return Ok(true);
    }
    Ok(cluster_share::Entity::find_by_id((c.id, project_id))
        .one(db)
        .await?
        .is_some())
}

/// A gateway's `clusterRef`: a cluster of the gateway's project, or one
/// shared with it. Anything else answers as if there were no such cluster
/// (a project does not learn the names of other projects' clusters).
pub async fn resolve_cluster_ref<C: ConnectionTrait>(
    db: &C,
    org_id: Uuid,
    project_id: Uuid,
    name: &str,
) -> Result<Uuid, ApiError> {
    let found = cluster::Entity::find()
        .filter(cluster::Column::OrgId.eq(org_id))
        .filter(cluster::Column::Slug.eq(name))
        .one(db)
        .await?;
    match found {
        Some(c) if may_use(db, project_id, &c).await? => Ok(c.id),
        _ => Err(ApiError::invalid(
            "spec.clusterRef",
            format!("no cluster named '{name}' in this project (nor shared with it)"),
        )),
    }
}

/// Refuse credentials for gateway `g` on cluster `c` unless its project may
/// use `c` (its own, or shared with it now). For the code that issues
/// broker credentials (`agents::mqtt_credentials`, enrollment).
pub async fn check_gateway_may_use<C: ConnectionTrait>(
    db: &C,
    g: &gateway::Model,
    c: &cluster::Model,
) -> Result<(), ApiError> {
    if may_use(db, g.project_id, c).await? {
        return Ok(());
    }
    Err(ApiError::conflict(
        format!(
            "the gateway's cluster '{}' belongs to another project and is not shared with this \
             gateway's project (any more); share it again or point the gateway's clusterRef at \
             a cluster of its own project",
            c.slug
        ),
        None,
    ))
}

/// `shared_with` as projects of the cluster's org: each named once, none the
/// owning project, every one existing (422 naming `shared_with[i]`).
pub async fn resolve_projects<C: ConnectionTrait>(
    db: &C,
    o: &org::Model,
    owner: Uuid,
    names: &[String],
) -> Result<Vec<project::Model>, ApiError> {
    let mut e = Vec::new();
    if names.len() > MAX_SHARES {
        e.push(FieldError::new(
            "shared_with",
            format!("at most {MAX_SHARES} projects"),
        ));
        return Err(ApiError::Validation(e));
    }
    let projects: HashMap<String, project::Model> = project::Entity::find()
        .filter(project::Column::OrgId.eq(o.id))
        .filter(project::Column::Slug.is_in(names.iter().cloned()))
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.slug.clone(), p))
        .collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let field = format!("shared_with[{i}]");
        let mut fe = Vec::new();
        chk::slug(&mut fe, &field, n);
        if !fe.is_empty() {
            e.extend(fe);
            continue;
        }
        match projects.get(n) {
            None => e.push(FieldError::new(
                field,
                format!("no project '{n}' in this organization"),
            )),
            Some(p) if p.id == owner => e.push(FieldError::new(
                field,
                "is the cluster's own project; its gateways use it without a share",
            )),
            Some(_) if !seen.insert(n.clone()) => e.push(FieldError::new(field, "is named twice")),
            Some(p) => out.push(p.clone()),
        }
    }
    if e.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::Validation(e))
    }
}

/// Make the shares of cluster `cluster_id` exactly `projects`.
pub async fn set_shares<C: ConnectionTrait>(
    db: &C,
    cluster_id: Uuid,
    projects: &[project::Model],
) -> Result<(), ApiError> {
    cluster_share::Entity::delete_many()
        .filter(cluster_share::Column::ClusterId.eq(cluster_id))
        .exec(db)
        .await?;
    if projects.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    cluster_share::Entity::insert_many(projects.iter().map(|p| cluster_share::ActiveModel {
        cluster_id: Set(cluster_id),
        project_id: Set(p.id),
        created_at: Set(now),
    }))
    .exec(db)
    .await?;
    Ok(())
}

/// After a transfer the new owner needs no share of its own cluster.
pub async fn drop_share<C: ConnectionTrait>(
    db: &C,
    cluster_id: Uuid,
    project_id: Uuid,
) -> Result<(), ApiError> {
    cluster_share::Entity::delete_by_id((cluster_id, project_id))
        .exec(db)
        .await?;
    Ok(())
}
