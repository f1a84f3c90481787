//! XAdES by the right signer (issue 16), on real SoftHSM2 cards loaded as IGC-Santé issues a
//! CPS card (authentication key 01, signature key 02), over mutual TLS: SignXadesSignedInfo
//! signs exactly the canonical SignedInfo dmp-protocol builds, with the signature key only;
//! it refuses anything else, refuses an authentication key, and the authentication path
//! refuses a signature key; a CKA_ALWAYS_AUTHENTICATE key gets its context-specific login;
//! every XAdES signature is audited.

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use audit_log::AuditLog;
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use bytes::Bytes;
use cps_relay::{BackendKind, Config};
use dev_support::devpki::{DevPki, files};
use dev_support::softhsm::{AUTH_ID, SIGN_ID, SoftHsm};
use dmp_protocol::xds::UniqueId;
use relay_client::{CpsRelayClient, RelayTls, Scheme};
use support::{Relay, start};
use tonic::Code;
use x509_parser::prelude::*;

const PIN: &str = "123456";

struct Fixture {
    _dir: tempfile::TempDir,
    pki: DevPki,
    hsm: SoftHsm,
}

/// Every token of this process, provisioned before the first PKCS#11 call.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = DevPki::ensure(&dir.path().join("pki")).expect("pki");
        let hsm = SoftHsm::prepare().expect("SoftHSM2 is installed and SOFTHSM2_CONF is set");
        let auth = (pki.path(files::CPS_AUTH_KEY), pki.path(files::CPS_AUTH_CERT));
        let sign = (pki.path(files::CPS_SIGN_KEY), pki.path(files::CPS_SIGN_CERT));
        for (token, always) in [
            ("xades-card", false),
            ("xades-refusals", false),
            ("xades-purpose", false),
            ("xades-audit", false),
            ("xades-always", true),
        ] {
            hsm.init_token(token, "so-secret", PIN).expect("token init");
            hsm.import_cps_card(token, PIN, (&auth.0, &auth.1), (&sign.0, &sign.1), always)
                .expect("card import");
        }
        Fixture { _dir: dir, pki, hsm }
    })
}

/// A relay on `token`: authentication key 01, signature key 02, development mode without
/// grants (tests/session_grants.rs covers grants; the XAdES path shares their check).
fn config(token: &str) -> Config {
    let f = fixture();
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.server.drain_grace = Duration::from_millis(50);
    c.metrics.listen = None;
    if let Some(tls) = c.server.tls.as_mut() {
        tls.cert = f.pki.path(files::RELAY_SERVER_CERT);
        tls.key = f.pki.path(files::RELAY_SERVER_KEY);
        tls.client_ca = Some(f.pki.path(files::SUITE_CA));
    }
    c.backend.kind = BackendKind::Pkcs11;
    c.backend.pkcs11.module = f.hsm.module();
    c.backend.pkcs11.token_label = Some(token.into());
    c.backend.pkcs11.key_id = Some(AUTH_ID.into());
    c.backend.pkcs11.signature_key_id = Some(SIGN_ID.into());
    c.backend.pkcs11.chain = Some(f.pki.path(files::IGC_PERSONNES_CA));
    c.development = true;
    c.grants.required = false;
    c.grants.signing_key = f.pki.path(files::RELAY_GRANT_KEY);
    c.signing.server_ca = f.pki.path(files::IGC_CA_BUNDLE);
    c.signing.allowed_hosts = vec!["localhost".into()];
    c
}

fn client_as(relay: &Relay, cert: &str, key: &str) -> CpsRelayClient {
    let pki = &fixture().pki;
    let tls = RelayTls::from_files(
        &pki.path(files::SUITE_CA),
        &pki.path(cert),
        &pki.path(key),
        "localhost",
    )
    .expect("tls files");
    CpsRelayClient::connect_lazy(&format!("https://{}", relay.addr), &tls, Duration::from_secs(10))
        .expect("client")
}

fn gateway(relay: &Relay) -> CpsRelayClient {
    client_as(relay, files::GATEWAY_CLIENT_CERT, files::GATEWAY_CLIENT_KEY)
}

async fn logged_in(token: &str, audit: AuditLog) -> (Relay, CpsRelayClient) {
    let relay = start(config(token), audit).await;
    client_as(&relay, files::HOLDER_UI_CLIENT_CERT, files::HOLDER_UI_CLIENT_KEY)
        .login(PIN.into())
        .await
        .expect("login");
    let c = gateway(&relay);
    (relay, c)
}

