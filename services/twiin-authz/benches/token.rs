//! `make bench` for twiin-authz (issue 6): throughput and latency of both use cases, each
//! reported as a ratio against a baseline measured in the same run.
//!
//! - Use case 3.2 (full token request over plain HTTP: two ES512 checks of the GtK's
//!   assertions, ZORG-AB answers cached, one ES512 subject token, GetTokenRequest to the AS ZA
//!   simulator which checks it and signs an RS256 AORTA token) against its crypto-bound limit:
//!   the signature checks and signatures one request needs, timed alone, times the cores.
//! - The same with the audit log off (`AuditLog::disabled()`), as the ratio on/off.
//! - p50/p99 at half the measured peak rate (open loop).
//! - Use case 3.1 over gRPC against the cost of its two ES512 signatures (+ one RS256 check).
//! - Cold start (issue 14): p99 of the first 2 seconds of load (32 in flight) on a service just
//!   started, nothing cached yet (ZORG-AB records, the client's JWKS, connections, the audit
//!   log's pool).
//!
//! Targets (issue 6): 3.2 ≥ 0.5 of its limit, audit on/off ≥ 0.85, p99 ≤ 20 ms at half peak;
//! (issue 14) cold-start p99 ≤ 50 ms.
//! The audit log is on PostgreSQL (a fresh database; `make bench` sets DATABASE_URL).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use common::*;
use ehealth_proto::twiin::v1::IssueTwiinAssertionsRequest;

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// CPU time per operation (process CPU time, so other load on the machine does not inflate it;
/// nothing else runs in this process while it is measured).
fn per_op(n: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..(n / 10).max(1) {
        f();
    }
    let t = cpu_time();
    for _ in 0..n {
        f();
    }
    (cpu_time() - t) / n
}

struct Crypto {
    es512_sign: Duration,
    es512_verify: Duration,
    rs256_sign: Duration,
    rs256_verify: Duration,
}

fn crypto_costs() -> Crypto {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P521_SHA512_FIXED_SIGNING, &rng).expect("key");
    let kp =
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P521_SHA512_FIXED_SIGNING, doc.as_ref()).expect("key");
    let msg = vec![7u8; 600];
    let sig = kp.sign(&rng, &msg).expect("sign");
    let pk = UnparsedPublicKey::new(
        &signature::ECDSA_P521_SHA512_FIXED,
        kp.public_key().as_ref().to_vec(),
    );
    let es512_sign = per_op(1500, || {
        kp.sign(&rng, &msg).expect("sign");
    });
    let es512_verify = per_op(800, || pk.verify(&msg, sig.as_ref()).expect("verify"));
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let mut out = vec![0u8; rsa.public_modulus_len()];
    let rs256_sign = per_op(1000, || {
        rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, &msg, &mut out)
            .expect("sign")
    });
    let rpk = UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        rsa.public_key().as_ref().to_vec(),
    );
    let rs256_verify = per_op(10000, || rpk.verify(&msg, &out).expect("verify"));
    Crypto {
        es512_sign,
        es512_verify,
        rs256_sign,
        rs256_verify,
    }
}

/// CPU time (user + system) this process has used, from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // After the command name: state, ppid, ..., utime (12th), stime (13th).
    let f: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((num(11) + num(12)) * 10)
}

/// CPU time used so far by the PostgreSQL server processes on this machine (all of them: the
/// benchmark's database is the only busy one), or `None` when the server is not local.
fn postgres_cpu_time() -> Option<Duration> {
    let mut ticks = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != "postgres" {
            continue;
        }
        found = true;
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        ticks += num(11) + num(12);
    }
    found.then(|| Duration::from_millis(ticks * 10))
}

