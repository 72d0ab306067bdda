//! Per-organization Ed25519 keys, stored encrypted under the master key:
//! `bundle` keys sign config bundles, `jwt` keys sign MQTT credentials
//! (published at `GET /api/v1/jwks.json`). Rotation makes a new key, retires
//! the old one, and for a grace period new bundles carry the rotation
//! signed by both keys, so agents that pinned the old key move over.

use axum::extract::State;
use axum::Json;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::SigningKey;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, Set,
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use weir_crds::bundle::{self, KeyRotation, TrustAnchor};

use super::entities::signing_key;
use super::Fleet;
use crate::audit::{self, AuditEvent};
use crate::auth::{check, load_org, Auth, ClientMeta};
use crate::error::{ApiError, ProblemResponses};
use crate::extract::ApiPath;
use crate::rbac::{Domain, Permission};
use crate::state::AppState;

pub const PURPOSE_BUNDLE: &str = "bundle";
pub const PURPOSE_JWT: &str = "jwt";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys))
        .routes(routes!(rotate_keys))
        .routes(routes!(jwks))
}

/// An org key, decrypted.
pub struct OrgKey {
    pub key: SigningKey,
    pub model: signing_key::Model,
}

impl OrgKey {
    pub fn anchor(&self) -> TrustAnchor {
        TrustAnchor::from_key(&self.key.verifying_key())
    }

    /// The rotation to attach to new bundles, while the grace period runs.
    pub fn rotation(&self, now: DateTime<Utc>) -> Option<KeyRotation> {
        let until = self.model.rotation_until?;
        if until <= now {
            return None;
        }
        serde_json::from_str(self.model.rotation.as_deref()?).ok()
    }
}

fn decrypt(fleet: &Fleet, m: signing_key::Model) -> Result<OrgKey, ApiError> {
    let seed = fleet.master()?.open(&m.secret_enc, &m.id)?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| ApiError::internal("stored signing key has the wrong length"))?;
    Ok(OrgKey {
        key: SigningKey::from_bytes(&seed),
        model: m,
    })
}

fn new_row(
    fleet: &Fleet,
    org_id: Uuid,
    purpose: &str,
    key: &SigningKey,
    rotation: Option<&KeyRotation>,
    now: DateTime<Utc>,
) -> Result<signing_key::ActiveModel, ApiError> {
    let id = bundle::key_id(&key.verifying_key());
    Ok(signing_key::ActiveModel {
        secret_enc: Set(fleet.master()?.seal(key.as_bytes(), &id)),
        id: Set(id),
        org_id: Set(org_id),
        purpose: Set(purpose.to_string()),
        public_key: Set(B64.encode(key.verifying_key().as_bytes())),
        created_at: Set(now),
        retired_at: Set(None),
        rotation: Set(rotation.map(|r| serde_json::to_string(r).expect("rotation serializes"))),
        rotation_until: Set(
            rotation.map(|_| now + Duration::days(fleet.config.key_rotation_grace_days))
        ),
    })
}

/// The org's current key for `purpose`, if there is one.
pub async fn current<C: ConnectionTrait>(
    db: &C,
    fleet: &Fleet,
    org_id: Uuid,
    purpose: &str,
) -> Result<Option<OrgKey>, ApiError> {
    let m = signing_key::Entity::find()
        .filter(signing_key::Column::OrgId.eq(org_id))
        .filter(signing_key::Column::Purpose.eq(purpose))
        .filter(signing_key::Column::RetiredAt.is_null())
        .order_by_desc(signing_key::Column::CreatedAt)
        .one(db)
        .await?;
    m.map(|m| decrypt(fleet, m)).transpose()
}

/// The org's current key, created on first use. Call inside a write
/// transaction so two requests cannot both create one.
pub async fn current_or_create<C: ConnectionTrait>(
    db: &C,
    fleet: &Fleet,
    org_id: Uuid,
    purpose: &str,
) -> Result<OrgKey, ApiError> {
    if let Some(k) = current(db, fleet, org_id, purpose).await? {
        return Ok(k);
    }
    let key = bundle::generate_key();
    let m = new_row(fleet, org_id, purpose, &key, None, Utc::now())?
        .insert(db)
        .await?;
    tracing::info!(org = %org_id, purpose, key_id = %m.id, "generated a signing key");
    Ok(OrgKey { key, model: m })
}

/// The org's current key, creating it under the write lock when missing
/// (for paths that do not hold a write transaction, e.g. agents).
pub async fn ensure(st: &AppState, org_id: Uuid, purpose: &str) -> Result<OrgKey, ApiError> {
    if let Some(k) = current(&st.db, &st.fleet, org_id, purpose).await? {
        return Ok(k);
    }
    let tx = st.write().await?;
    let k = current_or_create(&*tx, &st.fleet, org_id, purpose).await?;
    tx.commit().await?;
    Ok(k)
}

