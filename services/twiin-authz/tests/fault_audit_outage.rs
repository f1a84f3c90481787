//! Fault: the audit store stops while external GtKs ask for tokens (issue 19, use case 3.2).
//!
//! The test owns what it breaks: a private PostgreSQL cluster (`dev_support::pg_cluster`) holds
//! twiin-authz's audit log, with the simulators and the service in this process. Eight clients
//! post token requests, each with its own AORTA-ID; the cluster is stopped for a few seconds and
//! started again. Asserted, with the bounds:
//! - during the outage every answer is 503 `temporarily_unavailable` with `Retry-After`, within
//!   1 s of its request, and gRPC health turns NOT_SERVING within 1 s;
//! - within 1 s of the restart tokens are issued again and health is SERVING;
//! - every token answered 200 has its `returned_response` row (status 200, same requestID), and
//!   there are as many such rows as 200 answers: nothing issued unlogged.
mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_log::{AuditLog, AuditReader, AuditSettings, Direction, EventFilter, MemorySink};
use common::{Options, World};
use dev_support::pg_cluster::{PgCluster, StopMode};
use tokio::time::Instant;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

const CLIENTS: usize = 8;
const OUTAGE: Duration = Duration::from_secs(3);
/// The bound for answers during the outage and for the recovery.
const BOUND: Duration = Duration::from_secs(1);

struct Answer {
    request_id: String,
    started: Instant,
    finished: Instant,
    status: u16,
    error: Option<String>,
    retry_after: Option<String>,
}

async fn ask(w: &World, request_id: uuid::Uuid) -> Answer {
    let started = Instant::now();
    let r = w
        .client
        .post(w.token_url())
        .header(
            "AORTA-ID",
            format!("initialRequestID={request_id}; requestID={request_id}"),
        )
        .form(&w.form("system/Task.c"))
        .send()
        .await
        .expect("the token endpoint answers");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: serde_json::Value = r.json().await.expect("a JSON answer");
    Answer {
        request_id: request_id.to_string(),
        started,
        finished: Instant::now(),
        status,
        error: body["error"].as_str().map(str::to_owned),
        retry_after,
    }
}

type Health = tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>;

async fn health_status(health: &mut Health) -> i32 {
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status
}

/// How long until the overall health status is `want` (at most 5 s, then fails).
async fn until_health(health: &mut Health, want: ServingStatus) -> Duration {
    let start = Instant::now();
    while health_status(health).await != want as i32 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "health never became {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_fail_fast_with_503_while_the_audit_store_is_down_and_nothing_is_issued_unlogged() {
    let cluster = PgCluster::start_new().expect("a private PostgreSQL cluster");
    let settings = AuditSettings::for_url(&cluster.url());
    let audit = AuditLog::connect(&settings)
        .await
        .expect("audit log on the cluster");
    let w = Arc::new(World::start_sharing(Options::default(), audit, Arc::new(MemorySink::default())).await);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", w.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("gRPC connect");
    let mut health = Health::new(channel);
    assert_eq!(health_status(&mut health).await, ServingStatus::Serving as i32);

    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (w, stop, answers) = (w.clone(), stop.clone(), answers.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let a = ask(&w, uuid::Uuid::new_v4()).await;
                    let refused = a.status != 200;
                    answers.lock().expect("lock").push(a);
                    if refused {
                        // A client that got 503 comes back soon (sooner than Retry-After asks,
                        // to measure the answers during the outage).
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    let count_ok_since = |since: Instant| {
        answers
            .lock()
            .expect("lock")
            .iter()
            .filter(|a| a.started > since && a.status == 200)
            .count()
    };
    let wait_for_tokens = |since: Instant, n: usize, what: &'static str| {
        let count = &count_ok_since;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while count(since) < n {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let begin = Instant::now();
    wait_for_tokens(begin, 50, "tokens before the outage").await;

    cluster.stop(StopMode::Fast).expect("stop PostgreSQL");
    let down = Instant::now();
    let health_down = until_health(&mut health, ServingStatus::NotServing).await;
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    // Requests still waiting when the server comes back may rightly succeed: the outage window
    // ends when the restart begins.
    let restart_begins = Instant::now();
    cluster.start().expect("start PostgreSQL again");
    let up = Instant::now();
    let health_up = until_health(&mut health, ServingStatus::Serving).await;
    wait_for_tokens(up, 50, "tokens after the restart").await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("client");
    }
    let answers = std::mem::take(&mut *answers.lock().expect("lock"));

    // During the outage: 503 with Retry-After, each within 1 s.
    let during: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.started > down && a.finished < restart_begins)
        .collect();
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for a in &during {
        *by_status.entry(a.status).or_default() += 1;
    }
    let longest = during
        .iter()
        .map(|a| a.finished - a.started)
        .max()
        .unwrap_or_default();
    let first_token = answers
        .iter()
        .filter(|a| a.started > up && a.status == 200)
        .map(|a| a.finished)
        .min()
        .expect("tokens after the restart");
    let recovered = first_token - up;

    let reader = AuditReader::connect(&settings).await.expect("audit reader");
    let rows = reader
        .list(&EventFilter {
            service: Some("twiin-authz".into()),
            limit: Some(10_000_000),
            ..EventFilter::default()
        })
        .await
        .expect("audit rows");
    let logged: Vec<String> = rows
        .iter()
        .filter(|r| {
            r.event.use_case == "uitgeven_aorta_access_token"
                && r.event.direction == Direction::ReturnedResponse
                && r.event.status.as_deref() == Some("200")
        })
        .filter_map(|r| r.event.request_id.clone())
        .collect();
    let logged_set: HashSet<&String> = logged.iter().collect();
    let issued: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    let unlogged = issued
        .iter()
        .filter(|a| !logged_set.contains(&a.request_id))
        .count();

    eprintln!(
        "fault: audit store (PostgreSQL) stopped {OUTAGE:?}, {CLIENTS} clients, use case 3.2 over HTTP\n  \
         answers during the fault by status: {by_status:?}\n  \
         longest wait during the fault: {longest:?}\n  \
         health NOT_SERVING {health_down:?} after the stop, SERVING {health_up:?} after the restart\n  \
         time to recover (restart to first token): {recovered:?}\n  \
         tokens answered 200: {}, returned_response rows with status 200: {}, answered without a row: {unlogged}",
        issued.len(),
        logged.len()
    );

    assert!(
        during.len() >= CLIENTS,
        "{} answers during the outage",
        during.len()
    );
    for a in &during {
        assert_eq!(
            (a.status, a.error.as_deref()),
            (503, Some("temporarily_unavailable")),
            "an answer during the outage"
        );
        assert_eq!(a.retry_after.as_deref(), Some("1"), "503 carries Retry-After");
    }
    assert!(longest < BOUND, "an answer during the outage took {longest:?}");
    assert!(
        health_down < BOUND,
        "health NOT_SERVING only {health_down:?} after the stop"
    );
    assert!(
        health_up < BOUND,
        "health SERVING only {health_up:?} after the restart"
    );
    assert!(recovered < BOUND, "first token {recovered:?} after the restart");
    assert_eq!(unlogged, 0, "tokens answered without their audit row");
    assert_eq!(
        issued.len(),
        logged.len(),
        "as many tokens answered as returned_response rows with status 200"
    );
    assert!(reader.find_token_like().await.expect("scan").is_empty());
}
