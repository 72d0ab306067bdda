//! sea-orm entities of the fleet tables (schema in `fleet::migration`).

macro_rules! entity_boilerplate {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod signing_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleet_signing_keys")]
    pub struct Model {
        /// The key id (`ed25519:<16 hex>`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub org_id: Uuid,
        pub purpose: String,
        pub secret_enc: String,
        pub public_key: String,
        pub created_at: DateTimeUtc,
        pub retired_at: Option<DateTimeUtc>,
        pub rotation: Option<String>,
        pub rotation_until: Option<DateTimeUtc>,
    }
    entity_boilerplate!();
}

pub mod cluster {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleet_clusters")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: Uuid,
        pub project_id: Uuid,
        pub slug: String,
        pub name: String,
        pub backend: String,
        pub auth_mode: String,
        pub url: Option<String>,
        pub username: Option<String>,
        pub password_enc: Option<String>,
        pub spec: Option<String>,
        pub status: Option<String>,
        pub probe_at: Option<DateTimeUtc>,
        pub probe_ok: Option<bool>,
        pub probe_rtt_us: Option<i64>,
        pub probe_error: Option<String>,
        /// `BrokerStats` JSON from the last probe's `$SYS` reading.
        pub probe_stats: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }
    entity_boilerplate!();
}

/// A cluster shared with another project of its org (`fleet_cluster_shares`).
pub mod cluster_share {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleet_cluster_shares")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub cluster_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: Uuid,
        pub created_at: DateTimeUtc,
    }
    entity_boilerplate!();
}

pub mod gateway {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleet_gateways")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: Uuid,
        pub project_id: Uuid,
        pub slug: String,
        pub cluster_id: Option<Uuid>,
        /// Latest config version (the desired one).
        pub config_version: i64,
        /// Version of the latest signed bundle (goes up on every signing).
        pub bundle_version: i64,
        /// Config version that bundle carries.
        pub bundle_config_version: i64,
        /// JSON `SignedBundle`.
        pub bundle: Option<String>,
        pub bundle_expires: Option<DateTimeUtc>,
        /// Bundle version the agent reports as applied.
        pub applied_version: Option<i64>,
        pub last_error: Option<String>,
        pub last_heartbeat: Option<DateTimeUtc>,
        pub heartbeat_interval_s: i32,
        pub online: Option<bool>,
        /// JSON `AgentStatus` of the last report.
        pub status: Option<String>,
        /// Readings per second the agent sent between its last two
        /// heartbeats (`fleet::agents::readings_rate`).
        pub readings_rate: Option<f64>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }
    entity_boilerplate!();
}

pub mod gateway_version {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleet_gateway_versions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub gateway_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i64,
        /// JSON `EdgeGatewaySpec`.
        pub spec: String,
        pub author_id: Option<Uuid>,
        pub author: String,
        pub comment: String,
        pub created_at: DateTimeUtc,
    }
    entity_boilerplate!();
}

pub mod template {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleet_templates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: Uuid,
        pub project_id: Uuid,
        pub slug: String,
        pub name: String,
        pub description: String,
        pub spec: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }
    entity_boilerplate!();
}

pub mod enrollment_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleet_enrollment_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: Uuid,
        pub project_id: Uuid,
        pub gateway_id: Uuid,
        pub prefix: String,
        /// SHA-256 of the secret; the secret is shown once at creation.
        #[sea_orm(unique)]
        pub token_hash: String,
        pub created_by: Option<Uuid>,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub max_uses: i32,
        pub uses: i32,
        pub revoked_at: Option<DateTimeUtc>,
        pub last_used_at: Option<DateTimeUtc>,
    }
    entity_boilerplate!();
}

pub mod agent {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleet_agents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: Uuid,
        pub project_id: Uuid,
        pub gateway_id: Uuid,
        pub public_key: String,
        pub hostname: String,
        pub os: String,
        pub arch: String,
        pub agent_version: String,
        pub token_id: Option<Uuid>,
        pub enrolled_at: DateTimeUtc,
        pub revoked_at: Option<DateTimeUtc>,
        pub last_seen_at: Option<DateTimeUtc>,
    }
    entity_boilerplate!();
}

pub mod agent_session {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleet_agent_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub agent_id: Uuid,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }
    entity_boilerplate!();
}

pub mod agent_challenge {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleet_agent_challenges")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub agent_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub ts: String,
        pub used_at: DateTimeUtc,
    }
    entity_boilerplate!();
}

pub mod fleet_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleet_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: Uuid,
        pub project_id: Uuid,
        pub gateway_id: Uuid,
        pub gateway: String,
        pub kind: String,
        pub at: DateTimeUtc,
        pub details: String,
    }
    entity_boilerplate!();
}

pub mod device_credential {
    use sea_orm::entity::prelude::*;

    /// A device credential; `secret_enc` is the sealed `DeviceCredential`
    /// JSON (see `fleet::credentials`), never returned by the api.
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "fleet_device_credentials")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub org_id: Uuid,
        pub project_id: Uuid,
        pub name: String,
        pub kind: String,
        pub username: String,
        pub secret_enc: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }
    entity_boilerplate!();

    /// Sealed, yet kept out of logs all the same.
    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("DeviceCredential")
                .field("id", &self.id)
                .field("project_id", &self.project_id)
                .field("name", &self.name)
                .field("kind", &self.kind)
                .finish_non_exhaustive()
        }
    }
}
