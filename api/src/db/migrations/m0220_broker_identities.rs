//! Per-gateway (and the api's own) broker identities on adopted brokers
//! with the dynamic-security plugin (issue 17): the login the api created
//! there, its password sealed under the master key.

use sea_orm_migration::prelude::*;

use crate::db::migrations::col::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0220_broker_identities"
    }
}

const TABLE: &str = "fleet_broker_identities";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new(TABLE))
                .col(uuid("cluster_id"))
                // `api`, or `gateway:{id}`.
                .col(string("principal", 64))
                .col(uuid_null("gateway_id"))
                .col(text("username"))
                .col(text("rolename"))
                .col(text("password_enc"))
                // The topic prefixes the role grants, comma-separated.
                .col(text("prefixes"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .primary_key(
                    Index::create()
                        .col(Alias::new("cluster_id"))
                        .col(Alias::new("principal")),
                )
                // Deleting the cluster forgets what was made on its broker.
                .foreign_key(&mut fk(TABLE, "cluster_id", "fleet_clusters"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            TABLE,
            "idx_fleet_broker_identities_gateway",
            &["gateway_id"],
            false,
        ))
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new(TABLE)).to_owned())
            .await
    }
}
