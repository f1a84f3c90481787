//! The signature document of a TD2.1 submission (IHE Document Digital Signature, as in the
//! official example `TD2.1-SignatureXades.xml`): an XAdES signature whose `ds:Manifest`
//! (`Id="IHEManifest"`) lists the digest of every submitted document as `urn:oid:<uniqueId>`,
//! submitted as one more DocumentEntry with its `signs` association to the submission set.
//!
//! How it is signed:
//! - XML-DSig with inclusive Canonical XML 1.0 (`REC-xml-c14n-20010315`), RSA PKCS#1 v1.5 with
//!   SHA-256, SHA-256 digests; two signed references: the Manifest and the XAdES 1.3.2
//!   `SignedProperties` (signing time, signing certificate digest and issuer/serial).
//! - The document is written directly in canonical form (no whitespace between elements,
//!   start/end tag pairs, sorted attributes, canonical escapes), so the digests are computed
//!   over exactly the bytes Canonical XML produces, without a general canonicalizer.
//! - Who signs (issue 16): in direct mode the professional's CPS card, with its *signature*
//!   key (nonRepudiation) through cps-relay's purpose-limited SignXadesSignedInfo, which
//!   accepts exactly the [`UnsignedSignature::signed_info`] this module writes; a local
//!   [`Signer`] (software key) serves tests and tools. The signing certificate goes into
//!   KeyInfo and, with its issuer as a full RFC 4514 name ([`crate::dn`]), into the XAdES
//!   SigningCertificate.
//!
//! The result verifies with `xmlsec1 --verify` (see the tests).

use std::fmt::Write as _;

use std::path::Path;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::xds::{Code, DocumentEntry, Dtm, UniqueId};
use crate::xml::{self, esc, esc_attr, ns};

/// Why a signer cannot be set up or a signature document cannot be made. Never carries key
/// material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XadesError {
    /// The key file cannot be read.
    #[error("cannot read a private key from {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The certificate file cannot be read.
    #[error("cannot read certificates from {path}: {reason}")]
    CertificateFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key is not RSA, or not PKCS#8.
    #[error("the signing key is not an RSA PKCS#8 key: {0}")]
    Key(String),
    /// The certificate is not X.509 DER.
    #[error("the signing certificate cannot be parsed: {0}")]
    Certificate(String),
    /// The signer refused or failed.
    #[error("{0}")]
    Sign(String),
}

/// classCode of the signature document's entry.
pub const CLASS_CODE: (&str, &str, &str) =
    ("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN", "Digital Signature");
/// typeCode of the signature document's entry.
pub const TYPE_CODE: (&str, &str, &str) = ("E1762", "ASTM", "Full Document");
/// formatCode of the signature document's entry.
pub const FORMAT_CODE: (&str, &str, &str) = (
    "http://www.w3.org/2000/09/xmldsig#",
    "URN",
    "Default Signature Style",
);
/// eventCode of the signature document's entry.
pub const EVENT_CODE: (&str, &str, &str) = ("1.2.840.10065.1.12.1.14", "1.2.840.10065.1.12", "Source");
/// The `purposeOfSignature` property (ASTM E1762 "Source").
pub const PURPOSE_OF_SIGNATURE: &str = "1.2.840.10065.1.12.1.14";

fn code((c, s, d): (&str, &str, &str)) -> Code {
    Code {
        code: c.into(),
        scheme: s.into(),
        display: d.into(),
    }
}

/// Signs with RSA PKCS#1 v1.5 SHA-256.
pub trait Signer: Send + Sync {
    /// The signature of `data` (the signer hashes).
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, XadesError>;
    /// The signing certificate (DER).
    fn certificate(&self) -> &[u8];
}

/// A software RSA key (PKCS#8) and its certificate.
pub struct SoftwareSigner {
    key: aws_lc_rs::signature::RsaKeyPair,
    cert: Vec<u8>,
}

impl std::fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("SoftwareSigner")
            .field("cert_len", &self.cert.len())
            .finish()
    }
}

impl SoftwareSigner {
    /// A PKCS#8 DER RSA key and its DER certificate.
    pub fn new(pkcs8_der: &[u8], cert_der: Vec<u8>) -> Result<Self, XadesError> {
        let key = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(pkcs8_der)
            .map_err(|e| XadesError::Key(e.to_string()))?;
        Ok(SoftwareSigner { key, cert: cert_der })
    }

    /// From PEM files: the key (PKCS#8) and the certificate (first of the file).
    pub fn from_pem_files(key: &Path, cert: &Path) -> Result<Self, XadesError> {
        // The errors name the files, never their content.
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| XadesError::KeyFile {
            path: key.display().to_string(),
            reason: e.to_string(),
        })?;
        let cert_error = |reason: String| XadesError::CertificateFile {
            path: cert.display().to_string(),
            reason,
        };
        let first = CertificateDer::pem_file_iter(cert)
            .map_err(|e| cert_error(e.to_string()))?
            .next()
            .ok_or_else(|| cert_error("no CERTIFICATE block".into()))?
            .map_err(|e| cert_error(e.to_string()))?;
        SoftwareSigner::new(key_der.secret_der(), first.to_vec())
    }
}

