//! Device credentials of a project (issue 22): what an OPC UA device
//! logs in with, named by `devices[].opcUa.credential`. The secret (the
//! whole `DeviceCredential` as JSON) is sealed under the master key, bound
//! to its row; only the kind and the user name are stored in clear, for the
//! list.

use sea_orm_migration::prelude::*;

use crate::db::migrations::col::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0260_device_credentials"
    }
}

const TABLE: &str = "fleet_device_credentials";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new(TABLE))
                .col(uuid_pk("id"))
                .col(uuid("org_id"))
                .col(uuid("project_id"))
                .col(string("name", 63))
                .col(string("kind", 32))
                .col(text("username"))
                .col(text("secret_enc"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .foreign_key(&mut fk(TABLE, "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            TABLE,
            "uq_fleet_device_credentials_project_name",
            &["project_id", "name"],
            true,
        ))
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new(TABLE)).to_owned())
            .await
    }
}
