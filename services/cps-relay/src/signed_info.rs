//! The one document the card's *signature* key signs (issue 16): the canonical XAdES
//! `SignedInfo` of a DMP submission's signature document (IHE DSG, as the official TD2.1
//! example `TD2.1-SignatureXades.xml`, with SHA-256 and rsa-sha256).
//!
//! **Decision — exact form, not a parser.** An XML parser accepts many spellings of one
//! element; the relay accepts exactly one: the inclusive Canonical XML 1.0 bytes dmp-gateway
//! writes (`dmp_protocol::xades`), which is also what the XML-DSig signature covers. The only
//! free parts are the two SHA-256 digests (base64, 44 characters). Anything else — another
//! algorithm, a third Reference, a reference to something other than the `IHEManifest`
//! Manifest and the `S0-SignedProperties` SignedProperties, whitespace, comments, a prefix —
//! is refused, so the signature key cannot be made to sign arbitrary content through this door.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::RelayError;

/// The canonical SignedInfo around its two digests: `PARTS[0] manifest PARTS[1] properties
/// PARTS[2]`.
const PARTS: [&str; 3] = [
    concat!(
        r#"<SignedInfo xmlns="http://www.w3.org/2000/09/xmldsig#">"#,
        r#"<CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315"></CanonicalizationMethod>"#,
        r#"<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"></SignatureMethod>"#,
        r##"<Reference Type="http://www.w3.org/2000/09/xmldsig#Manifest" URI="#IHEManifest">"##,
        r#"<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"></DigestMethod>"#,
        "<DigestValue>"
    ),
    concat!(
        "</DigestValue></Reference>",
        r##"<Reference Type="http://uri.etsi.org/01903#SignedProperties" URI="#S0-SignedProperties">"##,
        r#"<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"></DigestMethod>"#,
        "<DigestValue>"
    ),
    "</DigestValue></Reference></SignedInfo>",
];

/// Base64 of a SHA-256 digest: 43 characters and one `=`.
const DIGEST_B64_LEN: usize = 44;

/// What a valid SignedInfo commits to (for the audit): the two digests, hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XadesSignedInfo {
    /// SHA-256 of the canonical Manifest (which lists the documents' digests).
    pub(crate) manifest_sha256: String,
    /// SHA-256 of the canonical XAdES SignedProperties (signing time and certificate).
    pub(crate) signed_properties_sha256: String,
}

fn refused(why: impl Into<String>) -> RelayError {
    RelayError::NotXadesSignedInfo(why.into())
}

/// Checks that `data` is exactly a canonical XAdES SignedInfo of a DMP submission.
pub(crate) fn check(data: &[u8]) -> Result<XadesSignedInfo, RelayError> {
    let expected_len = PARTS.iter().map(|p| p.len()).sum::<usize>() + 2 * DIGEST_B64_LEN;
    if data.len() != expected_len {
        return Err(refused(format!(
            "{} bytes, not the {expected_len} of a canonical SignedInfo with two SHA-256 references \
             (#IHEManifest, #S0-SignedProperties)",
            data.len()
        )));
    }
    let mut rest = data;
    let mut digests = Vec::with_capacity(2);
    for (i, part) in PARTS.iter().enumerate() {
        let Some(after) = rest.strip_prefix(part.as_bytes()) else {
            return Err(refused(match i {
                0 => {
                    "it does not start with the canonical SignedInfo (C14N 1.0, rsa-sha256) and its \
                      SHA-256 Reference to #IHEManifest"
                }
                1 => "the second Reference is not the SHA-256 Reference to #S0-SignedProperties",
                _ => "something follows the two References",
            }));
        };
        rest = after;
        if i < 2 {
            let (value, after) = rest.split_at(DIGEST_B64_LEN.min(rest.len()));
            let digest =
                B64.decode(value).ok().filter(|d| d.len() == 32).ok_or_else(|| {
                    refused(format!("DigestValue {} is not a base64 SHA-256 digest", i + 1))
                })?;
            digests.push(hex::encode(digest));
            rest = after;
        }
    }
    let [manifest_sha256, signed_properties_sha256]: [String; 2] = digests
        .try_into()
        .map_err(|_| RelayError::Internal("two digests expected".into()))?;
    Ok(XadesSignedInfo {
        manifest_sha256,
        signed_properties_sha256,
    })
}

#[cfg(test)]
pub(crate) fn sample(manifest: [u8; 32], properties: [u8; 32]) -> Vec<u8> {
    format!(
        "{}{}{}{}{}",
        PARTS[0],
        B64.encode(manifest),
        PARTS[1],
        B64.encode(properties),
        PARTS[2]
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_canonical_form_and_reads_its_digests() {
        let ok = check(&sample([1; 32], [2; 32])).expect("canonical SignedInfo");
        assert_eq!(ok.manifest_sha256, "01".repeat(32));
        assert_eq!(ok.signed_properties_sha256, "02".repeat(32));
    }

    #[test]
    fn refuses_anything_else() {
        let good = String::from_utf8(sample([1; 32], [2; 32])).expect("utf8");
        let cases = [
            // TLS handshake data, a document, nothing.
            b"\x16\x03\x01\x00\x10hello".to_vec(),
            b"<ClinicalDocument/>".to_vec(),
            Vec::new(),
            // SHA-1 instead of SHA-256 (same length would not even be reached).
            good.replace("xmlenc#sha256", "xmldsig#sha1").into_bytes(),
            // Another reference target.
            good.replace("#IHEManifest", "#OtherThing_").into_bytes(),
            good.replace("#S0-SignedProperties", "#S0-SignedPropertiez")
                .into_bytes(),
            // Whitespace, a prefix.
            good.replacen("><", "> <", 1).into_bytes(),
            good.replace("SignedInfo", "ds:SignedInfo").into_bytes(),
            // A digest that is not base64 of 32 bytes.
            good.replace(&B64.encode([1u8; 32]), &"!".repeat(44)).into_bytes(),
            // Trailing data.
            [good.as_bytes(), b"x"].concat(),
        ];
        for (i, c) in cases.iter().enumerate() {
            let e = check(c).expect_err(&format!("case {i} must be refused"));
            assert!(matches!(e, RelayError::NotXadesSignedInfo(_)), "case {i}: {e}");
        }
        // Same length, one character changed in the fixed part.
        let mut tweaked = good.into_bytes();
        tweaked[20] ^= 0x01;
        assert!(check(&tweaked).is_err());
    }
}
