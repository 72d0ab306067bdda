//! Alert tables: the migration that makes them, their sea-orm entities, and
//! the writes the runtime does (state per rule and series, history of
//! transitions, notification log, delivery log), and the sealing of
//! channel secrets stored in plain text by older versions.

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use sea_orm_migration::prelude::*;
use uuid::Uuid;

use super::engine::{AlertState, Transition};
use crate::error::ApiError;
use crate::secrets::{channel, MasterKey};

/// The alerts migration, listed in `db::migrations::Migrator`.
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

pub mod alert_rule {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_rules")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub project_id: Uuid,
        pub org_id: Uuid,
        pub name: String,
        /// JSON of `rules::RuleSpec`.
        pub spec: String,
        pub enabled: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod alert_state {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_states")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub rule_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub series: String,
        pub project_id: Uuid,
        /// pending, firing, or resolved (kept until its notice went out).
        pub state: String,
        pub since: DateTimeUtc,
        pub fired_at: Option<DateTimeUtc>,
        pub value: Option<f64>,
        pub labels: String,
        pub summary: String,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod alert_history {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_history")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub rule_id: Uuid,
        pub project_id: Uuid,
        pub rule_name: String,
        pub series: String,
        pub from_state: String,
        pub to_state: String,
        pub at: DateTimeUtc,
        pub value: Option<f64>,
        pub summary: String,
        pub labels: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod alert_silence {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_silences")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub project_id: Uuid,
        /// JSON list of `silences::Matcher`.
        pub matchers: String,
        pub starts_at: DateTimeUtc,
        pub ends_at: DateTimeUtc,
        pub author: String,
        pub comment: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod alert_channel {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_channels")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub project_id: Uuid,
        pub name: String,
        /// webhook or email
        pub kind: String,
        /// JSON of the non-secret settings (url; or smtp host, port, from, to).
        pub config: String,
        /// Webhook signing secret or SMTP password; never returned after creation.
        pub secret: String,
        /// JSON list of label names.
        pub group_by: String,
        pub group_wait_secs: i64,
        pub group_interval_secs: i64,
        pub repeat_interval_secs: i64,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod alert_delivery {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub channel_id: Uuid,
        pub project_id: Uuid,
        pub at: DateTimeUtc,
        /// firing, resolved or test
        pub kind: String,
        pub group_key: String,
        pub alerts: i32,
        pub attempts: i32,
        pub ok: bool,
        pub http_status: Option<i32>,
        pub error: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod alert_nflog {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_nflog")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub channel_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_key: String,
        pub last_sent_at: DateTimeUtc,
        /// JSON list of the fingerprints that were firing in the last notice.
        pub sent: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub fn to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Record transitions: the history row, and the current state of the
/// series (a pending→inactive series has no row; a resolved one keeps its
/// row until its notice is out, see [`forget_resolved`]).
pub async fn record<C: ConnectionTrait>(db: &C, ts: &[Transition]) -> Result<(), DbErr> {
    if ts.is_empty() {
        return Ok(());
    }
    let rows = ts.iter().map(|tr| alert_history::ActiveModel {
        id: Set(Uuid::new_v4()),
        rule_id: Set(tr.rule_id),
        project_id: Set(tr.project_id),
        rule_name: Set(tr.rule_name.clone()),
        series: Set(tr.series.clone()),
        from_state: Set(tr.from.as_str().into()),
        to_state: Set(tr.to.as_str().into()),
        at: Set(to_time(tr.at_ms)),
        value: Set(tr.value),
        summary: Set(tr.summary.clone()),
        labels: Set(serde_json::to_string(&tr.labels).unwrap_or_default()),
    });
    alert_history::Entity::insert_many(rows).exec(db).await?;
    for tr in ts {
        if tr.to == AlertState::Inactive {
            alert_state::Entity::delete_many()
                .filter(alert_state::Column::RuleId.eq(tr.rule_id))
                .filter(alert_state::Column::Series.eq(tr.series.clone()))
                .exec(db)
                .await?;
            continue;
        }
        let row = alert_state::ActiveModel {
            rule_id: Set(tr.rule_id),
            series: Set(tr.series.clone()),
            project_id: Set(tr.project_id),
            state: Set(tr.to.as_str().into()),
            since: Set(to_time(tr.since_ms)),
            fired_at: Set((tr.to == AlertState::Firing).then(|| to_time(tr.at_ms))),
            value: Set(tr.value),
            labels: Set(serde_json::to_string(&tr.labels).unwrap_or_default()),
            summary: Set(tr.summary.clone()),
            updated_at: Set(to_time(tr.at_ms)),
        };
        let mut cols = vec![
            alert_state::Column::State,
            alert_state::Column::Since,
            alert_state::Column::Value,
            alert_state::Column::Labels,
            alert_state::Column::Summary,
            alert_state::Column::UpdatedAt,
        ];
        // Keep when it first fired across the resolved row.
        if tr.to == AlertState::Firing {
            cols.push(alert_state::Column::FiredAt);
        }
        alert_state::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([alert_state::Column::RuleId, alert_state::Column::Series])
                    .update_columns(cols)
                    .to_owned(),
            )
            .exec(db)
            .await?;
    }
    Ok(())
}

/// A resolved alert whose notices are all out: drop its state row (unless
/// it fired again meanwhile).
pub async fn forget_resolved<C: ConnectionTrait>(
    db: &C,
    rule_id: Uuid,
    series: &str,
) -> Result<(), DbErr> {
    alert_state::Entity::delete_many()
        .filter(alert_state::Column::RuleId.eq(rule_id))
        .filter(alert_state::Column::Series.eq(series))
        .filter(alert_state::Column::State.eq(AlertState::Resolved.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Remember which alerts a group's last notice carried.
pub async fn save_nflog<C: ConnectionTrait>(
    db: &C,
    channel_id: Uuid,
    group_key: &str,
    at_ms: i64,
    sent: &[String],
) -> Result<(), DbErr> {
    if sent.is_empty() {
        alert_nflog::Entity::delete_many()
            .filter(alert_nflog::Column::ChannelId.eq(channel_id))
            .filter(alert_nflog::Column::GroupKey.eq(group_key))
            .exec(db)
            .await?;
        return Ok(());
    }
    let row = alert_nflog::ActiveModel {
        channel_id: Set(channel_id),
        group_key: Set(group_key.to_string()),
        last_sent_at: Set(to_time(at_ms)),
        sent: Set(serde_json::to_string(sent).unwrap_or_default()),
    };
    alert_nflog::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([
                alert_nflog::Column::ChannelId,
                alert_nflog::Column::GroupKey,
            ])
            .update_columns([alert_nflog::Column::LastSentAt, alert_nflog::Column::Sent])
            .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}
/// Re-write plain-text secrets of older rows sealed; returns how many.
pub async fn seal_legacy(
    db: &sea_orm::DatabaseConnection,
    key: &MasterKey,
) -> Result<usize, ApiError> {
    let rows = alert_channel::Entity::find().all(db).await?;
    let mut n = 0;
    for m in rows.into_iter().filter(|m| !channel::is_sealed(&m.secret)) {
        let sealed = channel::seal(key, m.id, &m.secret);
        // Only if nobody changed the row meanwhile.
        let res = alert_channel::Entity::update_many()
            .col_expr(
                alert_channel::Column::Secret,
                sea_orm::sea_query::Expr::value(sealed),
            )
            .filter(alert_channel::Column::Id.eq(m.id))
            .filter(alert_channel::Column::Secret.eq(m.secret.as_str()))
            .exec(db)
            .await?;
        n += res.rows_affected as usize;
    }
    Ok(n)
}
