//! Issue 13, the professional's consent bound to the card: session grants verified by an
//! implementation we did not write (jsonwebtoken), signatures only under a live grant, and
//! WatchSession reporting Logout, card removal (SoftHSM token deleted) and card swap (another
//! token with the same label and another professional's certificate), over real mutual TLS on
//! real SoftHSM2 tokens.

mod support;

use std::time::Duration;

use audit_log::AuditLog;
use base64::Engine as _;
use dev_support::devpki::files;
use ehealth_proto::cps::v1::{
    GetAuthenticationCertificateRequest, IssueSessionGrantRequest, LogoutRequest, RevokeSessionGrantsRequest,
    SessionReason, SessionState, WatchSessionRequest,
};
use support::*;
use tonic::Code;

const GRANTS: &str = "grants";
const LOGOUT: &str = "watch-logout";
const REMOVAL: &str = "watch-removal";
const SWAP: &str = "watch-swap";

fn setup() -> &'static Fixture {
    fixture(&[GRANTS, LOGOUT, REMOVAL, SWAP], &[])
}

fn transcript() -> Vec<u8> {
    cps_relay::sample_tls12_transcript(Some("localhost"), &dmp_chain(&setup().pki))
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// The next WatchSession message, within 5 s.
async fn next(stream: &mut tonic::Streaming<SessionState>) -> SessionState {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a session change is reported within seconds")
        .expect("stream")
        .expect("message")
}

async fn watch(relay: &Relay) -> tonic::Streaming<SessionState> {
    gateway(relay)
        .watch_session(WatchSessionRequest {})
        .await
        .expect("watch")
        .into_inner()
}

/// Logs in with a grant for the integrator; returns the grant (JWS) and its id.
async fn login_with_grant(relay: &Relay) -> (String, String) {
    let mut req = login_request(PIN);
    req.grant_to = vec!["integrator".into()];
    let resp = holder(relay).login(req).await.expect("login").into_inner();
    assert_eq!(resp.grants.len(), 1);
    assert_eq!(resp.grants[0].grantee, "integrator");
    (resp.grants[0].grant.clone(), resp.grants[0].grant_id.clone())
}

#[tokio::test]
async fn grants_verify_independently_carry_the_claims_and_gate_signatures() {
    let f = setup();
    let (audit, sink) = AuditLog::memory();
    let relay = start(config(GRANTS), audit).await;
    let mut gw = gateway(&relay);

    let err = holder(&relay)
        .issue_session_grant(IssueSessionGrantRequest {
            grantee: "integrator".into(),
            lifetime_seconds: 0,
        })
        .await
        .expect_err("no card session yet");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let (grant, grant_id) = login_with_grant(&relay).await;
    let state = next(&mut watch(&relay).await).await;
    assert_eq!(state.reason, SessionReason::Active as i32);

    // Verified with jsonwebtoken and the public key the dev PKI wrote for the gateway.
    let public_pem = std::fs::read(f.pki.path(files::RELAY_GRANT_PUBLIC_KEY)).expect("public key");
    let spki_b64: String = String::from_utf8_lossy(&public_pem)
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let spki = base64::engine::general_purpose::STANDARD
        .decode(spki_b64)
        .expect("PEM body");
    let (_, parsed) =
        <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(&spki)
            .expect("SPKI");
    let key = jsonwebtoken::DecodingKey::from_ec_der(&parsed.subject_public_key.data);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["dmp-gateway"]);
    validation.set_issuer(&["local"]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let token =
        jsonwebtoken::decode::<serde_json::Value>(&grant, &key, &validation).expect("the grant verifies");
    let header = token.header;
    assert_eq!(header.typ.as_deref(), Some("cps-session-grant+jwt"));
    assert_eq!(header.kid.as_deref(), Some(&hex::encode(sha256(&spki))[..16]));

    let leaf = gw
        .get_authentication_certificate(GetAuthenticationCertificateRequest {})
        .await
        .expect("certificate")
        .into_inner()
        .leaf_der;
    let c = token.claims;
    assert_eq!(c["iss"], "local");
    assert_eq!(c["sub"], DOCTOR);
    assert_eq!(c["aud"], "dmp-gateway");
    assert_eq!(c["azp"], "integrator");
    assert_eq!(c["jti"], grant_id.as_str());
    assert_eq!(c["sid"], state.card_session_id.as_str());
    assert_eq!(state.certificate_sha256, hex::encode(sha256(&leaf)));
    assert_eq!(
        c["cnf"]["x5t#S256"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha256(&leaf))
            .as_str()
    );
    let lifetime = c["exp"].as_u64().expect("exp") - c["iat"].as_u64().expect("iat");
    assert_eq!(lifetime, 3600, "grants.max_lifetime by default");
    // A tampered grant does not verify.
    let mut tampered = grant.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    assert!(jsonwebtoken::decode::<serde_json::Value>(&tampered, &key, &validation).is_err());

    // Signatures: only under a live grant of this card session.
    gw.sign_for_authentication(sign_request(transcript(), Some(&grant_id)))
        .await
        .expect("signed under the grant");
    for (id, why) in [
        (None, "no session grant"),
        (Some("not-a-grant"), "no session grant not-a-grant"),
    ] {
        let err = gw
            .sign_for_authentication(sign_request(transcript(), id))
            .await
            .expect_err("no live grant");
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains(why), "{}", err.message());
    }

    // A short grant expires.
    let mut h = holder(&relay);
    let short = h
        .issue_session_grant(IssueSessionGrantRequest {
            grantee: "integrator".into(),
            lifetime_seconds: 1,
        })
        .await
        .expect("short grant")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = gw
        .sign_for_authentication(sign_request(transcript(), Some(&short.grant_id)))
        .await
        .expect_err("expired");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("expired"), "{}", err.message());

    // A revoked grant is refused, and watchers are told.
    let mut stream = watch(&relay).await;
    next(&mut stream).await;
    let revoked = h
        .revoke_session_grants(RevokeSessionGrantsRequest {
            grant_ids: vec![grant_id.clone()],
        })
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(revoked.revoked_grant_ids, vec![grant_id.clone()]);
    let state = next(&mut stream).await;
    assert_eq!(state.reason, SessionReason::GrantsRevoked as i32);
    assert_eq!(state.revoked_grant_ids, vec![grant_id.clone()]);
    let err = gw
        .sign_for_authentication(sign_request(transcript(), Some(&grant_id)))
        .await
        .expect_err("revoked");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("revoked"), "{}", err.message());

    // The grantee is the only value a caller chooses, and only among access.grant_callers.
    let err = h
        .issue_session_grant(IssueSessionGrantRequest {
            grantee: "dmp-gateway".into(),
            lifetime_seconds: 60,
        })
        .await
        .expect_err("not a grant caller");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("access.grant_callers"),
        "{}",
        err.message()
    );

    let issued: Vec<_> = sink
        .events()
        .into_iter()
        .filter(|e| e.use_case == "issue_session_grant" && e.status.as_deref() == Some("OK"))
        .collect();
    assert_eq!(issued.len(), 2, "{issued:?}");
    assert_eq!(issued[0].attributes["grant_id"], grant_id.as_str());
    assert_eq!(issued[0].user_id.as_deref(), Some(DOCTOR));
    let signed = sink
        .events()
        .into_iter()
        .find(|e| e.use_case == "sign_for_authentication")
        .expect("signature audited");
    assert_eq!(signed.user_id.as_deref(), Some(DOCTOR));
    assert_eq!(signed.attributes["grant_id"], grant_id.as_str());
    assert_eq!(
        signed.attributes["certificate_sha256"],
        hex::encode(sha256(&leaf)).as_str()
    );
    assert_eq!(signed.attributes["server"], "localhost");
}

