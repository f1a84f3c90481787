//! Issue 4 end to end: the gateway's mutual TLS to the DMP with the professional's card
//! certificate, every CertificateVerify signature made by cps-relay on a SoftHSM2 token, under
//! the professional's session grant (issue 13).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Extension;
use axum::routing::{get, post};
use dev_support::devpki::files;
use dmp_gateway::{DmpConnections, Professional, TransportError};
use e2e_tests::*;
use service_kit::https::PeerCertificates;
use tonic::Code;

/// The DMP side of these tests: answers with the subject of the client certificate of the
/// connection the request came on.
fn echo_app() -> axum::Router {
    async fn who(Extension(certs): Extension<PeerCertificates>) -> String {
        match certs.0.first() {
            Some(c) => match x509_subject(c) {
                Some(s) => s,
                None => "unparsable".into(),
            },
            None => "anonymous".into(),
        }
    }
    axum::Router::new()
        .route("/echo", post(who))
        .route("/echo", get(who))
}

fn x509_subject(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

fn transport(dmp: SocketAddr, relays: &[(&str, SocketAddr)]) -> std::sync::Arc<DmpConnections> {
    let config = gateway_transport_config(dmp, relays);
    let metrics = service_kit::metrics::Metrics::new();
    dmp_gateway::connections(&config, dmp_gateway::TransportMetrics::register(&metrics)).expect("transport")
}

const DOCTOR: &str = "810100000001";

/// A call for `professional` through `relay` by the integrator, under `grant`.
fn who<'a>(relay: &'a str, professional: &'a str, grant: &'a str) -> Professional<'a> {
    Professional {
        relay_id: relay,
        professional_id: professional,
        caller: INTEGRATOR,
        grant: Some(grant),
    }
}

async fn echo(
    conns: &DmpConnections,
    relay: &str,
    professional: &str,
    grant: &str,
) -> Result<String, TransportError> {
    let session = conns.session(&who(relay, professional, grant)).await?;
    let resp = conns
        .post(
            &session,
            "/echo",
            "text/plain",
            &[],
            bytes::Bytes::from_static(b"ping"),
        )
        .await?;
    assert_eq!(resp.status, http::StatusCode::OK);
    Ok(String::from_utf8_lossy(&resp.body).into_owned())
}

async fn the_dmp_sees_the_card_certificate() {
    let (relay, relay_metrics) =
        start_card_relay(DOCTOR_TOKENS[0], "127.0.0.1:0".parse().expect("addr")).await;
    let (dmp, _stop) = start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), echo_app()).await;
    let conns = transport(dmp, &[("ws-1", relay.grpc_addr)]);
    let (grant, _) = issue_grant(relay.grpc_addr).await;
    assert_eq!(
        echo(&conns, "ws-1", DOCTOR, &grant)
            .await
            .expect("mutual TLS with the card"),
        DOCTOR
    );
    assert_eq!(
        relay_metrics.signatures_made(),
        1,
        "one CertificateVerify signed by the relay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_the_card_multi_thread_runtime() {
    the_dmp_sees_the_card_certificate().await;
}

/// One worker thread, shared with the relay: while the handshake waits for the signature, the
/// worker's other tasks (here the relay answering it) must still run. A handshake that simply
/// blocked its worker would stall them until the signature deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_handshake_does_not_stall_its_worker() {
    // Spawned, so that the handshake runs on the worker rather than on the test's own thread.
    tokio::spawn(the_dmp_sees_the_card_certificate())
        .await
        .expect("the relay signed while the handshake waited");
}

