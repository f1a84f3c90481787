//! The relay on a real PKCS#11 token (SoftHSM2), end to end over mutual TLS: signatures that an
//! independent implementation (the `openssl` CLI) verifies with the certificate's public key,
//! and every refusal of SPEC.md §1 with its status.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use audit_log::AuditLog;
use cps_relay::BackendKind;
use cps_relay::Config;
use dev_support::devpki::{DevPki, files};
use dev_support::softhsm::SoftHsm;
use relay_client::{CpsRelayClient, RelayTls, Scheme};
use service_kit::CancellationToken;
use support::{Relay, start};
use tonic::Code;

const PIN: &str = "123456";

struct Fixture {
    _dir: tempfile::TempDir,
    pki: DevPki,
    other_pki: DevPki,
    hsm: SoftHsm,
}

/// Provisions every token of this test process before the first PKCS#11 call.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = DevPki::ensure(&dir.path().join("pki")).expect("pki");
        let other_pki = DevPki::ensure(&dir.path().join("other-pki")).expect("other pki");
        let hsm = SoftHsm::prepare().expect("SoftHSM2 is installed and SOFTHSM2_CONF is set");
        for token in [
            "relay-sign",
            "relay-login",
            "relay-locked",
            "relay-refusals",
            "relay-audit",
        ] {
            hsm.init_token(token, "so-secret", PIN).expect("token init");
            hsm.import_identity(
                token,
                PIN,
                &pki.path(files::CPS_AUTH_KEY),
                &pki.path(files::CPS_AUTH_CERT),
                "01",
                "Authentification CPS",
            )
            .expect("key and certificate import");
        }
        hsm.lock_user_pin("relay-locked").expect("lock");
        // An ECDSA P-256 identity (an HSM-style key) under id 02 on its own token.
        let ec_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec key");
        let mut params = rcgen::CertificateParams::new(vec!["ec-card.test".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "810100000003");
        let ec_cert = params.self_signed(&ec_key).expect("ec cert");
        std::fs::write(dir.path().join("ec.key.pem"), ec_key.serialize_pem()).expect("write");
        std::fs::write(dir.path().join("ec.pem"), ec_cert.pem()).expect("write");
        std::fs::write(dir.path().join("operator.pin"), format!("{PIN}\n")).expect("write");
        hsm.init_token("relay-ec", "so-secret", PIN).expect("token init");
        hsm.import_identity(
            "relay-ec",
            PIN,
            &dir.path().join("ec.key.pem"),
            &dir.path().join("ec.pem"),
            "02",
            "ec",
        )
        .expect("ec import");
        Fixture {
            _dir: dir,
            pki,
            other_pki,
            hsm,
        }
    })
}

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
    c.backend.pkcs11.key_id = Some("01".into());
    c.backend.pkcs11.chain = Some(f.pki.path(files::IGC_PERSONNES_CA));
    // These tests call SignForAuthentication without session grants (tests/session_grants.rs
    // covers them): development mode, the dev PKI's identities as roles.
    c.development = true;
    c.grants.required = false;
    c.grants.signing_key = f.pki.path(files::RELAY_GRANT_KEY);
    c.signing.server_ca = f.pki.path(files::IGC_CA_BUNDLE);
    c.signing.allowed_hosts = vec!["localhost".into()];
    c
}

fn client_with(relay: &Relay, pki: &DevPki) -> CpsRelayClient {
    let tls = RelayTls::from_files(
        &fixture().pki.path(files::SUITE_CA),
        &pki.path(files::GATEWAY_CLIENT_CERT),
        &pki.path(files::GATEWAY_CLIENT_KEY),
        "localhost",
    )
    .expect("tls files");
    CpsRelayClient::connect_lazy(&format!("https://{}", relay.addr), &tls, Duration::from_secs(10))
        .expect("client")
}

fn client(relay: &Relay) -> CpsRelayClient {
    client_with(relay, &fixture().pki)
}

/// The card holder's own UI: only it may enter the PIN.
fn holder(relay: &Relay) -> CpsRelayClient {
    let pki = &fixture().pki;
    let tls = RelayTls::from_files(
        &pki.path(files::SUITE_CA),
        &pki.path(files::HOLDER_UI_CLIENT_CERT),
        &pki.path(files::HOLDER_UI_CLIENT_KEY),
        "localhost",
    )
    .expect("tls files");
    CpsRelayClient::connect_lazy(&format!("https://{}", relay.addr), &tls, Duration::from_secs(10))
        .expect("client")
}

