//! Schema migrations of every feature, run at start-up, in the order of
//! `Migrator::migrations`. Append a module per change (never edit one that
//! has shipped, nor the name it returns: it is stored in `seaql_migrations`)
//! and list it last.

use sea_orm_migration::prelude::*;

mod m0001_identity;
mod m0002_orgs;
mod m0003_audit;
mod m0100_alerts;
mod m0200_fleet;
mod m0210_cluster_shares;
mod m0220_broker_identities;
mod m0230_user_disable;
mod m0240_audit_keyed;
mod m0250_data_gaps;
mod m0260_device_credentials;
mod m0270_gateway_rate;
mod m0280_alert_acknowledgements;
mod m0290_cluster_broker_stats;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_identity::Migration),
            Box::new(m0002_orgs::Migration),
            Box::new(m0003_audit::Migration),
            Box::new(m0100_alerts::Migration),
            Box::new(m0200_fleet::Migration),
            Box::new(m0210_cluster_shares::Migration),
            Box::new(m0220_broker_identities::Migration),
            Box::new(m0230_user_disable::Migration),
            Box::new(m0240_audit_keyed::Migration),
            Box::new(m0250_data_gaps::Migration),
            Box::new(m0260_device_credentials::Migration),
            Box::new(m0270_gateway_rate::Migration),
            Box::new(m0280_alert_acknowledgements::Migration),
            Box::new(m0290_cluster_broker_stats::Migration),
        ]
    }
}

/// Column helpers so migrations read like the tables they make.
pub(crate) mod col {
    use sea_orm_migration::prelude::*;

    pub fn uuid_pk(name: &str) -> ColumnDef {
        ColumnDef::new(Alias::new(name))
            .uuid()
            .not_null()
            .primary_key()
            .to_owned()
    }
    pub fn uuid(name: &str) -> ColumnDef {
        ColumnDef::new(Alias::new(name))
            .uuid()
            .not_null()
            .to_owned()
    }
    pub fn uuid_null(name: &str) -> ColumnDef {
        ColumnDef::new(Alias::new(name)).uuid().null().to_owned()
    }
    pub fn text(name: &str) -> ColumnDef {
        ColumnDef::new(Alias::new(name))
            .text()
            .not_null()
            .to_owned()
    }
    pub fn text_null(name: &str) -> ColumnDef {
        ColumnDef::new(Alias::new(name)).text().null().to_owned()
    }
    pub fn string(name: &str, len: u32) -> ColumnDef {
        ColumnDef::new(Alias::new(name))
            .string_len(len)
            .not_null()
            .to_owned()
    }
    pub fn ts(name: &str) -> ColumnDef {
        ColumnDef::new(Alias::new(name))
            .timestamp_with_time_zone()
            .not_null()
            .to_owned()
    }
    pub fn ts_null(name: &str) -> ColumnDef {
        ColumnDef::new(Alias::new(name))
            .timestamp_with_time_zone()
            .null()
            .to_owned()
    }
    pub fn boolean(name: &str) -> ColumnDef {
        ColumnDef::new(Alias::new(name))
            .boolean()
            .not_null()
            .default(false)
            .to_owned()
    }
    pub fn int(name: &str) -> ColumnDef {
        ColumnDef::new(Alias::new(name))
            .integer()
            .not_null()
            .default(0)
            .to_owned()
    }
    pub fn big(name: &str) -> ColumnDef {
        ColumnDef::new(Alias::new(name))
            .big_integer()
            .not_null()
            .to_owned()
    }
    pub fn fk(from_table: &str, from_col: &str, to_table: &str) -> ForeignKeyCreateStatement {
        ForeignKey::create()
            .from(Alias::new(from_table), Alias::new(from_col))
            .to(Alias::new(to_table), Alias::new("id"))
            .on_delete(ForeignKeyAction::Cascade)
            .to_owned()
    }
    pub fn index(table: &str, name: &str, cols: &[&str], unique: bool) -> IndexCreateStatement {
        let mut i = Index::create();
        i.name(name).table(Alias::new(table));
        for c in cols {
            i.col(Alias::new(*c));
        }
        if unique {
            i.unique();
        }
        i.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are stored in `seaql_migrations`: a renamed or moved file
    /// must keep answering the name it shipped under.
    #[test]
    fn shipped_migration_names_never_change() {
        let names: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "m0001_identity",
                "m0002_orgs",
                "m0003_audit",
                "m0100_alerts",
                "migration",
                "m0210_cluster_shares",
                "m0220_broker_identities",
                "m0230_user_disable",
                "m0240_audit_keyed",
                "m0250_data_gaps",
                "m0260_device_credentials",
                "m0270_gateway_rate",
                "m0280_alert_acknowledgements",
                "m0290_cluster_broker_stats",
            ]
        );
    }
}