/// On a current-thread runtime the handshake blocks the only thread while the relay signs; the
/// signer thread has its own runtime, so this works as long as the relay is elsewhere (as in
/// production: another process). Here it runs on a runtime of its own.
#[tokio::test(flavor = "current_thread")]
async fn mutual_tls_with_the_card_current_thread_runtime() {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let stop = service_kit::CancellationToken::new();
    let relay_stop = stop.clone();
    let relay_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (relay, metrics) =
                start_card_relay(DOCTOR_TOKENS[5], "127.0.0.1:0".parse().expect("addr")).await;
            addr_tx.send((relay.grpc_addr, metrics)).expect("send");
            relay_stop.cancelled().await;
            relay.stop().await;
        });
    });
    let (relay_addr, relay_metrics) = addr_rx.recv().expect("relay started");
    let (dmp, _stop) = start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), echo_app()).await;
    let conns = transport(dmp, &[("ws-1", relay_addr)]);
    let (grant, _) = issue_grant(relay_addr).await;
    assert_eq!(
        echo(&conns, "ws-1", DOCTOR, &grant)
            .await
            .expect("mutual TLS on a current-thread runtime"),
        DOCTOR
    );
    assert_eq!(relay_metrics.signatures_made(), 1);
    stop.cancel();
    relay_thread.join().expect("relay thread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_thousand_calls_cost_one_signature() {
    let (relay, relay_metrics) =
        start_card_relay(DOCTOR_TOKENS[1], "127.0.0.1:0".parse().expect("addr")).await;
    let (dmp, _stop) = start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), echo_app()).await;
    let conns = transport(dmp, &[("ws-1", relay.grpc_addr)]);
    let (grant, _) = issue_grant(relay.grpc_addr).await;
    for _ in 0..1000 {
        assert_eq!(echo(&conns, "ws-1", DOCTOR, &grant).await.expect("call"), DOCTOR);
    }
    assert_eq!(
        relay_metrics.signatures_made(),
        1,
        "1,000 sequential calls, exactly one card signature"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn professionals_never_share_a_connection() {
    let (doctor, doctor_sigs) = start_card_relay_as(
        "doctor-ws",
        DOCTOR_TOKENS[2],
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await;
    let (nurse, nurse_sigs) =
        start_card_relay_as("nurse-ws", "nurse", "127.0.0.1:0".parse().expect("addr")).await;
    let (dmp, _stop) = start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), echo_app()).await;
    let conns = transport(
        dmp,
        &[("doctor-ws", doctor.grpc_addr), ("nurse-ws", nurse.grpc_addr)],
    );
    let (doctor_grant, _) = issue_grant(doctor.grpc_addr).await;
    let (nurse_grant, _) = issue_grant(nurse.grpc_addr).await;
    for _ in 0..20 {
        assert_eq!(
            echo(&conns, "doctor-ws", DOCTOR, &doctor_grant)
                .await
                .expect("doctor"),
            DOCTOR
        );
        assert_eq!(
            echo(&conns, "nurse-ws", "810100000002", &nurse_grant)
                .await
                .expect("nurse"),
            "810100000002"
        );
    }
    assert_eq!(doctor_sigs.signatures_made(), 1);
    assert_eq!(nurse_sigs.signatures_made(), 1);
    let _ = hsm().nurse_chain.clone();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_professional_and_unknown_relay_are_refused() {
    let (relay, sigs) = start_card_relay(DOCTOR_TOKENS[3], "127.0.0.1:0".parse().expect("addr")).await;
    let (dmp, _stop) = start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), echo_app()).await;
    let conns = transport(dmp, &[("ws-1", relay.grpc_addr)]);
    let (grant, _) = issue_grant(relay.grpc_addr).await;
    let err = echo(&conns, "ws-1", "810100000099", &grant)
        .await
        .expect_err("someone else's card");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(err.to_string().contains("810100000001"), "{err}");
    let err = echo(&conns, "ws-9", DOCTOR, &grant)
        .await
        .expect_err("not configured");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(
        err.to_string().contains("ws-1"),
        "names the configured relays: {err}"
    );
    assert_eq!(sigs.signatures_made(), 0, "nothing was signed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_gone_during_the_handshake_then_back() {
    // A fixed port, so the relay can come back where the gateway expects it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let (relay, _) = start_card_relay(DOCTOR_TOKENS[4], addr).await;
    let (dmp, _stop) = start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), echo_app()).await;
    let mut config = gateway_transport_config(dmp, &[("ws-1", addr)]);
    // The certificate is fetched before the relay goes away; the handshake then needs it.
    config.dmp.certificate_ttl = Duration::from_secs(600);
    let metrics = service_kit::metrics::Metrics::new();
    let conns = dmp_gateway::connections(&config, dmp_gateway::TransportMetrics::register(&metrics))
        .expect("transport");
    let (grant, _) = issue_grant(addr).await;
    conns
        .session(&who("ws-1", DOCTOR, &grant))
        .await
        .expect("certificate fetched");
    relay.stop().await;

    let err = echo(&conns, "ws-1", DOCTOR, &grant)
        .await
        .expect_err("relay gone");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("cps-relay"), "{err}");

    // The relay's restart ended the card session: the professional grants a new one.
    let (_back, sigs) = start_card_relay(DOCTOR_TOKENS[4], addr).await;
    let (grant, _) = issue_grant(addr).await;
    assert_eq!(
        echo(&conns, "ws-1", DOCTOR, &grant).await.expect("re-handshake"),
        DOCTOR
    );
    assert_eq!(sigs.signatures_made(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_deadline_is_deadline_exceeded() {
    let (relay, _) = start_card_relay(DOCTOR_TOKENS[5], "127.0.0.1:0".parse().expect("addr")).await;
    let (dmp, _stop) = start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), echo_app()).await;
    let mut config = gateway_transport_config(dmp, &[("ws-1", relay.grpc_addr)]);
    // No relay answers over mutual TLS in 1 µs: the answer comes after the deadline.
    config.dmp.signature_timeout = Duration::from_micros(1);
    let metrics = service_kit::metrics::Metrics::new();
    let conns = dmp_gateway::connections(&config, dmp_gateway::TransportMetrics::register(&metrics))
        .expect("transport");
    let (grant, _) = issue_grant(relay.grpc_addr).await;
    let err = echo(&conns, "ws-1", DOCTOR, &grant).await.expect_err("too slow");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(err.to_string().contains("did not sign"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificates_on_either_side() {
    let (relay, _) = start_card_relay(DOCTOR_TOKENS[0], "127.0.0.1:0".parse().expect("addr")).await;
    // A DMP that trusts another IGC: it refuses the card with a TLS alert.
    let other = tempfile::tempdir().expect("tempdir");
    let other_pki = dev_support::devpki::DevPki::ensure(other.path()).expect("other pki");
    let (dmp, _stop) = start_dmp_listener(&other_pki.path(files::IGC_CA_BUNDLE), echo_app()).await;
    let conns = transport(dmp, &[("ws-1", relay.grpc_addr)]);
    let (grant, _) = issue_grant(relay.grpc_addr).await;
    let err = echo(&conns, "ws-1", DOCTOR, &grant)
        .await
        .expect_err("card refused");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(
        err.to_string()
            .contains("refused the professional's card certificate"),
        "{err}"
    );

    // A gateway that does not trust the DMP's server certificate.
    let (dmp, _stop2) = start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), echo_app()).await;
    let mut config = gateway_transport_config(dmp, &[("ws-1", relay.grpc_addr)]);
    config.dmp.ca_bundle = other_pki.path(files::IGC_CA_BUNDLE);
    let metrics = service_kit::metrics::Metrics::new();
    let conns = dmp_gateway::connections(&config, dmp_gateway::TransportMetrics::register(&metrics))
        .expect("transport");
    let err = echo(&conns, "ws-1", DOCTOR, &grant)
        .await
        .expect_err("server not trusted");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(
        err.to_string().contains("server certificate was rejected"),
        "{err}"
    );
}

/// Interop with a TLS peer we did not write: `openssl s_server -tls1_2 -Verify 1` accepts the
/// gateway's remote-signed handshake and shows the card certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_server_accepts_the_remote_signed_handshake() {
    let (relay, sigs) = start_card_relay(DOCTOR_TOKENS[1], "127.0.0.1:0".parse().expect("addr")).await;
    let pki = pki();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-tls1_2", "-Verify", "1", "-www", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(pki.path(files::IGC_CA_BUNDLE))
        .arg("-cert")
        .arg(pki.path(files::DMP_SERVER_CHAIN))
        .arg("-key")
        .arg(pki.path(files::DMP_SERVER_KEY))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl is installed");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = sigs.signatures_made();
    let conns = transport(addr, &[("ws-1", relay.grpc_addr)]);
    let (grant, _) = issue_grant(relay.grpc_addr).await;
    let session = conns
        .session(&who("ws-1", DOCTOR, &grant))
        .await
        .expect("session");
    let result = conns.get(&session, "/").await;
    let _ = server.kill();
    let _ = server.wait();
    let page = result.expect("openssl s_server answered");
    let text = String::from_utf8_lossy(&page.body);
    assert!(text.contains("Client certificate"), "{text}");
    assert!(text.contains("810100000001"), "{text}");
    assert!(text.contains("TLSv1.2"), "{text}");
    assert_eq!(sigs.signatures_made(), before + 1);
}

