//! Audit write throughput on PostgreSQL (issue 7 benchmark, `make bench`): events committed per
//! second by 64 concurrent writers, with single-event transactions (the writer with
//! `batch_max_events = 1`) against group commit (the defaults), in the same run and the same
//! fresh database. A third line shows the naive design for reference: every caller commits its own
//! INSERT through a pool, with no writer task.
//!
//! Needs `DATABASE_URL`. `AUDIT_BENCH_SECONDS` sets each phase's length (default 5).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use audit_log::{AuditEvent, AuditLog, AuditSettings, Direction};
use dev_support::test_database::TestDatabase;

const WRITERS: usize = 64;

fn event(writer: usize, n: u64) -> AuditEvent {
    let mut e = AuditEvent::new(
        "twiin-authz",
        "uitgeven_aorta_access_token",
        Direction::ReturnedResponse,
    );
    e.trace_id = Some(format!("{writer:016x}{n:016x}"));
    e.initial_request_id = Some(format!("initial-{writer}-{n}"));
    e.request_id = Some(format!("request-{writer}-{n}"));
    e.peer = Some("CN=gtk.example.nl, O=Example GtK".into());
    e.status = Some("200".into());
    e.client_id = Some("urn:oid:2.16.840.1.113883.2.4.6.6.90000017".into());
    e.ura = Some("90000017".into());
    e.user_id = Some(format!("uzi-{writer}"));
    e.user_role = Some("01.015".into());
    e.patient_bsn = Some("999911120".into());
    e.scope = Some("eOverdracht-receiver".into());
    e.token_jtis = vec![format!("jti-{writer}-{n}")];
    e.attributes = serde_json::json!({"grant_type": "client_credentials", "n": n});
    e
}

/// Runs `WRITERS` loops of `write` for `secs` after a short warm-up; returns events/s.
async fn measure<F, Fut>(secs: f64, write: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let write = Arc::new(write);
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (write, counting, stop, committed) =
                (write.clone(), counting.clone(), stop.clone(), committed.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let ok = write(w, n).await;
                    n += 1;
                    if ok && counting.load(Ordering::Relaxed) {
                        committed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    counting.store(true, Ordering::SeqCst);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let counted = committed.load(Ordering::SeqCst);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    counted as f64 / elapsed
}

async fn through_log(settings: AuditSettings, secs: f64) -> f64 {
    let log = AuditLog::connect(&settings).await.expect("connect");
    measure(secs, move |w, n| {
        let log = log.clone();
        async move { log.record(event(w, n)).await.is_ok() }
    })
    .await
}

async fn naive(url: &str, secs: f64) -> f64 {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(url)
        .await
        .expect("pool");
    measure(secs, move |w, n| {
        let pool = pool.clone();
        async move {
            let e = event(w, n);
            sqlx::query(
                "INSERT INTO audit_events (time, service, use_case, direction, trace_id, initial_request_id,
                    request_id, peer, status, client_id, ura, user_id, user_role, patient_bsn, scope, token_jtis,
                    attributes)
                 VALUES (now(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::jsonb)",
            )
            .bind(e.service)
            .bind(e.use_case)
            .bind(e.direction.as_str())
            .bind(e.trace_id)
            .bind(e.initial_request_id)
            .bind(e.request_id)
            .bind(e.peer)
            .bind(e.status)
            .bind(e.client_id)
            .bind(e.ura)
            .bind(e.user_id)
            .bind(e.user_role)
            .bind(e.patient_bsn)
            .bind(e.scope)
            .bind(e.token_jtis)
            .bind(e.attributes.to_string())
            .execute(&pool)
            .await
            .is_ok()
        }
    })
    .await
}

fn main() {
    if let Err(e) = dev_support::test_database::database_url() {
        eprintln!("audit bench: {e}");
        std::process::exit(1);
    }
    let secs: f64 = std::env::var("AUDIT_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let db = TestDatabase::create().await.unwrap_or_else(|e| panic!("{e}"));
        let url = db.url().to_owned();
        let mut settings = AuditSettings {
            database_url: Some(url.clone()),
            ..AuditSettings::default()
        };
        // Knobs to try other group-commit settings; the defaults are what services run with.
        if let Some(n) = std::env::var("AUDIT_BENCH_CONCURRENT_COMMITS")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            settings.max_concurrent_commits = n;
        }
        if let Some(ms) = std::env::var("AUDIT_BENCH_BATCH_MAX_WAIT_MS")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            settings.batch_max_wait = Duration::from_millis(ms);
        }
        let single = through_log(
            AuditSettings {
                batch_max_events: 1,
                batch_max_wait: Duration::ZERO,
                max_concurrent_commits: 1,
                ..settings.clone()
            },
            secs,
        )
        .await;
        let group = through_log(settings.clone(), secs).await;
        let pooled = naive(&url, secs).await;
        drop(db);

        println!("audit log on PostgreSQL, {WRITERS} concurrent writers, {secs} s per phase");
        println!("  single-event transactions (batch_max_events = 1): {single:>10.0} events/s");
        println!(
            "  group commit (batch_max_events = {}, batch_max_wait = {:?}, max_concurrent_commits = {}): \
             {group:>10.0} events/s",
            settings.batch_max_events, settings.batch_max_wait, settings.max_concurrent_commits
        );
        println!("  reference, one INSERT per call on a pool of 8:     {pooled:>10.0} events/s");
        println!(
            "  group commit / single-event transactions: {:.1}x",
            group / single.max(1.0)
        );
        println!(
            "  group commit / pooled single inserts:     {:.1}x",
            group / pooled.max(1.0)
        );
    });
}