#[tokio::test]
async fn watch_session_reports_logout() {
    setup();
    let relay = start(config(LOGOUT), AuditLog::disabled()).await;
    let mut stream = watch(&relay).await;
    assert_eq!(next(&mut stream).await.reason, SessionReason::NoSession as i32);
    let (_, grant_id) = login_with_grant(&relay).await;
    let active = next(&mut stream).await;
    assert_eq!(active.reason, SessionReason::Active as i32);
    assert!(!active.card_session_id.is_empty());
    assert_eq!(active.professional_id, DOCTOR);

    holder(&relay).logout(LogoutRequest {}).await.expect("logout");
    let ended = next(&mut stream).await;
    assert_eq!(ended.reason, SessionReason::LoggedOut as i32);
    assert!(ended.card_session_id.is_empty());
    assert_eq!(ended.professional_id, DOCTOR, "whose session ended");

    let err = gateway(&relay)
        .sign_for_authentication(sign_request(transcript(), Some(&grant_id)))
        .await
        .expect_err("session ended");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
}

#[tokio::test]
async fn watch_session_reports_card_removal() {
    setup();
    let relay = start(config(REMOVAL), AuditLog::disabled()).await;
    let (_, grant_id) = login_with_grant(&relay).await;
    let mut stream = watch(&relay).await;
    assert_eq!(next(&mut stream).await.reason, SessionReason::Active as i32);

    delete_token(REMOVAL);
    let ended = next(&mut stream).await;
    assert_eq!(ended.reason, SessionReason::CardRemoved as i32, "{ended:?}");
    assert!(ended.card_session_id.is_empty());

    let err = gateway(&relay)
        .sign_for_authentication(sign_request(transcript(), Some(&grant_id)))
        .await
        .expect_err("card removed");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
}

