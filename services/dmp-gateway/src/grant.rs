//! The professional's consent (issue 13): a caller acts for a professional only with a session
//! grant the professional's own relay issued to that caller, presented in gRPC metadata
//! [`GRANT_METADATA`] with each call. The grant's format and signing are cps-relay's (README,
//! "Session grants"): a compact JWS, ES256, signed by the relay's grant key, with the claims
//! `iss` (relay id), `sub` (professional), `aud`, `azp` (grantee caller), `sid` (card session),
//! `jti`, `iat`, `exp` and `cnf` (`x5t#S256` of the card certificate).
//!
//! The gateway checks, in this order, each refusal naming the claim: the signature with
//! `relays.<id>.grant_key` (`iss` first, so a grant of another relay is named as such), `aud`,
//! `sub` against the call's professional, `azp` against the authenticated caller (a grant that
//! leaks is useless to anyone else), the times (30 s of clock skew); then against the relay's
//! live card session (WatchSession): `sid` (a session that ended answers FAILED_PRECONDITION),
//! `jti` not revoked, and `cnf` against the certificate the gateway uses.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ehealth_proto::cps::v1::SessionReason;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use x509_parser::prelude::FromDer;

use crate::config::RelaySettings;
use crate::session_watch::CardSession;

/// gRPC metadata carrying the session grant (the compact JWS).
pub const GRANT_METADATA: &str = "dmp-session-grant";
/// The grants' `aud`.
const AUDIENCE: &str = "dmp-gateway";
/// The JWS `typ` of a grant (explicit typing: no other JWT is taken for one).
const TYPE: &str = "cps-session-grant+jwt";
/// Clock skew tolerated on `exp` and `iat`.
const SKEW_SECONDS: u64 = 30;
/// id-ecPublicKey and prime256v1.
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const P256: &str = "1.2.840.10045.3.1.7";

/// Why a call may not act for the professional it names.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AccessError {
    /// The call carries no grant.
    #[error(
        "no session grant (metadata {GRANT_METADATA}): ask the professional to open a session for {caller} on \
         relay {relay_id}"
    )]
    NoGrant {
        /// The authenticated caller.
        caller: String,
        /// The relay the call names.
        relay_id: String,
    },
    /// The grant does not authorise this call.
    #[error("session grant refused (claim {claim}): {reason}")]
    Refused {
        /// The claim (or JWS part) that does not match.
        claim: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The card session the grant belongs to is over.
    #[error("the professional's card session ended ({reason}); ask for a new session grant")]
    SessionEnded {
        /// Logout, card removal, …
        reason: String,
    },
    /// The relay's session state cannot be known now.
    #[error(
        "cps-relay `{relay_id}`: the card session's state is unknown ({reason}); nothing is done for its \
         professional until the relay answers"
    )]
    SessionUnknown {
        /// The relay.
        relay_id: String,
        /// Why.
        reason: String,
    },
}

impl service_kit::error::ServiceError for AccessError {
    fn error_code(&self) -> service_kit::error::ServiceErrorCode {
        use service_kit::error::ServiceErrorCode as C;
        match self {
            AccessError::NoGrant { .. } | AccessError::Refused { .. } => C::PermissionDenied,
            AccessError::SessionEnded { .. } => C::FailedPrecondition,
            AccessError::SessionUnknown { .. } => C::Unavailable,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            AccessError::NoGrant { .. } => "NO_SESSION_GRANT",
            AccessError::Refused { .. } => "SESSION_GRANT_REFUSED",
            AccessError::SessionEnded { .. } => "CARD_SESSION_ENDED",
            AccessError::SessionUnknown { .. } => "CARD_SESSION_UNKNOWN",
        }
    }

    fn domain(&self) -> &'static str {
        crate::error::DOMAIN
    }

    fn error_metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            AccessError::Refused { claim, .. } => vec![("claim", (*claim).to_owned())],
            AccessError::SessionUnknown { relay_id, .. } => vec![("relayId", relay_id.clone())],
            _ => Vec::new(),
        }
    }
}

fn refused(claim: &'static str, reason: impl Into<String>) -> AccessError {
    AccessError::Refused {
        claim,
        reason: reason.into(),
    }
}

