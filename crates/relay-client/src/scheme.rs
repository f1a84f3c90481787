//! The TLS signature schemes a relay signs with, as both sides of `cps.v1.CpsRelay` name them.

use ehealth_proto::cps::v1::SignatureScheme;

/// A TLS signature scheme (RFC 8446 §4.2.3 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// RSASSA-PKCS1-v1_5 SHA-256: the seed's SHA256WithRSA, the only scheme of a CPS3 card.
    RsaPkcs1Sha256,
    /// RSASSA-PSS SHA-256, MGF1 SHA-256, salt 32 bytes.
    RsaPssSha256,
    /// ECDSA P-256 SHA-256, DER signature.
    EcdsaP256Sha256,
}

impl Scheme {
    /// The scheme of a `cps.v1.SignatureScheme` value; `None` for unspecified or unknown ones.
    pub fn from_proto(value: i32) -> Option<Scheme> {
        match SignatureScheme::try_from(value).ok()? {
            SignatureScheme::RsaPkcs1Sha256 => Some(Scheme::RsaPkcs1Sha256),
            SignatureScheme::RsaPssSha256 => Some(Scheme::RsaPssSha256),
            SignatureScheme::EcdsaP256Sha256 => Some(Scheme::EcdsaP256Sha256),
            SignatureScheme::Unspecified => None,
        }
    }

    /// The `cps.v1.SignatureScheme` value.
    pub fn to_proto(self) -> SignatureScheme {
        match self {
            Scheme::RsaPkcs1Sha256 => SignatureScheme::RsaPkcs1Sha256,
            Scheme::RsaPssSha256 => SignatureScheme::RsaPssSha256,
            Scheme::EcdsaP256Sha256 => SignatureScheme::EcdsaP256Sha256,
        }
    }

    /// The RFC 8446 name, e.g. `rsa_pss_rsae_sha256`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::RsaPkcs1Sha256 => "rsa_pkcs1_sha256",
            Scheme::RsaPssSha256 => "rsa_pss_rsae_sha256",
            Scheme::EcdsaP256Sha256 => "ecdsa_secp256r1_sha256",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_scheme_is_refused() {
        assert_eq!(Scheme::from_proto(0), None);
        assert_eq!(Scheme::from_proto(99), None);
        assert_eq!(Scheme::from_proto(1), Some(Scheme::RsaPkcs1Sha256));
    }
}
