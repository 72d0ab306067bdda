//! Organizations managed by Kubernetes: when the api can reach a cluster
//! (in-cluster or KUBECONFIG), it watches `Tenant` resources and keeps one
//! organization per Tenant (slug = Tenant name, `managed_by = kubernetes`)
//! whose admins are the Tenant's `spec.admins`:
//! - `email` admins become `org-admin` members (or get an invitation until
//!   they first sign in);
//! - `subject` admins become `org-admin` for the user signed in with that
//!   OIDC subject;
//! - `group` admins become an SSO group mapping to `org-admin`.
//!
//! Roles given by hand are never changed; roles this sync gave are taken
//! back when the admin leaves the Tenant. Deleting the Tenant deletes the org.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use futures::TryStreamExt;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set,
};
use uuid::Uuid;
use weir_crds::tenant::{AdminKind, Tenant};

use crate::audit::{self, AuditEvent};
use crate::auth::ClientMeta;
use crate::config::KubeTenants;
use crate::db::entities::{group_mapping, invitation, oidc_identity, org, org_member, user};
use crate::error::ApiError;
use crate::members::{role_in, set_role, Scope};
use crate::rbac::Role;
use crate::state::AppState;

pub const MANAGED_BY: &str = "kubernetes";
const SOURCE: &str = "kubernetes";

/// What a Tenant asks of the api.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredOrg {
    pub slug: String,
    pub name: String,
    pub admin_emails: Vec<String>,
    pub admin_subjects: Vec<String>,
    pub admin_groups: Vec<String>,
}

/// Pure mapping Tenant → organization. Fails when the Tenant name cannot be
/// an organization slug.
pub fn desired_org(t: &Tenant) -> Result<DesiredOrg, String> {
    let slug = kube::ResourceExt::name_any(t);
    // The CRD refuses such names; one stored before it did is skipped here.
    weir_crds::tenant::check_name(&slug).map_err(|e| format!("Tenant {slug:?}: {e}"))?;
    let mut errs = Vec::new();
    crate::extract::check::slug(&mut errs, "metadata.name", &slug);
    if !errs.is_empty() {
        return Err(format!(
            "Tenant {slug:?}: name is not a valid organization slug"
        ));
    }
    let mut d = DesiredOrg {
        slug,
        name: t.spec.display_name.trim().to_string(),
        admin_emails: vec![],
        admin_subjects: vec![],
        admin_groups: vec![],
    };
    for a in &t.spec.admins {
        let name = a.name.trim().to_string();
        if name.is_empty() {
            continue;
        }
        match a.kind {
            AdminKind::Email => d.admin_emails.push(name.to_lowercase()),
            AdminKind::Subject => d.admin_subjects.push(name),
            AdminKind::Group => d.admin_groups.push(name),
        }
    }
    for v in [
        &mut d.admin_emails,
        &mut d.admin_subjects,
        &mut d.admin_groups,
    ] {
        v.sort();
        v.dedup();
    }
    Ok(d)
}

fn meta() -> ClientMeta {
    ClientMeta {
        addr: String::new(),
        user_agent: "weir-api tenant sync".into(),
    }
}

