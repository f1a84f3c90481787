//! Group commit (SPEC.md §4 "Writes are batched"): one writer task per [`AuditLog`] takes the
//! writes waiting in a bounded queue and commits them in one transaction, then answers each
//! caller. A caller hears `Ok` only after the commit of its events.
//!
//! **Decision — fail closed, recover alone:** when a transaction fails or times out, every write
//! in it gets [`AuditError::Unavailable`]; nothing is retried behind the caller's back (the caller
//! has already failed its use case). The writer keeps running and the pool reconnects, so the
//! next writes succeed as soon as the database answers again. When the database *rejected* a
//! batch (as opposed to being unreachable), each write is retried alone, so one bad event cannot
//! fail its neighbours.
//!
//! [`AuditLog`]: super::AuditLog

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::settings::AuditSettings;
use super::{AuditError, AuditEvent, AuditSink, BoxFuture};

/// What a database backend offers the writer.
pub(crate) trait Store: Send + Sync + 'static {
    /// Inserts all events in one transaction; `Ok` only once committed.
    fn insert<'a>(&'a self, events: &'a [&'a AuditEvent]) -> BoxFuture<'a, Result<(), sqlx::Error>>;
    /// Records each claim's jti until it expires, in one transaction; for each claim, whether it
    /// was accepted (first seen, or seen before but expired since). The claims are distinct.
    fn register_jtis<'a>(&'a self, claims: &'a [JtiClaim]) -> BoxFuture<'a, Result<Vec<bool>, sqlx::Error>>;
    /// Deletes expired jtis; returns how many.
    fn purge_jtis(&self) -> BoxFuture<'_, Result<u64, sqlx::Error>>;
    /// Deletes events older than `before`; returns how many.
    fn purge_events(&self, before: SystemTime) -> BoxFuture<'_, Result<u64, sqlx::Error>>;
}

/// Counters of the writer, exposed on `/metrics` when the log is opened with
/// [`AuditLog::connect_with_metrics`](super::AuditLog::connect_with_metrics).
#[derive(Clone, Default)]
pub(crate) struct WriterMetrics {
    committed: Counter,
    failed: Counter,
    transactions: Counter,
}

impl WriterMetrics {
    pub(crate) fn register(&self, metrics: &crate::metrics::Metrics) {
        metrics.register(
            "audit_events_committed",
            "Audit events committed to the database",
            self.committed.clone(),
        );
        metrics.register(
            "audit_events_failed",
            "Audit events not committed: their callers failed closed (UNAVAILABLE)",
            self.failed.clone(),
        );
        metrics.register(
            "audit_transactions",
            "Audit transactions attempted (events per transaction = committed / transactions)",
            self.transactions.clone(),
        );
    }
}

/// A token id to record in the replay store (already redacted).
#[derive(Debug, Clone)]
pub(crate) struct JtiClaim {
    pub issuer: String,
    pub jti: String,
    pub expires_at: SystemTime,
}

struct Registration {
    claim: JtiClaim,
    enqueued: Instant,
    ack: oneshot::Sender<Result<bool, AuditError>>,
}

/// Longest `write_timeout` accepted.
pub(crate) const MAX_WRITE_TIMEOUT: Duration = Duration::from_secs(3600);

struct Write {
    events: Vec<AuditEvent>,
    enqueued: Instant,
    ack: oneshot::Sender<Result<(), AuditError>>,
}

#[derive(Clone, Copy)]
struct Limits {
    max_events: usize,
    max_wait: Duration,
    timeout: Duration,
    in_flight: usize,
}

/// An [`AuditSink`] over a [`Store`] with a group-commit writer and a purge task.
pub(crate) struct GroupCommitSink {
    queue: mpsc::Sender<Write>,
    jtis: mpsc::Sender<Registration>,
    timeout: Duration,
    /// Stops the purge task when the last `AuditLog` handle goes.
    _maintenance: DropGuard,
}

