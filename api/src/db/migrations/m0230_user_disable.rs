//! Disabled accounts (issue 18): a system administrator may disable an
//! account without deleting it; while `disabled_at` is set it cannot sign
//! in and its sessions and API tokens are refused.

use sea_orm_migration::prelude::*;

use crate::db::migrations::col::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0230_user_disable"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("users"))
                .add_column(ts_null("disabled_at"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("users"))
                .drop_column(Alias::new("disabled_at"))
                .to_owned(),
        )
        .await
    }
}
