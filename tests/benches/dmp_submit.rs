//! `make bench` for the DMP transactions (issue 5), measured in one run, as ratios:
//! - SubmitDocuments of 10 KiB and 1 MiB CDA documents through the gateway (gRPC → gateway →
//!   card-authenticated TLS → DMP simulator): throughput and p50/p99 latency, versus a raw
//!   rustls + hyper client posting the same kind of MTOM message (built by the same code, one
//!   per request, so every request is a fresh submission) to the same simulator on one
//!   kept-alive connection (target >= 0.8 for 1 MiB);
//! - the gateway's peak memory per in-flight 1 MiB submission (high-water RSS growth of the test
//!   process while 16 submissions are in flight, divided by 16, minus the 1 MiB copy the
//!   in-process simulator stores; measured first, before the other phases raise the high-water
//!   mark). It includes the client's encoding of the request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dev_support::devpki::files;
use dmp_gateway::{CallContext, Submit, XdsSettings, prepare, samples};
use dmp_protocol::vihf::{LpsIdentity, ProfessionalIdentity};
use dmp_protocol::xades::SoftwareSigner;
use e2e_tests::*;
use ehealth_proto::dmp::v1 as pb;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::ServerName;

const DOCTOR: &str = "810100000001";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

struct Stats {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn stats(mut times: Vec<Duration>, total: Duration) -> Stats {
    times.sort_unstable();
    Stats {
        per_second: times.len() as f64 / total.as_secs_f64(),
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
    }
}

async fn run() {
    let small_n: usize = std::env::var("BENCH_SUBMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let large_n: usize = (small_n / 4).max(20);
    let pki = pki();
    let (relay, _) = start_card_relay(DOCTOR_TOKENS[0], "127.0.0.1:0".parse().expect("addr")).await;
    let sim = Arc::new(dmp_sim::DmpSimulator::new(dmp_sim::SimConfig::default()));
    let (dmp, _stop) =
        start_dmp_listener(&pki.path(files::IGC_CA_BUNDLE), dmp_sim::router(sim.clone())).await;
    let gateway = start_dmp_gateway(gateway_transport_config(dmp, &[("ws-1", relay.grpc_addr)])).await;
    // The integrator's backend over mutual TLS, under the professional's session grant.
    let (grant, _) = issue_grant(relay.grpc_addr).await;
    let client = gateway_client(&gateway, Some(&grant)).await;
    let auth = pb::AuthenticationContext {
        relay_id: "ws-1".into(),
        ..samples::auth_context(DOCTOR)
    };

    // The raw baseline: same messages, built in advance by the gateway's own code.
    let cert = service_kit::tls::load_certs(&pki.path(files::CPS_AUTH_CERT)).expect("cert");
    let professional = ProfessionalIdentity::from_certificate(&cert[0]).expect("identity");
    let signer =
        SoftwareSigner::from_pem_files(&pki.path(files::CPS_SIGN_KEY), &pki.path(files::CPS_SIGN_CERT))
            .expect("signer");
    let lps = LpsIdentity::default();
    let settings = XdsSettings::default();
    let roots = Arc::new(service_kit::tls::load_roots(&pki.path(files::IGC_CA_BUNDLE)).expect("roots"));
    let chain = service_kit::tls::load_certs(&pki.path(files::CPS_AUTH_CHAIN)).expect("chain");
    let key = service_kit::tls::load_private_key(&pki.path(files::CPS_AUTH_KEY)).expect("key");
    let local = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("local config");
    let local = Arc::new(local);

    let mut seq = 0u64;
    // Memory per in-flight 1 MiB submission.
    // Warm-up: the session, the runtime's buffers.
    for _ in 0..3 {
        seq += 1;
        let mut req =
            samples::submit_request(DOCTOR, &format!("1.2.250.1.999.1.1.7898.88.{seq}"), 1024 * 1024);
        req.auth_context = Some(auth.clone());
        client.clone().submit_documents(req).await.expect("warm-up");
    }
    let before = vm_hwm_kib();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        seq += 1;
        let mut req =
            samples::submit_request(DOCTOR, &format!("1.2.250.1.999.1.1.7898.88.{seq}"), 1024 * 1024);
        req.auth_context = Some(auth.clone());
        let mut c = client.clone();
        tasks.push(tokio::spawn(
            async move { c.submit_documents(req).await.map(|_| ()) },
        ));
    }
    for t in tasks {
        t.await.expect("task").expect("submit");
    }
    // The simulator, in the same process, keeps each 1 MiB document: not the gateway's memory.
    let per_submission_kib = (vm_hwm_kib().saturating_sub(before) / 16).saturating_sub(1024);

    let mut results = Vec::new();
    for (label, size, n) in [("10 KiB", 10 * 1024, small_n), ("1 MiB", 1024 * 1024, large_n)] {
        // Warm-up (also opens the professional's session: one card signature).
        for _ in 0..3 {
            seq += 1;
            let mut req = samples::submit_request(DOCTOR, &format!("1.2.250.1.999.1.1.7898.88.{seq}"), size);
            req.auth_context = Some(auth.clone());
            client.clone().submit_documents(req).await.expect("warm-up");
        }
        // Through the gateway.
        let mut times = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            seq += 1;
            let mut req = samples::submit_request(DOCTOR, &format!("1.2.250.1.999.1.1.7898.88.{seq}"), size);
            req.auth_context = Some(auth.clone());
            let t = Instant::now();
            let r = client
                .clone()
                .submit_documents(req)
                .await
                .expect("submit")
                .into_inner();
            times.push(t.elapsed());
            assert_eq!(r.status(), pb::RegistryResponseStatus::Success, "{:?}", r.errors);
        }
        let gateway = stats(times, start.elapsed());

        // Raw rustls posting equivalent MTOM messages.
        let ctx = CallContext {
            professional: &professional,
            lps: &lps,
            settings: &settings,
            signature_document: None,
            signer: Some(&signer),
            endpoint: "https://localhost/si-dmp-server/v2/services/repository",
            now: time::OffsetDateTime::now_utc(),
        };
        let mut messages = Vec::with_capacity(n);
        for _ in 0..n {
            seq += 1;
            let p = prepare::<Submit>(
                samples::submit_request(DOCTOR, &format!("1.2.250.1.999.1.1.7898.88.{seq}"), size),
                &ctx,
            )
            .expect("prepare");
            messages.push((p.outgoing.body.content_type.clone(), p.outgoing.body.to_bytes()));
        }
        // A fresh kept-alive connection for the raw client (an idle one may have been closed).
        let tcp = tokio::net::TcpStream::connect(dmp).await.expect("connect");
        let tls = tokio_rustls::TlsConnector::from(local.clone())
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("handshake");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("http1");
        tokio::spawn(conn);
        let mut times = Vec::with_capacity(n);
        let start = Instant::now();
        for (content_type, body) in messages {
            sender.ready().await.expect("connection ready");
            let req = http::Request::post(format!(
                "https://localhost:{}{}",
                dmp.port(),
                dmp_sim::paths::REPOSITORY
            ))
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .expect("request");
            let t = Instant::now();
            let resp = sender.send_request(req).await.expect("send");
            let body: Bytes = resp.into_body().collect().await.expect("body").to_bytes();
            times.push(t.elapsed());
            assert!(
                String::from_utf8_lossy(&body).contains("ResponseStatusType:Success"),
                "raw submission refused"
            );
        }
        let raw = stats(times, start.elapsed());
        results.push((label, gateway, raw));
    }

    println!(
        "dmp-gateway SubmitDocuments benchmark ({small_n} × 10 KiB, {large_n} × 1 MiB; gateway vs raw rustls+hyper to the same simulator)"
    );
    for (label, g, r) in &results {
        let ratio = g.per_second / r.per_second;
        let verdict = if *label == "1 MiB" {
            if ratio >= 0.8 { " ok" } else { " BELOW TARGET" }
        } else {
            ""
        };
        println!(
            "  {label}: gateway {:.1}/s p50 {:.1} ms p99 {:.1} ms | raw {:.1}/s p50 {:.1} ms p99 {:.1} ms | throughput ratio {ratio:.2}{}{verdict}",
            g.per_second,
            g.p50.as_secs_f64() * 1e3,
            g.p99.as_secs_f64() * 1e3,
            r.per_second,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            if *label == "1 MiB" {
                " (target >= 0.80)"
            } else {
                ""
            },
        );
    }
    println!(
        "  peak memory growth per in-flight 1 MiB submission (16 concurrent, the simulator's stored copy subtracted): {per_submission_kib} KiB (document: 1024 KiB)"
    );
    relay.stop().await;
}
