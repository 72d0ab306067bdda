//! Data gaps the api has turned into fleet events (issue 20): one row per
//! `reading_gaps` row of the historian, keyed like it, so a restart or a
//! second replica never records (nor alerts on) one gap twice. Gaps of
//! unknown tenants or gateways get a row too (no project), so they are
//! looked at once.

use sea_orm_migration::prelude::*;

use crate::db::migrations::col::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0250_data_gaps"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("fleet_data_gaps"))
                .col(text("tenant"))
                .col(text("gateway"))
                .col(big("seq_from"))
                .col(ts("detected_at"))
                .col(uuid_null("project_id"))
                .primary_key(
                    Index::create()
                        .col(Alias::new("tenant"))
                        .col(Alias::new("gateway"))
                        .col(Alias::new("seq_from")),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "fleet_data_gaps",
            "idx_fleet_data_gaps_detected",
            &["detected_at"],
            false,
        ))
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(Alias::new("fleet_data_gaps"))
                .to_owned(),
        )
        .await
    }
}
