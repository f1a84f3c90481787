//! Session grants (issue 13): the professional's consent that one integrator backend may act
//! for them through a gateway, for as long as the card session lasts and at most
//! `grants.max_lifetime`. A grant is a compact JWS (RFC 7515), ES256, signed by the relay's
//! own grant key, never the card's key nor a TLS key.
//!
//! **Not a signing oracle:** the relay composes every claim itself (relay id, the professional
//! and certificate read from the card, the card session id, a fresh `jti`, the times); the only
//! value a caller chooses is the grantee, and it must be one of `access.grant_callers`. The
//! grant key signs nothing else, so a signature by it means "this relay issued this grant".
//!
//! **Not replayable by another caller:** `azp` names the grantee's caller identity, which the
//! gateway compares with the identity of whoever presents the grant (its mTLS certificate or
//! JWT), so a grant that leaks is useless to anyone else; `sid` and `cnf` bind it to this card
//! session and certificate, so it dies with Logout, removal or swap; `jti` can be revoked.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rustls_pki_types::PrivateKeyDer;
use serde::Serialize;

use crate::error::RelayError;
use crate::scheme::sha256;

/// The grants' `aud`: the gateway is the party that checks them.
pub(crate) const AUDIENCE: &str = "dmp-gateway";
/// The JWS `typ` header (RFC 8725 §3.11: explicit typing, so no other JWT is taken for a grant).
pub(crate) const TYPE: &str = "cps-session-grant+jwt";
/// Most live grants kept at once; a holder's UI issuing more is refused.
const MAX_LIVE_GRANTS: usize = 4096;

/// The grant key and what the relay writes into every grant.
pub(crate) struct GrantSigner {
    key: EcdsaKeyPair,
    kid: String,
    relay_id: String,
    max_lifetime: Duration,
    rng: SystemRandom,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// Claims of a session grant; see the module documentation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct GrantClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) aud: String,
    pub(crate) azp: String,
    pub(crate) sid: String,
    pub(crate) jti: String,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    pub(crate) cnf: Confirmation,
}

/// RFC 8705 §3.1 confirmation: the card certificate the gateway must be using.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Confirmation {
    #[serde(rename = "x5t#S256")]
    pub(crate) x5t_s256: String,
}

/// What the card session contributes to a grant.
pub(crate) struct SessionFacts<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) professional_id: &'a str,
    pub(crate) certificate_der: &'a [u8],
}

/// A grant as handed to the holder's UI.
#[derive(Debug, Clone)]
pub(crate) struct IssuedGrant {
    pub(crate) grantee: String,
    pub(crate) grant: String,
    pub(crate) grant_id: String,
    pub(crate) expires_at: u64,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl GrantSigner {
    /// Loads the P-256 grant key (PKCS#8 or SEC1 PEM).
    pub(crate) fn load(path: &Path, relay_id: &str, max_lifetime: Duration) -> Result<Self, RelayError> {
        let bad =
            |reason: String| RelayError::Internal(format!("grants.signing_key {}: {reason}", path.display()));
        let der = service_kit::tls::load_private_key(path).map_err(|e| bad(e.to_string()))?;
        let key = match &der {
            PrivateKeyDer::Pkcs8(k) => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, k.secret_pkcs8_der())
            }
            PrivateKeyDer::Sec1(k) => {
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, k.secret_sec1_der())
            }
            _ => return Err(bad("not an EC private key (P-256 expected)".into())),
        }
        .map_err(|e| bad(format!("not a P-256 key ({e})")))?;
        let spki = key
            .public_key()
            .as_der()
            .map_err(|_| bad("cannot encode its public key".into()))?;
        let kid = hex::encode(sha256(spki.as_ref()))[..16].to_owned();
        Ok(GrantSigner {
            key,
            kid,
            relay_id: relay_id.to_owned(),
            max_lifetime,
            rng: SystemRandom::new(),
        })
    }

    /// The claims of a new grant for `grantee` in `session`, valid from `now` for
    /// `lifetime` (0 or more than `grants.max_lifetime`: the maximum).
    pub(crate) fn claims(
        &self,
        session: &SessionFacts<'_>,
        grantee: &str,
        lifetime: Duration,
        now: u64,
    ) -> GrantClaims {
        let lifetime = if lifetime.is_zero() || lifetime > self.max_lifetime {
            self.max_lifetime
        } else {
            lifetime
        };
        GrantClaims {
            iss: self.relay_id.clone(),
            sub: session.professional_id.to_owned(),
            aud: AUDIENCE.to_owned(),
            azp: grantee.to_owned(),
            sid: session.session_id.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            exp: now + lifetime.as_secs().max(1),
            cnf: Confirmation {
                x5t_s256: B64.encode(sha256(session.certificate_der)),
            },
        }
    }

    /// The compact JWS of `claims`.
    pub(crate) fn sign(&self, claims: &GrantClaims) -> Result<String, RelayError> {
        let header = to_json(&Header {
            alg: "ES256",
            typ: TYPE,
            kid: &self.kid,
        })?;
        let payload = to_json(claims)?;
        let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        // FIXED signing: r || s, 64 bytes, the JWS form of an ES256 signature (RFC 7518 §3.4).
        let signature = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| RelayError::Internal("the grant signature failed".into()))?;
        Ok(format!("{input}.{}", B64.encode(signature.as_ref())))
    }
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, RelayError> {
    serde_json::to_vec(value).map_err(|e| RelayError::Internal(format!("grant encoding: {e}")))
}

