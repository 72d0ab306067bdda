//! The broker's own figures at the last health probe of an adopted cluster
//! (issue 23's cluster page): clients connected, messages in and out, the
//! broker's uptime and version, read from `$SYS` (JSON, `BrokerStats`).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0290_cluster_broker_stats"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("fleet_clusters"))
                .add_column(
                    ColumnDef::new(Alias::new("probe_stats"))
                        .text()
                        .null()
                        .to_owned(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("fleet_clusters"))
                .drop_column(Alias::new("probe_stats"))
                .to_owned(),
        )
        .await
    }
}
