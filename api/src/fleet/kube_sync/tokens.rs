//! The enrollment token of each EdgeGateway, issued by the api (the one
//! issuer: same hashing, expiry, use limit and audit as a console-issued
//! token, through [`crate::fleet::enrollment::issue_token`]) and written to
//! Secret `<gateway>-enrollment` (key `token`, with `expiresAt` and
//! `maxUses`), owned by the EdgeGateway so it goes with it. A new token
//! replaces it when it expired, was used up or revoked, or when the
//! gateway's `weir.dev/reissue-token` annotation changes (then the old one
//! is revoked). The Secret remembers which token it holds and which
//! request it answers, so a restarted api issues nothing new.

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, Utc};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use uuid::Uuid;
use weir_crds::names::annotations::REISSUE_TOKEN;
use weir_crds::EdgeGateway;

use super::{event, meta};
use crate::db::entities::org;
use crate::error::ApiError;
use crate::fleet::enrollment::{issue_token, token_state, NewToken};
use crate::fleet::entities::{enrollment_token, gateway};
use crate::fleet::kube_backend::FIELD_MANAGER;
use crate::state::AppState;

/// On the Secret: the id of the token it holds.
pub const TOKEN_ID: &str = "weir.dev/enrollment-token-id";
/// On the Secret: the `weir.dev/reissue-token` request it answers.
pub const REISSUE_DONE: &str = "weir.dev/reissue-done";

/// The Secret of a gateway's enrollment token.
pub fn secret_name(gateway: &str) -> String {
    format!("{gateway}-enrollment")
}

/// What a Secret holds, as far as the api needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    token_id: Uuid,
    reissue: Option<String>,
    owner: String,
}

/// Tokens the watch knows it wrote, per (namespace, gateway).
#[derive(Default)]
pub struct Issued(HashMap<(String, String), Held>);

