//! The card's authentication certificate: the DER the TLS client presents, and the parsed
//! fields callers need (professional id, names, profession, validity, key). CPS subjects have a
//! multi-valued, non-DER-sorted last RDN (`CN=<id>+SN=<surname>+GN=<given name>`); x509-parser
//! reads it as written. The description itself is `relay_client::describe_certificate`, which
//! the gateway also applies to a CPS agent's certificate.

use ehealth_proto::cps::v1::GetAuthenticationCertificateResponse;
pub(crate) use relay_client::KeyKind;

use x509_parser::prelude::*;

use crate::error::RelayError;
use crate::scheme::Scheme;

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

impl CardCertificate {
    pub(crate) fn key_kind(&self) -> Result<KeyKind, RelayError> {
        relay_client::key_kind(&self.leaf).map_err(RelayError::Device)
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
                "the key selected for TLS authentication has a signature (nonRepudiation) certificate; select the card's authentication key (backend key_id / key_label)"
                    .into(),
            )),
            KeyPurpose::Signature if !non_repudiation => Err(RelayError::WrongKeyPurpose(
                "the key selected as signature key has no nonRepudiation key usage (it is an authentication key, which never signs documents); select the card's signature key (backend signature_key_id / signature_key_label)"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    /// The gRPC answer (and the CPS agent API's), with the schemes the backend can sign with.
    pub(crate) fn describe(
        &self,
        schemes: &[Scheme],
    ) -> Result<GetAuthenticationCertificateResponse, RelayError> {
        relay_client::describe_certificate(self.leaf.clone(), self.chain.clone(), schemes)
            .map_err(RelayError::Device)
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
