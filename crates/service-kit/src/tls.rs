//! TLS helpers on rustls (one crypto provider, aws-lc-rs): PEM loading, server and client
//! configurations with or without client authentication, certificate fingerprints.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why TLS material or a configuration cannot be used. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file holds no readable certificate.
    #[error("cannot read certificates from {path}: {reason}")]
    Certificates {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A PEM file holds no readable private key.
    #[error("cannot read a private key from {path}: {reason}")]
    PrivateKey {
        /// The file.
        path: String,
        /// What was wrong (never the key).
        reason: String,
    },
    /// rustls refused the certificates, keys or roots.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// Installs aws-lc-rs as the process default provider (idempotent).
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// All certificates of a PEM file, in file order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Certificates {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The error names the file, never its content.
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::PrivateKey {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A root store of every certificate in the PEM file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    roots(load_certs(path)?)
}

/// A root store of `certs`.
pub fn roots(certs: impl IntoIterator<Item = CertificateDer<'static>>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs {
        store
            .add(c)
            .map_err(|e| TlsError::Config(format!("bad root certificate: {e}")))?;
    }
    Ok(store)
}

/// A server configuration; with `client_roots`, clients must present a certificate chaining
/// to them.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<RootCertStore>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<ServerConfig, TlsError> {
    install_crypto_provider();
    let builder = ServerConfig::builder_with_protocol_versions(versions);
    let builder = match client_roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// A client configuration trusting `roots`, presenting `identity` when given.
pub fn client_config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, TlsError> {
    install_crypto_provider();
    let builder = ClientConfig::builder().with_root_certificates(roots);
    match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string())),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// SHA-256 of a DER certificate, lower-case hex: the form used to pin callers.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}

/// The identity of a caller authenticated by a client certificate (issue 13): the first URI
/// SAN, else the first DNS SAN, else the subject in RFC 4514 form as x509-parser prints it.
/// Relay and gateway derive it the same way, so one configured string names one caller on both.
/// A certificate x509-parser cannot read (the TLS layer accepted it) is named
/// `x509-sha256:<fingerprint>`, which no name of the three forms above can equal.
pub fn caller_identity(leaf_der: &[u8]) -> String {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf_der) else {
        return format!("x509-sha256:{}", sha256_fingerprint(leaf_der));
    };
    let names: Vec<GeneralName<'_>> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| ext.value.general_names.clone())
        .unwrap_or_default();
    let uri = names.iter().find_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let dns = names.iter().find_map(|n| match n {
        GeneralName::DNSName(d) => Some(*d),
        _ => None,
    });
    match uri.or(dns) {
        Some(name) => name.to_owned(),
        None => cert.subject().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Integrator");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "backend");
        params.subject_alt_names = sans;
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn caller_identity_prefers_uri_then_dns_then_subject() {
        let uri = rcgen::SanType::URI("spiffe://example.org/backend".try_into().expect("uri"));
        let dns = rcgen::SanType::DnsName("backend.example.org".try_into().expect("dns"));
        assert_eq!(
            caller_identity(&cert(vec![dns.clone(), uri])),
            "spiffe://example.org/backend"
        );
        assert_eq!(caller_identity(&cert(vec![dns])), "backend.example.org");
        assert_eq!(caller_identity(&cert(vec![])), "O=Integrator, CN=backend");
        assert!(caller_identity(b"not a certificate").starts_with("x509-sha256:"));
    }

    #[test]
    fn dev_pki_client_certificates_name_their_callers() {
        use dev_support::devpki::{DevPki, files};
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = DevPki::ensure(tmp.path()).expect("generate");
        for (cert, identity) in [
            (files::HOLDER_UI_CLIENT_CERT, "holder-ui"),
            (files::INTEGRATOR_CLIENT_CERT, "integrator"),
            (files::GATEWAY_CLIENT_CERT, "dmp-gateway"),
        ] {
            let der = load_certs(&pki.path(cert)).expect("cert");
            assert_eq!(caller_identity(&der[0]), identity);
        }
    }
}
