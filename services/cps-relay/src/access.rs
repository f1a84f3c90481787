//! Who may use the relay (SPEC.md §1, **Decision — not a signing oracle**): callers present a
//! client certificate the TLS layer verified against the configured CA; optionally only pinned
//! certificates (SHA-256 fingerprints) are allowed; signatures are rate-limited per caller.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use crate::error::RelayError;

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// SHA-256 of the caller's certificate, lower-case hex.
    pub(crate) fingerprint: String,
    /// The certificate subject, for logs and audit.
    pub(crate) subject: String,
    /// The caller identity roles are configured by (`service_kit::tls::caller_identity`).
    pub(crate) identity: String,
}

pub(crate) fn caller<T>(req: &tonic::Request<T>) -> Result<Caller, RelayError> {
    let certs = req.peer_certs().ok_or_else(|| {
        RelayError::CallerNotAllowed("no client certificate (the relay requires mutual TLS)".into())
    })?;
    caller_of(&certs)
}

/// The caller named by the client certificate chain the TLS layer verified (leaf first): both
/// faces, gRPC and the CPS agent HTTP API, name their callers with it.
pub(crate) fn caller_of(certs: &[rustls_pki_types::CertificateDer<'_>]) -> Result<Caller, RelayError> {
    let leaf = certs.first().ok_or_else(|| {
        RelayError::CallerNotAllowed("no client certificate (the relay requires mutual TLS)".into())
    })?;
    let subject = x509_parser::parse_x509_certificate(leaf)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "<unparsable subject>".into());
    Ok(Caller {
        fingerprint: service_kit::tls::sha256_fingerprint(leaf),
        subject,
        identity: service_kit::tls::caller_identity(leaf),
    })
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub(crate) struct Access {
    pinned: HashSet<String>,
    rate_per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Access {
    pub(crate) fn new(pinned: &[String], rate_per_second: u32, burst: u32) -> Self {
        Access {
            pinned: pinned
                .iter()
                .map(|f| f.replace(':', "").to_ascii_lowercase())
                .collect(),
            rate_per_second: f64::from(rate_per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses callers outside the pinned set, when one is configured.
    pub(crate) fn check(&self, caller: &Caller) -> Result<(), RelayError> {
        if self.pinned.is_empty() || self.pinned.contains(&caller.fingerprint) {
            Ok(())
        } else {
            Err(RelayError::CallerNotAllowed(format!(
                "certificate {} (SHA-256 {}) is not in access.allowed_clients",
                caller.subject, caller.fingerprint
            )))
        }
    }

    /// Token bucket per caller: `burst` signatures at once, refilled at `rate_per_second`.
    pub(crate) fn take_signature_token(&self, caller: &Caller) -> Result<(), RelayError> {
        if self.rate_per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(caller.fingerprint.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate_per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(RelayError::RateLimited)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(f: &str) -> Caller {
        Caller {
            fingerprint: f.into(),
            subject: "CN=test".into(),
            identity: "test".into(),
        }
    }

    #[test]
    fn pinned_set() {
        let a = Access::new(&["AB:CD".into()], 0, 1);
        assert!(a.check(&caller("abcd")).is_ok());
        assert!(matches!(
            a.check(&caller("ef")),
            Err(RelayError::CallerNotAllowed(_))
        ));
        assert!(Access::new(&[], 0, 1).check(&caller("anything")).is_ok());
    }

    #[test]
    fn bucket_limits_each_caller() {
        let a = Access::new(&[], 1, 2);
        assert!(a.take_signature_token(&caller("a")).is_ok());
        assert!(a.take_signature_token(&caller("a")).is_ok());
        assert!(matches!(
            a.take_signature_token(&caller("a")),
            Err(RelayError::RateLimited)
        ));
        assert!(
            a.take_signature_token(&caller("b")).is_ok(),
            "another caller has its own bucket"
        );
    }
}