/// What the call says and who made it: what the grant must match.
pub(crate) struct Expected<'a> {
    pub(crate) relay_id: &'a str,
    pub(crate) professional_id: &'a str,
    pub(crate) caller: &'a str,
}

/// A grant whose signature and call-bound claims hold; the session-bound ones are checked
/// against the relay's state with [`VerifiedGrant::check_session`] and
/// [`VerifiedGrant::check_certificate`].
#[derive(Debug, Clone)]
pub(crate) struct VerifiedGrant {
    pub(crate) jti: String,
    pub(crate) sid: String,
    cnf: String,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Issuer {
    iss: String,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    azp: String,
    sid: String,
    jti: String,
    iat: u64,
    exp: u64,
    cnf: Confirmation,
}

#[derive(Deserialize)]
struct Confirmation {
    #[serde(rename = "x5t#S256")]
    x5t_s256: String,
}

struct GrantKey {
    key: DecodingKey,
    kid: String,
}

/// Grants whose signature verified, by their text: a backend presents the same grant with every
/// call, and an ES256 verification per call would cost more than the DMP exchange on a warm pool.
/// Only the signature is remembered; every claim is checked again at each call.
#[derive(Default)]
struct Verified {
    grants: HashMap<String, Arc<Claims>>,
}

/// Most grants remembered at once; the memory is forgotten when it is full.
const MAX_VERIFIED: usize = 4096;

/// The grant public key of each configured relay.
pub(crate) struct GrantKeys {
    keys: BTreeMap<String, GrantKey>,
    verified: Mutex<Verified>,
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn load_key(path: &Path) -> Result<GrantKey, String> {
    let spki = SubjectPublicKeyInfoDer::from_pem_file(path).map_err(|e| format!("no PUBLIC KEY: {e}"))?;
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki.as_ref())
        .map_err(|e| format!("unreadable public key: {e}"))?;
    let curve = info
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    if info.algorithm.algorithm.to_id_string() != EC_PUBLIC_KEY || curve.as_deref() != Some(P256) {
        return Err("not a P-256 public key".into());
    }
    Ok(GrantKey {
        key: DecodingKey::from_ec_der(&info.subject_public_key.data),
        // As the relay names its key in the JWS header: SHA-256 of the SPKI, 16 hex digits.
        kid: hex::encode(sha256(spki.as_ref()))[..16].to_owned(),
    })
}

impl GrantKeys {
    /// Reads `relays.<id>.grant_key` of every relay; the error names the key.
    pub(crate) fn load(relays: &BTreeMap<String, RelaySettings>) -> Result<Self, String> {
        let mut keys = BTreeMap::new();
        for (id, r) in relays {
            let key = load_key(&r.grant_key)
                .map_err(|e| format!("relays.{id}.grant_key ({}): {e}", r.grant_key.display()))?;
            keys.insert(id.clone(), key);
        }
        Ok(GrantKeys {
            keys,
            verified: Mutex::new(Verified::default()),
        })
    }

    /// The claims of `grant` once its signature verified with `relay`'s key.
    fn verified_claims(&self, grant: &str, relay: &str) -> Result<Arc<Claims>, AccessError> {
        if let Some(c) = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .grants
            .get(grant)
            && c.iss == relay
        {
            return Ok(c.clone());
        }
        let claims = Arc::new(self.verify_signature(grant, relay)?);
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.grants.len() >= MAX_VERIFIED {
            verified.grants.clear();
        }
        verified.grants.insert(grant.to_owned(), claims.clone());
        Ok(claims)
    }