impl GroupCommitSink {
    /// Spawns the writer, the jti registrar and the purge task on the current tokio runtime.
    pub(crate) fn start<S: Store>(store: S, settings: &AuditSettings, metrics: WriterMetrics) -> Self {
        let store = Arc::new(store);
        // `validate` rejects these; the clamps keep unvalidated settings from panicking here
        // (zero-capacity channel, zero interval, Instant overflow).
        let (queue, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let limits = Limits {
            max_events: settings.batch_max_events.max(1),
            max_wait: settings.batch_max_wait.min(Duration::from_secs(1)),
            timeout: settings
                .write_timeout
                .clamp(Duration::from_millis(1), MAX_WRITE_TIMEOUT),
            in_flight: settings.max_concurrent_commits.max(1),
        };
        tokio::spawn(run_writer(store.clone(), rx, limits, metrics));
        let (jtis, jti_rx) = mpsc::channel(settings.queue_capacity.max(1));
        tokio::spawn(run_jti_registrar(store.clone(), jti_rx, limits));
        let stop = CancellationToken::new();
        tokio::spawn(run_purge(
            store.clone(),
            stop.clone(),
            settings.jti_purge_interval.max(Duration::from_millis(1)),
            settings.retention_days,
        ));
        GroupCommitSink {
            queue,
            jtis,
            timeout: limits.timeout,
            _maintenance: stop.drop_guard(),
        }
    }
}

impl AuditSink for GroupCommitSink {
    fn write<'a>(&'a self, events: Vec<AuditEvent>) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(());
            }
            let events = events.into_iter().map(super::redact::event).collect();
            let (ack, answer) = oneshot::channel();
            let write = Write {
                events,
                enqueued: Instant::now(),
                ack,
            };
            // The writer answers every write it takes within `timeout` of its arrival; the outer
            // bound only guards against a writer that is gone or stuck.
            let bounded = tokio::time::timeout(self.timeout * 2, async {
                self.queue
                    .send(write)
                    .await
                    .map_err(|_| AuditError::Unavailable("the audit writer has stopped".into()))?;
                answer.await.map_err(|_| {
                    AuditError::Unavailable("the audit writer stopped before committing".into())
                })?
            });
            bounded.await.unwrap_or_else(|_| {
                Err(AuditError::Unavailable(format!(
                    "audit write not committed within {:?}",
                    self.timeout * 2
                )))
            })
        })
    }

    fn register_jti<'a>(
        &'a self,
        issuer: &'a str,
        jti: &'a str,
        expires_at: SystemTime,
    ) -> BoxFuture<'a, Result<bool, AuditError>> {
        Box::pin(async move {
            let (ack, answer) = oneshot::channel();
            let registration = Registration {
                claim: JtiClaim {
                    issuer: super::redact::text(issuer.to_owned()),
                    jti: super::redact::text(jti.to_owned()),
                    expires_at,
                },
                enqueued: Instant::now(),
                ack,
            };
            let bounded = tokio::time::timeout(self.timeout * 2, async {
                self.jtis.send(registration).await.map_err(|_| {
                    AuditError::Unavailable("jti replay store: the registrar has stopped".into())
                })?;
                answer.await.map_err(|_| {
                    AuditError::Unavailable("jti replay store: the registrar stopped before answering".into())
                })?
            });
            bounded.await.unwrap_or_else(|_| {
                Err(AuditError::Unavailable(format!(
                    "jti replay store: no answer within {:?}",
                    self.timeout * 2
                )))
            })
        })
    }
}

async fn run_writer<S: Store>(
    store: Arc<S>,
    mut rx: mpsc::Receiver<Write>,
    limits: Limits,
    metrics: WriterMetrics,
) {
    let mut carried: Option<Write> = None;
    // Batches commit concurrently up to `in_flight`; while all are busy, writes pile up in the
    // queue and the next batch takes them all at once.
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.in_flight));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(w) => w,
            None => match rx.recv().await {
                Some(w) => w,
                None => return,
            },
        };
        let linger_until = first.enqueued + limits.max_wait;
        let mut count = first.events.len();
        let mut batch = vec![first];
        // A write is never split: its events commit together or not at all.
        while count < limits.max_events {
            let next = match rx.try_recv() {
                Ok(w) => Some(w),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if Instant::now() >= linger_until {
                        None
                    } else {
                        tokio::time::timeout_at(linger_until, rx.recv())
                            .await
                            .ok()
                            .flatten()
                    }
                }
            };
            let Some(w) = next else { break };
            if count + w.events.len() > limits.max_events {
                carried = Some(w);
                break;
            }
            count += w.events.len();
            batch.push(w);
        }
        let (store, metrics) = (store.clone(), metrics.clone());
        tokio::spawn(async move {
            commit(&*store, batch, limits.timeout, &metrics).await;
            drop(slot);
        });
    }
}

