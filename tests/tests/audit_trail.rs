//! The services' events reach the durable audit log (PostgreSQL in CI: `make test` sets
//! DATABASE_URL; a missing database fails the test) with the attributes operators search by,
//! and never a raw token, signature or PIN.

use audit_log::{AuditReader, EventFilter};
use dev_support::test_database::TestDatabase;
use e2e_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_signatures_are_recorded_in_the_database() {
    let db = TestDatabase::create()
        .await
        .expect("a PostgreSQL database (make test sets DATABASE_URL)");
    let mut config = cps_relay_config();
    config.audit = audit_log::AuditSettings::for_url(db.url());
    let relay = start_cps_relay(config).await;
    // The software key is unlocked from the start (a card session is open); the holder grants
    // the integrator a session and the gateway signs under that grant.
    let (_, grant_id) = issue_grant(relay.grpc_addr).await;
    let mut client = relay_client(relay.grpc_addr);
    let data = dmp_transcript();
    let signature = client
        .sign_under_grant(relay_client::Scheme::RsaPkcs1Sha256, data.clone(), &grant_id)
        .await
        .expect("signature");

    let reader = AuditReader::connect(&audit_log::AuditSettings::for_url(db.url()))
        .await
        .expect("reader");
    let events = reader
        .list(&EventFilter {
            professional: Some("810100000001".into()),
            service: Some("cps-relay".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    let use_cases: Vec<&str> = events.iter().map(|e| e.event.use_case.as_str()).collect();
    assert_eq!(
        use_cases,
        ["issue_session_grant", "sign_for_authentication"],
        "{events:?}"
    );
    let e = &events[1].event;
    assert_eq!(e.use_case, "sign_for_authentication");
    assert_eq!(e.status.as_deref(), Some("OK"));
    assert!(
        e.peer.as_deref().is_some_and(|p| p.contains("dmp-gateway")),
        "{:?}",
        e.peer
    );
    let digest = hex_sha256(&data);
    assert_eq!(e.attributes["data_sha256"], digest.as_str());
    let everything =
        serde_json::to_string(&events.iter().map(|e| e.to_json()).collect::<Vec<_>>()).expect("json");
    assert!(!everything.contains(&hex(&signature)) && !everything.contains(&hex(&data)));
    assert!(reader.find_token_like().await.expect("scan").is_empty());
    relay.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_sha256(data: &[u8]) -> String {
    let digest = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(data)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&digest.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Every DMP transaction is recorded (professional, patient INS, transaction, outcome); when the
/// audit log cannot be written, nothing is sent to the DMP (issue 7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmp_transactions_are_recorded_and_fail_closed() {
    use dev_support::devpki::files;
    use dmp_gateway::samples;
    use ehealth_proto::dmp::v1 as pb;
    use std::sync::Arc;

    let db = TestDatabase::create()
        .await
        .expect("a PostgreSQL database (make test sets DATABASE_URL)");
    let (relay, signatures) = start_card_relay(DOCTOR_TOKENS[2], "127.0.0.1:0".parse().expect("addr")).await;
    let sim = Arc::new(dmp_sim::DmpSimulator::new(dmp_sim::SimConfig::default()));
    let (dmp, _stop) =
        start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), dmp_sim::router(sim.clone())).await;
    let mut config = gateway_transport_config(dmp, &[("ws-1", relay.grpc_addr)]);
    config.audit = audit_log::AuditSettings::for_url(db.url());
    let gateway = start_dmp_gateway(config).await;
    let (grant, grant_id) = issue_grant(relay.grpc_addr).await;
    let mut client = gateway_client(&gateway, Some(&grant)).await;
    let request = || pb::TestPatientDmpRequest {
        auth_context: Some(pb::AuthenticationContext {
            relay_id: "ws-1".into(),
            ..samples::auth_context("810100000001")
        }),
        patient: Some(samples::patient()),
    };
    client.test_patient_dmp(request()).await.expect("TD0.2");

    let reader = AuditReader::connect(&audit_log::AuditSettings::for_url(db.url()))
        .await
        .expect("reader");
    let events = reader
        .list(&EventFilter {
            patient: Some(samples::TEST_INS.into()),
            service: Some("dmp-gateway".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(events.len(), 2, "request and outcome: {events:?}");
    let outcome = &events[1].event;
    assert_eq!(outcome.use_case, "td0.2_test_patient_dmp");
    assert_eq!(outcome.user_id.as_deref(), Some("810100000001"));
    assert_eq!(outcome.status.as_deref(), Some("OK"));
    assert_eq!(outcome.error_code.as_deref(), Some("AUTHORIZATION_VALIDE"));
    // Issue 13: who called, under which grant, for the professional read from the card.
    for e in &events {
        assert_eq!(e.event.client_id.as_deref(), Some(INTEGRATOR), "{e:?}");
        assert_eq!(e.event.token_jtis, vec![grant_id.clone()], "{e:?}");
        assert_eq!(e.event.user_id.as_deref(), Some("810100000001"), "{e:?}");
    }
    assert!(
        !serde_json::to_string(&events.iter().map(|e| e.to_json()).collect::<Vec<_>>())
            .expect("json")
            .contains(&grant),
        "the grant itself is never recorded"
    );
    assert!(reader.find_token_like().await.expect("scan").is_empty());
    assert_eq!(signatures.signatures_made(), 1);

    // The database goes away (dropped): a submission is refused before anything leaves.
    drop(reader);
    drop(db);
    let mut submit = samples::submit_request("810100000001", "1.2.250.1.999.1.1.7898.77.9", 1024);
    submit.auth_context = request().auth_context;
    let err = client
        .submit_documents(submit)
        .await
        .expect_err("audit unavailable");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("audit"), "{}", err.message());
    assert_eq!(sim.document_count(), 0, "the DMP received nothing");
    relay.stop().await;
}
