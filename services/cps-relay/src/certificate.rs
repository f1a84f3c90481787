//! The card's authentication certificate: the DER the TLS client presents, and the parsed
//! fields callers need (professional id, names, profession, validity, key). CPS subjects have a
//! multi-valued, non-DER-sorted last RDN (`CN=<id>+SN=<surname>+GN=<given name>`); x509-parser
//! reads it as written. The description itself is `relay_client::describe_certificate`, which
//! the gateway also applies to a CPS agent's certificate.

use ehealth_proto::cps::v1::GetAuthenticationCertificateResponse;
pub(crate) use relay_client::KeyKind;

use crate::error::RelayError;
use crate::scheme::Scheme;

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
