//! What a sign-in proves about the user: the verified ID token's claims,
//! completed from UserInfo when the token lacks some. Many providers (and
//! `oidc-provider` at its defaults) put the scope claims only in UserInfo
//! once an access token is issued.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::{CoreGenderClaim, CoreTokenResponse};
use openidconnect::{AdditionalClaims, Nonce, OAuth2TokenResponse, TokenResponse, UserInfoClaims};
use serde::{Deserialize, Serialize};

use super::Client;
use crate::config::OidcConfig;
use crate::error::ApiError;

/// What we keep from a verified sign-in.
#[derive(Debug, Clone)]
pub struct VerifiedIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: String,
    /// The provider says this email belongs to the user. Only then may the
    /// sign-in claim invitations or take over an account by email.
    pub email_verified: bool,
    pub name: String,
    pub groups: Vec<String>,
}

/// UserInfo's claims beyond the standard ones, by name: the groups claim's
/// name is configured.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for OtherClaims {}

/// What one source (the ID token or UserInfo) says about the user.
#[derive(Debug, Default)]
struct Said {
    email: Option<String>,
    email_verified: Option<bool>,
    name: Option<String>,
    groups: Option<Vec<String>>,
}

impl Said {
    fn complete(&self) -> bool {
        self.email.is_some()
            && self.email_verified.is_some()
            && self.name.is_some()
            && self.groups.is_some()
    }

    /// This source vouches for `email`.
    fn verifies(&self, email: &str) -> bool {
        self.email.as_deref() == Some(email) && self.email_verified == Some(true)
    }
}

/// Verify the ID token of `token` and read the user from it, asking
/// UserInfo (for the same subject) for what it lacks.
pub(super) async fn identity(
    client: &Client,
    http: &openidconnect::reqwest::Client,
    cfg: &OidcConfig,
    token: &CoreTokenResponse,
    nonce: &str,
) -> Result<VerifiedIdentity, ApiError> {
    let id_token = token.id_token().ok_or(ApiError::InvalidCredentials(
        "the identity provider sent no ID token",
    ))?;
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &Nonce::new(nonce.to_string()))
        .map_err(|e| {
            tracing::warn!(error = %e, "ID token verification failed");
            ApiError::InvalidCredentials("the ID token did not verify")
        })?;
    let subject = claims.subject().clone();
    let from_token = Said {
        email: claims.email().map(|e| e.as_str().trim().to_lowercase()),
        email_verified: claims.email_verified(),
        name: claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_string()),
        // The signature was verified above; the configured groups claim is
        // read from the same token's payload.
        groups: groups_from_jwt(&id_token.to_string(), &cfg.groups_claim),
    };
    let from_userinfo = if from_token.complete() || client.user_info_url().is_none() {
        Said::default()
    } else {
        let req = client
            .user_info(token.access_token().clone(), Some(subject.clone()))
            .map_err(ApiError::internal)?;
        let ui: UserInfoClaims<OtherClaims, CoreGenderClaim> =
            req.request_async(http).await.map_err(|e| {
                tracing::warn!(error = %e, "OIDC UserInfo request failed");
                ApiError::InvalidCredentials("the identity provider's UserInfo was refused")
            })?;
        // The library checks this too (expected subject); UserInfo about
        // anyone else must never complete this sign-in.
        if ui.subject() != &subject {
            return Err(ApiError::InvalidCredentials(
                "UserInfo is about another user than the ID token",
            ));
        }
        Said {
            email: ui.email().map(|e| e.as_str().trim().to_lowercase()),
            email_verified: ui.email_verified(),
            name: ui
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_string()),
            groups: ui
                .additional_claims()
                .claims
                .get(&cfg.groups_claim)
                .and_then(groups_of),
        }
    };
    let email = from_token
        .email
        .clone()
        .or_else(|| from_userinfo.email.clone())
        .ok_or(ApiError::InvalidCredentials(
            "the identity provider sent no email claim (neither in the ID token nor from UserInfo)",
        ))?;
    let email_verified = from_token.verifies(&email) || from_userinfo.verifies(&email);
    Ok(VerifiedIdentity {
        issuer: claims.issuer().to_string(),
        subject: subject.as_str().to_string(),
        email_verified,
        name: from_token
            .name
            .or(from_userinfo.name)
            .unwrap_or_else(|| email.clone()),
        groups: from_token
            .groups
            .or(from_userinfo.groups)
            .unwrap_or_default(),
        email,
    })
}

/// The groups claim (array of strings, or one string) of a JWT's payload;
/// None when the payload lacks it.
pub fn groups_from_jwt(jwt: &str, claim: &str) -> Option<Vec<String>> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let v = serde_json::from_slice::<serde_json::Value>(&bytes).ok()?;
    groups_of(v.get(claim)?)
}

fn groups_of(v: &serde_json::Value) -> Option<Vec<String>> {
    match v {
        serde_json::Value::Array(a) => Some(
            a.iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect(),
        ),
        serde_json::Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_claim_is_read_from_the_payload() {
        let payload =
            URL_SAFE_NO_PAD.encode(br#"{"sub":"x","groups":["ops","plant-a"],"team":"blue"}"#);
        let jwt = format!("e30.{payload}.sig");
        assert_eq!(
            groups_from_jwt(&jwt, "groups"),
            Some(vec!["ops".to_string(), "plant-a".to_string()])
        );
        assert_eq!(
            groups_from_jwt(&jwt, "team"),
            Some(vec!["blue".to_string()])
        );
        assert_eq!(groups_from_jwt(&jwt, "missing"), None);
        assert_eq!(groups_from_jwt("garbage", "groups"), None);
    }

    #[test]
    fn only_the_source_of_the_email_verifies_it() {
        let said = Said {
            email: Some("a@x.test".into()),
            email_verified: Some(true),
            ..Said::default()
        };
        assert!(said.verifies("a@x.test"));
        assert!(!said.verifies("b@x.test"));
        let unsure = Said {
            email: Some("a@x.test".into()),
            ..Said::default()
        };
        assert!(!unsure.verifies("a@x.test"));
    }
}
