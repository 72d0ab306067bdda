//! `fleet_broker_identities`: a login the api made on an adopted broker's
//! dynamic-security plugin (schema in `m0220_broker_identities`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "fleet_broker_identities")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub cluster_id: Uuid,
    /// `api`, or `gateway:{id}`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub principal: String,
    pub gateway_id: Option<Uuid>,
    pub username: String,
    pub rolename: String,
    /// Sealed under the master key (see `broker_identity::seal`).
    pub password_enc: String,
    /// Topic prefixes the role grants, comma-separated.
    pub prefixes: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
