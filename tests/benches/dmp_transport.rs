//! `make bench` for the gateway's transport (issue 4), measured in one run, as ratios:
//! - a full TLS 1.2 handshake whose CertificateVerify is signed by cps-relay (SoftHSM2 token,
//!   loopback mutual TLS, under the professional's session grant) versus the same handshake with
//!   the key in process;
//! - card signatures per 1,000 calls of one professional (target 1);
//! - requests per second on the gateway's pooled connection versus a raw rustls + hyper client
//!   posting the same bytes on one kept-alive connection (target >= 0.8).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use bytes::Bytes;
use dev_support::devpki::files;
use dmp_gateway::{Professional, TransportMetrics};
use e2e_tests::*;
use http_body_util::{BodyExt, Full};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

async fn handshake(config: Arc<rustls::ClientConfig>, addr: std::net::SocketAddr) -> Duration {
    let start = Instant::now();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("handshake");
    let elapsed = start.elapsed();
    drop(tls);
    elapsed
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let handshakes: usize = std::env::var("BENCH_HANDSHAKES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let pki = pki();
    let (relay, relay_metrics) =
        start_card_relay(DOCTOR_TOKENS[0], "127.0.0.1:0".parse().expect("addr")).await;
    let app = axum::Router::new().route("/echo", post(|body: Bytes| async move { body.len().to_string() }));
    let (dmp, _stop) = start_dmp_listener(&pki.path(files::IGC_CA_BUNDLE), app).await;
    let roots = Arc::new(service_kit::tls::load_roots(&pki.path(files::IGC_CA_BUNDLE)).expect("roots"));
    // The professional grants the integrator's backend a session; every signature is asked
    // under it.
    let (grant, grant_id) = issue_grant(relay.grpc_addr).await;

    // Local key: the same certificate chain, the private key in process.
    let chain = service_kit::tls::load_certs(&pki.path(files::CPS_AUTH_CHAIN)).expect("chain");
    let key = service_kit::tls::load_private_key(&pki.path(files::CPS_AUTH_KEY)).expect("key");
    let mut local = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(chain.clone(), key)
        .expect("local config");
    local.resumption = Resumption::disabled();
    let local = Arc::new(local);

    // Remote key: the gateway's resolver and signer thread towards the relay.
    let config = gateway_transport_config(dmp, &[("ws-1", relay.grpc_addr)]);
    let metrics = service_kit::metrics::Metrics::new();
    let transport_metrics = TransportMetrics::register(&metrics);
    let conns = dmp_gateway::connections(&config, transport_metrics.clone()).expect("transport");
    let directory = dmp_gateway::RelayDirectory::new(
        [(
            "ws-1".to_owned(),
            dmp_gateway::RelayEndpoint {
                id: "ws-1".into(),
                endpoint: format!("https://{}", relay.grpc_addr),
                server_name: "localhost".into(),
                api: dmp_gateway::RelayApi::Grpc,
            },
        )]
        .into_iter()
        .collect(),
        relay_client::RelayTls::from_files(
            &pki.path(files::SUITE_CA),
            &pki.path(files::GATEWAY_CLIENT_CERT),
            &pki.path(files::GATEWAY_CLIENT_KEY),
            "localhost",
        )
        .expect("tls"),
        Duration::from_secs(10),
    );
    let signer = Arc::new(
        directory
            .signer_thread(directory.get("ws-1").expect("relay"))
            .expect("signer"),
    );
    let consent = Arc::new(dmp_gateway::Consent::default());
    consent.act_under(&grant_id);
    let remote_key = dmp_gateway::RemoteKey::new(
        signer,
        consent,
        &[relay_client::Scheme::RsaPkcs1Sha256],
        Duration::from_secs(10),
        Default::default(),
        Default::default(),
    )
    .expect("remote key");
    let resolver = Arc::new(dmp_gateway::CardResolver::new(chain, remote_key));
    let remote = dmp_gateway::client_config(roots, &[dmp_gateway::TlsVersion::Tls12], resolver)
        .expect("remote config");
    let mut remote = (*remote).clone();
    remote.resumption = Resumption::disabled();
    let remote = Arc::new(remote);

    for _ in 0..20 {
        handshake(local.clone(), dmp).await;
        handshake(remote.clone(), dmp).await;
    }
    let mut local_t = Vec::with_capacity(handshakes);
    let mut remote_t = Vec::with_capacity(handshakes);
    for _ in 0..handshakes {
        local_t.push(handshake(local.clone(), dmp).await);
        remote_t.push(handshake(remote.clone(), dmp).await);
    }
    let (local_p50, remote_p50) = (p50(local_t), p50(remote_t));

    // Pooled gateway connection: signatures per 1,000 calls, requests per second.
    let body = Bytes::from(vec![b'x'; 10 * 1024]);
    let who = Professional {
        relay_id: "ws-1",
        professional_id: "810100000001",
        caller: INTEGRATOR,
        grant: Some(&grant),
    };
    let session = conns.session(&who).await.expect("session");
    conns
        .post(&session, "/echo", "application/octet-stream", &[], body.clone())
        .await
        .expect("first call");
    let before = relay_metrics.signatures_made();
    for _ in 0..1000 {
        conns
            .post(&session, "/echo", "application/octet-stream", &[], body.clone())
            .await
            .expect("call");
    }
    let per_thousand = relay_metrics.signatures_made() - before;
    let start = Instant::now();
    for _ in 0..calls {
        let session = conns.session(&who).await.expect("session");
        conns
            .post(&session, "/echo", "application/octet-stream", &[], body.clone())
            .await
            .expect("call");
    }
    let gateway_rps = calls as f64 / start.elapsed().as_secs_f64();

    // Raw rustls + hyper on one kept-alive connection, local key, same bytes.
    let mut local_resuming = (*local).clone();
    local_resuming.resumption = Resumption::default();
    let tcp = tokio::net::TcpStream::connect(dmp).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(local_resuming))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .expect("http1");
    tokio::spawn(conn);
    let start = Instant::now();
    for _ in 0..calls {
        let req = http::Request::post(format!("https://localhost:{}/echo", dmp.port()))
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .body(Full::new(body.clone()))
            .expect("request");
        // HTTP/1: one request at a time; wait until the connection has finished the last one.
        sender.ready().await.expect("connection ready");
        let resp = sender.send_request(req).await.expect("send");
        resp.into_body().collect().await.expect("body");
    }
    let raw_rps = calls as f64 / start.elapsed().as_secs_f64();

    println!("dmp-gateway transport benchmark ({handshakes} handshakes, {calls} calls of 10 KiB)");
    println!(
        "  TLS 1.2 handshake p50: local key {} µs, remote card signature {} µs, ratio remote/local {:.2}",
        local_p50.as_micros(),
        remote_p50.as_micros(),
        remote_p50.as_secs_f64() / local_p50.as_secs_f64()
    );
    println!(
        "  card signatures per 1,000 calls: {per_thousand} (target 1 for the session, 0 once open) {}",
        if per_thousand <= 1 { "ok" } else { "ABOVE TARGET" }
    );
    let ratio = gateway_rps / raw_rps;
    println!(
        "  requests/s: gateway pool {gateway_rps:.0}, raw rustls+hyper {raw_rps:.0}, ratio {ratio:.2} (target >= 0.80) {}",
        if ratio >= 0.8 { "ok" } else { "BELOW TARGET" }
    );
    relay.stop().await;
}
