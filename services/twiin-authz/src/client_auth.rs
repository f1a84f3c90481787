//! RFC 7523 §2.2/§3 client authentication (`private_key_jwt`) of an external GtK, SPEC.md §3.2
//! step 3, and the JWT rules both assertions of a token request share (steps 3 and 4).
//!
//! Rules (RFC 7523 §3, RFC 8725): algorithm on the allow-list (never `none`, never HMAC); `typ`,
//! when present, on the accepted list; `kid` present and found in the client's JWKS (from the
//! jwks_uri registered in ZORG-AB); `iss` = `sub` = the client id; `aud` names this AS (its
//! issuer URL or its token endpoint); `exp` in the future and `iat` not in the future, both
//! within the clock skew; `exp - iat` within the maximum lifetime; `jti` used once, registered
//! through the audit log's store so the check holds across replicas.
//!
//! **Decision — the two token ids of a request are registered together**, once both assertions
//! passed every other check ([`verify_jwt`], then [`register`]): one wait for the replay store
//! instead of two. The answers keep the seed's order: a replayed client assertion is
//! `invalid_client` whatever the grant is (when the grant fails its checks, the client
//! assertion's jti is registered alone first), and a replayed grant with a fresh client
//! assertion is `invalid_grant`. One consequence: a replayed client assertion presented with a
//! fresh grant assertion also uses up that grant's jti. It was presented, so under RFC 7523 it
//! is used; its sender makes a new one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use audit_log::{AuditLog, TokenUse};
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

/// An assertion whose signature and claims passed, its `jti` not registered yet.
#[derive(Debug)]
pub struct Verified {
    step: Step,
    /// The replay store's namespace of the `jti`: the assertion's role and issuer.
    namespace: String,
    /// How long the `jti` is kept: `exp` plus the clock skew.
    keep_until: SystemTime,
    pub checked: CheckedJwt,
}

/// Registers the `jti`s of `assertions` in one transaction of the replay store; the first one
/// already used fails with its step's error.
pub async fn register(audit: &AuditLog, assertions: &[&Verified]) -> Result<(), AuthzError> {
    let tokens: Vec<TokenUse<'_>> = assertions
        .iter()
        .map(|v| TokenUse {
            issuer: &v.namespace,
            jti: &v.checked.jti,
            expires_at: v.keep_until,
        })
        .collect();
    let fresh = audit.register_jtis(&tokens).await?;
    for (v, fresh) in assertions.iter().zip(fresh) {
        if !fresh {
            return Err(v.step.error("jti is al eerder gebruikt"));
        }
    }
    Ok(())
}

/// Checks signature and claims of `token`, signed by application `client_id`; its `jti` is
/// left to [`register`].
#[allow(clippy::too_many_arguments)]
pub async fn verify_jwt(
    step: Step,
    token: &str,
    client_id: &str,
    rules: &JwtRules<'_>,
    zorg_ab: &ZorgAb,
    id: &AortaId,
    log: &mut Vec<Exchange>,
    now: u64,
) -> Result<Verified, AuthzError> {
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
    Ok(Verified {
        step,
        namespace,
        keep_until: UNIX_EPOCH + Duration::from_secs(exp.saturating_add(skew)),
        checked: CheckedJwt {
            iss,
            sub,
            jti,
            iat,
            exp,
            claims,
        },
    })
}

/// Step 3 but the `jti` (see [`register`]): the client assertion, whose `sub` is the
/// authenticated client id (= `iss`).
pub async fn authenticate(
    client_assertion: &str,
    rules: &JwtRules<'_>,
    zorg_ab: &ZorgAb,
    id: &AortaId,
    log: &mut Vec<Exchange>,
    now: u64,
) -> Result<Verified, AuthzError> {
    let step = Step::ClientAssertion;
    let parsed = jws::parse(client_assertion).map_err(|e| step.error(e.to_string()))?;
    let c = &parsed.unverified_claims;
    let iss = c.get("iss").and_then(Value::as_str).unwrap_or_default();
    let sub = c.get("sub").and_then(Value::as_str).unwrap_or_default();
    if iss.is_empty() || iss != sub {
        return Err(step.error("iss en sub moeten beide de client_id zijn"));
    }
    verify_jwt(step, client_assertion, iss, rules, zorg_ab, id, log, now).await
}
