//! Issue 13, the relay's limits, over real mutual TLS on real SoftHSM2 tokens: the card signs
//! only TLS 1.2 transcripts of an allowed server (transcripts taken from real rustls
//! handshakes), only the holder's UI enters the PIN, gateways act only for their
//! professionals, and the PIN is guarded (final try, throttle, re-check, audit).

mod support;

use audit_log::AuditLog;
use dev_support::devpki::files;
use support::*;
use tonic::Code;

const SERVERS: &str = "limits-servers";
const ROLES: &str = "limits-roles";
const FINAL_TRY: &str = "limits-final-try";
const RELOGIN: &str = "limits-relogin";
const THROTTLE: &str = "limits-throttle";

fn setup() -> &'static Fixture {
    fixture(&[SERVERS, ROLES, FINAL_TRY, RELOGIN, THROTTLE], &[FINAL_TRY])
}

/// Logs the holder in with a grant for the integrator; returns the grant id.
async fn login_with_grant(relay: &Relay) -> String {
    let mut req = login_request(PIN);
    req.grant_to = vec!["integrator".into()];
    let resp = holder(relay).login(req).await.expect("login").into_inner();
    resp.grants[0].grant_id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_only_transcripts_of_an_allowed_server() {
    let f = setup();
    let relay = start(config(SERVERS), AuditLog::disabled()).await;
    let grant = login_with_grant(&relay).await;
    let mut gw = gateway(&relay);
    let dmp = |host: &str| {
        real_tls12_transcript(
            &f.pki.path(files::DMP_SERVER_CHAIN),
            &f.pki.path(files::DMP_SERVER_KEY),
            &f.pki.path(files::IGC_CA_BUNDLE),
            host,
        )
    };
    let refused = |err: tonic::Status, why: &str| {
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(why), "{}", err.message());
    };

    // The DMP (the simulator's certificate under the dev IGC-Santé CAs) named `localhost`.
    let good = dmp("localhost");
    let sig = gw
        .sign_for_authentication(sign_request(good.clone(), Some(&grant)))
        .await
        .expect("a real handshake with the allowed server is signed")
        .into_inner();
    assert_eq!(sig.signature.len(), 256);

    // The same certificate, but the client named a host that is not on the allow-list.
    let err = gw
        .sign_for_authentication(sign_request(dmp("dmp-sim"), Some(&grant)))
        .await
        .expect_err("host not allowed");
    refused(err, "`dmp-sim` (ClientHello SNI) is not in signing.allowed_hosts");

    // A server whose certificate comes from a CA the relay does not trust.
    let stranger = real_tls12_transcript(
        &f.other_pki.path(files::DMP_SERVER_CHAIN),
        &f.other_pki.path(files::DMP_SERVER_KEY),
        &f.other_pki.path(files::IGC_CA_BUNDLE),
        "localhost",
    );
    let err = gw
        .sign_for_authentication(sign_request(stranger, Some(&grant)))
        .await
        .expect_err("untrusted server");
    refused(err, "does not verify against signing.server_ca");

    // The allowed server's handshake with its Certificate message taken out.
    let err = gw
        .sign_for_authentication(sign_request(without_server_certificate(&good), Some(&grant)))
        .await
        .expect_err("no server certificate");
    refused(err, "no server Certificate message");

    // TLS 1.3 content, with a scheme TLS 1.3 allows: off by default.
    let mut tls13 = sign_request(tls13_content(), Some(&grant));
    tls13.get_mut().scheme = relay_client::Scheme::RsaPssSha256.to_proto() as i32;
    let err = gw.sign_for_authentication(tls13).await.expect_err("TLS 1.3 off");
    refused(err, "signing.allow_tls13 is off");

    // A client that connected to an IP address sends no SNI: only IP entries can match.
    let by_ip = dmp("127.0.0.1");
    let err = gw
        .sign_for_authentication(sign_request(by_ip.clone(), Some(&grant)))
        .await
        .expect_err("no SNI, no IP allowed");
    refused(err, "no SNI");
    drop(relay);

    let mut with_ip = config(SERVERS);
    with_ip.signing.allowed_hosts.push("127.0.0.1".into());
    let relay = start(with_ip, AuditLog::disabled()).await;
    let grant = login_with_grant(&relay).await;
    gateway(&relay)
        .sign_for_authentication(sign_request(by_ip, Some(&grant)))
        .await
        .expect("an allowed IP address verifies against the certificate's IP SAN");
}