/// A handshake with the dev DMP server, named `localhost`.
fn tls12_transcript() -> Vec<u8> {
    let chain: Vec<Vec<u8>> = service_kit::tls::load_certs(&fixture().pki.path(files::DMP_SERVER_CHAIN))
        .expect("dmp chain")
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    cps_relay::sample_tls12_transcript(Some("localhost"), &chain)
}

fn tls13_content() -> Vec<u8> {
    [
        vec![0x20; 64],
        b"TLS 1.3, client CertificateVerify".to_vec(),
        vec![0],
        vec![0x5a; 32],
    ]
    .concat()
}

/// Verifies with the openssl CLI, an implementation we did not write.
fn openssl_verify(cert_der: &[u8], data: &[u8], signature: &[u8], pss: bool) -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| -> PathBuf { dir.path().join(n) };
    std::fs::write(p("cert.der"), cert_der).expect("write");
    std::fs::write(p("data"), data).expect("write");
    std::fs::write(p("sig"), signature).expect("write");
    let pubkey = std::process::Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(p("cert.der"))
        .args(["-pubkey", "-noout"])
        .output()
        .expect("openssl is installed");
    assert!(pubkey.status.success(), "{pubkey:?}");
    std::fs::write(p("pub.pem"), &pubkey.stdout).expect("write");
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["dgst", "-sha256"]);
    if pss {
        cmd.args(["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32"]);
    }
    let out = cmd
        .arg("-verify")
        .arg(p("pub.pem"))
        .arg("-signature")
        .arg(p("sig"))
        .arg(p("data"))
        .output()
        .expect("openssl");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_verify_with_the_certificate_key() {
    let mut cfg = config("relay-sign");
    cfg.signing.allow_tls13 = true;
    let relay = start(cfg, AuditLog::disabled()).await;
    let mut c = client(&relay);
    let status = holder(&relay).login(PIN.into()).await.expect("login");
    assert!(status.logged_in && status.token_present);
    assert_eq!(status.token_label, "relay-sign");

    let cert = c.certificate().await.expect("certificate");
    assert_eq!(cert.professional_id, "810100000001");
    assert_eq!(cert.surname, "MEDECIN");
    assert_eq!(cert.given_name, "JEAN");
    assert_eq!(cert.profession, "10");
    assert_eq!(cert.key_bits, 2048);
    assert_eq!(
        cert.chain_der.len(),
        1,
        "the configured issuing CA follows the leaf"
    );
    assert!(
        cert.supported_schemes
            .contains(&(Scheme::RsaPkcs1Sha256.to_proto() as i32))
    );
    assert!(
        cert.supported_schemes
            .contains(&(Scheme::RsaPssSha256.to_proto() as i32))
    );

    let data = tls12_transcript();
    let sig = c
        .sign(Scheme::RsaPkcs1Sha256, data.clone())
        .await
        .expect("PKCS#1 signature");
    assert_eq!(sig.len(), 256);
    assert!(
        openssl_verify(&cert.leaf_der, &data, &sig, false),
        "openssl verifies the SHA256WithRSA signature"
    );
    assert!(
        !openssl_verify(&cert.leaf_der, &tls13_content(), &sig, false),
        "and only for that data"
    );

    let data = tls13_content();
    let sig = c
        .sign(Scheme::RsaPssSha256, data.clone())
        .await
        .expect("PSS signature");
    assert!(
        openssl_verify(&cert.leaf_der, &data, &sig, true),
        "openssl verifies the PSS signature"
    );
}

#[tokio::test]
async fn pin_and_login_states() {
    let relay = start(config("relay-login"), AuditLog::disabled()).await;
    let mut c = client(&relay);
    let err = c
        .sign(Scheme::RsaPkcs1Sha256, tls12_transcript())
        .await
        .expect_err("not logged in");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("Login"), "{}", err.message());

    let mut h = holder(&relay);
    let err = h.login("999999".into()).await.expect_err("wrong PIN");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("wrong PIN"), "{}", err.message());
    let err = h.login("12".into()).await.expect_err("malformed PIN");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // After a wrong PIN the next attempt waits 2 s (issue 13, tests/signing_limits.rs).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(h.login(PIN.into()).await.expect("login").logged_in);
    c.sign(Scheme::RsaPkcs1Sha256, tls12_transcript())
        .await
        .expect("signs once logged in");
    assert!(!h.logout().await.expect("logout").logged_in);
    let err = c
        .sign(Scheme::RsaPkcs1Sha256, tls12_transcript())
        .await
        .expect_err("logged out");
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn locked_pin_is_permission_denied() {
    let relay = start(config("relay-locked"), AuditLog::disabled()).await;
    let mut c = holder(&relay);
    let status = c.status().await.expect("status");
    assert!(status.pin_locked);
    assert_eq!(status.pin_tries_left, Some(0));
    let err = c.login(PIN.into()).await.expect_err("blocked");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("blocked"), "{}", err.message());
}