fn leaf(path: &std::path::Path) -> Vec<u8> {
    service_kit::tls::load_certs(path).expect("certificate")[0].to_vec()
}

/// The SignedInfo dmp-gateway builds for one document, for the certificate `cert`.
fn signed_info(cert: &[u8]) -> Vec<u8> {
    let uid = UniqueId::generate();
    let content = Bytes::from_static(b"<ClinicalDocument/>");
    dmp_protocol::xades::prepare(&[(&uid, &content)], cert, ::time::OffsetDateTime::now_utc())
        .expect("prepare")
        .signed_info()
        .to_vec()
}

fn verifies(cert: &[u8], data: &[u8], signature: &[u8]) -> bool {
    let (_, c) = parse_x509_certificate(cert).expect("certificate parses");
    UnparsedPublicKey::new(
        &RSA_PKCS1_2048_8192_SHA256,
        c.public_key().subject_public_key.data.as_ref(),
    )
    .verify(data, signature)
    .is_ok()
}

#[tokio::test]
async fn signs_the_gateways_signed_info_with_the_signature_key_only() {
    let f = fixture();
    let (_relay, mut c) = logged_in("xades-card", AuditLog::disabled()).await;
    let sign_cert = leaf(&f.pki.path(files::CPS_SIGN_CERT));
    let auth_cert = leaf(&f.pki.path(files::CPS_AUTH_CERT));

    let served = c.signature_certificate().await.expect("signature certificate");
    assert_eq!(served.leaf_der, sign_cert);
    assert_eq!(served.chain_der, vec![leaf(&f.pki.path(files::IGC_PERSONNES_CA))]);

    let data = signed_info(&sign_cert);
    let answer = c
        .sign_xades_signed_info(data.clone(), None)
        .await
        .expect("the canonical SignedInfo is signed");
    assert_eq!(answer.certificate_der, sign_cert);
    assert!(
        verifies(&sign_cert, &data, &answer.signature),
        "signed by the signature key"
    );
    assert!(
        !verifies(&auth_cert, &data, &answer.signature),
        "not by the authentication key"
    );
}

#[tokio::test]
async fn refuses_anything_but_a_canonical_signed_info() {
    let f = fixture();
    let (_relay, mut c) = logged_in("xades-refusals", AuditLog::disabled()).await;
    let good = String::from_utf8(signed_info(&leaf(&f.pki.path(files::CPS_SIGN_CERT)))).expect("utf8");
    let chain: Vec<Vec<u8>> = service_kit::tls::load_certs(&f.pki.path(files::DMP_SERVER_CHAIN))
        .expect("dmp chain")
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    let refused = [
        (
            "TLS handshake data",
            cps_relay::sample_tls12_transcript(Some("localhost"), &chain),
        ),
        ("a document", b"<ClinicalDocument/>".to_vec()),
        ("a digest", vec![0x42; 32]),
        (
            "a SHA-1 reference",
            good.replace("xmlenc#sha256", "xmldsig#sha1").into_bytes(),
        ),
        (
            "a reference to something else",
            good.replace("#IHEManifest", "#OtherThing_").into_bytes(),
        ),
        (
            "a non-canonical spelling",
            good.replacen("><", ">\n<", 1).into_bytes(),
        ),
        ("trailing content", [good.as_bytes(), b"<x/>"].concat()),
    ];
    for (what, data) in refused {
        let err = c
            .sign_xades_signed_info(data, None)
            .await
            .expect_err(&format!("{what} must be refused"));
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(
            err.message().contains("not the canonical XAdES SignedInfo"),
            "{what}: {}",
            err.message()
        );
    }
    // The same relay still signs the real thing.
    c.sign_xades_signed_info(good.into_bytes(), None)
        .await
        .expect("canonical SignedInfo");
}

