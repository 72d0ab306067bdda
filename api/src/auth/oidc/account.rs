//! Who a verified sign-in is: the account linked to the identity, a new
//! one, or (only when allowed) an existing account with the same email;
//! and the roles its groups give.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set,
};

use super::VerifiedIdentity;
use crate::audit::{self, AuditEvent};
use crate::auth::ClientMeta;
use crate::db::entities::{group_mapping, oidc_identity, org_member, project_member, user};
use crate::error::{ApiError, FieldError};
use crate::members::{role_in, set_role, Scope as MScope};
use crate::rbac::Role;

/// Find the user for a verified identity: the account linked to it, else a
/// new account. An existing account with the same email is linked only when
/// `link_verified_email` is on, the provider says the email is verified and
/// the account is not a system administrator's: otherwise whoever controls
/// an identity provider account could take over any account by its email.
pub async fn jit_user<C: ConnectionTrait>(
    db: &C,
    ident: &VerifiedIdentity,
    link_verified_email: bool,
) -> Result<user::Model, ApiError> {
    if let Some(link) =
        oidc_identity::Entity::find_by_id((ident.issuer.clone(), ident.subject.clone()))
            .one(db)
            .await?
    {
        if let Some(u) = user::Entity::find_by_id(link.user_id).one(db).await? {
            return touch(db, u).await;
        }
    }
    let existing = user::Entity::find()
        .filter(user::Column::Email.eq(ident.email.as_str()))
        .one(db)
        .await?;
    let u = match existing {
        None => crate::users::insert_user(db, &ident.email, &ident.name, None, false).await?,
        Some(u) => {
            if let Some(why) = link_refusal(db, &u, ident, link_verified_email).await? {
                return Err(ApiError::Conflict {
                    detail: "an account with this email already exists and single sign-on may \
                             not take it over: sign in with its password, or ask an \
                             administrator"
                        .into(),
                    fields: vec![FieldError::new("email", why)],
                });
            }
            u
        }
    };
    oidc_identity::ActiveModel {
        issuer: Set(ident.issuer.clone()),
        subject: Set(ident.subject.clone()),
        user_id: Set(u.id),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    touch(db, u).await
}

/// Why this sign-in may not be linked to the existing account `u` with its
/// email; None when it may.
async fn link_refusal<C: ConnectionTrait>(
    db: &C,
    u: &user::Model,
    ident: &VerifiedIdentity,
    link_verified_email: bool,
) -> Result<Option<&'static str>, ApiError> {
    if !link_verified_email {
        return Ok(Some(
            "linking single sign-on to existing accounts is off on this server",
        ));
    }
    if !ident.email_verified {
        return Ok(Some(
            "the identity provider does not say this email is verified",
        ));
    }
    if u.system_admin {
        return Ok(Some(
            "a system administrator's account is never linked by email",
        ));
    }
    // Another subject of this provider already owns the account: the email
    // moved to someone else at the provider.
    let other = oidc_identity::Entity::find()
        .filter(oidc_identity::Column::UserId.eq(u.id))
        .filter(oidc_identity::Column::Issuer.eq(ident.issuer.as_str()))
        .one(db)
        .await?;
    if other.is_some() {
        return Ok(Some(
            "the account is already linked to another user of this identity provider",
        ));
    }
    Ok(None)
}

async fn touch<C: ConnectionTrait>(db: &C, u: user::Model) -> Result<user::Model, ApiError> {
    let mut am = u.into_active_model();
    am.last_login_at = Set(Some(Utc::now()));
    Ok(am.update(db).await?)
}

/// Make the user's SSO-given roles match their groups now: add what the
/// mappings give, drop earlier SSO-given roles that no longer apply.
/// Roles given by hand are never touched.
pub async fn apply_group_mappings<C: ConnectionTrait>(
    db: &C,
    u: &user::Model,
    groups: &[String],
    meta: &ClientMeta,
) -> Result<(), ApiError> {
    let mappings = group_mapping::Entity::find().all(db).await?;
    let mut wanted: Vec<(MScope, Role)> = Vec::new();
    for m in mappings.iter().filter(|m| groups.contains(&m.group_name)) {
        let Some(role) = Role::parse(&m.role) else {
            continue;
        };
        let scope = match m.project_id {
            Some(p) => MScope::Project {
                org: m.org_id,
                project: p,
            },
            None => MScope::Org(m.org_id),
        };
        // Several groups may map to one scope: keep the strongest role.
        match wanted.iter_mut().find(|(s, _)| same_scope(s, &scope)) {
            Some((_, r)) if rank(role) > rank(*r) => *r = role,
            Some(_) => {}
            None => wanted.push((scope, role)),
        }
    }
    for (scope, role) in &wanted {
        match role_in(db, *scope, u.id).await? {
            Some((_, src)) if src == "manual" => {}
            Some((cur, _)) if cur == *role => {}
            _ => {
                set_role(db, *scope, u.id, *role, "oidc").await?;
                let mut ev =
                    AuditEvent::anonymous(&u.email, "member.sso", format!("user:{}", u.email))
                        .org(scope.org_id())
                        .details(serde_json::json!({"role": role.as_str()}));
                ev.actor_id = Some(u.id);
                if let Some(p) = scope.project_id() {
                    ev = ev.project(p);
                }
                audit::append(db, ev, meta).await?;
            }
        }
    }
    // Drop SSO-given roles whose group mapping no longer applies.
    let oms = org_member::Entity::find()
        .filter(org_member::Column::UserId.eq(u.id))
        .filter(org_member::Column::Source.eq("oidc"))
        .all(db)
        .await?;
    for m in oms {
        if !wanted
            .iter()
            .any(|(s, _)| same_scope(s, &MScope::Org(m.org_id)))
        {
            org_member::Entity::delete_by_id((m.org_id, u.id))
                .exec(db)
                .await?;
        }
    }
    let pms = project_member::Entity::find()
        .filter(project_member::Column::UserId.eq(u.id))
        .filter(project_member::Column::Source.eq("oidc"))
        .all(db)
        .await?;
    for m in pms {
        let s = MScope::Project {
            org: m.org_id,
            project: m.project_id,
        };
        if !wanted.iter().any(|(w, _)| same_scope(w, &s)) {
            project_member::Entity::delete_by_id((m.project_id, u.id))
                .exec(db)
                .await?;
        }
    }
    Ok(())
}

fn same_scope(a: &MScope, b: &MScope) -> bool {
    a.org_id() == b.org_id() && a.project_id() == b.project_id()
}

fn rank(r: Role) -> u8 {
    match r {
        Role::SystemAdmin => 9,
        Role::OrgOwner => 8,
        Role::OrgAdmin => 7,
        Role::ProjectAdmin => 4,
        Role::ProjectEditor => 3,
        Role::ProjectOperator => 2,
        Role::ProjectViewer => 1,
    }
}
