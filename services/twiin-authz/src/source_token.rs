//! The AORTA Stelseltoken and AORTA access tokens (SPEC.md §3.1 precondition and step 3).
//!
//! The Stelseltoken (`typ: aorta-st+JWT`, RS256) is fetched from the AORTA Stelsel Metadata
//! Interface and trusted only when its `x5c` chain is a valid PKI path to a configured trust
//! anchor (see [`crate::x5c`]) and its signature verifies with the chain's leaf. Its `jwks`
//! claim holds the keys AORTA access tokens are signed with. Every fetch is recorded in the
//! audit log (use case `ophalen_stelseltoken`).
//!
//! **Decision** (SPEC §3.1) — it is refreshed in the background; when the newest one we have
//! was issued longer than `stelsel.max_age` ago (or has expired), the use cases answer
//! UNAVAILABLE (503) instead of trusting stale keys.

use std::sync::{Arc, RwLock};

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;
use x509_parser::prelude::*;

use crate::aorta_id::AortaId;
use crate::error::AuthzError;
use crate::jws::{self, Alg};
use crate::outbound::{self, Exchange, MAX_STELSELTOKEN_BYTES};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StelselError {
    #[error("Stelseltoken: {0}")]
    Invalid(String),
    #[error("Stelseltoken niet beschikbaar: {0}")]
    Fetch(String),
}

/// A verified Stelseltoken's content.
#[derive(Debug, Clone)]
pub(crate) struct StelselKeys {
    pub(crate) issued_at: u64,
    pub(crate) expires_at: u64,
    pub(crate) jwks: Value,
}

/// Parses the trust anchor PEM file content.
pub(crate) fn load_anchors(pem_text: &str) -> Result<Vec<Vec<u8>>, String> {
    let certs: Vec<Vec<u8>> = ::pem::parse_many(pem_text)
        .map_err(|e| format!("PEM: {e}"))?
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .collect();
    if certs.is_empty() {
        return Err("no CERTIFICATE".into());
    }
    Ok(certs)
}

/// Verifies a Stelseltoken: header, `x5c` chain up to an anchor, validity, signature, claims.
pub(crate) fn verify_stelseltoken(
    token: &str,
    anchors: &[Vec<u8>],
    now: u64,
) -> Result<StelselKeys, StelselError> {
    let bad = |m: &str| StelselError::Invalid(m.to_owned());
    let parsed = jws::parse(token).map_err(|e| StelselError::Invalid(e.to_string()))?;
    if parsed.header.alg != "RS256" {
        return Err(bad("alg moet RS256 zijn"));
    }
    if parsed.header.typ.as_deref() != Some("aorta-st+JWT") {
        return Err(bad("typ moet aorta-st+JWT zijn"));
    }
    if parsed.header.ill_typed.contains(&"x5c") {
        return Err(bad("x5c is geen lijst van certificaten"));
    }
    let x5c = parsed
        .header
        .x5c
        .as_ref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad("x5c ontbreekt"))?;
    use base64::Engine;
    let ders: Vec<Vec<u8>> = x5c
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.decode(c))
        .collect::<Result<_, _>>()
        .map_err(|_| bad("x5c is geen base64"))?;
    crate::x5c::verify_chain(&ders, anchors, now).map_err(StelselError::Invalid)?;
    let (_, leaf) =
        X509Certificate::from_der(&ders[0]).map_err(|_| bad("x5c bevat een ongeldig certificaat"))?;
    let leaf_key = leaf.public_key().subject_public_key.data.as_ref();
    let (input, sig) = token.rsplit_once('.').ok_or_else(|| bad("geen handtekening"))?;
    let sig = jws::b64d(sig).map_err(|_| bad("handtekening is geen base64url"))?;
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, leaf_key)
        .verify(input.as_bytes(), &sig)
        .map_err(|_| bad("handtekening ongeldig"))?;
    let c = &parsed.unverified_claims;
    let iat = c
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("iat ontbreekt"))?;
    let exp = c
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("exp ontbreekt"))?;
    let jwks = c
        .get("jwks")
        .cloned()
        .filter(|j| j.get("keys").is_some_and(Value::is_array));
    let jwks = jwks.ok_or_else(|| bad("jwks ontbreekt"))?;
    if exp <= now {
        return Err(bad("verlopen"));
    }
    Ok(StelselKeys {
        issued_at: iat,
        expires_at: exp,
        jwks,
    })
}

/// The service's current Stelseltoken, refreshed in the background.
#[derive(Debug)]
pub(crate) struct Stelsel {
    current: RwLock<Option<Arc<StelselKeys>>>,
    max_age: u64,
}

impl Stelsel {
    pub(crate) fn new(max_age: std::time::Duration) -> Self {
        Stelsel {
            current: RwLock::new(None),
            max_age: max_age.as_secs(),
        }
    }

