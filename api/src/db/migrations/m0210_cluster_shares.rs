//! Which other projects of its organization may point gateways at a cluster
//! (issue 17: projects are walls; a cluster crosses one only when shared).

use sea_orm_migration::prelude::*;

use crate::db::migrations::col::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0210_cluster_shares"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("fleet_cluster_shares"))
                .col(uuid("cluster_id"))
                // A project of the cluster's org (checked by the api).
                .col(uuid("project_id"))
                .col(ts("created_at"))
                .primary_key(
                    Index::create()
                        .col(Alias::new("cluster_id"))
                        .col(Alias::new("project_id")),
                )
                // Deleting the cluster or the project ends the share.
                .foreign_key(&mut fk(
                    "fleet_cluster_shares",
                    "cluster_id",
                    "fleet_clusters",
                ))
                .foreign_key(&mut fk("fleet_cluster_shares", "project_id", "projects"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(Alias::new("fleet_cluster_shares"))
                .to_owned(),
        )
        .await
    }
}
