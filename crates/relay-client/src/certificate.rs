//! The card's authentication certificate as both sides of a relay describe it: the DER the TLS
//! client presents, and the parsed fields callers need (professional id, names, profession,
//! validity, key). The relay describes its card with it; the gateway describes the certificate a
//! CPS agent hands over (the seed's API gives the DER alone). CPS subjects have a multi-valued,
//! non-DER-sorted last RDN (`CN=<id>+SN=<surname>+GN=<given name>`); x509-parser reads it as
//! written.

use ehealth_proto::cps::v1::{GetAuthenticationCertificateResponse, KeyType};
use x509_parser::prelude::*;

use crate::Scheme;

/// The public key kind of an authentication certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA, with its modulus size.
    Rsa {
        /// Modulus bits.
        bits: u32,
    },
    /// ECDSA on P-256.
    EcP256,
}

const P256_OID: &str = "1.2.840.10045.3.1.7";

/// The key kind of the DER certificate `leaf`; the error says why it cannot be used.
pub fn key_kind(leaf: &[u8]) -> Result<KeyKind, String> {
    let (_, cert) =
        parse_x509_certificate(leaf).map_err(|e| format!("the card's certificate does not parse: {e}"))?;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Ok(KeyKind::Rsa {
            bits: u32::try_from(rsa.key_size()).unwrap_or(u32::MAX),
        }),
        Ok(x509_parser::public_key::PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            if curve.as_deref() == Some(P256_OID) {
                Ok(KeyKind::EcP256)
            } else {
                Err(format!("unsupported EC curve {curve:?} (P-256 only)"))
            }
        }
        _ => Err("the card's certificate has neither an RSA nor a P-256 key".into()),
    }
}

/// The `GetAuthenticationCertificate` answer for `leaf` and its issuing `chain`, signed with
/// `schemes`.
pub fn describe_certificate(
    leaf: Vec<u8>,
    chain: Vec<Vec<u8>>,
    schemes: &[Scheme],
) -> Result<GetAuthenticationCertificateResponse, String> {
    let (key_type, key_bits) = match key_kind(&leaf)? {
        KeyKind::Rsa { bits } => (KeyType::Rsa, bits),
        KeyKind::EcP256 => (KeyType::EcP256, 256),
    };
    let (_, cert) =
        parse_x509_certificate(&leaf).map_err(|e| format!("the card's certificate does not parse: {e}"))?;
    let attr = |oid: &str| -> String {
        cert.subject()
            .iter_attributes()
            .find(|a| a.attr_type().to_id_string() == oid)
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let ts = |t: ASN1Time| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    };
    let described = GetAuthenticationCertificateResponse {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        professional_id: attr("2.5.4.3"),
        surname: attr("2.5.4.4"),
        given_name: attr("2.5.4.42"),
        profession: attr("2.5.4.11"),
        not_before: Some(ts(cert.validity().not_before)),
        not_after: Some(ts(cert.validity().not_after)),
        key_type: key_type as i32,
        key_bits,
        supported_schemes: schemes.iter().map(|s| s.to_proto() as i32).collect(),
        serial_number: cert.raw_serial_as_string().replace(':', ""),
        leaf_der: Vec::new(),
        chain_der: chain,
    };
    Ok(GetAuthenticationCertificateResponse {
        leaf_der: leaf,
        ..described
    })
}
