//! The TLS client configuration towards the DMP (SPEC.md §2): TLS 1.2 for software access (1.3
//! configurable), ECDHE_RSA suites with AES-GCM and CHACHA20, the server verified against the
//! configured CA bundle and host name, and the card as client identity. One configuration per
//! professional session, kept for its lifetime: rustls resumes sessions only with the same
//! `Arc<ClientConfig>`, and a resumed handshake needs no new card signature.

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::crypto::aws_lc_rs::{self, cipher_suite};
use rustls::{ClientConfig, RootCertStore};

use crate::error::TransportError;

/// A TLS version the gateway may offer the DMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2: the only one the DMP accepts for software access.
    Tls12,
    /// TLS 1.3 (needs a card with RSA-PSS).
    Tls13,
}

/// The rustls configuration of one professional's connections: the DMP's roots, the offered
/// versions with their ECDHE suites, and the card through `resolver`.
pub fn client_config(
    roots: Arc<RootCertStore>,
    versions: &[TlsVersion],
    resolver: Arc<dyn ResolvesClientCert>,
) -> Result<Arc<ClientConfig>, TransportError> {
    let mut suites = Vec::new();
    let mut protocol_versions = Vec::new();
    if versions.contains(&TlsVersion::Tls13) {
        protocol_versions.push(&rustls::version::TLS13);
        suites.extend([
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ]);
    }
    if versions.contains(&TlsVersion::Tls12) {
        protocol_versions.push(&rustls::version::TLS12);
        suites.extend([
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ]);
    }
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: suites,
        ..aws_lc_rs::default_provider()
    };
    let config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&protocol_versions)
        .map_err(|e| TransportError::Tls(format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_client_cert_resolver(resolver);
    Ok(Arc::new(config))
}
