//! Local user accounts: the bootstrap admin, inserting an account, the
//! password rule, and the HTTP API for system admins ([`routes`],
//! [`lifecycle`]: disable and enable).

pub mod lifecycle;
pub mod routes;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set,
};
use uuid::Uuid;

use crate::audit::{self, AuditEvent};
use crate::auth::{password, ClientMeta};
use crate::db::entities::user;
use crate::db::is_unique_violation;
use crate::error::{ApiError, FieldError};
use crate::secrets;
use crate::state::AppState;

pub use routes::{CreateUser, UserView};

/// Password lengths in characters, as the OpenAPI document counts them
/// (`maxLength`): a new password 12 to 1024, a presented one (sign-in, the
/// current password) 1 to 1024.
pub const PASSWORD_MIN: usize = 12;
pub const PASSWORD_MAX: usize = 1024;

/// The rule every new password follows (account creation, password change).
pub fn check_password(errs: &mut Vec<FieldError>, field: &str, p: &str) {
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&p.chars().count()) {
        errs.push(FieldError::new(field, "must be 12 to 1024 characters"));
    }
}

/// A password presented to be checked (sign-in, current password).
pub fn check_presented_password(errs: &mut Vec<FieldError>, field: &str, p: &str) {
    if !(1..=PASSWORD_MAX).contains(&p.chars().count()) {
        errs.push(FieldError::new(field, "must be 1 to 1024 characters"));
    }
}

/// Insert a user (no audit; callers record why).
pub async fn insert_user<C: ConnectionTrait>(
    db: &C,
    email: &str,
    name: &str,
    password_hash: Option<String>,
    system_admin: bool,
) -> Result<user::Model, ApiError> {
    let m = user::ActiveModel {
        id: Set(Uuid::new_v4()),
        email: Set(email.trim().to_lowercase()),
        name: Set(name.trim().to_string()),
        password_hash: Set(password_hash),
        system_admin: Set(system_admin),
        failed_logins: Set(0),
        locked_until: Set(None),
        last_login_at: Set(None),
        created_at: Set(Utc::now()),
        disabled_at: Set(None),
    };
    m.insert(db).await.map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::conflict("a user with this email exists", Some("email"))
        } else {
            e.into()
        }
    })
}

/// First start with an empty database: make the system administrator. The
/// generated password (when none was configured) is printed once, to stderr.
pub async fn bootstrap_admin(st: &AppState) -> Result<(), ApiError> {
    if user::Entity::find().count(&st.db).await? > 0 {
        return Ok(());
    }
    let email = st.config.bootstrap_admin_email.trim().to_lowercase();
    let (password, generated) = match &st.config.bootstrap_admin_password {
        Some(p) if !p.is_empty() => (p.clone(), false),
        _ => (secrets::random_token()[..24].to_string(), true),
    };
    let hash = password::hash_blocking(password.clone()).await?;
    let tx = st.write().await?;
    // Another replica may have bootstrapped between the count and the lock.
    if user::Entity::find()
        .filter(user::Column::SystemAdmin.eq(true))
        .count(&*tx)
        .await?
        > 0
    {
        return Ok(());
    }
    let u = insert_user(&*tx, &email, "Administrator", Some(hash), true).await?;
    audit::append(
        &*tx,
        AuditEvent::anonymous("bootstrap", "user.bootstrap", format!("user:{}", u.email)),
        &ClientMeta::default(),
    )
    .await?;
    tx.commit().await?;
    if generated {
        eprintln!(
            "weir-api: created system administrator {email} with one-time password: {password}\n\
             weir-api: this password is shown only now; set WEIR_BOOTSTRAP_ADMIN_PASSWORD to choose one."
        );
    }
    tracing::info!(email = %email, "bootstrap system administrator created");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths are characters, as the document's maxLength counts them: a
    /// 1024-character password of 4-byte characters is taken.
    #[test]
    fn password_lengths_count_characters() {
        let check = |f: fn(&mut Vec<FieldError>, &str, &str), p: &str| {
            let mut e = Vec::new();
            f(&mut e, "password", p);
            e.is_empty()
        };
        let long = "🔒".repeat(PASSWORD_MAX);
        assert!(check(check_password, &long));
        assert!(check(check_presented_password, &long));
        assert!(!check(check_password, &format!("{long}x")));
        assert!(!check(check_presented_password, &format!("{long}x")));
        assert!(!check(check_password, &"é".repeat(PASSWORD_MIN - 1)));
        assert!(check(check_password, &"é".repeat(PASSWORD_MIN)));
        assert!(!check(check_presented_password, ""));
    }
}
