//! The AORTA Stelseltoken and AORTA access tokens (SPEC.md §3.1 precondition and step 3).
//!
//! The Stelseltoken (`typ: aorta-st+JWT`, RS256) is fetched from the AORTA Stelsel Metadata
//! Interface and trusted only when its `x5c` chain leads to a configured trust anchor and its
//! signature verifies with the chain's leaf. Its `jwks` claim holds the keys AORTA access
//! tokens are signed with.
//!
//! **Decision** (SPEC §3.1) — it is refreshed in the background; when the newest one we have
//! was issued longer than `stelsel.max_age` ago (or has expired), the use cases answer
//! UNAVAILABLE (503) instead of trusting stale keys.

use std::sync::{Arc, RwLock};

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde::Deserialize;
use serde_json::Value;
use x509_parser::prelude::*;

use crate::aorta_id::AortaId;
use crate::error::AuthzError;
use crate::jws::{self, Alg};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StelselError {
    #[error("Stelseltoken: {0}")]
    Invalid(String),
    #[error("Stelseltoken niet beschikbaar: {0}")]
    Fetch(String),
}

/// A verified Stelseltoken's content.
#[derive(Debug, Clone)]
pub struct StelselKeys {
    pub issued_at: u64,
    pub expires_at: u64,
    pub jwks: Value,
}

fn oid_alg(oid: &str) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match oid {
        "1.2.840.113549.1.1.11" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "1.2.840.113549.1.1.12" => &signature::RSA_PKCS1_2048_8192_SHA384,
        "1.2.840.113549.1.1.13" => &signature::RSA_PKCS1_2048_8192_SHA512,
        "1.2.840.10045.4.3.2" => &signature::ECDSA_P256_SHA256_ASN1,
        "1.2.840.10045.4.3.3" => &signature::ECDSA_P384_SHA384_ASN1,
        _ => return None,
    })
}

/// Is `cert` signed by the key of `issuer`?
fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    let Some(alg) = oid_alg(&cert.signature_algorithm.algorithm.to_id_string()) else {
        return false;
    };
    let key = issuer.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(alg, key)
        .verify(cert.tbs_certificate.as_ref(), cert.signature_value.data.as_ref())
        .is_ok()
}