#[tokio::test]
async fn watch_session_reports_card_swap_and_the_new_certificate_is_read() {
    let f = setup();
    // No polling: the swap is seen when the gateway next asks for the certificate.
    let mut cfg = config(SWAP);
    cfg.card.poll_interval = Duration::from_secs(3600);
    let relay = start(cfg, AuditLog::disabled()).await;
    let (_, grant_id) = login_with_grant(&relay).await;
    let mut stream = watch(&relay).await;
    let before = next(&mut stream).await;
    assert_eq!(before.reason, SessionReason::Active as i32);

    delete_token(SWAP);
    new_token_in_process(SWAP, &f.nurse_cert);
    let cert = gateway(&relay)
        .get_authentication_certificate(GetAuthenticationCertificateRequest {})
        .await
        .expect("the new card's certificate")
        .into_inner();
    assert_eq!(cert.professional_id, NURSE, "read again from the new card");

    let ended = next(&mut stream).await;
    assert_eq!(ended.reason, SessionReason::CardChanged as i32, "{ended:?}");
    assert_eq!(ended.professional_id, DOCTOR, "the doctor's session ended");
    assert_eq!(ended.certificate_sha256, before.certificate_sha256);

    let err = gateway(&relay)
        .sign_for_authentication(sign_request(transcript(), Some(&grant_id)))
        .await
        .expect_err("no signature for the old session on the new card");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
}

/// Removes a token from SoftHSM as another process (the card leaves its reader).
fn delete_token(label: &str) {
    let out = std::process::Command::new("softhsm2-util")
        .args(["--delete-token", "--token", label])
        .output()
        .expect("softhsm2-util is installed");
    assert!(out.status.success(), "{out:?}");
}

/// Initialises, in this process (a running SoftHSM sees no token another process creates),
/// a token labelled `label` in the free slot, holding only the certificate of `cert_pem`.
fn new_token_in_process(label: &str, cert_pem: &std::path::Path) {
    use cryptoki::object::{Attribute, CertificateType, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let ctx = cps_relay::pkcs11_context(&setup().hsm.module()).expect("context");
    let free = ctx
        .get_all_slots()
        .expect("slots")
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|i| !i.token_initialized()))
        .expect("SoftHSM keeps a free slot");
    ctx.init_token(free, &AuthPin::new(SO_PIN.into()), label)
        .expect("init token");
    let slot = ctx
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|i| i.label().trim() == label))
        .expect("the new token");
    let session = ctx.open_rw_session(slot).expect("session");
    session
        .login(UserType::So, Some(&AuthPin::new(SO_PIN.into())))
        .expect("SO login");
    session.init_pin(&AuthPin::new(PIN.into())).expect("init PIN");
    session.logout().expect("SO logout");
    session
        .login(UserType::User, Some(&AuthPin::new(PIN.into())))
        .expect("user login");
    let der = service_kit::tls::load_certs(cert_pem).expect("cert")[0].to_vec();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("certificate");
    let subject = parsed.tbs_certificate.subject.as_raw().to_vec();
    session
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Id(vec![1]),
            Attribute::Label(b"auth".to_vec()),
            Attribute::Subject(subject),
            Attribute::Value(der),
        ])
        .expect("certificate object");
    session.logout().expect("logout");
}
