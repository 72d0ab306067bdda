//! The readings rate of each gateway (issue 23): readings per second its
//! agent sent between its last two heartbeats, worked out at each heartbeat
//! from the `readingsOut` counter, so the console's overview shows the
//! real rate without the api keeping state between requests.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0270_gateway_rate"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("fleet_gateways"))
                .add_column(
                    ColumnDef::new(Alias::new("readings_rate"))
                        .double()
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
                .table(Alias::new("fleet_gateways"))
                .drop_column(Alias::new("readings_rate"))
                .to_owned(),
        )
        .await
    }
}
