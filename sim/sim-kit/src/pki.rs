//! The AORTA test PKI the simulators and tests use, generated with rcgen (aws-lc-rs):
//!
//! - the Stelsel CA (RSA-2048, self-signed): what a GtK trusts for Stelseltoken `x5c` chains;
//! - the Stelsel signer (RSA-2048, issued by the CA): signs the Stelseltoken;
//! - the AORTA token-signing key (RSA-2048): the Autorisatie Server ZA signs access tokens with
//!   it and the Stelseltoken publishes its public key;
//! - a TLS CA (P-256) with the simulators' server certificate (127.0.0.1, localhost), the GtK's
//!   client certificate (what a UZI server certificate is in production: ZORG-AB and the AS ZA
//!   admit only callers presenting one) and a Resource Broker's client certificate (the caller
//!   of use case 3.1).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// File names inside a folder written by [`AortaPki::write`].
pub mod files {
    /// The Stelsel CA certificate.
    pub const STELSEL_CA: &str = "stelsel-ca.pem";
    /// Leaf then CA, PEM.
    pub const STELSEL_SIGNER_CHAIN: &str = "stelsel-signer-chain.pem";
    /// The Stelsel signer's key (PKCS#8).
    pub const STELSEL_SIGNER_KEY: &str = "stelsel-signer.key.pem";
    /// The AORTA token-signing key (PKCS#8).
    pub const AORTA_TOKEN_SIGNING_KEY: &str = "aorta-token-signing.key.pem";
    /// The TLS CA certificate (servers and clients of the simulators).
    pub const TLS_CA: &str = "tls-ca.pem";
    /// The simulators' server certificate (127.0.0.1, localhost).
    pub const SIM_SERVER_CERT: &str = "sim-server.pem";
    /// The simulators' server key (PKCS#8).
    pub const SIM_SERVER_KEY: &str = "sim-server.key.pem";
    /// The GtK's client certificate (a UZI server certificate in production).
    pub const GTK_CLIENT_CERT: &str = "gtk-client.pem";
    /// The GtK's client key (PKCS#8).
    pub const GTK_CLIENT_KEY: &str = "gtk-client.key.pem";
    /// The Resource Broker's client certificate.
    pub const BROKER_CLIENT_CERT: &str = "resource-broker-client.pem";
    /// The Resource Broker's client key (PKCS#8).
    pub const BROKER_CLIENT_KEY: &str = "resource-broker-client.key.pem";

    /// Every file [`super::AortaPki::write`] writes.
    pub const ALL: [&str; 11] = [
        STELSEL_CA,
        STELSEL_SIGNER_CHAIN,
        STELSEL_SIGNER_KEY,
        AORTA_TOKEN_SIGNING_KEY,
        TLS_CA,
        SIM_SERVER_CERT,
        SIM_SERVER_KEY,
        GTK_CLIENT_CERT,
        GTK_CLIENT_KEY,
        BROKER_CLIENT_CERT,
        BROKER_CLIENT_KEY,
    ];
}

/// Why the PKI could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused a certificate or key.
    #[error("generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file (named first) could not be written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Key material, PEM-encoded (keys in PKCS#8).
#[derive(Clone)]
pub struct AortaPki {
    /// The Stelsel CA certificate.
    pub stelsel_ca_pem: String,
    /// The Stelsel signer's certificate, then the CA.
    pub stelsel_signer_chain_pem: String,
    /// The Stelsel signer's key.
    pub stelsel_signer_key_pem: String,
    /// The AORTA token-signing key.
    pub token_signing_key_pem: String,
    /// The TLS CA certificate.
    pub tls_ca_pem: String,
    /// The simulators' server certificate and key.
    pub sim_server: CertAndKey,
    /// The GtK's client certificate and key.
    pub gtk_client: CertAndKey,
    /// The Resource Broker's client certificate and key.
    pub broker_client: CertAndKey,
}

/// A PEM certificate and its PKCS#8 PEM key. No Debug: the key must not print.
#[derive(Clone)]
pub struct CertAndKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The key, PKCS#8 PEM.
    pub key_pem: String,
}

