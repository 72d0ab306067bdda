//! Tables of the alerts: rules, alert states and history, silences,
//! notification channels, the delivery and notification logs. Entities in
//! `alerts::entities`.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0100_alerts"
    }
}

fn t(name: &str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use crate::db::migrations::col::*;
        let dbl = |n: &str| ColumnDef::new(Alias::new(n)).double().null().to_owned();
        m.create_table(
            Table::create()
                .table(t("alert_rules"))
                .col(uuid_pk("id"))
                .col(uuid("project_id"))
                .col(uuid("org_id"))
                .col(text("name"))
                .col(text("spec"))
                .col(boolean("enabled"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .foreign_key(&mut fk("alert_rules", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "alert_rules",
            "idx_alert_rules_project",
            &["project_id"],
            false,
        ))
        .await?;
        // No foreign keys on state and history: a firing alert of a deleted
        // rule still has to resolve, and history outlives its rules.
        m.create_table(
            Table::create()
                .table(t("alert_states"))
                .col(uuid("rule_id"))
                .col(text("series"))
                .col(uuid("project_id"))
                .col(string("state", 16))
                .col(ts("since"))
                .col(ts_null("fired_at"))
                .col(dbl("value"))
                .col(text("labels"))
                .col(text("summary"))
                .col(ts("updated_at"))
                .primary_key(Index::create().col(t("rule_id")).col(t("series")))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "alert_states",
            "idx_alert_states_project",
            &["project_id"],
            false,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table(t("alert_history"))
                .col(uuid_pk("id"))
                .col(uuid("rule_id"))
                .col(uuid("project_id"))
                .col(text("rule_name"))
                .col(text("series"))
                .col(string("from_state", 16))
                .col(string("to_state", 16))
                .col(ts("at"))
                .col(dbl("value"))
                .col(text("summary"))
                .col(text("labels"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "alert_history",
            "idx_alert_history_project_at",
            &["project_id", "at"],
            false,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table(t("alert_silences"))
                .col(uuid_pk("id"))
                .col(uuid("project_id"))
                .col(text("matchers"))
                .col(ts("starts_at"))
                .col(ts("ends_at"))
                .col(text("author"))
                .col(text("comment"))
                .col(ts("created_at"))
                .foreign_key(&mut fk("alert_silences", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(t("alert_channels"))
                .col(uuid_pk("id"))
                .col(uuid("project_id"))
                .col(text("name"))
                .col(string("kind", 16))
                .col(text("config"))
                .col(text("secret"))
                .col(text("group_by"))
                .col(big("group_wait_secs"))
                .col(big("group_interval_secs"))
                .col(big("repeat_interval_secs"))
                .col(ts("created_at"))
                .foreign_key(&mut fk("alert_channels", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(t("alert_deliveries"))
                .col(uuid_pk("id"))
                .col(uuid("channel_id"))
                .col(uuid("project_id"))
                .col(ts("at"))
                .col(string("kind", 16))
                .col(text("group_key"))
                .col(int("alerts"))
                .col(int("attempts"))
                .col(boolean("ok"))
                .col(ColumnDef::new(t("http_status")).integer().null())
                .col(text("error"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "alert_deliveries",
            "idx_alert_deliveries_channel_at",
            &["channel_id", "at"],
            false,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table(t("alert_nflog"))
                .col(uuid("channel_id"))
                .col(text("group_key"))
                .col(ts("last_sent_at"))
                .col(text("sent"))
                .primary_key(Index::create().col(t("channel_id")).col(t("group_key")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for name in [
            "alert_nflog",
            "alert_deliveries",
            "alert_channels",
            "alert_silences",
            "alert_history",
            "alert_states",
            "alert_rules",
        ] {
            m.drop_table(Table::drop().table(t(name)).to_owned())
                .await?;
        }
        Ok(())
    }
}
