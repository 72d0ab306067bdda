//! The alerts tables as sea-orm entities: rules, alert states and their
//! history, silences, channels, the delivery log and the notification log
//! (`db::migrations::m0100_alerts`); acknowledgements and shelves
//! (`m0280_alert_acknowledgements`).

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
        /// `transition` (from_state → to_state), `acknowledged` or `shelved`
        /// (both states are the alert's state at the time).
        pub event: String,
        /// Who acknowledged or shelved (email); null for transitions.
        pub actor: Option<String>,
        pub comment: Option<String>,
        pub shelve_until: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod alert_acknowledgement {
    use sea_orm::entity::prelude::*;

    /// The current acknowledgement or shelve of one alert (the latest
    /// `POST .../alerts/acknowledgements` for its rule and series).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_acknowledgements")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub rule_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub series: String,
        pub project_id: Uuid,
        /// `since` of the alert instance it was given for.
        pub alert_since: DateTimeUtc,
        pub author: String,
        pub comment: String,
        pub created_at: DateTimeUtc,
        /// Set: a shelve (hidden and silent until then); null: an acknowledgement.
        pub shelve_until: Option<DateTimeUtc>,
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