/// Group commit for the jti replay store: the registrations waiting when a transaction ends go
/// together in the next one (one statement, one commit), so the store costs the database a
/// transaction per batch rather than per token request. One batch at a time: while it commits,
/// the next one fills up.
async fn run_jti_registrar<S: Store>(store: Arc<S>, mut rx: mpsc::Receiver<Registration>, limits: Limits) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < limits.max_events {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let now = Instant::now();
        let (live, stale): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|r| now < r.enqueued + limits.timeout);
        for r in stale {
            let _ = r.ack.send(Err(AuditError::Unavailable(format!(
                "jti replay store: waited more than {:?} (database slow or unreachable)",
                limits.timeout
            ))));
        }
        // The same token twice in one batch: the first goes to the database, the others are
        // replays whatever it answers.
        let mut seen = std::collections::HashSet::new();
        let mut claims = Vec::with_capacity(live.len());
        let mut slot = Vec::with_capacity(live.len());
        for r in &live {
            if seen.insert((&r.claim.issuer, &r.claim.jti)) {
                slot.push(Some(claims.len()));
                claims.push(r.claim.clone());
            } else {
                slot.push(None);
            }
        }
        if claims.is_empty() {
            continue;
        }
        let outcome = match tokio::time::timeout(limits.timeout, store.register_jtis(&claims)).await {
            Ok(Ok(accepted)) if accepted.len() == claims.len() => Ok(accepted),
            Ok(Ok(accepted)) => Err(AuditError::Unavailable(format!(
                "jti replay store: {} answers for {} tokens",
                accepted.len(),
                claims.len()
            ))),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, tokens = claims.len(), "jti replay store: write failed");
                Err(AuditError::Unavailable(format!("jti replay store: {e}")))
            }
            Err(_) => Err(AuditError::Unavailable(format!(
                "jti replay store: no answer within {:?}",
                limits.timeout
            ))),
        };
        for (r, slot) in live.into_iter().zip(slot) {
            let answer = match (&outcome, slot) {
                (Ok(accepted), Some(i)) => Ok(accepted[i]),
                (Ok(_), None) => Ok(false),
                (Err(e), _) => Err(e.clone()),
            };
            let _ = r.ack.send(answer);
        }
    }
}

async fn commit<S: Store>(store: &S, batch: Vec<Write>, timeout: Duration, metrics: &WriterMetrics) {
    // A write that waited past its deadline has been (or is about to be) given up by its caller.
    let now = Instant::now();
    let (live, stale): (Vec<Write>, Vec<Write>) = batch.into_iter().partition(|w| now < w.enqueued + timeout);
    for w in stale {
        answer(
            w,
            Err(AuditError::Unavailable(format!(
                "audit write waited more than {timeout:?} for the writer (database slow or unreachable)"
            ))),
            metrics,
        );
    }
    if live.is_empty() {
        return;
    }
    metrics.transactions.inc();
    match insert(store, &live, timeout).await {
        Ok(()) => live.into_iter().for_each(|w| answer(w, Ok(()), metrics)),
        Err(e) if live.len() > 1 && is_rejection(&e) => {
            tracing::warn!(error = %e, writes = live.len(), "audit batch rejected; retrying writes one by one");
            for w in live {
                metrics.transactions.inc();
                let result = insert(store, std::slice::from_ref(&w), timeout).await;
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "audit write rejected");
                }
                answer(w, result.map_err(InsertError::into_audit_error), metrics);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, writes = live.len(), "audit batch not committed; callers fail closed");
            let err = e.into_audit_error();
            live.into_iter()
                .for_each(|w| answer(w, Err(err.clone()), metrics));
        }
    }
}

fn answer(w: Write, result: Result<(), AuditError>, metrics: &WriterMetrics) {
    let n = w.events.len() as u64;
    match &result {
        Ok(()) => metrics.committed.inc_by(n),
        Err(_) => metrics.failed.inc_by(n),
    };
    // The caller may have given up; the outcome is counted either way.
    let _ = w.ack.send(result);
}

enum InsertError {
    Db(sqlx::Error),
    Timeout(Duration),
}

impl std::fmt::Display for InsertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InsertError::Db(e) => write!(f, "{e}"),
            InsertError::Timeout(t) => write!(f, "no commit within {t:?}"),
        }
    }
}

impl InsertError {
    fn into_audit_error(self) -> AuditError {
        AuditError::Unavailable(format!("audit events not committed: {self}"))
    }
}