/// Each relay's certificate is verified against that relay's own name: the configured
/// `server_name`, else the endpoint's host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_relay_is_verified_under_its_own_name() {
    let (relay, _) =
        start_card_relay_as("by-host", DOCTOR_TOKENS[3], "127.0.0.1:0".parse().expect("addr")).await;
    let (dmp, _stop) = start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), echo_app()).await;
    let mut config = gateway_transport_config(
        dmp,
        &[("by-host", relay.grpc_addr), ("misnamed", relay.grpc_addr)],
    );
    if let Some(r) = config.relays.get_mut("by-host") {
        r.server_name = None; // 127.0.0.1, which the relay's certificate names
    }
    if let Some(r) = config.relays.get_mut("misnamed") {
        r.server_name = Some("not-the-relay.example".into());
    }
    let metrics = service_kit::metrics::Metrics::new();
    let conns = dmp_gateway::connections(&config, dmp_gateway::TransportMetrics::register(&metrics))
        .expect("transport");
    let (grant, _) = issue_grant(relay.grpc_addr).await;
    assert_eq!(
        echo(&conns, "by-host", DOCTOR, &grant)
            .await
            .expect("verified as 127.0.0.1"),
        DOCTOR
    );
    let err = echo(&conns, "misnamed", DOCTOR, &grant)
        .await
        .expect_err("certificate does not name it");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("misnamed"), "{err}");
}
