//! The body of the `relay_tls12` fuzz target (`fuzz/`, issue 19), compiled only with the
//! `fuzzing` feature: the relay's modules stay private, and the fuzz target and the regression
//! test (`tests/fuzz_corpus.rs`) reach the transcript check through this one door.

use std::path::Path;

use crate::config::SigningSettings;
use crate::handshake::{HandshakeInput, classify, tls12_messages};
use crate::scheme::Scheme;
use crate::transcript::ServerPolicy;

const SCHEMES: [Scheme; 3] = [
    Scheme::RsaPkcs1Sha256,
    Scheme::RsaPssSha256,
    Scheme::EcdsaP256Sha256,
];

/// What the relay checks before its card signs: the data's shape, then its server.
pub struct TranscriptCheck {
    policy: ServerPolicy,
    hosts: Vec<String>,
}

impl TranscriptCheck {
    /// The check of a relay whose `signing.server_ca` is `server_ca` (PEM) and whose
    /// `signing.allowed_hosts` are `allowed_hosts`.
    pub fn new(server_ca: &Path, allowed_hosts: &[&str]) -> Result<Self, String> {
        let hosts: Vec<String> = allowed_hosts.iter().map(|h| (*h).to_owned()).collect();
        let policy = ServerPolicy::load(&SigningSettings {
            server_ca: server_ca.to_path_buf(),
            allowed_hosts: hosts.clone(),
            allow_tls13: false,
        })
        .map_err(|e| e.to_string())?;
        Ok(TranscriptCheck { policy, hosts })
    }

    /// Runs `data` through the check for every scheme; returns the host it would be signed
    /// for. Panics only when the check breaks its own promises.
    pub fn check(&self, data: &[u8]) -> Option<String> {
        let mut allowed = None;
        for scheme in SCHEMES {
            let Ok(input) = classify(scheme, data) else {
                continue;
            };
            if input == HandshakeInput::Tls12Transcript {
                assert!(
                    tls12_messages(data).is_ok(),
                    "classified as TLS 1.2 but its messages do not read"
                );
            }
            if let Ok(Some(host)) = self.policy.check(input, data) {
                assert!(
                    self.hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)),
                    "signed for `{host}`, which is not an allowed host"
                );
                allowed = Some(host);
            }
        }
        allowed
    }
}
