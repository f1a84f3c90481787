//! The `x5c` certificate chain of the AORTA Stelseltoken (SPEC.md §3.1 precondition), checked
//! as a PKI path (RFC 5280 §6, the parts that apply to a signing certificate), not only
//! signature by signature: every certificate within its validity; each certificate's issuer
//! name equals the next one's subject and its signature verifies with the next one's key; every
//! issuing certificate is a CA (basicConstraints `cA`, `keyCertSign` when key usage is present,
//! path length respected); the leaf is not a CA and may sign (`digitalSignature` when key usage
//! is present); and the chain ends at a configured trust anchor (the last certificate is one,
//! or is issued by one that is a CA).

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::prelude::*;

fn oid_alg(oid: &str) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match oid {
        "1.2.840.113549.1.1.11" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "1.2.840.113549.1.1.12" => &signature::RSA_PKCS1_2048_8192_SHA384,
        "1.2.840.113549.1.1.13" => &signature::RSA_PKCS1_2048_8192_SHA512,
        "1.2.840.10045.4.3.2" => &signature::ECDSA_P256_SHA256_ASN1,
        "1.2.840.10045.4.3.3" => &signature::ECDSA_P384_SHA384_ASN1,
        _ => return None,
    })
}

/// Is `cert` signed by the key of `issuer`?
fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    let Some(alg) = oid_alg(&cert.signature_algorithm.algorithm.to_id_string()) else {
        return false;
    };
    let key = issuer.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(alg, key)
        .verify(cert.tbs_certificate.as_ref(), cert.signature_value.data.as_ref())
        .is_ok()
}

/// `Some(path length constraint)` when `cert` may issue certificates; `None` otherwise.
fn ca_constraint(cert: &X509Certificate<'_>) -> Option<Option<u32>> {
    let bc = cert.basic_constraints().ok()??;
    if !bc.value.ca {
        return None;
    }
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => None,
        Ok(_) => Some(bc.value.path_len_constraint),
        Err(_) => None,
    }
}

fn valid_at(cert: &X509Certificate<'_>, now: i64) -> bool {
    cert.validity().not_before.timestamp() <= now && now <= cert.validity().not_after.timestamp()
}