impl Signer for SoftwareSigner {
    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, XadesError> {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                data,
                &mut sig,
            )
            .map_err(|_| XadesError::Sign("RSA signature failed".into()))?;
        Ok(sig)
    }

    fn certificate(&self) -> &[u8] {
        &self.cert
    }
}

fn sha256_b64(data: &[u8]) -> String {
    B64.encode(digest::digest(&digest::SHA256, data))
}

const C14N: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";

fn digest_method() -> String {
    format!(r#"<DigestMethod Algorithm="{SHA256}"></DigestMethod>"#)
}

/// Big-endian unsigned bytes as a decimal string.
fn decimal(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = vec![0];
    for &b in bytes {
        let mut carry = b as u32;
        for d in digits.iter_mut() {
            let v = *d as u32 * 256 + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        while carry > 0 {
            digits.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    while digits.len() > 1 && digits.last() == Some(&0) {
        digits.pop();
    }
    digits.iter().rev().map(|d| char::from(b'0' + d)).collect()
}

/// A XAdES signature document built up to its signature: what a signer is asked to sign
/// ([`UnsignedSignature::signed_info`]) and everything else around it. It lets a remote signer
/// (the professional's card through cps-relay, issue 16) sign asynchronously.
#[derive(Debug, Clone)]
pub struct UnsignedSignature {
    sig_id: String,
    signed_info_inner: String,
    signed_info_c14n: String,
    manifest_inner: String,
    signed_props_inner: String,
    cert: Vec<u8>,
}

impl UnsignedSignature {
    /// The canonical `SignedInfo` (inclusive C14N 1.0): the exact bytes the RSA PKCS#1 v1.5
    /// SHA-256 signature covers, and the only shape cps-relay's SignXadesSignedInfo accepts.
    pub fn signed_info(&self) -> &[u8] {
        self.signed_info_c14n.as_bytes()
    }

    /// The signature document, with `signature` (the RSA signature of
    /// [`UnsignedSignature::signed_info`]) as SignatureValue and the signing certificate in
    /// KeyInfo.
    pub fn finish(self, signature: &[u8]) -> String {
        format!(
            concat!(
                r#"<Signature xmlns="{dsig}" Id="{sig_id}">"#,
                "<SignedInfo>{si}</SignedInfo>",
                "<SignatureValue>{sv}</SignatureValue>",
                "<KeyInfo><X509Data><X509Certificate>{cert}</X509Certificate></X509Data></KeyInfo>",
                r#"<Object><Manifest Id="IHEManifest">{mi}</Manifest></Object>"#,
                r##"<Object><SignatureProperties><SignatureProperty Id="purposeOfSignature" Target="#{sig_id}">{pos}</SignatureProperty></SignatureProperties></Object>"##,
                r##"<Object><xades:QualifyingProperties xmlns:xades="{xades}" Target="#{sig_id}"><xades:SignedProperties Id="S0-SignedProperties">{spi}</xades:SignedProperties></xades:QualifyingProperties></Object>"##,
                "</Signature>"
            ),
            dsig = ns::DSIG,
            sig_id = self.sig_id,
            si = self.signed_info_inner,
            sv = B64.encode(signature),
            cert = B64.encode(&self.cert),
            mi = self.manifest_inner,
            pos = PURPOSE_OF_SIGNATURE,
            xades = ns::XADES,
            spi = self.signed_props_inner,
        )
    }
}

/// The signature document over `documents` (unique id, content), to be signed by the key of
/// `certificate_der` (DER).
pub fn prepare(
    documents: &[(&UniqueId, &Bytes)],
    certificate_der: &[u8],
    now: time::OffsetDateTime,
) -> Result<UnsignedSignature, XadesError> {
    let sig_id = format!("sig-{}", uuid::Uuid::new_v4());
    let cert = certificate_der;
    let (issuer, serial) = {
        use x509_parser::prelude::FromDer;
        let (_, c) = x509_parser::certificate::X509Certificate::from_der(cert)
            .map_err(|e| XadesError::Certificate(e.to_string()))?;
        // Every RDN, RFC 4514 (XML-DSig's X509IssuerName is an RFC 4514 string).
        (crate::dn::rfc4514(c.issuer()), decimal(c.raw_serial()))
    };

    // Manifest (inner content, then canonical apex for the digest).
    let mut manifest_inner = String::new();
    for (uid, content) in documents {
        let uri = format!("urn:oid:{}", uid.as_str().replace('^', "%5E"));
        let _ = write!(
            manifest_inner,
            r#"<Reference URI="{}">{}<DigestValue>{}</DigestValue></Reference>"#,
            esc_attr(&uri),
            digest_method(),
            sha256_b64(content)
        );
    }
    let manifest_c14n = format!(
        r#"<Manifest xmlns="{}" Id="IHEManifest">{manifest_inner}</Manifest>"#,
        ns::DSIG
    );

    let signed_props_inner = format!(
        concat!(
            "<xades:SignedSignatureProperties><xades:SigningTime>{time}</xades:SigningTime>",
            "<xades:SigningCertificate><xades:Cert><xades:CertDigest>{dm}<DigestValue>{cd}</DigestValue></xades:CertDigest>",
            "<xades:IssuerSerial><X509IssuerName>{issuer}</X509IssuerName><X509SerialNumber>{serial}</X509SerialNumber></xades:IssuerSerial>",
            "</xades:Cert></xades:SigningCertificate>",
            "<xades:SignaturePolicyIdentifier><xades:SignaturePolicyImplied></xades:SignaturePolicyImplied></xades:SignaturePolicyIdentifier>",
            "</xades:SignedSignatureProperties>"
        ),
        time = xml::date_time(now),
        dm = digest_method(),
        cd = sha256_b64(cert),
        issuer = esc(&issuer),
        serial = serial,
    );
    let signed_props_c14n = format!(
        r#"<xades:SignedProperties xmlns="{}" xmlns:xades="{}" Id="S0-SignedProperties">{signed_props_inner}</xades:SignedProperties>"#,
        ns::DSIG,
        ns::XADES
    );

    let signed_info_inner = format!(
        concat!(
            r#"<CanonicalizationMethod Algorithm="{c14n}"></CanonicalizationMethod>"#,
            r#"<SignatureMethod Algorithm="{rsa}"></SignatureMethod>"#,
            r##"<Reference Type="http://www.w3.org/2000/09/xmldsig#Manifest" URI="#IHEManifest">{dm}<DigestValue>{md}</DigestValue></Reference>"##,
            r##"<Reference Type="http://uri.etsi.org/01903#SignedProperties" URI="#S0-SignedProperties">{dm}<DigestValue>{pd}</DigestValue></Reference>"##
        ),
        c14n = C14N,
        rsa = RSA_SHA256,
        dm = digest_method(),
        md = sha256_b64(manifest_c14n.as_bytes()),
        pd = sha256_b64(signed_props_c14n.as_bytes()),
    );
    let signed_info_c14n = format!(
        r#"<SignedInfo xmlns="{}">{signed_info_inner}</SignedInfo>"#,
        ns::DSIG
    );
    Ok(UnsignedSignature {
        sig_id,
        signed_info_inner,
        signed_info_c14n,
        manifest_inner,
        signed_props_inner,
        cert: cert.to_vec(),
    })
}

/// The signed XAdES document over `documents` (unique id, content), signed by a local
/// [`Signer`].
pub fn signature_xml(
    documents: &[(&UniqueId, &Bytes)],
    signer: &dyn Signer,
    now: time::OffsetDateTime,
) -> Result<String, XadesError> {
    let unsigned = prepare(documents, signer.certificate(), now)?;
    let signature = signer.sign(unsigned.signed_info())?;
    Ok(unsigned.finish(&signature))
}

/// The signature document's DocumentEntry (metadata of the official example's `Signature01`).
pub fn signature_entry(first: &DocumentEntry, now: time::OffsetDateTime) -> DocumentEntry {
    DocumentEntry {
        entry_id: "Signature01".into(),
        unique_id: UniqueId::generate(),
        patient: first.patient.clone(),
        title: "Source".into(),
        comments: None,
        class_code: code(CLASS_CODE),
        type_code: code(TYPE_CODE),
        format_code: code(FORMAT_CODE),
        confidentiality_codes: vec![
            code(("N", "2.16.840.1.113883.5.25", "Normal")),
            code((
                "MASQUE_PS",
                "1.2.250.1.213.1.1.4.13",
                "Masqué aux professionnels de santé",
            )),
            code((
                "INVISIBLE_PATIENT",
                "1.2.250.1.213.1.1.4.13",
                "Non visible par le patient",
            )),
        ],
        healthcare_facility_type_code: first.healthcare_facility_type_code.clone(),
        practice_setting_code: first.practice_setting_code.clone(),
        event_codes: vec![code(EVENT_CODE)],
        language_code: "art".into(),
        mime_type: "text/xml".into(),
        creation_time: Dtm::from_offset_datetime(now),
        service_start_time: Some(Dtm::from_offset_datetime(now)),
        service_stop_time: Some(Dtm::from_offset_datetime(now)),
        authors: first.authors.iter().take(1).cloned().collect(),
        legal_authenticator: first
            .legal_authenticator
            .clone()
            .or_else(|| first.authors.first().cloned()),
    }
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimal_serials() {
        assert_eq!(decimal(&[]), "0");
        assert_eq!(decimal(&[0x01, 0x00]), "256");
        assert_eq!(decimal(&[0xff, 0xff, 0xff, 0xff]), "4294967295");
    }
}
