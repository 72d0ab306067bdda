//! Tables of the fleet: MQTT clusters, gateways and their immutable config
//! versions, templates, enrollment tokens, agents, signing keys and
//! fleet-health events. Entities in `fleet::entities`.

use sea_orm_migration::prelude::*;

use crate::db::migrations::col::*;

pub struct Migration;

// Its name is stored in `seaql_migrations` and never changes: it was
// derived from the file it was first written in, `fleet/migration.rs`.
impl MigrationName for Migration {
    fn name(&self) -> &str {
        "migration"
    }
}

fn big_null(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .big_integer()
        .null()
        .to_owned()
}
fn big0(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}
fn bool_null(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).boolean().null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("fleet_signing_keys"))
                .col(string("id", 64).primary_key())
                .col(uuid("org_id"))
                // `bundle` (config signing) or `jwt` (MQTT credentials).
                .col(string("purpose", 16))
                // Base64 of nonce + AES-256-GCM ciphertext of the 32-byte seed.
                .col(text("secret_enc"))
                .col(text("public_key"))
                .col(ts("created_at"))
                .col(ts_null("retired_at"))
                // JSON KeyRotation endorsing this key by its predecessor.
                .col(text_null("rotation"))
                .col(ts_null("rotation_until"))
                .foreign_key(&mut fk("fleet_signing_keys", "org_id", "orgs"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "fleet_signing_keys",
            "idx_fleet_signing_keys_org",
            &["org_id", "purpose"],
            false,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("fleet_clusters"))
                .col(uuid_pk("id"))
                .col(uuid("org_id"))
                .col(uuid("project_id"))
                .col(string("slug", 63))
                .col(text("name"))
                .col(string("backend", 16))
                .col(string("auth_mode", 16))
                .col(text_null("url"))
                .col(text_null("username"))
                .col(text_null("password_enc"))
                .col(text_null("spec"))
                .col(text_null("status"))
                .col(ts_null("probe_at"))
                .col(bool_null("probe_ok"))
                .col(big_null("probe_rtt_us"))
                .col(text_null("probe_error"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .foreign_key(&mut fk("fleet_clusters", "org_id", "orgs"))
                .foreign_key(&mut fk("fleet_clusters", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "fleet_clusters",
            "uq_fleet_clusters_org_slug",
            &["org_id", "slug"],
            true,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("fleet_gateways"))
                .col(uuid_pk("id"))
                .col(uuid("org_id"))
                .col(uuid("project_id"))
                .col(string("slug", 63))
                .col(uuid_null("cluster_id"))
                .col(big("config_version"))
                .col(big0("bundle_version"))
                .col(big0("bundle_config_version"))
                .col(text_null("bundle"))
                .col(ts_null("bundle_expires"))
                .col(big_null("applied_version"))
                .col(text_null("last_error"))
                .col(ts_null("last_heartbeat"))
                .col(int("heartbeat_interval_s"))
                .col(bool_null("online"))
                .col(text_null("status"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .foreign_key(&mut fk("fleet_gateways", "org_id", "orgs"))
                .foreign_key(&mut fk("fleet_gateways", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        // Topics are weir/{org}/{gateway}/...: a gateway name is unique in its org.
        m.create_index(index(
            "fleet_gateways",
            "uq_fleet_gateways_org_slug",
            &["org_id", "slug"],
            true,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("fleet_gateway_versions"))
                .col(uuid("gateway_id"))
                .col(big("version"))
                .col(text("spec"))
                .col(uuid_null("author_id"))
                .col(text("author"))
                .col(text("comment"))
                .col(ts("created_at"))
                .primary_key(
                    Index::create()
                        .col(Alias::new("gateway_id"))
                        .col(Alias::new("version")),
                )
                .foreign_key(&mut fk(
                    "fleet_gateway_versions",
                    "gateway_id",
                    "fleet_gateways",
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("fleet_templates"))
                .col(uuid_pk("id"))
                .col(uuid("org_id"))
                .col(uuid("project_id"))
                .col(string("slug", 63))
                .col(text("name"))
                .col(text("description"))
                .col(text("spec"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .foreign_key(&mut fk("fleet_templates", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "fleet_templates",
            "uq_fleet_templates_project_slug",
            &["project_id", "slug"],
            true,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("fleet_enrollment_tokens"))
                .col(uuid_pk("id"))
                .col(uuid("org_id"))
                .col(uuid("project_id"))
                .col(uuid("gateway_id"))
                .col(string("prefix", 32))
                .col(string("token_hash", 64).unique_key())
                .col(uuid_null("created_by"))
                .col(ts("created_at"))
                .col(ts("expires_at"))
                .col(int("max_uses"))
                .col(int("uses"))
                .col(ts_null("revoked_at"))
                .col(ts_null("last_used_at"))
                .foreign_key(&mut fk(
                    "fleet_enrollment_tokens",
                    "gateway_id",
                    "fleet_gateways",
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("fleet_agents"))
                .col(uuid_pk("id"))
                .col(uuid("org_id"))
                .col(uuid("project_id"))
                .col(uuid("gateway_id"))
                .col(text("public_key"))
                .col(text("hostname"))
                .col(text("os"))
                .col(text("arch"))
                .col(text("agent_version"))
                .col(uuid_null("token_id"))
                .col(ts("enrolled_at"))
                .col(ts_null("revoked_at"))
                .col(ts_null("last_seen_at"))
                .foreign_key(&mut fk("fleet_agents", "gateway_id", "fleet_gateways"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("fleet_agent_sessions"))
                .col(string("token_hash", 64).primary_key())
                .col(uuid("agent_id"))
                .col(ts("created_at"))
                .col(ts("expires_at"))
                .foreign_key(&mut fk("fleet_agent_sessions", "agent_id", "fleet_agents"))
                .to_owned(),
        )
        .await?;
        // Challenge timestamps already used, so a signed challenge works once.
        m.create_table(
            Table::create()
                .table(Alias::new("fleet_agent_challenges"))
                .col(uuid("agent_id"))
                .col(string("ts", 64))
                .col(ts("used_at"))
                .primary_key(
                    Index::create()
                        .col(Alias::new("agent_id"))
                        .col(Alias::new("ts")),
                )
                .foreign_key(&mut fk(
                    "fleet_agent_challenges",
                    "agent_id",
                    "fleet_agents",
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("fleet_events"))
                .col(uuid_pk("id"))
                .col(uuid("org_id"))
                .col(uuid("project_id"))
                .col(uuid("gateway_id"))
                .col(text("gateway"))
                .col(string("kind", 32))
                .col(ts("at"))
                .col(text("details"))
                .foreign_key(&mut fk("fleet_events", "gateway_id", "fleet_gateways"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "fleet_events",
            "idx_fleet_events_org_at",
            &["org_id", "at"],
            false,
        ))
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "fleet_events",
            "fleet_agent_challenges",
            "fleet_agent_sessions",
            "fleet_agents",
            "fleet_enrollment_tokens",
            "fleet_templates",
            "fleet_gateway_versions",
            "fleet_gateways",
            "fleet_clusters",
            "fleet_signing_keys",
        ] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
