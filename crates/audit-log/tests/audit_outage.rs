//! Fail closed and heal (SPEC.md §4 "Decision — fail closed"): a throwaway PostgreSQL cluster,
//! started by the test with the installed binaries, is stopped in the middle of a write load and
//! started again. While it is down every write answers `Unavailable` (the turn that found it
//! down) or `StoreDown` (refused at once by the open breaker) within 1 s; no write is
//! acknowledged that is not in the table; within 1 s of the restart the breaker has closed and
//! the same `AuditLog` writes again.
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit_log::{AuditError, AuditLog, AuditReader, AuditSettings, EventFilter};
use dev_support::pg_cluster::{PgCluster, StopMode};
use tokio::time::Instant;

struct Outcome {
    started: Instant,
    finished: Instant,
    result: Result<(), AuditError>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_fail_closed_while_postgres_is_down_and_resume_after() {
    let cluster = PgCluster::start_new().expect("a throwaway PostgreSQL cluster");
    let settings = AuditSettings {
        database_url: Some(cluster.url()),
        max_connections: 4,
        ..AuditSettings::default()
    };
    let log = AuditLog::connect(&settings).await.expect("connect");
    let mut available = log.availability();

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<HashMap<String, Outcome>>> = Arc::default();
    let writers: Vec<_> = (0..16)
        .map(|t| {
            let (log, stop, outcomes) = (log.clone(), stop.clone(), outcomes.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("w{t}-{n}");
                    n += 1;
                    let started = Instant::now();
                    let result = log.record(common::tagged(&id)).await;
                    let failed = result.is_err();
                    let outcome = Outcome {
                        started,
                        finished: Instant::now(),
                        result,
                    };
                    outcomes.lock().expect("lock").insert(id, outcome);
                    if failed {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    let count = |pred: &dyn Fn(&Outcome) -> bool| {
        outcomes
            .lock()
            .expect("lock")
            .values()
            .filter(|o| pred(o))
            .count()
    };
    let wait_for = |what: &'static str, pred: Box<dyn Fn(&Outcome) -> bool>, n: usize| {
        let count = &count;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while count(&*pred) < n {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    wait_for("writes before the outage", Box::new(|o| o.result.is_ok()), 500).await;
    cluster.stop(StopMode::Immediate).expect("crash PostgreSQL");
    let down = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), available.wait_for(|up| !*up))
        .await
        .expect("the breaker opens once a write finds the store down")
        .expect("breaker state");
    // Writes started from now until the restart cannot commit.
    wait_for(
        "failed writes during the outage",
        Box::new(move |o| o.started > down && o.result.is_err()),
        50,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A write still pending when the server comes back may rightly commit: the outage window
    // ends when the restart begins, not when `pg_ctl start` returns.
    let restart_begins = Instant::now();
    cluster.start().expect("restart PostgreSQL");
    let up = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), available.wait_for(|up| *up))
        .await
        .expect("the breaker closes once the probe reaches the store")
        .expect("breaker state");
    let closed_after = up.elapsed();
    wait_for(
        "writes after the restart",
        Box::new(move |o| o.started > up && o.result.is_ok()),
        500,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().expect("lock"));
    let during: Vec<&Outcome> = outcomes
        .values()
        .filter(|o| o.started > down && o.finished < restart_begins)
        .collect();
    assert!(!during.is_empty());
    let mut longest = Duration::ZERO;
    for o in &during {
        match &o.result {
            Err(AuditError::Unavailable(msg)) => assert!(!msg.is_empty()),
            Err(AuditError::StoreDown { .. }) => {}
            other => panic!("a write while PostgreSQL was down answered {other:?}"),
        }
        longest = longest.max(o.finished - o.started);
    }
    assert!(
        longest < Duration::from_secs(1),
        "a failing write took {longest:?}: callers must have their answer within 1 s"
    );
    let refused_at_once = during
        .iter()
        .filter(|o| matches!(o.result, Err(AuditError::StoreDown { .. })))
        .count();
    assert!(
        refused_at_once > during.len() / 2,
        "{refused_at_once} of {} writes during the outage refused by the open breaker",
        during.len()
    );
    let first_ok = outcomes
        .values()
        .filter(|o| o.started > up && o.result.is_ok())
        .map(|o| o.finished)
        .min()
        .expect("writes after the restart");
    let recovered = first_ok - up;
    assert!(
        closed_after < Duration::from_secs(1) && recovered < Duration::from_secs(1),
        "breaker closed {closed_after:?} and first write committed {recovered:?} after the restart: both must be within 1 s"
    );

    // Nothing acknowledged is missing, nothing is stored twice, nothing unknown is stored.
    let reader = AuditReader::connect(&settings).await.expect("reader");
    let stored = reader.list(&EventFilter::default()).await.expect("list");
    let mut times: HashMap<String, usize> = HashMap::new();
    for s in &stored {
        *times
            .entry(s.event.request_id.clone().expect("tagged"))
            .or_default() += 1;
    }
    assert!(times.values().all(|&n| n == 1), "an event was stored twice");
    assert!(
        times.keys().all(|id| outcomes.contains_key(id)),
        "an unknown event was stored"
    );
    let acknowledged: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| o.result.is_ok())
        .map(|(id, _)| id)
        .collect();
    let lost: Vec<&&String> = acknowledged
        .iter()
        .filter(|id| !times.contains_key(**id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let failed = outcomes.values().filter(|o| o.result.is_err()).count();
    eprintln!(
        "{} writes: {} acknowledged, {failed} failed closed, {} stored; during the outage: {} \
         answered (longest wait {longest:?}, {refused_at_once} refused at once); breaker closed \
         {closed_after:?} and first commit {recovered:?} after the restart",
        outcomes.len(),
        acknowledged.len(),
        stored.len(),
        during.len()
    );
}
