//! RFC 7523 §2.2/§3 client authentication (`private_key_jwt`) of an external GtK, SPEC.md §3.2
//! step 3, and the JWT rules both assertions of a token request share (steps 3 and 4).
//!
//! Rules (RFC 7523 §3, RFC 8725): algorithm on the allow-list (never `none`, never HMAC); `typ`,
//! when present, on the accepted list; `kid` present and found in the client's JWKS (from the
//! jwks_uri registered in ZORG-AB); `iss` = `sub` = the client id; `aud` names this AS (its
//! issuer URL or its token endpoint); `exp` in the future and `iat` not in the future, both
//! within the clock skew; `exp - iat` within the maximum lifetime; `jti` used once, registered
//! through the audit log's store so the check holds across replicas.

use std::time::{Duration, UNIX_EPOCH};

use platform::audit::AuditLog;
use serde_json::Value;

use crate::aorta_id::AortaId;
use crate::config::ClientAuthSettings;
use crate::error::AuthzError;
use crate::jws;
use crate::zorg_ab::{Exchange, ZorgAb, ZorgAbError};

/// The claims every assertion has, once checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedJwt {
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
    pub claims: Value,
}

/// What a failed check is reported as: `InvalidClient` (step 3) or `InvalidGrant` (step 4).
#[derive(Debug, Clone, Copy)]
pub enum Step {
    ClientAssertion,
    Grant,
}

impl Step {
    pub fn error(self, m: impl Into<String>) -> AuthzError {
        match self {
            Step::ClientAssertion => AuthzError::InvalidClient(m.into()),
            Step::Grant => AuthzError::InvalidGrant(m.into()),
        }
    }
}

pub struct JwtRules<'a> {
    pub settings: &'a ClientAuthSettings,
    /// Audiences naming this AS.
    pub audiences: &'a [String],
    /// Oldest accepted `iat` (grant assertions).
    pub max_age: Option<Duration>,
}

fn aud_matches(aud: Option<&Value>, ours: &[String]) -> bool {
    match aud {
        Some(Value::String(a)) => ours.iter().any(|o| o == a),
        Some(Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str().is_some_and(|a| ours.iter().any(|o| o == a))),
        _ => false,
    }
}

/// Checks signature and claims of `token`, signed by application `client_id`.
#[allow(clippy::too_many_arguments)]
pub async fn check_jwt(
    step: Step,
    token: &str,
    client_id: &str,
    rules: &JwtRules<'_>,
    zorg_ab: &ZorgAb,
    audit: &AuditLog,
    id: &AortaId,
    log: &mut Vec<Exchange>,
    now: u64,
) -> Result<CheckedJwt, AuthzError> {
    let parsed = jws::parse(token).map_err(|e| step.error(e.to_string()))?;
    let alg = parsed
        .alg(&rules.settings.algorithms)
        .map_err(|e| step.error(e.to_string()))?;
    if let Some(typ) = parsed.header.typ.as_deref()
        && !rules.settings.typ.iter().any(|t| t.eq_ignore_ascii_case(typ))
    {
        return Err(step.error(format!("typ {typ} wordt niet geaccepteerd")));
    }
    let kid = parsed.kid().map_err(|e| step.error(e.to_string()))?;
    let jwk = match zorg_ab.key(client_id, kid, id, log).await {
        Ok(k) => k,
        Err(ZorgAbError::Unavailable(m)) => {
            return Err(AuthzError::Unavailable(format!("ZORG-AB niet bereikbaar: {m}")));
        }
        Err(ZorgAbError::Timeout(m)) => {
            return Err(AuthzError::Timeout(format!(
                "ZORG-AB antwoordt niet op tijd: {m}"
            )));
        }
        Err(e) => return Err(step.error(e.to_string())),
    };
    let claims = parsed.verify(alg, &jwk).map_err(|e| step.error(e.to_string()))?;
    let s = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let n = |k: &str| claims.get(k).and_then(Value::as_u64);
    let iss = s("iss").ok_or_else(|| step.error("iss ontbreekt"))?;
    let sub = s("sub").ok_or_else(|| step.error("sub ontbreekt"))?;
    let jti = s("jti").ok_or_else(|| step.error("jti ontbreekt"))?;
    let exp = n("exp").ok_or_else(|| step.error("exp ontbreekt"))?;
    let iat = n("iat").ok_or_else(|| step.error("iat ontbreekt"))?;
    if !aud_matches(claims.get("aud"), rules.audiences) {
        return Err(step.error("aud is niet deze autorisatieserver"));
    }
    let skew = rules.settings.max_clock_skew.as_secs();
    if exp.saturating_add(skew) <= now {
        return Err(step.error("verlopen (exp)"));
    }
    if iat > now + skew {
        return Err(step.error("iat ligt in de toekomst"));
    }
    if let Some(nbf) = n("nbf")
        && nbf > now + skew
    {
        return Err(step.error("nog niet geldig (nbf)"));
    }
    if exp.saturating_sub(iat) > rules.settings.max_assertion_lifetime.as_secs() {
        return Err(step.error("geldigheidsduur (exp - iat) te lang"));
    }
    if let Some(max_age) = rules.max_age
        && iat.saturating_add(max_age.as_secs()) < now
    {
        return Err(step.error("iat is te oud"));
    }
    let namespace = match step {
        Step::ClientAssertion => format!("client_assertion:{iss}"),
        Step::Grant => format!("assertion:{iss}"),
    };
    let fresh = audit
        .register_jti(
            &namespace,
            &jti,
            UNIX_EPOCH + Duration::from_secs(exp.saturating_add(skew)),
        )
        .await?;
    if !fresh {
        return Err(step.error("jti is al eerder gebruikt"));
    }
    Ok(CheckedJwt {
        iss,
        sub,
        jti,
        iat,
        exp,
        claims,
    })
}

/// Step 3: the client assertion; returns the authenticated client id (= `iss` = `sub`).
#[allow(clippy::too_many_arguments)]
pub async fn authenticate(
    client_assertion: &str,
    rules: &JwtRules<'_>,
    zorg_ab: &ZorgAb,
    audit: &AuditLog,
    id: &AortaId,
    log: &mut Vec<Exchange>,
    now: u64,
) -> Result<CheckedJwt, AuthzError> {
    let step = Step::ClientAssertion;
    let parsed = jws::parse(client_assertion).map_err(|e| step.error(e.to_string()))?;
    let c = &parsed.unverified_claims;
    let iss = c.get("iss").and_then(Value::as_str).unwrap_or_default();
    let sub = c.get("sub").and_then(Value::as_str).unwrap_or_default();
    if iss.is_empty() || iss != sub {
        return Err(step.error("iss en sub moeten beide de client_id zijn"));
    }
    check_jwt(step, client_assertion, iss, rules, zorg_ab, audit, id, log, now).await
}