#[tokio::test]
async fn each_key_keeps_to_its_purpose() {
    let f = fixture();
    // The authentication key configured as signature key: no XAdES with it.
    let mut cfg = config("xades-purpose");
    cfg.backend.pkcs11.signature_key_id = Some(AUTH_ID.into());
    let relay = start(cfg, AuditLog::disabled()).await;
    client_as(&relay, files::HOLDER_UI_CLIENT_CERT, files::HOLDER_UI_CLIENT_KEY)
        .login(PIN.into())
        .await
        .expect("login");
    let err = gateway(&relay)
        .sign_xades_signed_info(signed_info(&leaf(&f.pki.path(files::CPS_AUTH_CERT))), None)
        .await
        .expect_err("the authentication key never signs XAdES");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("nonRepudiation"), "{}", err.message());
    drop(relay);

    // The signature key configured as authentication key: no TLS signature with it.
    let mut cfg = config("xades-purpose");
    cfg.backend.pkcs11.key_id = Some(SIGN_ID.into());
    cfg.backend.pkcs11.signature_key_id = None;
    let relay = start(cfg, AuditLog::disabled()).await;
    client_as(&relay, files::HOLDER_UI_CLIENT_CERT, files::HOLDER_UI_CLIENT_KEY)
        .login(PIN.into())
        .await
        .expect("login");
    let chain: Vec<Vec<u8>> = service_kit::tls::load_certs(&f.pki.path(files::DMP_SERVER_CHAIN))
        .expect("dmp chain")
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    let mut c = gateway(&relay);
    let err = c
        .sign(
            Scheme::RsaPkcs1Sha256,
            cps_relay::sample_tls12_transcript(Some("localhost"), &chain),
        )
        .await
        .expect_err("the signature key never signs a TLS handshake");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("nonRepudiation"), "{}", err.message());
    // And this relay has no signature key at all.
    let err = c
        .sign_xades_signed_info(signed_info(&leaf(&f.pki.path(files::CPS_SIGN_CERT))), None)
        .await
        .expect_err("no signature key configured");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("signature_key"), "{}", err.message());
}

#[tokio::test]
async fn an_always_authenticate_key_gets_its_context_specific_login() {
    let f = fixture();
    let relay = start(config("xades-always"), AuditLog::disabled()).await;
    let mut c = gateway(&relay);
    let sign_cert = leaf(&f.pki.path(files::CPS_SIGN_CERT));
    let err = c
        .sign_xades_signed_info(signed_info(&sign_cert), None)
        .await
        .expect_err("no card session before Login");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    client_as(&relay, files::HOLDER_UI_CLIENT_CERT, files::HOLDER_UI_CLIENT_KEY)
        .login(PIN.into())
        .await
        .expect("login");
    // Twice: each signature needs (and gets) its own context-specific login.
    for _ in 0..2 {
        let data = signed_info(&sign_cert);
        let answer = c
            .sign_xades_signed_info(data.clone(), None)
            .await
            .expect("signed after the context-specific login");
        assert!(verifies(&sign_cert, &data, &answer.signature));
    }
}

#[tokio::test]
async fn xades_signatures_are_audited() {
    let f = fixture();
    let (audit, sink) = AuditLog::memory();
    let (_relay, mut c) = logged_in("xades-audit", audit).await;
    let data = signed_info(&leaf(&f.pki.path(files::CPS_SIGN_CERT)));
    let answer = c.sign_xades_signed_info(data.clone(), None).await.expect("sign");
    c.sign_xades_signed_info(b"not xml".to_vec(), None)
        .await
        .expect_err("refused");

    let events: Vec<_> = sink
        .events()
        .into_iter()
        .filter(|e| e.use_case == "sign_xades_signed_info")
        .collect();
    assert_eq!(events.len(), 2, "the signature and the refusal are both recorded");
    let ok = &events[0];
    assert_eq!(ok.status.as_deref(), Some("OK"));
    assert_eq!(ok.user_id.as_deref(), Some("810100000001"));
    assert!(ok.peer.as_deref().is_some_and(|p| p.contains("dmp-gateway")));
    let digest = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data));
    assert_eq!(ok.attributes["data_sha256"], digest.as_str());
    assert_eq!(ok.attributes["key"], "signature");
    assert_eq!(
        ok.attributes["certificate_sha256"],
        hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &leaf(&f.pki.path(files::CPS_SIGN_CERT))
        ))
        .as_str()
    );
    let refused = &events[1];
    assert_eq!(refused.status.as_deref(), Some("INVALID_ARGUMENT"));
    assert_eq!(refused.error_code.as_deref(), Some("not_xades_signed_info"));
    // Neither the data nor the signature is in any event.
    let dump = serde_json::to_string(&events).expect("json");
    assert!(!dump.contains(&hex::encode(&answer.signature)));
    assert!(!dump.contains("ClinicalDocument") && !dump.contains("SignedInfo xmlns"));
}