#[tokio::test]
async fn pin_is_for_the_holder_and_gateways_act_for_their_professionals() {
    setup();
    let (audit, sink) = AuditLog::memory();
    let relay = start(config(ROLES), audit).await;

    let err = gateway(&relay)
        .login(login_request(PIN))
        .await
        .expect_err("the gateway may not enter the PIN");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message()
            .contains("Login is reserved to the card holder's UI (access.holders)"),
        "{}",
        err.message()
    );
    let refused = sink
        .events()
        .into_iter()
        .find(|e| e.use_case == "login")
        .expect("the refused attempt is audited");
    assert_eq!(refused.error_code.as_deref(), Some("caller_not_allowed"));
    assert_eq!(refused.peer.as_deref(), Some("dmp-gateway"));

    for err in [
        gateway(&relay)
            .issue_session_grant(ehealth_proto::cps::v1::IssueSessionGrantRequest {
                grantee: "integrator".into(),
                lifetime_seconds: 0,
            })
            .await
            .expect_err("grants are the holder's"),
        gateway(&relay)
            .logout(ehealth_proto::cps::v1::LogoutRequest {})
            .await
            .expect_err("logout is the holder's"),
        holder(&relay)
            .sign_for_authentication(sign_request(vec![1], None))
            .await
            .expect_err("the holder's UI does not sign"),
        integrator(&relay)
            .get_status(ehealth_proto::cps::v1::GetStatusRequest {})
            .await
            .expect_err("an integrator has no role on the relay"),
    ] {
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    }
    let grant = login_with_grant(&relay).await;
    drop(relay);

    // A gateway allowed for the nurse only sees nothing of the doctor's card.
    let mut nurse_only = config(ROLES);
    nurse_only.access.gateways[0].professionals = vec![NURSE.into()];
    let relay = start(nurse_only, AuditLog::disabled()).await;
    let grant_here = login_with_grant(&relay).await;
    assert_ne!(grant, grant_here);
    let mut gw = gateway(&relay);
    let err = gw
        .get_authentication_certificate(ehealth_proto::cps::v1::GetAuthenticationCertificateRequest {})
        .await
        .expect_err("another professional");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message()
            .contains(&format!("may not act for professional {DOCTOR}")),
        "{}",
        err.message()
    );
    let data = cps_relay::sample_tls12_transcript(Some("localhost"), &dmp_chain(&setup().pki));
    let err = gw
        .sign_for_authentication(sign_request(data, Some(&grant_here)))
        .await
        .expect_err("another professional");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
}

#[tokio::test]
async fn login_on_the_final_try_needs_confirmation() {
    setup();
    let (audit, sink) = AuditLog::memory();
    let relay = start(config(FINAL_TRY), audit).await;
    let mut h = holder(&relay);
    let status = h
        .get_status(ehealth_proto::cps::v1::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(status.pin_final_try, "{status:?}");

    let err = h.login(login_request(PIN)).await.expect_err("unconfirmed");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .contains("one try left: confirm with confirm_final_try"),
        "{}",
        err.message()
    );
    let status = h
        .get_status(ehealth_proto::cps::v1::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(!status.logged_in, "the card was not asked");

    let mut confirmed = login_request(PIN);
    confirmed.confirm_final_try = true;
    assert!(
        h.login(confirmed)
            .await
            .expect("confirmed")
            .into_inner()
            .status
            .is_some_and(|s| s.logged_in)
    );

    let logins: Vec<_> = sink
        .events()
        .into_iter()
        .filter(|e| e.use_case == "login")
        .collect();
    assert_eq!(logins.len(), 2, "{logins:?}");
    assert_eq!(logins[0].error_code.as_deref(), Some("final_try_unconfirmed"));
    assert_eq!(logins[1].status.as_deref(), Some("OK"));
    assert_eq!(logins[1].user_id.as_deref(), Some(DOCTOR));
    let dump = serde_json::to_string(&sink.events()).expect("json");
    assert!(!dump.contains(PIN), "no PIN in the audit log");
}

#[tokio::test]
async fn a_wrong_pin_on_a_logged_in_card_is_reported_wrong() {
    setup();
    let (audit, sink) = AuditLog::memory();
    let relay = start(config(RELOGIN), audit).await;
    let grant = login_with_grant(&relay).await;
    let mut h = holder(&relay);

    let err = h
        .login(login_request("999999"))
        .await
        .expect_err("wrong PIN, though the card was logged in");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("wrong PIN"), "{}", err.message());
    let status = h
        .get_status(ehealth_proto::cps::v1::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(
        !status.logged_in,
        "the PIN was checked by the card after a logout"
    );

    // The session it was opened with has ended with it.
    let data = cps_relay::sample_tls12_transcript(Some("localhost"), &dmp_chain(&setup().pki));
    let err = gateway(&relay)
        .sign_for_authentication(sign_request(data, Some(&grant)))
        .await
        .expect_err("session ended");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let outcomes: Vec<_> = sink
        .events()
        .into_iter()
        .filter(|e| e.use_case == "login")
        .map(|e| e.error_code.unwrap_or_else(|| "ok".into()))
        .collect();
    assert_eq!(outcomes, ["ok", "wrong_pin"]);
    assert!(
        !serde_json::to_string(&sink.events())
            .expect("json")
            .contains("999999")
    );
}

#[tokio::test]
async fn wrong_pins_are_throttled() {
    setup();
    let (audit, sink) = AuditLog::memory();
    let relay = start(config(THROTTLE), audit).await;
    let mut h = holder(&relay);
    let err = h.login(login_request("999999")).await.expect_err("wrong PIN");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // Even the right PIN must wait 2^1 s; the card is not asked.
    let err = h.login(login_request(PIN)).await.expect_err("too soon");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("retry in 2 s"), "{}", err.message());
    assert_eq!(
        err.metadata().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("2")
    );
    // A malformed PIN costs no try and is refused for what it is.
    let err = h.login(login_request("12")).await.expect_err("malformed");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    h.login(login_request(PIN)).await.expect("after the delay");

    let outcomes: Vec<_> = sink
        .events()
        .into_iter()
        .filter(|e| e.use_case == "login")
        .map(|e| e.error_code.unwrap_or_else(|| "ok".into()))
        .collect();
    assert_eq!(outcomes, ["wrong_pin", "pin_throttled", "pin_format", "ok"]);
}