    pub(crate) fn set(&self, keys: StelselKeys) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(keys));
    }

    /// The keys, if sufficiently current; else UNAVAILABLE (why the last fetch failed is in
    /// the log and the audit trail, not in the answer).
    pub(crate) fn current(&self, now: u64) -> Result<Arc<StelselKeys>, AuthzError> {
        let cur = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        match cur {
            Some(k) if k.expires_at > now && k.issued_at.saturating_add(self.max_age) >= now => Ok(k),
            Some(_) => Err(AuthzError::Unavailable(
                "geen voldoende actueel AORTA Stelseltoken".into(),
            )),
            None => Err(AuthzError::Unavailable("geen AORTA Stelseltoken".into())),
        }
    }

    /// Fetches, verifies and installs a Stelseltoken; the call is described in the returned
    /// exchange (for the audit log).
    pub(crate) async fn refresh(
        &self,
        http: &reqwest::Client,
        url: &str,
        anchors_path: &std::path::Path,
        timeout: std::time::Duration,
    ) -> (Result<(), StelselError>, Exchange) {
        let mut ex = Exchange::start("GET", url, AortaId::new());
        let result = async {
            let anchors = std::fs::read_to_string(anchors_path)
                .map_err(|e| {
                    StelselError::Fetch(format!("stelsel.trust_anchor {}: {e}", anchors_path.display()))
                })
                .and_then(|t| {
                    load_anchors(&t).map_err(|e| StelselError::Fetch(format!("stelsel.trust_anchor: {e}")))
                })?;
            let resp = http
                .get(url)
                .header("accept", "application/jwt")
                .header(crate::aorta_id::HEADER, ex.aorta_id.header_value())
                .timeout(timeout)
                .headers(service_kit::telemetry::current_trace_headers())
                .send()
                .await
                .map_err(|e| {
                    ex.error = Some(outbound::failure_kind(&e).into());
                    StelselError::Fetch(format!("{url}: {e}"))
                })?;
            ex.status = Some(resp.status().as_u16());
            if !resp.status().is_success() {
                ex.error = Some("unexpected_status".into());
                return Err(StelselError::Fetch(format!("{url}: HTTP {}", resp.status())));
            }
            let body = outbound::read_capped(resp, MAX_STELSELTOKEN_BYTES)
                .await
                .map_err(|e| {
                    ex.error = Some("unreadable".into());
                    StelselError::Fetch(format!("{url}: {e}"))
                })?;
            let text = String::from_utf8(body).map_err(|_| {
                ex.error = Some("unreadable".into());
                StelselError::Fetch(format!("{url}: geen tekst"))
            })?;
            let text = text.trim();
            ex.token_jti = crate::as_za::unverified_jti(text);
            verify_stelseltoken(text, &anchors, crate::assertion::unix_now()).inspect_err(|_| {
                ex.error = Some("invalid_stelseltoken".into());
            })
        }
        .await;
        ex.done();
        match result {
            Ok(keys) => {
                self.set(keys);
                (Ok(()), ex)
            }
            Err(e) => {
                ex.error.get_or_insert_with(|| "failed".into());
                ex.error_description = Some(e.to_string());
                (Err(e), ex)
            }
        }
    }
}

/// The `_vrb` object of an AORTA access token.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub(crate) struct Vrb {
    #[serde(rename = "_vrb_ura")]
    pub(crate) ura: Option<String>,
    #[serde(rename = "_vrb_user_id")]
    pub(crate) user_id: Option<String>,
    #[serde(rename = "_vrb_user_role")]
    pub(crate) user_role: Option<String>,
    #[serde(rename = "_vrb_bsn")]
    pub(crate) bsn: Option<String>,
    #[serde(rename = "_vrb_authz_base")]
    pub(crate) authz_base: Option<String>,
}

/// A verified AORTA access token (sourceToken).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub(crate) struct AortaAccessToken {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) exp: u64,
    #[serde(default)]
    pub(crate) iat: Option<u64>,
    pub(crate) jti: String,
    #[serde(default)]
    pub(crate) scope: String,
    #[serde(default, rename = "_vrb")]
    pub(crate) vrb: Vrb,
}

/// What an AORTA access token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub(crate) struct AccessTokenRules {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) max_skew: u64,
    pub(crate) max_lifetime: u64,
}

/// 3.1 step 3: the sourceToken is valid. Errors are `InvalidToken` (401).
pub(crate) fn validate_access_token(
    token: &str,
    stelsel: &StelselKeys,
    rules: &AccessTokenRules,
    now: u64,
) -> Result<AortaAccessToken, AuthzError> {
    let inv = |m: String| AuthzError::InvalidToken(m);
    let parsed = jws::parse(token).map_err(|e| inv(e.to_string()))?;
    let alg = parsed.alg(&[Alg::RS256]).map_err(|e| inv(e.to_string()))?;
    let kid = parsed.kid().map_err(|e| inv(e.to_string()))?;
    let jwk = jws::find_key(&stelsel.jwks, kid)
        .ok_or_else(|| inv(format!("kid {kid} staat niet in het AORTA Stelseltoken")))?;
    let claims = parsed.verify(alg, jwk).map_err(|e| inv(e.to_string()))?;
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == rules.audience,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(rules.audience.as_str())),
        _ => false,
    };
    let at: AortaAccessToken =
        serde_json::from_value(claims).map_err(|e| inv(format!("claims onvolledig of ongeldig: {e}")))?;
    if at.iss != rules.issuer {
        return Err(inv("iss is niet de Autorisatie Server ZA".into()));
    }
    if !aud_ok {
        return Err(inv("aud is niet de verwachte audience".into()));
    }
    // No clock skew for exp: the assertions made from it get this exp, so they would be born
    // expired.
    if at.exp <= now {
        return Err(inv("verlopen".into()));
    }
    if at.jti.is_empty() || at.jti.chars().count() > crate::client_auth::MAX_JTI_LEN {
        return Err(inv(format!(
            "jti ontbreekt of is langer dan {} tekens",
            crate::client_auth::MAX_JTI_LEN
        )));
    }
    if at.iat.is_some_and(|iat| iat > now + rules.max_skew) {
        return Err(inv("iat ligt in de toekomst".into()));
    }
    if at.exp > now + rules.max_lifetime {
        return Err(inv("leeft langer dan toegestaan (assertions.max_lifetime)".into()));
    }
    Ok(at)
}