/// The Secret for `token` (pure).
pub fn token_secret(
    gw: &EdgeGateway,
    token: &str,
    m: &enrollment_token::Model,
    reissue: Option<&str>,
) -> Secret {
    let mut annotations = BTreeMap::from([(TOKEN_ID.to_string(), m.id.to_string())]);
    if let Some(r) = reissue {
        annotations.insert(REISSUE_DONE.to_string(), r.to_string());
    }
    let owner = OwnerReference {
        api_version: EdgeGateway::api_version(&()).into_owned(),
        kind: EdgeGateway::kind(&()).into_owned(),
        name: gw.name_any(),
        uid: gw.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let data = [
        ("token", token.to_string()),
        ("expiresAt", m.expires_at.to_rfc3339()),
        ("maxUses", m.max_uses.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&gw.name_any())),
            namespace: gw.namespace(),
            labels: Some(BTreeMap::from([
                (
                    weir_crds::names::labels::MANAGED_BY.to_string(),
                    FIELD_MANAGER.to_string(),
                ),
                (
                    weir_crds::names::labels::EDGE_GATEWAY.to_string(),
                    gw.name_any(),
                ),
            ])),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

fn kube_err(e: kube::Error) -> ApiError {
    ApiError::Unavailable(format!("Kubernetes: enrollment Secret: {e}"))
}

/// What the Secret in the cluster says it holds (its metadata only).
async fn read_held(secrets: &Api<Secret>, name: &str) -> Result<Option<Held>, ApiError> {
    let Some(m) = secrets.get_metadata_opt(name).await.map_err(kube_err)? else {
        return Ok(None);
    };
    let a = m.metadata.annotations.unwrap_or_default();
    let Some(token_id) = a.get(TOKEN_ID).and_then(|v| v.parse().ok()) else {
        return Ok(None);
    };
    let owner = m
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .next()
        .map(|o| o.uid)
        .unwrap_or_default();
    Ok(Some(Held {
        token_id,
        reissue: a.get(REISSUE_DONE).cloned(),
        owner,
    }))
}

impl Issued {
    pub fn forget(&mut self, ns: &str, name: &str) {
        self.0.remove(&(ns.to_string(), name.to_string()));
    }

    /// See that the gateway's Secret holds a usable token answering the
    /// current reissue request; issue and write one otherwise.
    pub async fn ensure(
        &mut self,
        st: &AppState,
        client: &Client,
        gw: &EdgeGateway,
        o: &org::Model,
        g: &gateway::Model,
    ) -> Result<(), ApiError> {
        let ns = gw.namespace().unwrap_or_default();
        let k = (ns.clone(), gw.name_any());
        let uid = gw.uid().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let held = match self.0.get(&k) {
            Some(h) => Some(h.clone()),
            None => read_held(&secrets, &secret_name(&k.1)).await?,
        };
        let reissue = gw.annotations().get(REISSUE_TOKEN).cloned();
        let now = Utc::now();
        let current = match &held {
            // A Secret of an earlier object of the same name is not this one's.
            Some(h) if h.owner == uid => enrollment_token::Entity::find_by_id(h.token_id)
                .one(&st.db)
                .await?
                .filter(|t| t.gateway_id == g.id),
            _ => None,
        };
        let usable = current
            .as_ref()
            .is_some_and(|t| token_state(t, now).is_none());
        let asked_again = held.as_ref().map(|h| &h.reissue) != Some(&reissue);
        if usable && !asked_again {
            self.0.insert(k, held.expect("usable implies held"));
            return Ok(());
        }
        let reason = match (&current, usable) {
            (_, true) => "reissue requested",
            (None, _) => "no token yet",
            (Some(t), _) => token_state(t, now).map_or("unusable", |r| match r {
                crate::fleet::enrollment::TokenRefusal::Expired => "expired",
                crate::fleet::enrollment::TokenRefusal::UsedUp => "used up",
                crate::fleet::enrollment::TokenRefusal::Revoked => "revoked",
            }),
        };
        let cfg = &st.config.kube_sync;
        let tx = st.write().await?;
        // Another replica (the write lock spans them on PostgreSQL) may have
        // just answered this: decide again on what the Secret holds now.
        let now_held = read_held(&secrets, &secret_name(&k.1)).await?;
        if now_held != held {
            drop(tx);
            self.0.remove(&k);
            return Ok(());
        }
        // A new request means the old token must stop working.
        if let (Some(t), true) = (&current, asked_again && usable) {
            let mut am = t.clone().into_active_model();
            am.revoked_at = Set(Some(now));
            am.update(&*tx).await?;
        }
        let (m, secret) = issue_token(
            &*tx,
            NewToken {
                org_id: o.id,
                project_id: g.project_id,
                gateway_id: g.id,
                created_by: None,
                expires_in: Duration::hours(cfg.kube_token_ttl_hours),
                max_uses: cfg.kube_token_max_uses,
            },
            event(
                "enrollment_token.create",
                format!("gateway:{}/{}", o.slug, g.slug),
                o,
                g.project_id,
            ),
            &meta(),
        )
        .await?;
        // Written before the commit: a token never stored in the Secret is
        // rolled back with the failed write and issued again next pass.
        let obj = token_secret(gw, &secret, &m, reissue.as_deref());
        secrets
            .patch(
                &secret_name(&k.1),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .map_err(kube_err)?;
        tx.commit().await?;
        // Never the token itself.
        tracing::info!(org = %o.slug, gateway = %g.slug, prefix = %m.prefix, reason,
            "issued an enrollment token into Secret {}", secret_name(&k.1));
        self.0.insert(
            k,
            Held {
                token_id: m.id,
                reissue,
                owner: uid,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_secret_holds_the_token_and_goes_with_its_gateway() {
        let gw: EdgeGateway = serde_json::from_value(json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "EdgeGateway",
            "metadata": {"name": "pump-1", "namespace": "weir-riverside", "uid": "u-1"},
            "spec": {},
        }))
        .unwrap();
        let now = Utc::now();
        let m = enrollment_token::Model {
            id: Uuid::new_v4(),
            org_id: Uuid::new_v4(),
            project_id: Uuid::new_v4(),
            gateway_id: Uuid::new_v4(),
            prefix: "weir_et_abcdef".into(),
            token_hash: "h".into(),
            created_by: None,
            created_at: now,
            expires_at: now + Duration::hours(72),
            max_uses: 1,
            uses: 0,
            revoked_at: None,
            last_used_at: None,
        };
        let s = token_secret(&gw, "weir_et_secret", &m, Some("2026-q1"));
        assert_eq!(s.metadata.name.as_deref(), Some("pump-1-enrollment"));
        assert_eq!(s.metadata.namespace.as_deref(), Some("weir-riverside"));
        let data = s.data.unwrap();
        assert_eq!(data["token"].0, b"weir_et_secret");
        assert_eq!(data["maxUses"].0, b"1");
        let a = s.metadata.annotations.unwrap();
        assert_eq!(a[TOKEN_ID], m.id.to_string());
        assert_eq!(a[REISSUE_DONE], "2026-q1");
        let owner = &s.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("EdgeGateway", "pump-1", "u-1")
        );
        assert_eq!(owner.api_version, "weir.dev/v1alpha1");
    }
}
