//! Alarm acknowledgement and shelving (issue 23): the current
//! acknowledgement or shelve of each alert (rule and series), and the
//! columns that let `alert_history` carry acks and shelves beside the state
//! transitions (`event`, who, why, until when).

use sea_orm_migration::prelude::*;

use crate::db::migrations::col::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0280_alert_acknowledgements"
    }
}

const HISTORY: &str = "alert_history";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("alert_acknowledgements"))
                .col(uuid("rule_id"))
                .col(text("series"))
                .col(uuid("project_id"))
                // The `since` of the alert instance acknowledged: a later
                // firing of the series is a new, unacknowledged alert.
                .col(ts("alert_since"))
                .col(text("author"))
                .col(text("comment"))
                .col(ts("created_at"))
                .col(ts_null("shelve_until"))
                .primary_key(
                    Index::create()
                        .col(Alias::new("rule_id"))
                        .col(Alias::new("series")),
                )
                .foreign_key(&mut fk("alert_acknowledgements", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "alert_acknowledgements",
            "idx_alert_acknowledgements_project",
            &["project_id"],
            false,
        ))
        .await?;
        // SQLite takes one column per ALTER TABLE.
        let event = ColumnDef::new(Alias::new("event"))
            .string_len(16)
            .not_null()
            .default("transition")
            .to_owned();
        for c in [
            event,
            text_null("actor"),
            text_null("comment"),
            ts_null("shelve_until"),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Alias::new(HISTORY))
                    .add_column(c)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for c in ["event", "actor", "comment", "shelve_until"] {
            m.alter_table(
                Table::alter()
                    .table(Alias::new(HISTORY))
                    .drop_column(Alias::new(c))
                    .to_owned(),
            )
            .await?;
        }
        m.drop_table(
            Table::drop()
                .table(Alias::new("alert_acknowledgements"))
                .to_owned(),
        )
        .await
    }
}
