//! RFC 7523 §2.2/§3 client authentication (`private_key_jwt`) of an external GtK, SPEC.md §3.2
//! step 3, and the JWT rules both assertions of a token request share (steps 3 and 4).
//!
//! **Who the client is** — the client assertion's `sub` is the client id registered for the
//! GtK (in ZORG-AB or in `[[clients]]`); its `iss` is either that client id (RFC 7523 §3) or
//! the HTTPS URL of the authorization server registered for that client: the AORTA-TWIIN Client
//! Authentication Assertion sets `iss` to the issuing AS's URL, and the AORTA spec says it does
//! not prescribe how other GtKs fill theirs. Anything else is `invalid_client`. The grant
//! assertion's `iss` follows the same rule for the same client.
//!
//! Rules (RFC 7523 §3, RFC 8725): algorithm on the allow-list (never `none`, never HMAC); `typ`,
//! when present, on the accepted list; `kid` present, a string, and found in the client's JWKS
//! (from its registered jwks_uri); `aud` names this AS (its issuer URL or its token endpoint);
//! `exp` in the future and `iat` not in the future, both within the clock skew; `exp - iat`
//! within the maximum lifetime; `jti` at most [`MAX_JTI_LEN`] characters and used once,
//! registered through the audit log's store so the check holds across replicas.
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
use crate::outbound::Exchange;
use crate::zorg_ab::{Application, ZorgAb, ZorgAbError};

/// Longest `jti` accepted: a UUID needs 36; the replay store and the audit log must not be
/// made to hold arbitrary text.
pub(crate) const MAX_JTI_LEN: usize = 256;

/// A registry failure as the answer of `step`: unreachable or slow dependencies are 503/504
/// (with a generic text; the details are in the audit trail), the client's own registration
/// problems are the step's error.
pub(crate) fn registry_error(step: Step, e: ZorgAbError) -> AuthzError {
    match e {
        ZorgAbError::Unavailable | ZorgAbError::JwksUnavailable => AuthzError::Unavailable(e.to_string()),
        ZorgAbError::Timeout | ZorgAbError::JwksTimeout => AuthzError::Timeout(e.to_string()),
        other => step.error(other.to_string()),
    }
}

/// The claims every assertion has, once checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckedJwt {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) jti: String,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    pub(crate) claims: Value,
}

/// What a failed check is reported as: `InvalidClient` (step 3) or `InvalidGrant` (step 4).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    ClientAssertion,
    Grant,
}

impl Step {
    pub(crate) fn error(self, m: impl Into<String>) -> AuthzError {
        match self {
            Step::ClientAssertion => AuthzError::InvalidClient(m.into()),
            Step::Grant => AuthzError::InvalidGrant(m.into()),
        }
    }
}

pub(crate) struct JwtRules<'a> {
    pub(crate) settings: &'a ClientAuthSettings,
    /// Audiences naming this AS.
    pub(crate) audiences: &'a [String],
    /// Oldest accepted `iat` (grant assertions).
    pub(crate) max_age: Option<Duration>,
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
pub(crate) struct Verified {
    step: Step,
    /// The replay store's namespace of the `jti`: the assertion's role and issuer.
    namespace: String,
    /// How long the `jti` is kept: `exp` plus the clock skew.
    keep_until: SystemTime,
    pub(crate) checked: CheckedJwt,
}

/// Registers the `jti`s of `assertions` in one transaction of the replay store; the first one
/// already used fails with its step's error.
pub(crate) async fn register(audit: &AuditLog, assertions: &[&Verified]) -> Result<(), AuthzError> {
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

/// Checks signature and claims of `token`, signed by the client `app`; its `jti` is left to
/// [`register`].
#[allow(clippy::too_many_arguments)]
pub(crate) async fn verify_jwt(
    step: Step,
    token: &str,
    app: &Application,
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
    if parsed.header.ill_typed.contains(&"typ") {
        return Err(step.error("typ is geen tekst"));
    }
    if let Some(typ) = parsed.header.typ.as_deref()
        && !rules.settings.typ.iter().any(|t| t.eq_ignore_ascii_case(typ))
    {
        return Err(step.error(format!("typ {typ} wordt niet geaccepteerd")));
    }
    let kid = parsed.kid().map_err(|e| step.error(e.to_string()))?;
    let jwk = zorg_ab
        .key(app, kid, id, log)
        .await
        .map_err(|e| registry_error(step, e))?;
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
    if jti.chars().count() > MAX_JTI_LEN {
        return Err(step.error(format!("jti is langer dan {MAX_JTI_LEN} tekens")));
    }
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
    // Per client, not per `iss`: the same assertion id under the client's other name is the
    // same assertion.
    let namespace = match step {
        Step::ClientAssertion => format!("client_assertion:{}", app.client_id),
        Step::Grant => format!("assertion:{}", app.client_id),
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

/// Step 3 but the `jti` (see [`register`]): the client assertion. The client is its `sub`,
/// looked up in the registrations; `iss` must be a name registered for it.
pub(crate) async fn authenticate(
    client_assertion: &str,
    rules: &JwtRules<'_>,
    zorg_ab: &ZorgAb,
    id: &AortaId,
    log: &mut Vec<Exchange>,
    now: u64,
) -> Result<(Verified, std::sync::Arc<Application>), AuthzError> {
    let step = Step::ClientAssertion;
    let parsed = jws::parse(client_assertion).map_err(|e| step.error(e.to_string()))?;
    let c = &parsed.unverified_claims;
    let text = |k: &str| c.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
    let sub = text("sub").ok_or_else(|| step.error("sub ontbreekt (de client_id van de client)"))?;
    let iss = text("iss").ok_or_else(|| step.error("iss ontbreekt"))?;
    if sub.len() > 2048 || iss.len() > 2048 {
        return Err(step.error("iss of sub is te lang"));
    }
    let app = zorg_ab
        .application(sub, id, log)
        .await
        .map_err(|e| registry_error(step, e))?;
    if !app.issues_as(iss) {
        return Err(
            step.error("iss is niet de client_id of de geregistreerde autorisatieserver van de client")
        );
    }
    let verified = verify_jwt(step, client_assertion, &app, rules, zorg_ab, id, log, now).await?;
    Ok((verified, app))
}
