use sea_orm_migration::prelude::*;

use super::col::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // No foreign keys: the log outlives the users, orgs and projects it names.
        m.create_table(
            Table::create()
                .table(Alias::new("audit_log"))
                .col(big("seq").primary_key())
                .col(ts("at"))
                .col(uuid_null("actor_id"))
                .col(text("actor"))
                .col(uuid_null("org_id"))
                .col(uuid_null("project_id"))
                .col(string("action", 64))
                .col(text("target"))
                .col(string("outcome", 16))
                .col(text("client_addr"))
                .col(text("user_agent"))
                .col(text("details"))
                .col(string("prev_hash", 64))
                .col(string("hash", 64))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "audit_log",
            "idx_audit_org_seq",
            &["org_id", "seq"],
            false,
        ))
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("audit_log")).to_owned())
            .await
    }
}
