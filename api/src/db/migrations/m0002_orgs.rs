use sea_orm_migration::prelude::*;

use super::col::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new("orgs"))
                .col(uuid_pk("id"))
                .col(string("slug", 63).unique_key())
                .col(text("name"))
                .col(text("description"))
                .col(text_null("managed_by"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("projects"))
                .col(uuid_pk("id"))
                .col(uuid("org_id"))
                .col(string("slug", 63))
                .col(text("name"))
                .col(text("description"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .foreign_key(&mut fk("projects", "org_id", "orgs"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "projects",
            "uq_projects_org_slug",
            &["org_id", "slug"],
            true,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("org_members"))
                .col(uuid("org_id"))
                .col(uuid("user_id"))
                .col(string("role", 32))
                .col(string("source", 16))
                .col(ts("created_at"))
                .primary_key(
                    Index::create()
                        .col(Alias::new("org_id"))
                        .col(Alias::new("user_id")),
                )
                .foreign_key(&mut fk("org_members", "org_id", "orgs"))
                .foreign_key(&mut fk("org_members", "user_id", "users"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "org_members",
            "idx_org_members_user",
            &["user_id"],
            false,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("project_members"))
                .col(uuid("project_id"))
                .col(uuid("user_id"))
                .col(uuid("org_id"))
                .col(string("role", 32))
                .col(string("source", 16))
                .col(ts("created_at"))
                .primary_key(
                    Index::create()
                        .col(Alias::new("project_id"))
                        .col(Alias::new("user_id")),
                )
                .foreign_key(&mut fk("project_members", "project_id", "projects"))
                .foreign_key(&mut fk("project_members", "user_id", "users"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "project_members",
            "idx_project_members_user_org",
            &["user_id", "org_id"],
            false,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("invitations"))
                .col(uuid_pk("id"))
                .col(string("email", 320))
                .col(uuid("org_id"))
                .col(uuid_null("project_id"))
                .col(string("role", 32))
                .col(uuid_null("invited_by"))
                .col(ts("created_at"))
                .col(ts("expires_at"))
                .col(ts_null("claimed_at"))
                .col(uuid_null("claimed_by"))
                .foreign_key(&mut fk("invitations", "org_id", "orgs"))
                .foreign_key(&mut fk("invitations", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "invitations",
            "idx_invitations_email",
            &["email"],
            false,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("group_mappings"))
                .col(uuid_pk("id"))
                .col(uuid("org_id"))
                .col(uuid_null("project_id"))
                .col(string("group_name", 256))
                .col(string("role", 32))
                .col(string("source", 16))
                .foreign_key(&mut fk("group_mappings", "org_id", "orgs"))
                .foreign_key(&mut fk("group_mappings", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Alias::new("api_tokens"))
                .col(uuid_pk("id"))
                .col(text("name"))
                .col(uuid("user_id"))
                .col(uuid("org_id"))
                .col(uuid_null("project_id"))
                .col(string("role", 32))
                .col(string("prefix", 32))
                .col(string("token_hash", 64).unique_key())
                .col(ts("created_at"))
                .col(ts_null("expires_at"))
                .col(ts_null("revoked_at"))
                .col(ts_null("last_used_at"))
                .foreign_key(&mut fk("api_tokens", "user_id", "users"))
                .foreign_key(&mut fk("api_tokens", "org_id", "orgs"))
                .foreign_key(&mut fk("api_tokens", "project_id", "projects"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "api_tokens",
            "idx_api_tokens_org",
            &["org_id"],
            false,
        ))
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "api_tokens",
            "group_mappings",
            "invitations",
            "project_members",
            "org_members",
            "projects",
            "orgs",
        ] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