#[tokio::test]
async fn refuses_what_is_not_handshake_data() {
    let mut cfg = config("relay-refusals");
    cfg.signing.allow_tls13 = true;
    let relay = start(cfg, AuditLog::disabled()).await;
    let mut c = client(&relay);
    holder(&relay).login(PIN.into()).await.expect("login");
    for data in [
        b"please sign this prescription".to_vec(),
        vec![0xab; 32],
        Vec::new(),
    ] {
        let err = c
            .sign(Scheme::RsaPkcs1Sha256, data)
            .await
            .expect_err("not handshake data");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains("not TLS handshake signing input"),
            "{}",
            err.message()
        );
    }
    let err = c
        .sign(Scheme::RsaPkcs1Sha256, tls13_content())
        .await
        .expect_err("PKCS#1 in TLS 1.3");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .sign(Scheme::EcdsaP256Sha256, tls13_content())
        .await
        .expect_err("ECDSA on an RSA key");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("unsupported signature scheme"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn only_authenticated_allowed_callers() {
    let f = fixture();
    let relay = start(config("relay-refusals"), AuditLog::disabled()).await;
    // A client certificate from another CA: the TLS handshake fails.
    let mut stranger = client_with(&relay, &f.other_pki);
    let err = stranger.status().await.expect_err("untrusted caller");
    // Refused in the TLS handshake: the call never reaches the service.
    assert!(matches!(err.code(), Code::Unavailable | Code::Unknown), "{err:?}");
    assert!(
        err.message().contains("transport error") || err.message().contains("connect"),
        "{err:?}"
    );

    // No client certificate at all.
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", relay.addr))
        .expect("endpoint")
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(
                    std::fs::read(f.pki.path(files::SUITE_CA)).expect("ca"),
                ))
                .domain_name("localhost"),
        )
        .expect("tls")
        .connect_lazy();
    let mut anonymous = ehealth_proto::cps::v1::cps_relay_client::CpsRelayClient::new(channel);
    assert!(
        anonymous
            .get_status(ehealth_proto::cps::v1::GetStatusRequest {})
            .await
            .is_err()
    );

    // A trusted certificate that is not pinned.
    let mut pinned = config("relay-refusals");
    pinned.access.allowed_clients = vec!["ab".repeat(32)];
    let relay = start(pinned, AuditLog::disabled()).await;
    let err = client(&relay).status().await.expect_err("not pinned");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("allowed_clients"), "{}", err.message());
}

#[tokio::test]
async fn rate_limited_per_caller() {
    let mut cfg = config("relay-refusals");
    cfg.access.rate_per_second = 1;
    cfg.access.burst = 2;
    let relay = start(cfg, AuditLog::disabled()).await;
    let mut c = client(&relay);
    holder(&relay).login(PIN.into()).await.expect("login");
    c.sign(Scheme::RsaPkcs1Sha256, tls12_transcript())
        .await
        .expect("first");
    c.sign(Scheme::RsaPkcs1Sha256, tls12_transcript())
        .await
        .expect("second");
    let err = c
        .sign(Scheme::RsaPkcs1Sha256, tls12_transcript())
        .await
        .expect_err("third in the same second");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
}