struct GrantRecord {
    session_id: String,
    expires_at: u64,
}

/// The grants issued and revoked by this relay since it started (grants die with a restart:
/// their card session does too).
#[derive(Default)]
pub(crate) struct GrantBook {
    live: HashMap<String, GrantRecord>,
    revoked: HashMap<String, u64>,
}

impl GrantBook {
    fn prune(&mut self, now: u64) {
        self.live.retain(|_, g| g.expires_at > now);
        self.revoked.retain(|_, exp| *exp > now);
    }

    pub(crate) fn insert(&mut self, claims: &GrantClaims, now: u64) -> Result<(), RelayError> {
        self.prune(now);
        if self.live.len() >= MAX_LIVE_GRANTS {
            return Err(RelayError::GrantLimit);
        }
        self.live.insert(
            claims.jti.clone(),
            GrantRecord {
                session_id: claims.sid.clone(),
                expires_at: claims.exp,
            },
        );
        Ok(())
    }

    /// Revokes `ids` (every live grant when empty); returns those this call revoked.
    pub(crate) fn revoke(&mut self, ids: &[String], now: u64) -> Vec<String> {
        self.prune(now);
        let chosen: Vec<String> = if ids.is_empty() {
            self.live.keys().cloned().collect()
        } else {
            ids.iter()
                .filter(|id| self.live.contains_key(*id))
                .cloned()
                .collect()
        };
        let mut revoked = Vec::with_capacity(chosen.len());
        for id in chosen {
            if let Some(g) = self.live.remove(&id) {
                self.revoked.insert(id.clone(), g.expires_at);
                revoked.push(id);
            }
        }
        revoked.sort();
        revoked
    }

    /// Revoked grants that have not expired yet, sorted.
    pub(crate) fn revoked(&self, now: u64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .revoked
            .iter()
            .filter(|(_, exp)| **exp > now)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Checks that `grant_id` is a live grant of `session_id`; the refusal says why.
    pub(crate) fn check(&self, grant_id: &str, session_id: &str, now: u64) -> Result<(), String> {
        if self.revoked.contains_key(grant_id) {
            return Err(format!("session grant {grant_id} was revoked by the card holder"));
        }
        match self.live.get(grant_id) {
            None => Err(format!(
                "no session grant {grant_id} on this relay (unknown, expired, or from before a restart)"
            )),
            Some(g) if g.expires_at <= now => Err(format!("session grant {grant_id} has expired")),
            Some(g) if g.session_id != session_id => Err(format!(
                "session grant {grant_id} belongs to a card session that has ended"
            )),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(jti: &str, sid: &str, exp: u64) -> GrantClaims {
        GrantClaims {
            iss: "local".into(),
            sub: "810100000001".into(),
            aud: AUDIENCE.into(),
            azp: "integrator".into(),
            sid: sid.into(),
            jti: jti.into(),
            iat: 100,
            exp,
            cnf: Confirmation { x5t_s256: "x".into() },
        }
    }

    #[test]
    fn book_tells_live_from_revoked_expired_and_foreign() {
        let mut book = GrantBook::default();
        book.insert(&claims("a", "s1", 200), 100).expect("insert");
        book.insert(&claims("b", "s1", 200), 100).expect("insert");
        book.insert(&claims("c", "s1", 150), 100).expect("insert");
        assert!(book.check("a", "s1", 120).is_ok());
        assert!(
            book.check("a", "s2", 120)
                .expect_err("other session")
                .contains("ended")
        );
        assert!(
            book.check("c", "s1", 160)
                .expect_err("expired")
                .contains("expired")
        );
        assert!(
            book.check("zz", "s1", 120)
                .expect_err("unknown")
                .contains("no session grant")
        );
        assert_eq!(book.revoke(&["b".into(), "zz".into()], 120), vec!["b".to_owned()]);
        assert!(
            book.check("b", "s1", 120)
                .expect_err("revoked")
                .contains("revoked")
        );
        assert_eq!(book.revoked(120), vec!["b".to_owned()]);
        assert_eq!(book.revoke(&[], 120), vec!["a".to_owned(), "c".to_owned()]);
        assert!(book.revoked(300).is_empty(), "expired revocations are forgotten");
    }
}