    fn verify_signature(&self, grant: &str, relay: &str) -> Result<Claims, AccessError> {
        let key = self
            .keys
            .get(relay)
            .ok_or_else(|| refused("iss", format!("no grant key is configured for relay {relay}")))?;
        let mut parts = grant.split('.');
        let (Some(header), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refused("jws", "not a compact JWS (header.payload.signature)"));
        };
        let header: Header = B64
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| refused("jws", "unreadable JWS header"))?;
        if header.alg != "ES256" || header.typ.as_deref() != Some(TYPE) {
            return Err(refused(
                "typ",
                format!("not a session grant (alg ES256, typ {TYPE} expected)"),
            ));
        }
        // Read before the signature is checked only to name a grant of another relay as such:
        // the grant is refused either way.
        let issuer = B64
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice::<Issuer>(&p).ok())
            .ok_or_else(|| refused("jws", "unreadable JWS payload"))?;
        if issuer.iss != relay {
            return Err(refused(
                "iss",
                format!(
                    "the grant was issued by relay {}, the call names relay {relay}",
                    clip(&issuer.iss)
                ),
            ));
        }
        if header.kid.as_deref() != Some(key.kid.as_str()) {
            return Err(refused(
                "kid",
                format!(
                    "the grant was signed by key {}, relay {relay}'s grant key (relays.{relay}.grant_key) is {}",
                    clip(header.kid.as_deref().unwrap_or("(none)")),
                    key.kid
                ),
            ));
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(grant, &key.key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => refused(
                    "signature",
                    format!("the grant's signature does not verify with relays.{relay}.grant_key"),
                ),
                _ => refused("jws", format!("unreadable grant: {e}")),
            })?
            .claims;
        Ok(claims)
    }

    /// Checks `grant` for the call `expected` at `now` (Unix seconds).
    pub(crate) fn verify(
        &self,
        grant: &str,
        expected: &Expected<'_>,
        now: u64,
    ) -> Result<VerifiedGrant, AccessError> {
        let claims = self.verified_claims(grant, expected.relay_id)?;
        if claims.aud != AUDIENCE {
            return Err(refused(
                "aud",
                format!("the grant is for {}, not {AUDIENCE}", clip(&claims.aud)),
            ));
        }
        if claims.sub != expected.professional_id {
            return Err(refused(
                "sub",
                format!(
                    "the grant is professional {}'s, the call names professional {}",
                    clip(&claims.sub),
                    clip(expected.professional_id)
                ),
            ));
        }
        if claims.azp != expected.caller {
            return Err(refused(
                "azp",
                format!(
                    "the grant was given to {}, not to the caller {}",
                    clip(&claims.azp),
                    expected.caller
                ),
            ));
        }
        if claims.exp.saturating_add(SKEW_SECONDS) <= now {
            return Err(refused(
                "exp",
                format!(
                    "the grant {} expired {} s ago",
                    clip(&claims.jti),
                    now - claims.exp
                ),
            ));
        }
        if claims.iat > now.saturating_add(SKEW_SECONDS) {
            return Err(refused("iat", "the grant is issued in the future"));
        }
        Ok(VerifiedGrant {
            jti: claims.jti.clone(),
            sid: claims.sid.clone(),
            cnf: claims.cnf.x5t_s256.clone(),
        })
    }
}

/// Caller-supplied text quoted in a message, bounded.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// What a session state says about a grant of a session that is no longer the relay's.
pub(crate) fn ended_reason(session: &CardSession) -> String {
    match session.reason {
        SessionReason::Active | SessionReason::GrantsRevoked => "a new card session was opened",
        SessionReason::LoggedOut => "the professional logged out",
        SessionReason::CardRemoved => "the card was removed",
        SessionReason::CardChanged => "another card is in the reader",
        SessionReason::PinLocked => "the card's PIN is locked",
        SessionReason::NoSession | SessionReason::Unspecified => "no card session is open on the relay",
    }
    .to_owned()
}

impl VerifiedGrant {
    /// The grant belongs to the relay's open card session and was not revoked.
    pub(crate) fn check_session(&self, session: &CardSession) -> Result<(), AccessError> {
        if session.id.is_empty() || session.id != self.sid {
            return Err(AccessError::SessionEnded {
                reason: ended_reason(session),
            });
        }
        if session.revoked.contains(&self.jti) {
            return Err(refused(
                "jti",
                format!("the professional revoked session grant {}", self.jti),
            ));
        }
        Ok(())
    }

    /// The grant names the card certificate the gateway authenticates with.
    pub(crate) fn check_certificate(&self, leaf_der: &[u8]) -> Result<(), AccessError> {
        if B64.encode(sha256(leaf_der)) != self.cnf {
            return Err(refused(
                "cnf",
                "the grant names another card certificate than the one in the relay",
            ));
        }
        Ok(())
    }
}
