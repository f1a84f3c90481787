//! The professional's TLS client identity for rustls: the card's certificate chain (fetched from
//! the relay before the handshake) and a signing key whose every signature is made by the relay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use relay_client::Scheme;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::CertificateDer;
use rustls::sign::{CertifiedKey, Signer, SigningKey};

use crate::relay::{SignFailure, SignerThread};

/// Counts remote signatures (a metric) and keeps the last failure for the caller's error.
#[derive(Debug, Default)]
pub struct SignatureLedger {
    /// Why the last signature failed.
    pub last_failure: Mutex<Option<SignFailure>>,
    /// Signatures made.
    pub made: std::sync::atomic::AtomicU64,
}

/// The consent a pool signs under: the grant of the call that last used it, and whether the
/// card session is still on. Once closed, the pool's key asks the relay for nothing more.
#[derive(Debug, Default)]
pub struct Consent {
    grant_id: Mutex<String>,
    closed: AtomicBool,
}

impl Consent {
    /// Later handshakes sign under `grant_id` (a grant of this pool's card session).
    pub fn act_under(&self, grant_id: &str) {
        grant_id.clone_into(&mut self.grant_id.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The card session is over for this pool.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn grant_id(&self) -> String {
        self.grant_id.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The card's private key as rustls sees it: every signature is asked of the relay.
#[derive(Debug)]
pub struct RemoteKey {
    signer: Arc<SignerThread>,
    consent: Arc<Consent>,
    /// Relay schemes in order of preference, with their TLS names.
    schemes: Vec<(SignatureScheme, Scheme)>,
    algorithm: rustls::SignatureAlgorithm,
    deadline: Duration,
    ledger: Arc<SignatureLedger>,
    remote_signatures: Counter,
}

impl RemoteKey {
    /// A key signing through `signer` under `consent` within `deadline`, with the best TLS scheme among the
    /// relay's; `None` when the relay offers none the gateway can use.
    pub fn new(
        signer: Arc<SignerThread>,
        consent: Arc<Consent>,
        relay_schemes: &[Scheme],
        deadline: Duration,
        ledger: Arc<SignatureLedger>,
        remote_signatures: Counter,
    ) -> Option<Self> {
        // PKCS#1 first: the seed's SHA256WithRSA, the only scheme of a CPS3 card (TLS 1.2).
        let order = [
            (SignatureScheme::RSA_PKCS1_SHA256, Scheme::RsaPkcs1Sha256),
            (SignatureScheme::RSA_PSS_SHA256, Scheme::RsaPssSha256),
            (SignatureScheme::ECDSA_NISTP256_SHA256, Scheme::EcdsaP256Sha256),
        ];
        let schemes: Vec<_> = order
            .into_iter()
            .filter(|(_, s)| relay_schemes.contains(s))
            .collect();
        let algorithm = match schemes.first()?.1 {
            Scheme::EcdsaP256Sha256 => rustls::SignatureAlgorithm::ECDSA,
            _ => rustls::SignatureAlgorithm::RSA,
        };
        Some(RemoteKey {
            signer,
            consent,
            schemes,
            algorithm,
            deadline,
            ledger,
            remote_signatures,
        })
    }
}

impl SigningKey for RemoteKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let (tls, scheme) = self.schemes.iter().find(|(tls, _)| offered.contains(tls))?;
        Some(Box::new(RemoteSigner {
            signer: self.signer.clone(),
            consent: self.consent.clone(),
            tls: *tls,
            scheme: *scheme,
            deadline: self.deadline,
            ledger: self.ledger.clone(),
            remote_signatures: self.remote_signatures.clone(),
        }))
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        self.algorithm
    }
}

#[derive(Debug)]
struct RemoteSigner {
    signer: Arc<SignerThread>,
    consent: Arc<Consent>,
    tls: SignatureScheme,
    scheme: Scheme,
    deadline: Duration,
    ledger: Arc<SignatureLedger>,
    remote_signatures: Counter,
}

impl Signer for RemoteSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let outcome = if self.consent.is_closed() {
            Err(SignFailure::Refused {
                code: tonic::Code::FailedPrecondition,
                message: "the professional's card session ended; nothing more is signed for this pool".into(),
            })
        } else {
            self.signer.sign_blocking(
                self.scheme,
                message.to_vec(),
                self.consent.grant_id(),
                self.deadline,
            )
        };
        match outcome {
            Ok(sig) => {
                self.ledger
                    .made
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.remote_signatures.inc();
                Ok(sig)
            }
            Err(failure) => {
                let text = match &failure {
                    SignFailure::Refused { message, .. } => format!("cps-relay refused: {message}"),
                    SignFailure::Unreachable(r) => format!("cps-relay unreachable: {r}"),
                    SignFailure::Deadline(d) => format!("cps-relay did not sign within {d:?}"),
                };
                *self.ledger.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(failure);
                Err(rustls::Error::General(text))
            }
        }
    }

    fn scheme(&self) -> SignatureScheme {
        self.tls
    }
}

/// Always presents the professional's card certificate.
#[derive(Debug)]
pub struct CardResolver {
    key: Arc<CertifiedKey>,
}

impl CardResolver {
    /// The card's chain and its remote key.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: RemoteKey) -> Self {
        CardResolver {
            key: Arc::new(CertifiedKey::new(chain, Arc::new(key))),
        }
    }
}

impl ResolvesClientCert for CardResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        // Only when the card's key can answer one of the server's schemes.
        self.key.key.choose_scheme(sigschemes).map(|_| self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