#[tokio::test]
async fn every_signature_is_audited_and_audit_failure_fails_closed() {
    let (audit, sink) = AuditLog::memory();
    let relay = start(config("relay-audit"), audit).await;
    let mut c = client(&relay);
    holder(&relay).login(PIN.into()).await.expect("login");
    let data = tls12_transcript();
    let sig = c.sign(Scheme::RsaPkcs1Sha256, data.clone()).await.expect("sign");

    let events = sink.events();
    let login = events
        .iter()
        .find(|e| e.use_case == "login")
        .expect("login audited");
    assert_eq!(login.status.as_deref(), Some("OK"));
    let signed = events
        .iter()
        .find(|e| e.use_case == "sign_for_authentication")
        .expect("signature audited");
    assert_eq!(signed.service, "cps-relay");
    assert!(
        signed.peer.as_deref().is_some_and(|p| p.contains("dmp-gateway")),
        "{:?}",
        signed.peer
    );
    let digest = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data));
    assert_eq!(signed.attributes["data_sha256"], digest.as_str());
    assert_eq!(signed.attributes["scheme"], "rsa_pkcs1_sha256");
    // Neither the data, nor the signature, nor the PIN is in any event.
    let dump = serde_json::to_string(&events).expect("json");
    assert!(!dump.contains(&hex::encode(&sig)) && !dump.contains(&hex::encode(&data)) && !dump.contains(PIN));

    sink.set_failing(true);
    let err = c
        .sign(Scheme::RsaPkcs1Sha256, tls12_transcript())
        .await
        .expect_err("audit down");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

#[tokio::test]
async fn software_backend_for_development() {
    let f = fixture();
    let mut cfg = config("unused");
    cfg.backend.kind = BackendKind::Software;
    cfg.backend.software.certificate_chain = f.pki.path(files::CPS_AUTH_CHAIN);
    cfg.backend.software.private_key = f.pki.path(files::CPS_AUTH_KEY);
    let relay = start(cfg, AuditLog::disabled()).await;
    let mut c = client(&relay);
    assert_eq!(c.status().await.expect("status").backend, "software");
    let err = holder(&relay).login(PIN.into()).await.expect_err("no PIN");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let cert = c.certificate().await.expect("certificate");
    let data = tls12_transcript();
    let sig = c.sign(Scheme::RsaPkcs1Sha256, data.clone()).await.expect("sign");
    assert!(openssl_verify(&cert.leaf_der, &data, &sig, false));
}

#[tokio::test]
async fn misconfigured_tokens_are_named() {
    let f = fixture();
    // Start-up stops at the card, before anything listens.
    let start = |cfg| cps_relay::start_with(cfg, AuditLog::disabled(), CancellationToken::new());
    let mut cfg = config("no-such-token");
    cfg.backend.pkcs11.module = f.hsm.module();
    let err = start(cfg).await.err().expect("no token");
    assert!(err.to_string().contains("no-such-token"), "{err}");
    let mut cfg = config("relay-refusals");
    cfg.backend.pkcs11.module = Path::new("/nonexistent/libcps3_pkcs11_lux.so").into();
    let err = start(cfg).await.err().expect("no module");
    assert!(err.to_string().contains("libcps3_pkcs11_lux.so"), "{err}");
}

/// An HSM deployment: token and key chosen by an RFC 7512 URI, the operator PIN read from a
/// file at start-up, an ECDSA P-256 key whose raw PKCS#11 signature the relay turns into DER.
#[tokio::test]
async fn ecdsa_key_selected_by_uri_with_operator_pin() {
    let f = fixture();
    let mut cfg = config("unused");
    cfg.backend.pkcs11.token_label = None;
    cfg.backend.pkcs11.key_id = None;
    cfg.backend.pkcs11.chain = None;
    cfg.backend.pkcs11.uri = Some("pkcs11:token=relay-ec;id=%02;type=private".into());
    cfg.backend.pkcs11.pin_file = Some(f._dir.path().join("operator.pin"));
    cfg.signing.allow_tls13 = true;
    let relay = start(cfg, AuditLog::disabled()).await;
    let mut c = client(&relay);
    assert!(
        c.status().await.expect("status").logged_in,
        "logged in with the operator PIN at start-up"
    );
    let cert = c.certificate().await.expect("certificate");
    assert_eq!(cert.professional_id, "810100000003");
    assert_eq!(
        cert.supported_schemes,
        vec![Scheme::EcdsaP256Sha256.to_proto() as i32]
    );
    let data = tls13_content();
    let sig = c
        .sign(Scheme::EcdsaP256Sha256, data.clone())
        .await
        .expect("ECDSA signature");
    assert_eq!(sig[0], 0x30, "DER SEQUENCE, as TLS carries ECDSA signatures");
    assert!(
        openssl_verify(&cert.leaf_der, &data, &sig, false),
        "openssl verifies the ECDSA signature"
    );
    let err = c
        .sign(Scheme::RsaPkcs1Sha256, tls12_transcript())
        .await
        .expect_err("RSA on an EC key");
    assert_eq!(err.code(), Code::InvalidArgument);
}