/// Issues TLS certificates (P-256, fast to make) for the simulators, the GtK and the broker.
fn tls_material(
    now: time::OffsetDateTime,
) -> Result<(String, CertAndKey, CertAndKey, CertAndKey), rcgen::Error> {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = dn("TEST AORTA TLS CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);
    let leaf = |cn: &str, sans: Vec<rcgen::SanType>, eku: rcgen::ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(cn);
        p.subject_alt_names = sans;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![eku];
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(825);
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &issuer)?;
        Ok::<_, rcgen::Error>(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    };
    let dns = |n: &str| n.try_into().map(rcgen::SanType::DnsName);
    let server = leaf(
        "TEST AORTA simulator",
        vec![
            dns("localhost")?,
            rcgen::SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
        ],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let gtk = leaf(
        "TEST UZI-servercertificaat GtK",
        vec![dns("gtk.localhost")?],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let broker = leaf(
        "TEST Resource Broker",
        vec![dns("resource-broker.localhost")?],
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    Ok((ca_cert.pem(), server, gtk, broker))
}

impl std::fmt::Debug for AortaPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AortaPki { .. }")
    }
}

fn rsa() -> Result<KeyPair, rcgen::Error> {
    KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CountryName, "NL");
    d.push(DnType::OrganizationName, "AORTA test");
    d.push(DnType::CommonName, cn);
    d
}

impl AortaPki {
    /// A fresh PKI, in memory.
    pub fn generate() -> Result<Self, PkiError> {
        let ca_key = rsa()?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name = dn("TEST AORTA Stelsel CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        ca.not_before = now - time::Duration::days(1);
        ca.not_after = now + time::Duration::days(3650);
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, &ca_key);

        let signer_key = rsa()?;
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name = dn("TEST AORTA Stelsel Metadata signer");
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.not_before = now - time::Duration::days(1);
        leaf.not_after = now + time::Duration::days(825);
        leaf.use_authority_key_identifier_extension = true;
        let leaf_cert = leaf.signed_by(&signer_key, &issuer)?;
        let (tls_ca_pem, sim_server, gtk_client, broker_client) = tls_material(now)?;

        Ok(AortaPki {
            stelsel_ca_pem: ca_cert.pem(),
            stelsel_signer_chain_pem: format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
            stelsel_signer_key_pem: signer_key.serialize_pem(),
            token_signing_key_pem: rsa()?.serialize_pem(),
            tls_ca_pem,
            sim_server,
            gtk_client,
            broker_client,
        })
    }

    /// Writes the files (see [`files`]) into `dir`, creating it.
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
        std::fs::create_dir_all(dir).map_err(|e| PkiError::Io(dir.display().to_string(), e))?;
        for (name, text) in [
            (files::STELSEL_CA, &self.stelsel_ca_pem),
            (files::STELSEL_SIGNER_CHAIN, &self.stelsel_signer_chain_pem),
            (files::STELSEL_SIGNER_KEY, &self.stelsel_signer_key_pem),
            (files::AORTA_TOKEN_SIGNING_KEY, &self.token_signing_key_pem),
            (files::TLS_CA, &self.tls_ca_pem),
            (files::SIM_SERVER_CERT, &self.sim_server.cert_pem),
            (files::SIM_SERVER_KEY, &self.sim_server.key_pem),
            (files::GTK_CLIENT_CERT, &self.gtk_client.cert_pem),
            (files::GTK_CLIENT_KEY, &self.gtk_client.key_pem),
            (files::BROKER_CLIENT_CERT, &self.broker_client.cert_pem),
            (files::BROKER_CLIENT_KEY, &self.broker_client.key_pem),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| PkiError::Io(p.display().to_string(), e))?;
        }
        Ok(())
    }

    /// Generates into `dir` unless a complete set is already there; returns the folder.
    pub fn ensure(dir: &Path) -> Result<PathBuf, PkiError> {
        let complete = files::ALL.iter().all(|f| dir.join(f).is_file());
        if !complete {
            AortaPki::generate()?.write(dir)?;
        }
        Ok(dir.to_path_buf())
    }
}

/// DER certificates of a PEM bundle, in order.
pub fn certs_der(pem_text: &str) -> Result<Vec<Vec<u8>>, String> {
    let all = pem::parse_many(pem_text).map_err(|e| format!("PEM: {e}"))?;
    let certs: Vec<Vec<u8>> = all
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .collect();
    if certs.is_empty() {
        return Err("no CERTIFICATE in PEM".into());
    }
    Ok(certs)
}
