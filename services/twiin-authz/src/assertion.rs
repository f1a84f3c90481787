//! The AORTA-TWIIN Client Authentication Assertion and Authorization Grant Assertion this
//! service issues (SPEC.md §3.1 step 4), and the key set that signs them.
//!
//! Both are ES512 (P-521, SHA-512) JWS with header `{alg: ES512, typ: JWT, kid}`, `jti` a UUID,
//! `iss` our HTTPS URL, `iat` now and `exp` the AORTA access_token's exp; `aud` is the external
//! GtK's authorization server. Signing uses aws-lc-rs (the workspace's one crypto provider,
//! which implements P-521; `jsonwebtoken` does not).
//!
//! **Key rotation** — the first configured key that is not retired signs; a retired key stays in
//! the published JWKS until `retired_at + max_lifetime`, after which no token it signed can
//! still be valid (a sourceToken living longer than `max_lifetime` is refused, so no assertion
//! outlives it either).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::SigningKeySettings;

#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    #[error("assertions.signing_keys[{index}].key {path}: {reason}")]
    Load {
        index: usize,
        path: String,
        reason: String,
    },
    #[error("assertions.signing_keys: no key is active (all are retired)")]
    NoActiveKey,
}

/// A P-521 signing key. No Debug, no accessor for the private part.
struct Es512Key {
    kid: String,
    key: EcdsaKeyPair,
    retired_at: Option<u64>,
}

impl Es512Key {
    fn jwk(&self) -> Value {
        let p = self.key.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-521", "use": "sig", "alg": "ES512", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&p[1..67]), "y": URL_SAFE_NO_PAD.encode(&p[67..133]),
        })
    }
}

/// A token that can only come out of [`SigningKeys::sign`].
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SignedAssertion(String);

impl SignedAssertion {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for SignedAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignedAssertion(..)")
    }
}

pub(crate) struct SigningKeys {
    keys: Vec<Es512Key>,
    max_lifetime: Duration,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("SigningKeys").field("kids", &kids).finish()
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SigningKeys {
    pub(crate) fn load(settings: &[SigningKeySettings], max_lifetime: Duration) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (index, s) in settings.iter().enumerate() {
            let err = |reason: String| KeyError::Load {
                index,
                path: s.key.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(&s.key).map_err(|e| err(e.to_string()))?;
            let p = pem::parse(&text).map_err(|e| err(format!("PEM: {e}")))?;
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P521_SHA512_FIXED_SIGNING, p.contents())
                .map_err(|e| err(format!("not a PKCS#8 P-521 key: {e}")))?;
            keys.push(Es512Key {
                kid: s.kid.clone(),
                key,
                retired_at: s.retired_at,
            });
        }
        let keys = SigningKeys {
            keys,
            max_lifetime,
            rng: SystemRandom::new(),
        };
        keys.active(unix_now())?;
        Ok(keys)
    }

    fn active(&self, now: u64) -> Result<&Es512Key, KeyError> {
        self.keys
            .iter()
            .find(|k| k.retired_at.is_none_or(|r| r > now))
            .ok_or(KeyError::NoActiveKey)
    }

    #[cfg(test)]
    pub(crate) fn active_kid(&self) -> Result<&str, KeyError> {
        Ok(&self.active(unix_now())?.kid)
    }

    /// The published JWKS: active keys and retired keys within their grace period.
    pub(crate) fn jwks(&self, now: u64) -> Value {
        let grace = self.max_lifetime.as_secs();
        let keys: Vec<Value> = self
            .keys
            .iter()
            .filter(|k| k.retired_at.is_none_or(|r| r.saturating_add(grace) > now))
            .map(Es512Key::jwk)
            .collect();
        json!({ "keys": keys })
    }

    /// Signs `claims` as ES512 with the active key, `typ: JWT` (the TWIIN assertions).
    pub(crate) fn sign(&self, claims: &impl Serialize) -> Result<SignedAssertion, KeyError> {
        self.sign_typed(claims, "JWT")
    }

    /// Signs `claims` as ES512 with the active key under JOSE type `typ`.
    pub(crate) fn sign_typed(&self, claims: &impl Serialize, typ: &str) -> Result<SignedAssertion, KeyError> {
        let key = self.active(unix_now())?;
        let header = json!({"alg": "ES512", "typ": typ, "kid": key.kid});
        let claims = serde_json::to_vec(claims).unwrap_or_default();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let sig = key
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| KeyError::NoActiveKey)?;
        Ok(SignedAssertion(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        )))
    }
}

/// AORTA-TWIIN Client Authentication Assertion claims (RFC 7523 §3: `iss` = `sub` = client id).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ClientAssertionClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) aud: String,
    pub(crate) jti: String,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
}

/// AORTA-TWIIN Authorization Grant Assertion claims. **Decision** — besides the VZVZ claims it
/// carries the patient's BSN, the user and role and the authorization base when known.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct GrantAssertionClaims {
    pub(crate) iss: String,
    /// URA of the initiating care provider.
    pub(crate) sub: String,
    pub(crate) aud: String,
    pub(crate) jti: String,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) bsn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) authorization_base: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws;

    fn key_file(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let kp = rcgen_free_p521();
        let p = dir.join(name);
        std::fs::write(&p, pem::encode(&pem::Pem::new("PRIVATE KEY", kp))).expect("write key");
        p
    }

    fn rcgen_free_p521() -> Vec<u8> {
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P521_SHA512_FIXED_SIGNING, &SystemRandom::new())
            .expect("generate")
            .as_ref()
            .to_vec()
    }

    #[test]
    fn signs_es512_that_verifies_with_the_published_jwks() {
        let dir = tempfile::tempdir().expect("tmp");
        let keys = SigningKeys::load(
            &[SigningKeySettings {
                kid: "k1".into(),
                key: key_file(dir.path(), "k1.pem"),
                retired_at: None,
            }],
            Duration::from_secs(600),
        )
        .expect("loads");
        let t = keys.sign(&json!({"sub": "x"})).expect("signs");
        let parsed = jws::parse(t.as_str()).expect("parses");
        assert_eq!(parsed.header.alg, "ES512");
        assert_eq!(parsed.header.typ.as_deref(), Some("JWT"));
        let jwks = keys.jwks(unix_now());
        let jwk = jws::find_key(&jwks, "k1").expect("published");
        let claims = parsed.verify(jws::Alg::ES512, jwk).expect("verifies");
        assert_eq!(claims["sub"], "x");
    }

    #[test]
    fn rotation_keeps_the_old_key_published_until_its_tokens_expire() {
        let dir = tempfile::tempdir().expect("tmp");
        let now = unix_now();
        let keys = SigningKeys::load(
            &[
                SigningKeySettings {
                    kid: "old".into(),
                    key: key_file(dir.path(), "old.pem"),
                    retired_at: Some(now - 10),
                },
                SigningKeySettings {
                    kid: "new".into(),
                    key: key_file(dir.path(), "new.pem"),
                    retired_at: None,
                },
            ],
            Duration::from_secs(600),
        )
        .expect("loads");
        assert_eq!(keys.active_kid().expect("active"), "new");
        let t = keys.sign(&json!({})).expect("signs");
        assert_eq!(
            jws::parse(t.as_str()).expect("parses").header.kid.as_deref(),
            Some("new")
        );
        let jwks = keys.jwks(now);
        assert!(jws::find_key(&jwks, "old").is_some(), "old key still published");
        let later = keys.jwks(now + 601);
        assert!(
            jws::find_key(&later, "old").is_none(),
            "old key dropped after its tokens expired"
        );
        assert!(jws::find_key(&later, "new").is_some());
    }
}
