//! `make bench`: signatures through cps-relay over loopback mutual TLS versus the same SoftHSM2
//! token called directly through cryptoki, measured in one run and reported as ratios (these
//! machines are shared and noisy; absolute figures mean little).
//!
//! Targets (issue 3): relay throughput ≥ 0.9 of direct, ≤ 250 µs added p50 latency.
//! Throughput is measured with enough calls in flight to keep the card busy (the relay
//! serialises card access itself); latency with one call at a time.

use std::time::{Duration, Instant};

use audit_log::AuditLog;
use cps_relay::BackendKind;
use cps_relay::Config;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use dev_support::devpki::{DevPki, files};
use dev_support::softhsm::SoftHsm;
use relay_client::{CpsRelayClient, RelayTls, Scheme};
use service_kit::CancellationToken;

const PIN: &str = "123456";
const TOKEN: &str = "bench";

/// A handshake with the dev DMP server (its real certificate chain), as the gateway makes.
fn transcript_with_certificates(pki: &DevPki) -> Vec<u8> {
    let chain: Vec<Vec<u8>> = service_kit::tls::load_certs(&pki.path(files::DMP_SERVER_CHAIN))
        .expect("dmp chain")
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    cps_relay::sample_tls12_transcript(Some("localhost"), &chain)
}