/// Make the database match one Tenant.
pub async fn apply(st: &AppState, d: &DesiredOrg) -> Result<org::Model, ApiError> {
    let tx = st.write().await?;
    let now = Utc::now();
    let existing = org::Entity::find()
        .filter(org::Column::Slug.eq(d.slug.as_str()))
        .one(&*tx)
        .await?;
    let o = match existing {
        Some(o) => {
            if o.managed_by.as_deref() != Some(MANAGED_BY) {
                tracing::info!(org = %o.slug, "organization now managed by its Kubernetes Tenant");
            }
            let mut am = o.into_active_model();
            am.name = Set(d.name.clone());
            am.managed_by = Set(Some(MANAGED_BY.into()));
            am.updated_at = Set(now);
            am.update(&*tx).await?
        }
        None => crate::orgs::insert_org(&*tx, &d.slug, &d.name, "", Some(MANAGED_BY)).await?,
    };

    // Users the Tenant names, by email or OIDC subject.
    let mut wanted: HashSet<Uuid> = HashSet::new();
    for email in &d.admin_emails {
        match user::Entity::find()
            .filter(user::Column::Email.eq(email.as_str()))
            .one(&*tx)
            .await?
        {
            Some(u) => {
                wanted.insert(u.id);
            }
            None => ensure_invitation(&*tx, o.id, email).await?,
        }
    }
    for sub in &d.admin_subjects {
        for link in oidc_identity::Entity::find()
            .filter(oidc_identity::Column::Subject.eq(sub.as_str()))
            .all(&*tx)
            .await?
        {
            wanted.insert(link.user_id);
        }
    }
    for uid in &wanted {
        match role_in(&*tx, Scope::Org(o.id), *uid).await? {
            Some((_, src)) if src != SOURCE => {} // given by hand: leave it
            Some((Role::OrgAdmin, _)) => {}
            _ => set_role(&*tx, Scope::Org(o.id), *uid, Role::OrgAdmin, SOURCE).await?,
        }
    }
    // Take back what this sync gave to admins no longer listed.
    for m in org_member::Entity::find()
        .filter(org_member::Column::OrgId.eq(o.id))
        .filter(org_member::Column::Source.eq(SOURCE))
        .all(&*tx)
        .await?
    {
        if !wanted.contains(&m.user_id) {
            org_member::Entity::delete_by_id((o.id, m.user_id))
                .exec(&*tx)
                .await?;
        }
    }
    group_mapping::Entity::delete_many()
        .filter(group_mapping::Column::OrgId.eq(o.id))
        .filter(group_mapping::Column::Source.eq(SOURCE))
        .exec(&*tx)
        .await?;
    for g in &d.admin_groups {
        group_mapping::ActiveModel {
            id: Set(Uuid::new_v4()),
            org_id: Set(o.id),
            project_id: Set(None),
            group_name: Set(g.clone()),
            role: Set(Role::OrgAdmin.as_str().into()),
            source: Set(SOURCE.into()),
        }
        .insert(&*tx)
        .await?;
    }
    audit::append(
        &*tx,
        AuditEvent::anonymous("kubernetes", "tenant.sync", format!("org:{}", o.slug))
            .org(o.id)
            .details(serde_json::json!({
                "emails": d.admin_emails, "subjects": d.admin_subjects, "groups": d.admin_groups
            })),
        &meta(),
    )
    .await?;
    tx.commit().await?;
    Ok(o)
}

async fn ensure_invitation<C: ConnectionTrait>(
    db: &C,
    org_id: Uuid,
    email: &str,
) -> Result<(), ApiError> {
    let pending = invitation::Entity::find()
        .filter(invitation::Column::OrgId.eq(org_id))
        .filter(invitation::Column::ProjectId.is_null())
        .filter(invitation::Column::Email.eq(email))
        .filter(invitation::Column::ClaimedAt.is_null())
        .one(db)
        .await?;
    if pending.is_none() {
        let now = Utc::now();
        invitation::ActiveModel {
            id: Set(Uuid::new_v4()),
            email: Set(email.to_string()),
            org_id: Set(org_id),
            project_id: Set(None),
            role: Set(Role::OrgAdmin.as_str().into()),
            invited_by: Set(None),
            created_at: Set(now),
            // The Tenant keeps asking; a long expiry avoids churn.
            expires_at: Set(now + Duration::days(365)),
            claimed_at: Set(None),
            claimed_by: Set(None),
        }
        .insert(db)
        .await?;
    }
    Ok(())
}

