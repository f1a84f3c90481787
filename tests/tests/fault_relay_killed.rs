//! Fault: the professional's cps-relay dies in the middle of a DMP handshake (issue 19).
//!
//! The test owns what it breaks: a relay on a SoftHSM2 token behind a [`RelayProxy`] (the port
//! the gateway knows), and a DMP listener demanding the card's certificate. The gateway opens a
//! DMP connection; when its signer asks the relay for the CertificateVerify signature, the relay
//! is killed (connections reset, port closed). Asserted:
//! - the call fails `UNAVAILABLE`, naming the relay, within the signature deadline;
//! - after the relay returns (a new process: the professional logs in and grants a session
//!   again), the next call succeeds, with a new handshake and one new signature: nothing
//!   half-open from the failed attempt is reused.

use std::net::SocketAddr;
use std::time::Instant;

use axum::routing::post;
use dev_support::devpki::files;
use dmp_gateway::Professional;
use e2e_tests::*;
use tonic::Code;

const DOCTOR: &str = "810100000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_handshake_fails_the_call_unavailable_and_the_next_call_after_its_return_succeeds()
{
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let (relay, _) = start_card_relay(SESSION_TOKENS[7], any).await;
    let proxy = RelayProxy::start(relay.grpc_addr).await;
    let app = axum::Router::new().route("/echo", post(|| async { "pong" }));
    let (dmp, _stop) = start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), app).await;
    let config = gateway_transport_config(dmp, &[("ws-1", proxy.addr)]);
    let deadline = config.dmp.signature_timeout;
    let metrics = service_kit::metrics::Metrics::new();
    let transport = dmp_gateway::TransportMetrics::register(&metrics);
    let conns = dmp_gateway::connections(&config, transport.clone()).expect("transport");

    let (grant, _) = issue_grant(relay.grpc_addr).await;
    let who = |grant| Professional {
        relay_id: "ws-1",
        professional_id: DOCTOR,
        caller: INTEGRATOR,
        grant: Some(grant),
    };
    // The card certificate is fetched and the grant checked before the fault.
    let session = conns.session(&who(&grant)).await.expect("session");
    let handshakes_before = transport.handshakes.get();

    proxy.kill_on_next_request();
    let started = Instant::now();
    let err = conns
        .post(
            &session,
            "/echo",
            "text/plain",
            &[],
            bytes::Bytes::from_static(b"ping"),
        )
        .await
        .expect_err("the relay died during the handshake");
    let failed_after = started.elapsed();
    assert!(
        proxy.is_killed().await,
        "the relay was killed by the signer's connection"
    );
    assert_eq!(
        transport.handshakes.get(),
        handshakes_before + 1,
        "the kill fell inside a DMP handshake"
    );
    assert_eq!(err.code(), Code::Unavailable, "{err} ({:?})", err.code());
    assert!(err.to_string().contains("cps-relay"), "names the relay: {err}");
    assert!(
        failed_after < deadline,
        "failed after {failed_after:?}, beyond the signature deadline {deadline:?}"
    );
    relay.stop().await;

    // The relay comes back: a new process on the same address, the card logged in again, a
    // new session granted.
    let (back, signatures) = start_card_relay(SESSION_TOKENS[7], any).await;
    proxy.restart(back.grpc_addr).await;
    let returned = Instant::now();
    let (grant, _) = issue_grant(back.grpc_addr).await;
    let session = conns
        .session(&who(&grant))
        .await
        .expect("session after the return");
    let response = conns
        .post(
            &session,
            "/echo",
            "text/plain",
            &[],
            bytes::Bytes::from_static(b"ping"),
        )
        .await
        .expect("the next call after the relay's return succeeds");
    let recovered = returned.elapsed();
    assert_eq!(response.status, http::StatusCode::OK);
    assert_eq!(&response.body[..], b"pong");
    assert_eq!(
        transport.handshakes.get(),
        handshakes_before + 2,
        "a new handshake, not a connection left from the failed one"
    );
    assert_eq!(
        signatures.signatures_made(),
        1,
        "signed once by the relay that returned"
    );
    eprintln!(
        "fault: cps-relay killed mid-handshake\n  \
         the call failed {:?} ({err}) after {failed_after:?} (signature deadline {deadline:?})\n  \
         relay back: grant + next call OK in {recovered:?}, one new handshake, one new signature",
        err.code()
    );
}