/// A signature under the session grant, as a gateway asks for it.
async fn sign(client: &CpsRelayClient, grant_id: &str, data: Vec<u8>) -> Vec<u8> {
    let mut req = tonic::Request::new(ehealth_proto::cps::v1::SignForAuthenticationRequest {
        scheme: Scheme::RsaPkcs1Sha256.to_proto() as i32,
        data,
    });
    req.metadata_mut().insert(
        relay_client::GRANT_ID_METADATA,
        grant_id.parse().expect("grant id"),
    );
    client
        .generated()
        .sign_for_authentication(req)
        .await
        .expect("sign")
        .into_inner()
        .signature
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn summarise(mut lat: Vec<Duration>, total: Duration, n: usize) -> Figures {
    lat.sort_unstable();
    Figures {
        per_second: n as f64 / total.as_secs_f64(),
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
    }
}

fn main() {
    let n: usize = std::env::var("BENCH_SIGNATURES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = DevPki::ensure(&dir.path().join("pki")).expect("pki");
    let hsm = SoftHsm::prepare().expect("SoftHSM2");
    hsm.init_token(TOKEN, "so-secret", PIN).expect("token");
    hsm.import_identity(
        TOKEN,
        PIN,
        &pki.path(files::CPS_AUTH_KEY),
        &pki.path(files::CPS_AUTH_CERT),
        "01",
        "auth",
    )
    .expect("import");
    let data = transcript_with_certificates(&pki);

    // Direct: cryptoki on one session, the mechanism the relay uses (CKM_RSA_PKCS over a
    // SHA-256 DigestInfo, hashing included in the timing).
    let ctx = cps_relay::pkcs11_context(&hsm.module()).expect("module");
    let slot = ctx
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| i.label().trim() == TOKEN)
                .unwrap_or(false)
        })
        .expect("bench token");
    let session = ctx.open_ro_session(slot).expect("session");
    session
        .login(UserType::User, Some(&PIN.to_owned().into()))
        .expect("login");
    let key = session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY), Attribute::Id(vec![1])])
        .expect("find")[0];
    let sign_direct = || {
        let hash = cps_relay::sha256(&data);
        session
            .sign(&Mechanism::RsaPkcs, key, &cps_relay::sha256_digest_info(&hash))
            .expect("sign")
    };
    for _ in 0..200 {
        sign_direct();
    }
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        sign_direct();
        lat.push(t.elapsed());
    }
    let direct = summarise(lat, start.elapsed(), n);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (seq, par, transport) = rt.block_on(async {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().expect("addr");
        config.metrics.listen = None;
        if let Some(tls) = config.server.tls.as_mut() {
            tls.cert = pki.path(files::RELAY_SERVER_CERT);
            tls.key = pki.path(files::RELAY_SERVER_KEY);
            tls.client_ca = Some(pki.path(files::SUITE_CA));
        }
        config.backend.kind = BackendKind::Pkcs11;
        config.backend.pkcs11.module = hsm.module();
        config.backend.pkcs11.token_label = Some(TOKEN.into());
        config.backend.pkcs11.key_id = Some("01".into());
        config.access.rate_per_second = 0;
        config.access.holders = vec!["holder-ui".into()];
        config.access.gateways = vec![cps_relay::GatewayAccess {
            identity: "dmp-gateway".into(),
            professionals: vec!["*".into()],
        }];
        config.access.grant_callers = vec!["integrator".into()];
        config.grants.signing_key = pki.path(files::RELAY_GRANT_KEY);
        config.signing.server_ca = pki.path(files::IGC_CA_BUNDLE);
        config.signing.allowed_hosts = vec!["localhost".into()];
        let shutdown = CancellationToken::new();
        let relay = cps_relay::start_with(config, AuditLog::disabled(), shutdown.clone())
            .await
            .expect("relay");
        let tls = RelayTls::from_files(
            &pki.path(files::SUITE_CA),
            &pki.path(files::GATEWAY_CLIENT_CERT),
            &pki.path(files::GATEWAY_CLIENT_KEY),
            "localhost",
        )
        .expect("tls");
        let client = CpsRelayClient::connect_lazy(
            &format!("https://{}", relay.grpc_addr),
            &tls,
            Duration::from_secs(10),
        )
        .expect("client");
        // The card is unlocked above (same process), so the card session is open: the holder's
        // UI grants it to the integrator, and every signature is asked under that grant.
        let holder_tls = RelayTls::from_files(
            &pki.path(files::SUITE_CA),
            &pki.path(files::HOLDER_UI_CLIENT_CERT),
            &pki.path(files::HOLDER_UI_CLIENT_KEY),
            "localhost",
        )
        .expect("tls");
        let grant_id = CpsRelayClient::connect_lazy(
            &format!("https://{}", relay.grpc_addr),
            &holder_tls,
            Duration::from_secs(10),
        )
        .expect("holder client")
        .generated()
        .issue_session_grant(ehealth_proto::cps::v1::IssueSessionGrantRequest {
            grantee: "integrator".into(),
            lifetime_seconds: 0,
        })
        .await
        .expect("session grant")
        .into_inner()
        .grant_id;
        for _ in 0..200 {
            sign(&client, &grant_id, data.clone()).await;
        }
        // One call at a time: latency.
        let mut lat = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            sign(&client, &grant_id, data.clone()).await;
            lat.push(t.elapsed());
        }
        let seq = summarise(lat, start.elapsed(), n);
        // The same call refused before the card (unknown scheme): the gRPC + mutual TLS round
        // trip alone, to split the added latency between transport and card access.
        let mut lat = Vec::with_capacity(n);
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            let refused = client
                .generated()
                .sign_for_authentication(ehealth_proto::cps::v1::SignForAuthenticationRequest {
                    scheme: 99,
                    data: data.clone(),
                })
                .await
                .expect_err("unknown scheme");
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
            lat.push(t.elapsed());
        }
        let transport = summarise(lat, start.elapsed(), n);
        // Eight calls in flight: throughput.
        let in_flight = 8;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..in_flight {
            let c = client.clone();
            let d = data.clone();
            let grant_id = grant_id.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(n / in_flight);
                for _ in 0..n / in_flight {
                    let t = Instant::now();
                    sign(&c, &grant_id, d.clone()).await;
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut all = Vec::with_capacity(n);
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        let count = all.len();
        let par = summarise(all, start.elapsed(), count);
        shutdown.cancel();
        (seq, par, transport)
    });

    println!("cps-relay benchmark: {n} RSA-2048 SHA256WithRSA signatures on SoftHSM2, one card session");
    println!(
        "  direct cryptoki          {:>8.0} sig/s   p50 {:>7.0} µs   p99 {:>7.0} µs",
        direct.per_second,
        direct.p50.as_micros(),
        direct.p99.as_micros()
    );
    println!(
        "  relay, 1 in flight       {:>8.0} sig/s   p50 {:>7.0} µs   p99 {:>7.0} µs",
        seq.per_second,
        seq.p50.as_micros(),
        seq.p99.as_micros()
    );
    println!(
        "  relay, refused call      {:>8.0} req/s   p50 {:>7.0} µs   p99 {:>7.0} µs   (transport alone)",
        transport.per_second,
        transport.p50.as_micros(),
        transport.p99.as_micros()
    );
    println!(
        "  relay, 8 in flight       {:>8.0} sig/s   p50 {:>7.0} µs   p99 {:>7.0} µs",
        par.per_second,
        par.p50.as_micros(),
        par.p99.as_micros()
    );
    let ratio = par.per_second / direct.per_second;
    let added = seq.p50.as_micros() as i128 - direct.p50.as_micros() as i128;
    println!(
        "  throughput relay/direct  {ratio:.2}  (target >= 0.90) {}",
        if ratio >= 0.9 { "ok" } else { "BELOW TARGET" }
    );
    println!(
        "  added p50 latency        {added} µs  (target <= 250 µs) {}",
        if added <= 250 { "ok" } else { "ABOVE TARGET" }
    );
}