/// The Tenant is gone: delete its organization (only if Kubernetes manages it).
pub async fn remove(st: &AppState, slug: &str) -> Result<bool, ApiError> {
    let tx = st.write().await?;
    let Some(o) = org::Entity::find()
        .filter(org::Column::Slug.eq(slug))
        .filter(org::Column::ManagedBy.eq(MANAGED_BY))
        .one(&*tx)
        .await?
    else {
        return Ok(false);
    };
    org::Entity::delete_by_id(o.id).exec(&*tx).await?;
    audit::append(
        &*tx,
        AuditEvent::anonymous("kubernetes", "tenant.delete", format!("org:{slug}")).org(o.id),
        &meta(),
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Delete managed orgs whose Tenant no longer exists (after a full list).
pub async fn prune(st: &AppState, live: &HashSet<String>) -> Result<(), ApiError> {
    let managed = org::Entity::find()
        .filter(org::Column::ManagedBy.eq(MANAGED_BY))
        .all(&st.db)
        .await?;
    for o in managed {
        if !live.contains(&o.slug) {
            remove(st, &o.slug).await?;
        }
    }
    Ok(())
}

async fn handle(
    st: &AppState,
    ev: kube::runtime::watcher::Event<Tenant>,
    seen: &mut HashSet<String>,
) {
    use kube::runtime::watcher::Event;
    let result = match ev {
        Event::Apply(t) | Event::InitApply(t) => match desired_org(&t) {
            Ok(d) => {
                seen.insert(d.slug.clone());
                apply(st, &d).await.map(|_| ())
            }
            Err(e) => {
                tracing::warn!("{e}");
                Ok(())
            }
        },
        Event::Delete(t) => {
            let name = kube::ResourceExt::name_any(&t);
            seen.remove(&name);
            remove(st, &name).await.map(|_| ())
        }
        Event::Init => {
            seen.clear();
            Ok(())
        }
        Event::InitDone => prune(st, seen).await,
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "tenant sync failed");
    }
}

/// Watch Tenants until the stream ends (it retries with backoff on errors).
pub async fn run(st: AppState, client: kube::Client) {
    use kube::runtime::{watcher, WatchStreamExt};
    let api: kube::Api<Tenant> = kube::Api::all(client);
    let mut stream = Box::pin(watcher(api, watcher::Config::default()).default_backoff());
    let mut seen = HashSet::new();
    loop {
        match stream.try_next().await {
            Ok(Some(ev)) => handle(&st, ev, &mut seen).await,
            Ok(None) => break,
            Err(e) => tracing::warn!(error = %e, "tenant watch error"),
        }
    }
}

/// Start the Tenant watch when Kubernetes is reachable (or required).
pub async fn spawn_if_available(st: AppState, mode: KubeTenants) {
    if mode == KubeTenants::Off {
        return;
    }
    match kube::Client::try_default().await {
        Ok(client) => {
            tracing::info!(
                "watching Kubernetes Tenants: their organizations are managed by Kubernetes"
            );
            tokio::spawn(run(st, client));
        }
        Err(e) if mode == KubeTenants::On => {
            tracing::error!(error = %e, "WEIR_KUBE_TENANTS=on but no Kubernetes config was found");
        }
        Err(_) => tracing::info!(
            "no Kubernetes config found: organizations are managed through the api only"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_crds::tenant::{TenantAdmin, TenantSpec};

    fn tenant(name: &str, admins: Vec<(AdminKind, &str)>) -> Tenant {
        Tenant::new(
            name,
            TenantSpec {
                display_name: " Riverside Water ".into(),
                admins: admins
                    .into_iter()
                    .map(|(kind, n)| TenantAdmin {
                        kind,
                        name: n.into(),
                    })
                    .collect(),
                quota: Default::default(),
                network_isolation: true,
                cascade_delete: false,
            },
        )
    }

    #[test]
    fn tenant_maps_to_org_and_admins() {
        let t = tenant(
            "riverside-water",
            vec![
                (AdminKind::Email, "Ops@Riverside.example"),
                (AdminKind::Group, "riverside-admins"),
                (AdminKind::Subject, "00u1abc"),
                (AdminKind::Email, "ops@riverside.example"),
            ],
        );
        let d = desired_org(&t).unwrap();
        assert_eq!(d.slug, "riverside-water");
        assert_eq!(d.name, "Riverside Water");
        assert_eq!(d.admin_emails, vec!["ops@riverside.example"]);
        assert_eq!(d.admin_groups, vec!["riverside-admins"]);
        assert_eq!(d.admin_subjects, vec!["00u1abc"]);
    }

    #[test]
    fn tenant_name_must_be_a_slug() {
        assert!(desired_org(&tenant("Not_A_Slug", vec![])).is_err());
        assert!(desired_org(&tenant(&"a".repeat(70), vec![])).is_err());
        // The CRD's rules: weir-<name> must be a namespace name, and
        // weir-system is the operator's.
        assert!(desired_org(&tenant(&"a".repeat(58), vec![])).is_ok());
        let e = desired_org(&tenant(&"a".repeat(59), vec![])).unwrap_err();
        assert!(e.contains("at most 58 characters"), "{e}");
        let e = desired_org(&tenant("system", vec![])).unwrap_err();
        assert!(e.contains("system is reserved"), "{e}");
    }
}