/// Parses the trust anchor PEM file content.
pub fn load_anchors(pem_text: &str) -> Result<Vec<Vec<u8>>, String> {
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
pub fn verify_stelseltoken(token: &str, anchors: &[Vec<u8>], now: u64) -> Result<StelselKeys, StelselError> {
    let bad = |m: &str| StelselError::Invalid(m.to_owned());
    let parsed = jws::parse(token).map_err(|e| StelselError::Invalid(e.to_string()))?;
    if parsed.header.alg != "RS256" {
        return Err(bad("alg moet RS256 zijn"));
    }
    if parsed.header.typ.as_deref() != Some("aorta-st+JWT") {
        return Err(bad("typ moet aorta-st+JWT zijn"));
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
    let certs: Vec<X509Certificate<'_>> = ders
        .iter()
        .map(|d| X509Certificate::from_der(d).map(|(_, c)| c))
        .collect::<Result<_, _>>()
        .map_err(|_| bad("x5c bevat een ongeldig certificaat"))?;
    let anchor_certs: Vec<X509Certificate<'_>> = anchors
        .iter()
        .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
        .collect();
    let now_i = now as i64;
    for c in &certs {
        if c.validity().not_before.timestamp() > now_i || c.validity().not_after.timestamp() < now_i {
            return Err(bad("certificaat in x5c is niet (meer) geldig"));
        }
    }
    for pair in certs.windows(2) {
        if !signed_by(&pair[0], &pair[1]) {
            return Err(bad("x5c-keten is niet aaneengesloten"));
        }
    }
    let last = certs.last().ok_or_else(|| bad("x5c ontbreekt"))?;
    let anchored = anchor_certs
        .iter()
        .any(|a| a.tbs_certificate.as_ref() == last.tbs_certificate.as_ref() || signed_by(last, a));
    if !anchored {
        return Err(bad(
            "x5c-keten leidt niet naar een vertrouwd AORTA-stelselcertificaat",
        ));
    }
    let leaf_key = certs[0].public_key().subject_public_key.data.as_ref();
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
pub struct Stelsel {
    current: RwLock<Option<Arc<StelselKeys>>>,
    last_error: RwLock<Option<String>>,
    max_age: u64,
}

impl Stelsel {
    pub fn new(max_age: std::time::Duration) -> Self {
        Stelsel {
            current: RwLock::new(None),
            last_error: RwLock::new(Some("nog niet opgehaald".into())),
            max_age: max_age.as_secs(),
        }
    }

    pub fn set(&self, keys: StelselKeys) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(keys));
        *self.last_error.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn set_error(&self, e: String) {
        *self.last_error.write().unwrap_or_else(|e| e.into_inner()) = Some(e);
    }

    /// The keys, if sufficiently current; else UNAVAILABLE naming why.
    pub fn current(&self, now: u64) -> Result<Arc<StelselKeys>, AuthzError> {
        let cur = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        let why = || {
            self.last_error
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .map(|e| format!(" (laatste fout: {e})"))
                .unwrap_or_default()
        };
        match cur {
            Some(k) if k.expires_at > now && k.issued_at.saturating_add(self.max_age) >= now => Ok(k),
            Some(_) => Err(AuthzError::Unavailable(format!(
                "geen voldoende actueel AORTA Stelseltoken{}",
                why()
            ))),
            None => Err(AuthzError::Unavailable(format!(
                "geen AORTA Stelseltoken{}",
                why()
            ))),
        }
    }

    /// Fetches, verifies and installs a Stelseltoken.
    pub async fn refresh(
        &self,
        http: &reqwest::Client,
        url: &str,
        anchors_path: &std::path::Path,
        timeout: std::time::Duration,
    ) -> Result<(), StelselError> {
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
                .header(crate::aorta_id::HEADER, AortaId::new().header_value())
                .timeout(timeout)
                .headers(service_kit::telemetry::current_trace_headers())
                .send()
                .await
                .map_err(|e| StelselError::Fetch(format!("{url}: {e}")))?;
            if !resp.status().is_success() {
                return Err(StelselError::Fetch(format!("{url}: HTTP {}", resp.status())));
            }
            let text = resp
                .text()
                .await
                .map_err(|e| StelselError::Fetch(format!("{url}: {e}")))?;
            verify_stelseltoken(text.trim(), &anchors, crate::assertion::unix_now())
        }
        .await;
        match result {
            Ok(keys) => {
                self.set(keys);
                Ok(())
            }
            Err(e) => {
                self.set_error(e.to_string());
                Err(e)
            }
        }
    }
}

/// The `_vrb` object of an AORTA access token.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Vrb {
    #[serde(rename = "_vrb_ura")]
    pub ura: Option<String>,
    #[serde(rename = "_vrb_user_id")]
    pub user_id: Option<String>,
    #[serde(rename = "_vrb_user_role")]
    pub user_role: Option<String>,
    #[serde(rename = "_vrb_bsn")]
    pub bsn: Option<String>,
    #[serde(rename = "_vrb_authz_base")]
    pub authz_base: Option<String>,
}

/// A verified AORTA access token (sourceToken).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AortaAccessToken {
    pub iss: String,
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: Option<u64>,
    pub jti: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default, rename = "_vrb")]
    pub vrb: Vrb,
}

/// What an AORTA access token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct AccessTokenRules {
    pub issuer: String,
    pub audience: String,
    pub max_skew: u64,
    pub max_lifetime: u64,
}

/// 3.1 step 3: the sourceToken is valid. Errors are `InvalidToken` (401).
pub fn validate_access_token(
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
    if at.exp.saturating_add(rules.max_skew) <= now {
        return Err(inv("verlopen".into()));
    }
    if at.iat.is_some_and(|iat| iat > now + rules.max_skew) {
        return Err(inv("iat ligt in de toekomst".into()));
    }
    if at.exp > now + rules.max_lifetime {
        return Err(inv("leeft langer dan toegestaan (assertions.max_lifetime)".into()));
    }
    Ok(at)
}