/// Times `fdatasync` of an 8 KiB write every 2 ms in a file under the target directory (the
/// disk the local database usually shares) until `stop` is set; returns the sorted latencies.
/// A durable commit waits for such a flush, so its tail bounds the audit log's latency tail.
fn fsync_probe(stop: Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        use std::io::{Seek, SeekFrom, Write};
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fsync-probe");
        let mut lat = Vec::new();
        let Ok(mut file) = std::fs::File::create(&path) else {
            return lat;
        };
        let block = [0u8; 8192];
        for i in 0u64.. {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let written = file
                .seek(SeekFrom::Start((i % 64) * 8192))
                .and_then(|_| file.write_all(&block));
            let t = Instant::now();
            if written.and_then(|()| file.sync_data()).is_err() {
                break;
            }
            lat.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = std::fs::remove_file(&path);
        lat.sort();
        lat
    })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Closed loop with `conc` workers; returns (requests/s, sorted latencies).
async fn closed_loop(w: &World, forms: Vec<Vec<(String, String)>>, conc: usize) -> (f64, Vec<Duration>) {
    let forms = Arc::new(std::sync::Mutex::new(forms));
    let url = w.token_url();
    let client = reqwest::Client::new();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let forms = forms.clone();
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let Some(f) = forms.lock().expect("lock").pop() else {
                    break;
                };
                let s = Instant::now();
                let r = client.post(&url).form(&f).send().await.expect("POST");
                assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap_or_default());
                r.bytes().await.expect("body");
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    let secs = t.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / secs, all)
}

/// Open loop at `rate` requests/s; returns sorted latencies.
async fn open_loop(w: &World, forms: Vec<Vec<(String, String)>>, rate: f64) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let url = w.token_url();
    let gap = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, f) in forms.into_iter().enumerate() {
        let due = start + gap * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let s = Instant::now();
            let r = client.post(&url).form(&f).send().await.expect("POST");
            assert_eq!(r.status().as_u16(), 200);
            r.bytes().await.expect("body");
            s.elapsed()
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.push(t.await.expect("request"));
    }
    lat.sort();
    lat
}

