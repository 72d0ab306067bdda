//! Issue 18: the audit chain is keyed. `mac` says how an entry's `hash` was
//! made: `sha256` (entries written before this version, unkeyed) or
//! `hmac-sha256` (keyed with a key derived from the master key, which is
//! never in the database). Existing rows keep verifying as `sha256`.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0240_audit_keyed"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("audit_log"))
                .add_column(
                    ColumnDef::new(Alias::new("mac"))
                        .string_len(16)
                        .not_null()
                        .default("sha256"),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("audit_log"))
                .drop_column(Alias::new("mac"))
                .to_owned(),
        )
        .await
    }
}