/// Checks `chain` (DER, leaf first) against `anchors` (DER) at `now` (Unix seconds).
pub(crate) fn verify_chain(chain: &[Vec<u8>], anchors: &[Vec<u8>], now: u64) -> Result<(), String> {
    let now = now as i64;
    let certs: Vec<X509Certificate<'_>> = chain
        .iter()
        .map(|d| X509Certificate::from_der(d).map(|(_, c)| c))
        .collect::<Result<_, _>>()
        .map_err(|_| "x5c bevat een ongeldig certificaat".to_owned())?;
    let anchors: Vec<X509Certificate<'_>> = anchors
        .iter()
        .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
        .collect();
    let leaf = certs.first().ok_or("x5c ontbreekt")?;
    if certs.iter().any(|c| !valid_at(c, now)) {
        return Err("certificaat in x5c is niet (meer) geldig".into());
    }
    if leaf
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca)
    {
        return Err("het ondertekenende certificaat in x5c is een CA-certificaat".into());
    }
    if let Ok(Some(ku)) = leaf.key_usage()
        && !ku.value.digital_signature()
    {
        return Err("het ondertekenende certificaat in x5c mag niet ondertekenen (key usage)".into());
    }
    for (i, pair) in certs.windows(2).enumerate() {
        let (child, parent) = (&pair[0], &pair[1]);
        if child.issuer().as_raw() != parent.subject().as_raw() || !signed_by(child, parent) {
            return Err("x5c-keten is niet aaneengesloten".into());
        }
        match ca_constraint(parent) {
            None => return Err("een uitgevend certificaat in x5c is geen CA".into()),
            // `i` CA certificates lie between this parent and the leaf.
            Some(Some(max)) if (i as u64) > u64::from(max) => {
                return Err("x5c-keten is langer dan een CA toestaat (path length)".into());
            }
            Some(_) => {}
        }
    }
    let last = certs.last().ok_or("x5c ontbreekt")?;
    let intermediates = certs.len().saturating_sub(1) as u64;
    let anchored = anchors.iter().any(|a| {
        if a.tbs_certificate.as_ref() == last.tbs_certificate.as_ref() {
            return true;
        }
        let issued = last.issuer().as_raw() == a.subject().as_raw() && signed_by(last, a);
        let ca_ok = match ca_constraint(a) {
            None => false,
            Some(None) => true,
            Some(Some(max)) => intermediates <= u64::from(max),
        };
        issued && ca_ok && valid_at(a, now)
    });
    if !anchored {
        return Err("x5c-keten leidt niet naar een vertrouwd AORTA-stelselcertificaat".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

    fn now() -> u64 {
        crate::assertion::unix_now()
    }

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        der: Vec<u8>,
    }

    fn params(cn: &str, ca: bool, usages: Vec<KeyUsagePurpose>) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = if ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        p.key_usages = usages;
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2100, 1, 1);
        p
    }

    fn root(cn: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let params = params(cn, true, vec![KeyUsagePurpose::KeyCertSign]);
        let der = params.self_signed(&key).expect("cert").der().to_vec();
        Ca { params, key, der }
    }

    fn issue(by: &Ca, p: CertificateParams) -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::new(by.params.clone(), &by.key);
        (p.signed_by(&key, &issuer).expect("cert").der().to_vec(), key)
    }

    #[test]
    fn a_proper_chain_passes() {
        let ca = root("Stelsel CA");
        let (leaf, _) = issue(
            &ca,
            params("signer", false, vec![KeyUsagePurpose::DigitalSignature]),
        );
        verify_chain(
            &[leaf.clone(), ca.der.clone()],
            std::slice::from_ref(&ca.der),
            now(),
        )
        .expect("leaf + anchor");
        verify_chain(&[leaf], std::slice::from_ref(&ca.der), now()).expect("leaf issued by the anchor");
    }

    #[test]
    fn a_leaf_that_is_a_ca_or_cannot_sign_is_refused() {
        let ca = root("Stelsel CA");
        let (ca_leaf, _) = issue(&ca, params("sub CA", true, vec![KeyUsagePurpose::KeyCertSign]));
        let err =
            verify_chain(&[ca_leaf], std::slice::from_ref(&ca.der), now()).expect_err("a CA signs no tokens");
        assert!(err.contains("CA-certificaat"), "{err}");
        let (enc_only, _) = issue(
            &ca,
            params("signer", false, vec![KeyUsagePurpose::KeyEncipherment]),
        );
        let err = verify_chain(&[enc_only], std::slice::from_ref(&ca.der), now()).expect_err("key usage");
        assert!(err.contains("key usage"), "{err}");
    }

    #[test]
    fn an_issuer_that_is_not_a_ca_is_refused() {
        let ca = root("Stelsel CA");
        let (mid_der, mid_key) = issue(
            &ca,
            params("not a CA", false, vec![KeyUsagePurpose::DigitalSignature]),
        );
        let mid = Ca {
            params: params("not a CA", false, vec![KeyUsagePurpose::DigitalSignature]),
            key: mid_key,
            der: mid_der.clone(),
        };
        let (leaf, _) = issue(
            &mid,
            params("signer", false, vec![KeyUsagePurpose::DigitalSignature]),
        );
        let err = verify_chain(
            &[leaf, mid_der, ca.der.clone()],
            std::slice::from_ref(&ca.der),
            now(),
        )
        .expect_err("signed by a leaf");
        assert!(err.contains("geen CA"), "{err}");
    }

    #[test]
    fn names_must_chain_and_the_anchor_must_be_trusted() {
        let ca = root("Stelsel CA");
        let other = root("Other CA");
        let (leaf, _) = issue(
            &ca,
            params("signer", false, vec![KeyUsagePurpose::DigitalSignature]),
        );
        let err = verify_chain(
            &[leaf.clone(), other.der.clone()],
            std::slice::from_ref(&other.der),
            now(),
        )
        .expect_err("wrong issuer");
        assert!(err.contains("aaneengesloten"), "{err}");
        let err = verify_chain(&[leaf], std::slice::from_ref(&other.der), now()).expect_err("untrusted");
        assert!(err.contains("vertrouwd"), "{err}");
    }

    #[test]
    fn expired_certificates_are_refused() {
        let ca = root("Stelsel CA");
        let (leaf, _) = issue(
            &ca,
            params("signer", false, vec![KeyUsagePurpose::DigitalSignature]),
        );
        let err = verify_chain(&[leaf], std::slice::from_ref(&ca.der), now() + 100 * 365 * 86400)
            .expect_err("expired");
        assert!(err.contains("geldig"), "{err}");
    }
}