/// The first `window` of closed-loop load with `conc` in flight on the freshly started `w`:
/// latencies of the requests sent within it, sorted.
async fn cold_start(
    w: &World,
    forms: Vec<Vec<(String, String)>>,
    conc: usize,
    window: Duration,
) -> Vec<Duration> {
    let forms = Arc::new(std::sync::Mutex::new(forms));
    let url = w.token_url();
    let client = reqwest::Client::new();
    let end = Instant::now() + window;
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (forms, client, url) = (forms.clone(), client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < end {
                let Some(f) = forms.lock().expect("lock").pop() else {
                    break;
                };
                let s = Instant::now();
                let r = client.post(&url).form(&f).send().await.expect("POST");
                assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap_or_default());
                r.bytes().await.expect("body");
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    all.sort();
    all
}

fn forms(w: &World, n: usize) -> Vec<Vec<(String, String)>> {
    (0..n).map(|_| w.form("system/Task.c")).collect()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let n: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let c = crypto_costs();
        let cores = cores();
        println!("twiin-authz benchmark ({cores} cores, {n} requests per run)");
        println!(
            "  crypto alone: ES512 sign {}  verify {}  RS256 sign {}  verify {}",
            ms(c.es512_sign), ms(c.es512_verify), ms(c.rs256_sign), ms(c.rs256_verify)
        );
        // 3.2 per request: 2 ES512 checks (GtK assertions) + 1 ES512 sign (subject token) +
        // 1 ES512 check (AS ZA sim) + 1 RS256 sign (AS ZA sim).
        let uc2 = c.es512_verify * 3 + c.es512_sign + c.rs256_sign;
        let uc2_limit = cores as f64 / uc2.as_secs_f64();

        let db = dev_support::test_database::TestDatabase::create()
            .await
            .expect("a PostgreSQL database for the audit log (make bench sets DATABASE_URL)");

        // Cold start first, on a service that has seen no request: nothing cached, no
        // connection to ZORG-AB, the JWKS host or the AS ZA. The forms are signed (by the load
        // generator, not the service) before the load starts, so that making them does not
        // weigh on the first seconds.
        let cold_audit = audit_log::AuditLog::connect(&audit_log::AuditSettings::for_url(db.url())).await.expect("audit log on PostgreSQL");
        let cold_world = World::start_sharing(Options::default(), cold_audit, Arc::new(audit_log::MemorySink::default())).await;
        let cold_forms = forms(&cold_world, 4000);
        let cold = cold_start(&cold_world, cold_forms, 32, Duration::from_secs(2)).await;
        drop(cold_world);

        let audit = audit_log::AuditLog::connect(&audit_log::AuditSettings::for_url(db.url())).await.expect("audit log on PostgreSQL");
        let w = World::start_sharing(Options::default(), audit, Arc::new(audit_log::MemorySink::default())).await;
        let off_world = {
            let (audit, sink) = (audit_log::AuditLog::disabled(), Arc::new(audit_log::MemorySink::default()));
            World::start_sharing(Options::default(), audit, sink).await
        };
        closed_loop(&w, forms(&w, 100), 16).await;
        closed_loop(&off_world, forms(&off_world, 100), 16).await;
        // On and off alternate in rounds (on first, then off first, ...), so that drift in the
        // machine's speed during the run weighs on both alike.
        let rounds = 8;
        let in_flight: usize = std::env::var("BENCH_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(32);
        let per_round = (n / rounds).max(1);
        let (mut on_time, mut off_time) = (0.0, 0.0);
        let (mut on_cpu, mut off_cpu, mut pg_cpu) = (Duration::ZERO, Duration::ZERO, Some(Duration::ZERO));
        let mut xacts = Some(0i64);
        let mut lat_on = Vec::new();
        let mut round_ratios = Vec::new();
        for round in 0..rounds {
            let (mut on_rate, mut off_rate) = (0.0, 0.0);
            for on_turn in [round % 2 == 0, round % 2 == 1] {
                if on_turn {
                    let f = forms(&w, per_round);
                    let xact0 = db.next_transaction_id().await;
                    let (cpu0, pg0) = (cpu_time(), postgres_cpu_time());
                    let (rate, lat) = closed_loop(&w, f, in_flight).await;
                    on_cpu += cpu_time() - cpu0;
                    pg_cpu = pg_cpu.zip(postgres_cpu_time().zip(pg0)).map(|(sum, (b, a))| sum + b.saturating_sub(a));
                    xacts = match (xacts, xact0, db.next_transaction_id().await) {
                        (Some(sum), Ok(a), Ok(b)) => Some(sum + b - a),
                        _ => None,
                    };
                    on_time += per_round as f64 / rate;
                    on_rate = rate;
                    lat_on.extend(lat);
                } else {
                    let f = forms(&off_world, per_round);
                    let cpu0 = cpu_time();
                    let (rate, _) = closed_loop(&off_world, f, in_flight).await;
                    off_cpu += cpu_time() - cpu0;
                    off_time += per_round as f64 / rate;
                    off_rate = rate;
                }
            }
            round_ratios.push(format!("{:.2}", on_rate / off_rate));
        }
        lat_on.sort();
        let total = (per_round * rounds) as u32;
        let (on, off) = (total as f64 / on_time, total as f64 / off_time);
        let (cpu_per_req, cpu_per_req_off) = (on_cpu / total, off_cpu / total);
        let pg_per_req = pg_cpu.map(|d| d / total);
        let xact_per_req = xacts.map(|x| x as f64 / total as f64);
        let stop_probe = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = fsync_probe(stop_probe.clone());
        let half = open_loop(&w, forms(&w, n / 2), on / 2.0).await;
        stop_probe.store(true, std::sync::atomic::Ordering::Relaxed);
        let flushes = probe.join().unwrap_or_default();
        // The same rate with the audit off: what the machine itself adds to the tail.
        let half_off = open_loop(&off_world, forms(&off_world, n / 2), on / 2.0).await;
        drop(off_world);

        println!("use case 3.2 (full token request, HTTP):");
        println!(
            "  cold start             first 2 s after start-up: {} requests, p50 {}  p99 {}  (target p99 ≤ 50 ms; 32 in flight)",
            cold.len(),
            ms(pct(&cold, 0.5)),
            ms(pct(&cold, 0.99))
        );
        println!("  crypto-bound limit     {uc2_limit:8.0} req/s  ({} of signatures per request)", ms(uc2));
        // Cores kept busy: below the machine's cores, the closed loop left CPU idle.
        let busy_on = (on_cpu + pg_cpu.unwrap_or_default()).as_secs_f64() / on_time;
        let busy_off = off_cpu.as_secs_f64() / off_time;
        println!(
            "  audit on (PostgreSQL)  {on:8.0} req/s  p50 {}  p99 {}  ({in_flight} in flight; {busy_on:.2} cores busy)",
            ms(pct(&lat_on, 0.5)),
            ms(pct(&lat_on, 0.99))
        );
        println!("  audit off              {off:8.0} req/s  ({busy_off:.2} cores busy)");
        println!(
            "  at half peak ({:.0}/s)  p50 {}  p99 {}  (audit off, same rate: p50 {}  p99 {})",
            on / 2.0,
            ms(pct(&half, 0.5)),
            ms(pct(&half, 0.99)),
            ms(pct(&half_off, 0.5)),
            ms(pct(&half_off, 0.99))
        );
        println!("  CPU per request        {}  (all parties in this process, load generator included)", ms(cpu_per_req));
        println!("    with audit off       {}", ms(cpu_per_req_off));
        match pg_per_req {
            Some(d) => println!("    PostgreSQL server    {}", ms(d)),
            None => println!("    PostgreSQL server    n/a (not a local server)"),
        }
        match xact_per_req {
            Some(x) => println!("  audit transactions     {x:.2} per request (write transactions on the server)"),
            None => println!("  audit transactions     n/a"),
        }
        println!(
            "  crypto / CPU           {:.2}  (= ratio to limit when CPU-bound; robust to other load on the machine, target ≥ 0.5)",
            uc2.as_secs_f64() / cpu_per_req.as_secs_f64().max(1e-9)
        );
        println!("  load average           {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
        println!("  ratio to limit         {:.2}  (target ≥ 0.5)", on / uc2_limit);
        println!(
            "  ratio audit on/off     {:.2}  (target ≥ 0.85; per round {})",
            on / off,
            round_ratios.join(" ")
        );
        println!("  p99 at half peak       {}  (target ≤ 20 ms)", ms(pct(&half, 0.99)));
        println!(
            "    disk flush meanwhile  fdatasync of 8 KiB every 2 ms: p50 {}  p99 {}  max {}  ({} over 20 ms; a commit waits for one)",
            ms(pct(&flushes, 0.5)),
            ms(pct(&flushes, 0.99)),
            ms(flushes.last().copied().unwrap_or_default()),
            flushes.iter().filter(|d| **d > Duration::from_millis(20)).count()
        );

        // 3.1 over gRPC.
        let uc1 = c.es512_sign * 2;
        let uc1_limit = cores as f64 / uc1.as_secs_f64();
        let tokens: Vec<String> = (0..n)
            .map(|_| w.source_token(&w.source_claims("create:Task:1.0:notification~~normaal")))
            .collect();
        let client = w.grpc_client().await;
        let tokens = Arc::new(std::sync::Mutex::new(tokens));
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let tokens = tokens.clone();
            let mut client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut done = 0u32;
                loop {
                    let Some(tok) = tokens.lock().expect("lock").pop() else { break };
                    client
                        .issue_twiin_assertions(IssueTwiinAssertionsRequest {
                            source_token: tok,
                            audience: "https://gtk-extern.test".into(),
                            authz_base: String::new(),
                        })
                        .await
                        .expect("assertions");
                    done += 1;
                }
                done
            }));
        }
        let mut done = 0;
        for t in tasks {
            done += t.await.expect("worker");
        }
        let uc1_rate = done as f64 / t.elapsed().as_secs_f64();
        println!("use case 3.1 (TWIIN assertions, gRPC):");
        println!("  limit (2 ES512 signatures) {uc1_limit:8.0} req/s  ({} per request)", ms(uc1));
        println!("  measured                   {uc1_rate:8.0} req/s");
        println!("  ratio to limit             {:.2}", uc1_rate / uc1_limit);
    });
}
