//! The card's authentication certificate: the DER the TLS client presents, and the parsed
//! fields callers need (professional id, names, profession, validity, key). CPS subjects have a
//! multi-valued, non-DER-sorted last RDN (`CN=<id>+SN=<surname>+GN=<given name>`); x509-parser
//! reads it as written.

use ehealth_proto::cps::v1::{GetAuthenticationCertificateResponse, KeyType};
use x509_parser::prelude::*;

use crate::error::RelayError;
use crate::scheme::Scheme;

/// The public key kind of the authentication certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa { bits: u32 },
    EcP256,
}

/// What a card key is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyPurpose {
    /// TLS client authentication (SignForAuthentication).
    Authentication,
    /// Document signatures (SignXadesSignedInfo).
    Signature,
}

/// Leaf and issuing chain (DER), as the card (plus configuration) provides them.
#[derive(Debug, Clone)]
pub(crate) struct CardCertificate {
    pub(crate) leaf: Vec<u8>,
    pub(crate) chain: Vec<Vec<u8>>,
}

const P256_OID: &str = "1.2.840.10045.3.1.7";

impl CardCertificate {
    pub(crate) fn key_kind(&self) -> Result<KeyKind, RelayError> {
        let (_, cert) = parse_x509_certificate(&self.leaf)
            .map_err(|e| RelayError::Device(format!("the card's certificate does not parse: {e}")))?;
        let spki = cert.public_key();
        match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Ok(KeyKind::Rsa {
                bits: rsa.key_size() as u32,
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
                    Err(RelayError::Device(format!(
                        "unsupported EC curve {curve:?} (P-256 only)"
                    )))
                }
            }
            _ => Err(RelayError::Device(
                "the card's certificate has neither an RSA nor a P-256 key".into(),
            )),
        }
    }

    /// Checks that the leaf's key usage allows `purpose`. IGC-Santé issues a CPS card two
    /// certificates: authentication (digitalSignature) and signature (nonRepudiation only).
    /// The authentication key signs TLS handshakes and never a document; the signature key
    /// signs documents (XAdES) and never a TLS handshake. A certificate without the
    /// extension is taken as an authentication certificate (development keys).
    pub(crate) fn check_purpose(&self, purpose: KeyPurpose) -> Result<(), RelayError> {
        let (_, cert) = parse_x509_certificate(&self.leaf)
            .map_err(|e| RelayError::Device(format!("the card's certificate does not parse: {e}")))?;
        let usage = cert
            .key_usage()
            .map_err(|e| RelayError::Device(format!("the card's certificate key usage: {e}")))?
            .map(|ku| ku.value);
        let (signing, non_repudiation) = usage
            .map(|u| (u.digital_signature(), u.non_repudiation()))
            .unwrap_or((true, false));
        match purpose {
            KeyPurpose::Authentication if non_repudiation && !signing => Err(RelayError::WrongKeyPurpose(
                "the key selected for TLS authentication has a signature (nonRepudiation) certificate;                  select the card's authentication key (backend key_id / key_label)"
                    .into(),
            )),
            KeyPurpose::Signature if !non_repudiation => Err(RelayError::WrongKeyPurpose(
                "the key selected as signature key has no nonRepudiation key usage (it is an                  authentication key, which never signs documents); select the card's signature                  key (backend signature_key_id / signature_key_label)"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    /// The gRPC answer, with the schemes the backend can sign with.
    pub(crate) fn describe(
        &self,
        schemes: &[Scheme],
    ) -> Result<GetAuthenticationCertificateResponse, RelayError> {
        let (_, cert) = parse_x509_certificate(&self.leaf)
            .map_err(|e| RelayError::Device(format!("the card's certificate does not parse: {e}")))?;
        let attr = |oid: &str| -> String {
            cert.subject()
                .iter_attributes()
                .find(|a| a.attr_type().to_id_string() == oid)
                .and_then(|a| a.as_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (key_type, key_bits) = match self.key_kind()? {
            KeyKind::Rsa { bits } => (KeyType::Rsa, bits),
            KeyKind::EcP256 => (KeyType::EcP256, 256),
        };
        let ts = |t: ASN1Time| prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        };
        Ok(GetAuthenticationCertificateResponse {
            leaf_der: self.leaf.clone(),
            chain_der: self.chain.clone(),
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
        })
    }
}

/// Schemes a key of this kind can make, given what the backend implements.
pub(crate) fn schemes_for(kind: KeyKind, pkcs1: bool, pss: bool, ecdsa: bool) -> Vec<Scheme> {
    let mut v = Vec::new();
    match kind {
        KeyKind::Rsa { .. } => {
            if pkcs1 {
                v.push(Scheme::RsaPkcs1Sha256);
            }
            if pss {
                v.push(Scheme::RsaPssSha256);
            }
        }
        KeyKind::EcP256 => {
            if ecdsa {
                v.push(Scheme::EcdsaP256Sha256);
            }
        }
    }
    v
}