/// The database answered and refused (bad value, constraint), as opposed to being unreachable.
fn is_rejection(e: &InsertError) -> bool {
    matches!(e, InsertError::Db(sqlx::Error::Database(_)))
}

async fn insert<S: Store>(store: &S, writes: &[Write], timeout: Duration) -> Result<(), InsertError> {
    let events: Vec<&AuditEvent> = writes.iter().flat_map(|w| w.events.iter()).collect();
    match tokio::time::timeout(timeout, store.insert(&events)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(InsertError::Db(e)),
        Err(_) => Err(InsertError::Timeout(timeout)),
    }
}

async fn run_purge<S: Store>(
    store: Arc<S>,
    stop: CancellationToken,
    every: Duration,
    retention_days: Option<u32>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match store.purge_jtis().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "expired jtis purged"),
            Err(e) => tracing::warn!(error = %e, "purging expired jtis failed; will retry"),
        }
        if let Some(days) = retention_days {
            let Some(before) = SystemTime::now().checked_sub(Duration::from_secs(u64::from(days) * 86_400))
            else {
                continue;
            };
            match store.purge_events(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, retention_days = days, "old audit events purged"),
                Err(e) => tracing::warn!(error = %e, "purging old audit events failed; will retry"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, Direction};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Records committed events; can be switched "down" (I/O error, like an unreachable server)
    /// or "slow"; rejects, like a database, any batch holding an event of use case `bad`.
    #[derive(Default)]
    struct FakeStore {
        committed: Mutex<Vec<AuditEvent>>,
        transactions: AtomicUsize,
        jtis: Mutex<std::collections::HashSet<(String, String)>>,
        jti_transactions: AtomicUsize,
        down: AtomicBool,
        slow: AtomicBool,
    }

    #[derive(Debug)]
    struct Rejected;
    impl std::fmt::Display for Rejected {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("value rejected")
        }
    }
    impl std::error::Error for Rejected {}
    impl sqlx::error::DatabaseError for Rejected {
        fn message(&self) -> &str {
            "value rejected"
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::CheckViolation
        }
    }

    impl Store for Arc<FakeStore> {
        fn insert<'a>(&'a self, events: &'a [&'a AuditEvent]) -> BoxFuture<'a, Result<(), sqlx::Error>> {
            Box::pin(async move {
                self.transactions.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                if self.slow.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                if self.down.load(Ordering::SeqCst) {
                    return Err(sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()));
                }
                if events.iter().any(|e| e.use_case == "bad") {
                    return Err(sqlx::Error::Database(Box::new(Rejected)));
                }
                self.committed
                    .lock()
                    .expect("lock")
                    .extend(events.iter().map(|e| (*e).clone()));
                Ok(())
            })
        }
        fn register_jtis<'a>(
            &'a self,
            claims: &'a [JtiClaim],
        ) -> BoxFuture<'a, Result<Vec<bool>, sqlx::Error>> {
            Box::pin(async move {
                self.jti_transactions.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                if self.down.load(Ordering::SeqCst) {
                    return Err(sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()));
                }
                let mut seen = self.jtis.lock().expect("lock");
                // Like the database: distinct claims only (ON CONFLICT cannot touch a row twice).
                let distinct: std::collections::HashSet<_> =
                    claims.iter().map(|c| (&c.issuer, &c.jti)).collect();
                assert_eq!(distinct.len(), claims.len(), "duplicate claims in one statement");
                Ok(claims
                    .iter()
                    .map(|c| seen.insert((c.issuer.clone(), c.jti.clone())))
                    .collect())
            })
        }
        fn purge_jtis(&self) -> BoxFuture<'_, Result<u64, sqlx::Error>> {
            Box::pin(async { Ok(0) })
        }
        fn purge_events(&self, _: SystemTime) -> BoxFuture<'_, Result<u64, sqlx::Error>> {
            Box::pin(async { Ok(0) })
        }
    }

    fn log(settings: AuditSettings) -> (AuditLog, Arc<FakeStore>) {
        let store = Arc::new(FakeStore::default());
        let sink = GroupCommitSink::start(store.clone(), &settings, WriterMetrics::default());
        (AuditLog::new(Arc::new(sink)), store)
    }

    fn ev(use_case: &str) -> AuditEvent {
        AuditEvent::new("test", use_case, Direction::ReceivedRequest)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_transactions() {
        let (log, store) = log(AuditSettings::default());
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let log = log.clone();
                tokio::spawn(async move { log.record(ev("ok")).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("committed");
        }
        assert_eq!(store.committed.lock().expect("lock").len(), 200);
        let tx = store.transactions.load(Ordering::SeqCst);
        assert!(tx < 100, "{tx} transactions for 200 concurrent writes");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_jti_registrations_share_transactions_and_replays_lose() {
        let (log, store) = log(AuditSettings::default());
        let exp = SystemTime::now() + Duration::from_secs(300);
        // 200 distinct tokens, and 20 presented 5 times each at once.
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let log = log.clone();
                let jti = if i < 200 {
                    format!("jti-{i}")
                } else {
                    format!("dup-{}", i % 20)
                };
                tokio::spawn(async move { (i, log.register_jti("iss", &jti, exp).await) })
            })
            .collect();
        let mut accepted = 0;
        for t in tasks {
            let (i, result) = t.await.expect("task");
            let new = result.expect("answered");
            if i < 200 {
                assert!(new, "jti-{i} seen for the first time");
            }
            accepted += usize::from(new);
        }
        assert_eq!(accepted, 200 + 20, "each duplicated token accepted exactly once");
        let tx = store.jti_transactions.load(Ordering::SeqCst);
        assert!(tx < 150, "{tx} transactions for 300 concurrent registrations");
        assert!(
            !log.register_jti("iss", "jti-7", exp).await.expect("answered"),
            "replay"
        );
    }

    #[tokio::test]
    async fn jti_registrations_fail_closed_while_the_database_is_down() {
        let (log, store) = log(AuditSettings::default());
        let exp = SystemTime::now() + Duration::from_secs(300);
        store.down.store(true, Ordering::SeqCst);
        let err = log.register_jti("iss", "a", exp).await.expect_err("down");
        assert!(err.to_string().contains("jti replay store"), "{err}");
        store.down.store(false, Ordering::SeqCst);
        assert!(log.register_jti("iss", "a", exp).await.expect("healed"));
    }

    #[tokio::test]
    async fn batches_respect_the_size_limit_and_never_split_a_write() {
        let (log, store) = log(AuditSettings {
            batch_max_events: 3,
            max_concurrent_commits: 1,
            ..AuditSettings::default()
        });
        let big = log.record_all((0..5).map(|_| ev("ok")).collect());
        let small: Vec<_> = (0..4).map(|_| log.record(ev("ok"))).collect();
        let (big, small) = tokio::join!(big, futures_util::future::join_all(small));
        big.expect("a write larger than a batch goes alone");
        small.into_iter().for_each(|r| r.expect("committed"));
        assert_eq!(store.committed.lock().expect("lock").len(), 9);
        assert!(store.transactions.load(Ordering::SeqCst) >= 3);
    }

    #[tokio::test]
    async fn an_unreachable_database_fails_every_caller_then_heals() {
        let (log, store) = log(AuditSettings::default());
        store.down.store(true, Ordering::SeqCst);
        let results = futures_util::future::join_all((0..10).map(|_| log.record(ev("ok")))).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(AuditError::Unavailable(_))))
        );
        assert!(store.committed.lock().expect("lock").is_empty());
        store.down.store(false, Ordering::SeqCst);
        log.record(ev("ok")).await.expect("the same log writes again");
        assert_eq!(store.committed.lock().expect("lock").len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rejected_event_fails_only_its_own_write() {
        let (log, store) = log(AuditSettings {
            batch_max_wait: Duration::from_millis(50),
            max_concurrent_commits: 1,
            ..AuditSettings::default()
        });
        let (a, bad, b) = tokio::join!(log.record(ev("ok")), log.record(ev("bad")), log.record(ev("ok")));
        a.expect("neighbour committed");
        b.expect("neighbour committed");
        assert!(bad.is_err());
        assert_eq!(
            store.transactions.load(Ordering::SeqCst),
            4,
            "one batch, then each write alone"
        );
        let committed = store.committed.lock().expect("lock");
        assert_eq!(committed.len(), 2);
        assert!(committed.iter().all(|e| e.use_case == "ok"));
    }

    #[tokio::test]
    async fn a_hanging_database_answers_unavailable_within_the_timeout() {
        let (log, store) = log(AuditSettings {
            write_timeout: Duration::from_millis(200),
            ..AuditSettings::default()
        });
        store.slow.store(true, Ordering::SeqCst);
        let start = std::time::Instant::now();
        let r = log.record(ev("ok")).await;
        assert!(matches!(r, Err(AuditError::Unavailable(_))));
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    }
}
