//! Software key backend for development and `make run`: a PEM private key (PKCS#8 or PKCS#1)
//! and the certificate chain, and optionally a second pair for the card's signature key
//! (issue 16: XAdES). It has no PIN and is always "logged in".

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;

use super::{Card, CardStatus, Pin};
use crate::certificate::{CardCertificate, KeyKind, schemes_for};
use crate::error::RelayError;
use crate::scheme::Scheme;

enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

pub(crate) struct SoftwareCard {
    key: Key,
    certificate: CardCertificate,
    kind: KeyKind,
    rng: SystemRandom,
    /// The signature key (RSA) and its certificate.
    signature: Option<(RsaKeyPair, CardCertificate)>,
}

impl SoftwareCard {
    /// The authentication pair, and the signature pair when given (chain, key).
    pub(crate) fn load(
        chain: &Path,
        key: &Path,
        signature: Option<(&Path, &Path)>,
    ) -> Result<SoftwareCard, RelayError> {
        let mut card = Self::load_pair(chain, key)?;
        if let Some((chain, key)) = signature {
            let pair = Self::load_pair(chain, key)?;
            let Key::Rsa(rsa) = pair.key else {
                return Err(RelayError::NoToken {
                    reason: format!("{}: the signature key must be RSA", key.display()),
                });
            };
            card.signature = Some((rsa, pair.certificate));
        }
        Ok(card)
    }

    fn load_pair(chain: &Path, key: &Path) -> Result<SoftwareCard, RelayError> {
        let certs = service_kit::tls::load_certs(chain).map_err(|e| RelayError::NoToken {
            reason: e.to_string(),
        })?;
        let certificate = CardCertificate {
            leaf: certs[0].to_vec(),
            chain: certs[1..].iter().map(|c| c.to_vec()).collect(),
        };
        let der = service_kit::tls::load_private_key(key).map_err(|e| RelayError::NoToken {
            reason: e.to_string(),
        })?;
        let kind = certificate.key_kind()?;
        let bad_key = |e: aws_lc_rs::error::KeyRejected| RelayError::NoToken {
            reason: format!("{}: key rejected ({e})", key.display()),
        };
        let key = match (&der, kind) {
            (PrivateKeyDer::Pkcs8(p), KeyKind::Rsa { .. }) => {
                Key::Rsa(RsaKeyPair::from_pkcs8(p.secret_pkcs8_der()).map_err(bad_key)?)
            }
            (PrivateKeyDer::Pkcs1(p), KeyKind::Rsa { .. }) => {
                Key::Rsa(RsaKeyPair::from_der(p.secret_pkcs1_der()).map_err(bad_key)?)
            }
            (PrivateKeyDer::Pkcs8(p), KeyKind::EcP256) => Key::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, p.secret_pkcs8_der())
                    .map_err(bad_key)?,
            ),
            _ => {
                return Err(RelayError::NoToken {
                    reason: format!(
                        "{}: key format does not match the certificate's key",
                        key.display()
                    ),
                });
            }
        };
        let card = SoftwareCard {
            key,
            certificate,
            kind,
            rng: SystemRandom::new(),
            signature: None,
        };
        // The key must be the certificate's: sign and verify once.
        card.check_pair()?;
        Ok(card)
    }

    fn check_pair(&self) -> Result<(), RelayError> {
        let probe = b"cps-relay key/certificate pairing check";
        let (scheme, alg): (Scheme, &dyn signature::VerificationAlgorithm) = match self.kind {
            KeyKind::Rsa { .. } => (Scheme::RsaPkcs1Sha256, &signature::RSA_PKCS1_2048_8192_SHA256),
            KeyKind::EcP256 => (Scheme::EcdsaP256Sha256, &signature::ECDSA_P256_SHA256_ASN1),
        };
        let sig = self.sign(scheme, probe)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&self.certificate.leaf)
            .map_err(|e| RelayError::Device(e.to_string()))?;
        signature::UnparsedPublicKey::new(alg, cert.public_key().subject_public_key.data.as_ref())
            .verify(probe, &sig)
            .map_err(|_| RelayError::NoToken {
                reason: "the private key does not match the certificate".into(),
            })
    }
}

impl Card for SoftwareCard {
    fn certificate(&self) -> Result<CardCertificate, RelayError> {
        Ok(self.certificate.clone())
    }

    fn schemes(&self) -> Result<Vec<Scheme>, RelayError> {
        Ok(schemes_for(self.kind, true, true, true))
    }

    fn status(&self) -> Result<CardStatus, RelayError> {
        Ok(CardStatus {
            backend: "software",
            token_present: true,
            token_label: "software key".into(),
            logged_in: true,
            ..CardStatus::default()
        })
    }

    fn login(&self, _pin: &Pin, _confirm_final_try: bool) -> Result<(), RelayError> {
        Err(RelayError::NoPin("the software key backend is always unlocked"))
    }

    fn logout(&self) -> Result<(), RelayError> {
        Err(RelayError::NoPin("the software key backend is always unlocked"))
    }

    fn sign(&self, scheme: Scheme, data: &[u8]) -> Result<Vec<u8>, RelayError> {
        let failed = |_| RelayError::Device("software signature failed".into());
        match (&self.key, scheme) {
            (Key::Rsa(k), Scheme::RsaPkcs1Sha256 | Scheme::RsaPssSha256) => {
                let pad: &dyn signature::RsaEncoding = if scheme == Scheme::RsaPkcs1Sha256 {
                    &signature::RSA_PKCS1_SHA256
                } else {
                    &signature::RSA_PSS_SHA256
                };
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(pad, &self.rng, data, &mut sig).map_err(failed)?;
                Ok(sig)
            }
            (Key::Ec(k), Scheme::EcdsaP256Sha256) => {
                Ok(k.sign(&self.rng, data).map_err(failed)?.as_ref().to_vec())
            }
            _ => Err(RelayError::unsupported(scheme, &self.schemes()?)),
        }
    }

    fn signature_certificate(&self) -> Result<CardCertificate, RelayError> {
        match &self.signature {
            Some((_, c)) => Ok(c.clone()),
            None => Err(no_signature_key()),
        }
    }

    fn sign_with_signature_key(&self, data: &[u8]) -> Result<Vec<u8>, RelayError> {
        let (k, _) = self.signature.as_ref().ok_or_else(no_signature_key)?;
        let mut sig = vec![0u8; k.public_modulus_len()];
        k.sign(&signature::RSA_PKCS1_SHA256, &self.rng, data, &mut sig)
            .map_err(|_| RelayError::Device("software signature failed".into()))?;
        Ok(sig)
    }
}

fn no_signature_key() -> RelayError {
    RelayError::NoSignatureKey(
        "set backend.software.signature_certificate_chain and backend.software.signature_private_key".into(),
    )
}
