use sea_orm_migration::prelude::*;

use super::col::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("users"))
                .col(uuid_pk("id"))
                .col(string("email", 320).unique_key())
                .col(text("name"))
                .col(text_null("password_hash"))
                .col(boolean("system_admin"))
                .col(int("failed_logins"))
                .col(ts_null("locked_until"))
                .col(ts_null("last_login_at"))
                .col(ts("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("oidc_identities"))
                .col(string("issuer", 512))
                .col(string("subject", 512))
                .col(uuid("user_id"))
                .col(ts("created_at"))
                .primary_key(
                    Index::create()
                        .col(Alias::new("issuer"))
                        .col(Alias::new("subject")),
                )
                .foreign_key(&mut fk("oidc_identities", "user_id", "users"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("sessions"))
                .col(string("id_hash", 64).primary_key())
                .col(uuid("user_id"))
                .col(text("csrf_token"))
                .col(ts("created_at"))
                .col(ts("expires_at"))
                .foreign_key(&mut fk("sessions", "user_id", "users"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("sessions", "idx_sessions_user", &["user_id"], false))
            .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("oidc_flows"))
                .col(string("state", 128).primary_key())
                .col(text("nonce"))
                .col(text("pkce_verifier"))
                .col(text("return_to"))
                .col(ts("created_at"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["oidc_flows", "sessions", "oidc_identities", "users"] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