/// Replace the current key of `purpose` by a new one endorsed by the old.
pub async fn rotate<C: ConnectionTrait>(
    db: &C,
    fleet: &Fleet,
    org_id: Uuid,
    purpose: &str,
) -> Result<(Option<String>, signing_key::Model), ApiError> {
    let now = Utc::now();
    let old = current(db, fleet, org_id, purpose).await?;
    let new = bundle::generate_key();
    let rotation = old
        .as_ref()
        .map(|o| bundle::sign_rotation(&o.key, &new, now));
    let m = new_row(fleet, org_id, purpose, &new, rotation.as_ref(), now)?
        .insert(db)
        .await?;
    let old_id = match old {
        Some(o) => {
            let id = o.model.id.clone();
            let mut am = o.model.into_active_model();
            am.retired_at = Set(Some(now));
            am.update(db).await?;
            Some(id)
        }
        None => None,
    };
    Ok((old_id, m))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SigningKeyInfo {
    /// `ed25519:<16 hex digits>`.
    pub key_id: String,
    /// `bundle` (config bundles) or `jwt` (MQTT credentials).
    pub purpose: String,
    /// Base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    /// Until when new bundles carry the rotation from the previous key.
    pub rotation_until: Option<DateTime<Utc>>,
}

impl From<signing_key::Model> for SigningKeyInfo {
    fn from(m: signing_key::Model) -> Self {
        Self {
            key_id: m.id,
            purpose: m.purpose,
            public_key: m.public_key,
            created_at: m.created_at,
            retired_at: m.retired_at,
            rotation_until: m.rotation_until,
        }
    }
}

/// The organization's signing keys (public parts only), newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/signing-keys", tag = "fleet",
    params(("org" = String, Path)), responses((status = 200, body = Vec<SigningKeyInfo>), ProblemResponses))]
async fn list_keys(
    State(st): State<AppState>,
    auth: Auth,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<Vec<SigningKeyInfo>>, ApiError> {
    let (o, grants) = load_org(&st, &auth, &org).await?;
    check(&grants, &st, Permission::OrgRead, Domain::Org(o.id))?;
    let rows = signing_key::Entity::find()
        .filter(signing_key::Column::OrgId.eq(o.id))
        .order_by_desc(signing_key::Column::CreatedAt)
        .all(&st.db)
        .await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotationResult {
    /// The new config-signing key.
    pub bundle_key: SigningKeyInfo,
    pub previous_bundle_key_id: Option<String>,
    /// The new MQTT JWT key (the old one stays in the JWKS until its tokens expire).
    pub jwt_key: SigningKeyInfo,
    /// Gateways that got a new bundle carrying the rotation.
    pub resigned_gateways: u64,
}

/// Rotate the organization's signing keys. Every gateway gets a new bundle
/// signed by the new key that carries the rotation signed by old and new key.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/signing-keys:rotate", tag = "fleet",
    params(("org" = String, Path)), responses((status = 200, body = RotationResult), ProblemResponses))]
async fn rotate_keys(
    State(st): State<AppState>,
    auth: Auth,
    meta: ClientMeta,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<RotationResult>, ApiError> {
    let (o, grants) = load_org(&st, &auth, &org).await?;
    check(&grants, &st, Permission::OrgUpdate, Domain::Org(o.id))?;
    let tx = st.write().await?;
    let (old_bundle, new_bundle) = rotate(&*tx, &st.fleet, o.id, PURPOSE_BUNDLE).await?;
    let (old_jwt, new_jwt) = rotate(&*tx, &st.fleet, o.id, PURPOSE_JWT).await?;
    let changed = super::gateways::resign_org(&*tx, &st, &o).await?;
    audit::append(
        &*tx,
        AuditEvent::by(&auth, "signing_key.rotate", format!("org:{}", o.slug))
            .org(o.id)
            .details(serde_json::json!({
                "bundle_key": new_bundle.id, "previous_bundle_key": old_bundle,
                "jwt_key": new_jwt.id, "previous_jwt_key": old_jwt,
                "resigned_gateways": changed.len(),
            })),
        &meta,
    )
    .await?;
    tx.commit().await?;
    for id in &changed {
        let _ = st.fleet.bundles.send(*id);
    }
    Ok(Json(RotationResult {
        bundle_key: new_bundle.into(),
        previous_bundle_key_id: old_bundle,
        jwt_key: new_jwt.into(),
        resigned_gateways: changed.len() as u64,
    }))
}

/// One JSON Web Key (Ed25519, RFC 8037).
#[derive(Debug, Serialize, ToSchema)]
pub struct Jwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// Base64url public key.
    pub x: String,
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// Keys that verify MQTT JWTs issued by this api (for the broker's JWT authentication).
#[utoipa::path(get, path = "/api/v1/jwks.json", tag = "fleet", security(()),
    responses((status = 200, body = JwkSet), ProblemResponses))]
async fn jwks(State(st): State<AppState>) -> Result<Json<JwkSet>, ApiError> {
    // A retired key stays published while tokens it signed may still be valid.
    let cutoff = Utc::now() - Duration::seconds(st.fleet.config.mqtt_jwt_ttl_secs);
    let rows = signing_key::Entity::find()
        .filter(signing_key::Column::Purpose.eq(PURPOSE_JWT))
        .order_by_asc(signing_key::Column::CreatedAt)
        .all(&st.db)
        .await?;
    let keys = rows
        .into_iter()
        .filter(|m| m.retired_at.is_none_or(|r| r > cutoff))
        .filter_map(|m| {
            let raw = B64.decode(&m.public_key).ok()?;
            Some(Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: URL_SAFE_NO_PAD.encode(raw),
                kid: m.id,
                alg: "EdDSA".into(),
                use_: "sig".into(),
            })
        })
        .collect();
    Ok(Json(JwkSet { keys }))
}

/// PKCS#8 v1 DER of an Ed25519 private key (RFC 8410): a fixed prefix and
/// the 32-byte seed — what `jsonwebtoken` wants for EdDSA.
pub fn pkcs8_der(key: &SigningKey) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(key.as_bytes());
    der
}
