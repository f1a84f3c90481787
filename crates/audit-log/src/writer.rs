//! Group commit (SPEC.md §4 "Writes are batched"): one writer task per [`AuditLog`] takes what
//! waits in one bounded queue — event writes and jti registrations alike — and commits it in one
//! transaction of one statement (a *turn*), then answers each caller. A caller hears `Ok` only
//! after the commit of its events; a jti is accepted or refused only once its row is committed.
//!
//! **Decision — one turn carries both kinds:** a token request registers its token ids early and
//! writes its events at the end, so at any moment the queue holds both from different requests.
//! Committing them together halves the transactions the database runs per request, and on a
//! server sharing its cores with the service the cost of a transaction (commit, WAL flush,
//! wake-ups) outweighs that of its rows (see `make bench`).
//!
//! **Decision — fail closed, fail fast, recover alone:** when a transaction fails or times out,
//! every write and registration in it gets [`AuditError::Unavailable`]; nothing is retried behind
//! the caller's back (the caller has already failed its use case). The failure opens the
//! [breaker](crate::breaker): while it is open, work waiting in the queue and new work fail at
//! once ([`AuditError::StoreDown`]) and no turn touches the store; a background probe closes it
//! as soon as the store answers again, and the writer goes on with the same handles. When the
//! database *rejected* a turn (as opposed to being unusable), the registrations are retried
//! together and each write alone, so one bad event cannot fail its neighbours; a rejection does
//! not open the breaker.
//!
//! [`AuditLog`]: crate::AuditLog

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::breaker::Breaker;
use crate::settings::ValidAuditSettings;
use crate::{AuditError, AuditEvent, AuditSink, BoxFuture, TokenUse};

/// What a database backend offers the writer.
pub(crate) trait Store: Send + Sync + 'static {
    /// In one transaction: inserts `events`, and records each claim's jti until it expires.
    /// Returns, for each claim, whether it was accepted (first seen, or seen before but expired
    /// since); `Ok` only once committed. The claims are distinct; either slice may be empty.
    fn commit<'a>(
        &'a self,
        events: &'a [&'a AuditEvent],
        claims: &'a [JtiClaim],
    ) -> BoxFuture<'a, Result<Vec<bool>, sqlx::Error>>;
    /// Checks, with as little work as possible, that the store can be used again after a
    /// failed turn (a fresh connection, not one a turn would wait for).
    fn probe(&self) -> BoxFuture<'_, Result<(), sqlx::Error>>;
    /// Deletes expired jtis; returns how many.
    fn purge_jtis(&self) -> BoxFuture<'_, Result<u64, sqlx::Error>>;
    /// Deletes events older than `before`; returns how many.
    fn purge_events(&self, before: SystemTime) -> BoxFuture<'_, Result<u64, sqlx::Error>>;
}

/// Counters of the writer (`audit_events_committed_total`, `audit_events_failed_total`,
/// `audit_transactions_total`, `audit_breaker_trips_total`) and the breaker's state
/// (`audit_breaker_open`), exposed on `/metrics` when the log is opened with
/// [`AuditLog::connect_for`](crate::AuditLog::connect_for).
#[derive(Clone, Default)]
pub struct AuditMetrics {
    committed: Counter,
    failed: Counter,
    transactions: Counter,
    pub(crate) breaker_trips: Counter,
    pub(crate) breaker_open: Gauge,
}

impl AuditMetrics {
    /// New counters, registered in `registry`.
    pub fn registered(registry: &mut Registry) -> AuditMetrics {
        let metrics = AuditMetrics::default();
        registry.register(
            "audit_events_committed",
            "Audit events committed to the database",
            metrics.committed.clone(),
        );
        registry.register(
            "audit_events_failed",
            "Audit events not committed: their callers failed closed (UNAVAILABLE)",
            metrics.failed.clone(),
        );
        registry.register(
            "audit_transactions",
            "Audit transactions attempted (events and jti registrations share them)",
            metrics.transactions.clone(),
        );
        registry.register(
            "audit_breaker_trips",
            "Times the audit store was taken for down (a turn failed or timed out): writes failed at once until a probe reached it",
            metrics.breaker_trips.clone(),
        );
        registry.register(
            "audit_breaker_open",
            "1 while the audit store is taken for down (writes fail at once, health NOT_SERVING), else 0",
            metrics.breaker_open.clone(),
        );
        metrics
    }
}

/// A token id to record in the replay store (already redacted).
#[derive(Debug, Clone)]
pub(crate) struct JtiClaim {
    pub(crate) issuer: String,
    pub(crate) jti: String,
    pub(crate) expires_at: SystemTime,
}

/// Events to commit together (never split across transactions).
struct Write {
    events: Vec<AuditEvent>,
    ack: oneshot::Sender<Result<(), AuditError>>,
}

/// Where the answers to one `register_jtis` call go: for each token, whether it was accepted.
type JtiAnswer = oneshot::Sender<Result<Vec<bool>, AuditError>>;

/// Token ids registered together (one `register_jtis` call), answered together.
struct Registration {
    claims: Vec<JtiClaim>,
    ack: JtiAnswer,
}

enum Work {
    Events(Write),
    Jti(Registration),
}

/// What callers queue for the writer.
struct Job {
    work: Work,
    enqueued: Instant,
}

impl Job {
    /// Its share of a turn's `batch_max_events`.
    fn weight(&self) -> usize {
        match &self.work {
            Work::Events(w) => w.events.len(),
            Work::Jti(r) => r.claims.len(),
        }
    }
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
    queue: mpsc::Sender<Job>,
    timeout: Duration,
    breaker: Arc<Breaker>,
    /// Stops the purge task when the last `AuditLog` handle goes.
    _maintenance: DropGuard,
}

impl GroupCommitSink {
    /// Spawns the writer, the breaker's probe and the purge task on the current tokio runtime.
    pub(crate) fn start<S: Store>(store: S, settings: &ValidAuditSettings, metrics: AuditMetrics) -> Self {
        let store = Arc::new(store);
        let settings = settings.settings();
        let (queue, rx) = mpsc::channel(settings.queue_capacity);
        let limits = Limits {
            max_events: settings.batch_max_events,
            max_wait: settings.batch_max_wait,
            timeout: settings.write_timeout,
            in_flight: settings.max_concurrent_commits,
        };
        let breaker = Arc::new(Breaker::new(settings.breaker_probe_interval, metrics.clone()));
        tokio::spawn(run_writer(store.clone(), rx, limits, metrics, breaker.clone()));
        let stop = CancellationToken::new();
        tokio::spawn(run_probe(
            store.clone(),
            breaker.clone(),
            settings.breaker_probe_interval,
            limits.timeout,
            stop.clone(),
        ));
        tokio::spawn(run_purge(
            store.clone(),
            stop.clone(),
            settings.jti_purge_interval,
            settings.retention_days,
        ));
        GroupCommitSink {
            queue,
            timeout: limits.timeout,
            breaker,
            _maintenance: stop.drop_guard(),
        }
    }

    /// Queues `work` and waits for its answer, or refuses it at once while the breaker is
    /// open. The writer answers every job it takes within `timeout` of its arrival; the outer
    /// bound only guards against a writer that is gone or stuck. `what` names the caller's
    /// operation in the errors.
    async fn submit<T>(
        &self,
        work: Work,
        answer: oneshot::Receiver<Result<T, AuditError>>,
        what: &'static str,
    ) -> Result<T, AuditError> {
        if self.breaker.is_open() {
            return Err(self.breaker.refusal(what));
        }
        let job = Job {
            work,
            enqueued: Instant::now(),
        };
        let bounded = tokio::time::timeout(self.timeout * 2, async {
            self.queue
                .send(job)
                .await
                .map_err(|_| AuditError::Unavailable(format!("{what}: the audit writer has stopped")))?;
            answer.await.map_err(|_| {
                AuditError::Unavailable(format!("{what}: the audit writer stopped before answering"))
            })?
        });
        bounded.await.unwrap_or_else(|_| {
            Err(AuditError::Unavailable(format!(
                "{what}: no answer within {:?}",
                self.timeout * 2
            )))
        })
    }
}

const EVENTS: &str = "audit write";
const JTIS: &str = "jti replay store";

impl AuditSink for GroupCommitSink {
    fn write<'a>(&'a self, events: Vec<AuditEvent>) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(());
            }
            let events = events.into_iter().map(crate::redact::event).collect();
            let (ack, answer) = oneshot::channel();
            self.submit(Work::Events(Write { events, ack }), answer, EVENTS)
                .await
        })
    }

    fn register_jtis<'a>(
        &'a self,
        tokens: &'a [TokenUse<'a>],
    ) -> BoxFuture<'a, Result<Vec<bool>, AuditError>> {
        Box::pin(async move {
            if tokens.is_empty() {
                return Ok(Vec::new());
            }
            let (ack, answer) = oneshot::channel();
            let claims = tokens
                .iter()
                .map(|t| JtiClaim {
                    issuer: crate::redact::text(t.issuer.to_owned()),
                    jti: crate::redact::text(t.jti.to_owned()),
                    expires_at: t.expires_at,
                })
                .collect();
            self.submit(Work::Jti(Registration { claims, ack }), answer, JTIS)
                .await
        })
    }

    fn availability(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        Some(self.breaker.subscribe())
    }
}

/// Answers a job the breaker refuses.
fn refuse(job: Job, breaker: &Breaker, metrics: &AuditMetrics) {
    match job.work {
        Work::Events(w) => answer(w, Err(breaker.refusal(EVENTS)), metrics),
        Work::Jti(r) => {
            let _ = r.ack.send(Err(breaker.refusal(JTIS)));
        }
    }
}

/// While the breaker is open: tries the store every `interval` (each try bounded by
/// `timeout`) and closes the breaker at its first success.
async fn run_probe<S: Store>(
    store: Arc<S>,
    breaker: Arc<Breaker>,
    interval: Duration,
    timeout: Duration,
    stop: CancellationToken,
) {
    let mut available = breaker.subscribe();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            opened = async { available.wait_for(|up| !*up).await.is_ok() } => if !opened { return },
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            match tokio::time::timeout(timeout, store.probe()).await {
                Ok(Ok(())) => {
                    breaker.close();
                    break;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "audit store probe failed"),
                Err(_) => tracing::debug!(?timeout, "audit store probe: no answer"),
            }
        }
    }
}

async fn run_writer<S: Store>(
    store: Arc<S>,
    mut rx: mpsc::Receiver<Job>,
    limits: Limits,
    metrics: AuditMetrics,
    breaker: Arc<Breaker>,
) {
    let mut carried: Option<Job> = None;
    let mut available = breaker.subscribe();
    // Turns commit concurrently up to `in_flight`; while all are busy, jobs pile up in the
    // queue and the next turn takes them all at once.
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.in_flight));
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        // A free turn, unless the breaker opens first (a turn in flight failed): then
        // everything waiting is refused at once rather than after that turn's time-out.
        let slot = tokio::select! {
            biased;
            _ = async { available.wait_for(|up| !*up).await.map(drop) } => None,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => Some(slot),
                Err(_) => return,
            },
        };
        let Some(slot) = slot.filter(|_| !breaker.is_open()) else {
            refuse(first, &breaker, &metrics);
            while let Ok(job) = rx.try_recv() {
                refuse(job, &breaker, &metrics);
            }
            continue;
        };
        let linger_until = first.enqueued + limits.max_wait;
        let mut weight = first.weight();
        let mut turn = vec![first];
        while weight < limits.max_events {
            let next = match rx.try_recv() {
                Ok(job) => Some(job),
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
            let Some(job) = next else { break };
            if weight + job.weight() > limits.max_events {
                carried = Some(job);
                break;
            }
            weight += job.weight();
            turn.push(job);
        }
        if breaker.is_open() {
            turn.into_iter().for_each(|job| refuse(job, &breaker, &metrics));
            continue;
        }
        let (store, metrics, breaker) = (store.clone(), metrics.clone(), breaker.clone());
        tokio::spawn(async move {
            commit(&*store, turn, limits.timeout, &metrics, &breaker).await;
            drop(slot);
        });
    }
}

/// The registrations of one turn, with the same token presented twice in it answered as a
/// replay whatever the database says of the first (`ON CONFLICT` cannot touch a row twice in
/// one statement).
struct Registrations {
    claims: Vec<JtiClaim>,
    /// Per claim of every registration, in order: its index in `claims`, or `None` for a repeat.
    slots: Vec<Option<usize>>,
    /// Per registration: where its claims' slots end, and whom to answer.
    acks: Vec<(usize, JtiAnswer)>,
}

impl Registrations {
    fn new(registrations: Vec<Registration>) -> Self {
        let mut seen = std::collections::HashSet::new();
        let mut claims = Vec::new();
        let mut slots = Vec::new();
        let mut acks = Vec::with_capacity(registrations.len());
        for r in registrations {
            for claim in r.claims {
                if seen.insert((claim.issuer.clone(), claim.jti.clone())) {
                    slots.push(Some(claims.len()));
                    claims.push(claim);
                } else {
                    slots.push(None);
                }
            }
            acks.push((slots.len(), r.ack));
        }
        Registrations { claims, slots, acks }
    }

    fn answer(self, outcome: Result<&[bool], &AuditError>) {
        let mut start = 0;
        for (end, ack) in self.acks {
            let answer = match outcome {
                Ok(accepted) => self.slots[start..end]
                    .iter()
                    .map(|slot| match slot {
                        Some(i) => accepted.get(*i).copied().ok_or_else(|| {
                            AuditError::Unavailable(format!(
                                "{JTIS}: the database answered for too few tokens"
                            ))
                        }),
                        None => Ok(false),
                    })
                    .collect(),
                Err(e) => Err(e.clone()),
            };
            start = end;
            let _ = ack.send(answer);
        }
    }
}

async fn commit<S: Store>(
    store: &S,
    turn: Vec<Job>,
    timeout: Duration,
    metrics: &AuditMetrics,
    breaker: &Breaker,
) {
    // A job that waited past its deadline has been (or is about to be) given up by its caller.
    let now = Instant::now();
    let mut writes = Vec::new();
    let mut registrations = Vec::new();
    for job in turn {
        let stale = now >= job.enqueued + timeout;
        match job.work {
            Work::Events(w) if stale => answer(
                w,
                Err(AuditError::Unavailable(format!(
                    "{EVENTS}: waited more than {timeout:?} for the writer (database slow or unreachable)"
                ))),
                metrics,
            ),
            Work::Jti(r) if stale => {
                let _ = r.ack.send(Err(AuditError::Unavailable(format!(
                    "{JTIS}: waited more than {timeout:?} (database slow or unreachable)"
                ))));
            }
            Work::Events(w) => writes.push(w),
            Work::Jti(r) => registrations.push(r),
        }
    }
    let registrations = Registrations::new(registrations);
    if writes.is_empty() && registrations.claims.is_empty() {
        registrations.answer(Ok(&[]));
        return;
    }
    match run(store, &writes, &registrations.claims, timeout, metrics).await {
        Ok(accepted) => {
            registrations.answer(Ok(&accepted));
            writes.into_iter().for_each(|w| answer(w, Ok(()), metrics));
        }
        Err(e) if is_rejection(&e) && writes.len() + usize::from(!registrations.claims.is_empty()) > 1 => {
            tracing::warn!(
                error = %e,
                writes = writes.len(),
                tokens = registrations.claims.len(),
                "audit transaction rejected; retrying the token ids together and each write alone"
            );
            if registrations.claims.is_empty() {
                registrations.answer(Ok(&[]));
            } else {
                let result = run(store, &[], &registrations.claims, timeout, metrics).await;
                if let Err(e) = &result
                    && !is_rejection(e)
                {
                    breaker.trip(e);
                }
                registrations.answer(result.map_err(|e| e.to_audit_error(JTIS)).as_deref());
            }
            for w in writes {
                // The store failed while retrying: the others are refused at once.
                if breaker.is_open() {
                    answer(w, Err(breaker.refusal(EVENTS)), metrics);
                    continue;
                }
                let result = run(store, std::slice::from_ref(&w), &[], timeout, metrics).await;
                match &result {
                    Err(e) if is_rejection(e) => tracing::warn!(error = %e, "audit write rejected"),
                    Err(e) => breaker.trip(e),
                    Ok(_) => {}
                }
                answer(w, result.map(drop).map_err(|e| e.to_audit_error(EVENTS)), metrics);
            }
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                writes = writes.len(),
                tokens = registrations.claims.len(),
                "audit transaction not committed; callers fail closed"
            );
            if !is_rejection(&e) {
                breaker.trip(&e);
            }
            registrations.answer(Err(&e.to_audit_error(JTIS)));
            let err = e.to_audit_error(EVENTS);
            writes
                .into_iter()
                .for_each(|w| answer(w, Err(err.clone()), metrics));
        }
    }
}

fn answer(w: Write, result: Result<(), AuditError>, metrics: &AuditMetrics) {
    let n = w.events.len() as u64;
    match &result {
        Ok(()) => metrics.committed.inc_by(n),
        Err(_) => metrics.failed.inc_by(n),
    };
    // The caller may have given up; the outcome is counted either way.
    let _ = w.ack.send(result);
}

enum TurnError {
    Db(sqlx::Error),
    Timeout(Duration),
    /// The database answered for a different number of tokens than it was given.
    Answers {
        got: usize,
        sent: usize,
    },
}

impl std::fmt::Display for TurnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TurnError::Db(e) => write!(f, "{e}"),
            TurnError::Timeout(t) => write!(f, "no commit within {t:?}"),
            TurnError::Answers { got, sent } => write!(f, "{got} answers for {sent} tokens"),
        }
    }
}

impl TurnError {
    fn to_audit_error(&self, what: &str) -> AuditError {
        match what {
            EVENTS => AuditError::Unavailable(format!("audit events not committed: {self}")),
            _ => AuditError::Unavailable(format!("{what}: {self}")),
        }
    }
}

/// The database answered and refused the turn's values, as opposed to being unusable.
fn is_rejection(e: &TurnError) -> bool {
    matches!(e, TurnError::Db(e) if refuses_values(e))
}

/// The database refused the values of a statement (a constraint, or a PostgreSQL data
/// exception, SQLSTATE class 22 or 23): the connection and the store are fine. Everything else
/// — I/O, a server shutting down (class 57), out of space or connections (53), a system error
/// (58) — means the store cannot be used now.
pub(crate) fn refuses_values(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            !matches!(db.kind(), sqlx::error::ErrorKind::Other)
                || db
                    .code()
                    .is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
        }
        _ => false,
    }
}

/// One transaction: the events of `writes` and the `claims`.
async fn run<S: Store>(
    store: &S,
    writes: &[Write],
    claims: &[JtiClaim],
    timeout: Duration,
    metrics: &AuditMetrics,
) -> Result<Vec<bool>, TurnError> {
    metrics.transactions.inc();
    let events: Vec<&AuditEvent> = writes.iter().flat_map(|w| w.events.iter()).collect();
    match tokio::time::timeout(timeout, store.commit(&events, claims)).await {
        Ok(Ok(accepted)) if accepted.len() == claims.len() => Ok(accepted),
        Ok(Ok(accepted)) => Err(TurnError::Answers {
            got: accepted.len(),
            sent: claims.len(),
        }),
        Ok(Err(e)) => Err(TurnError::Db(e)),
        Err(_) => Err(TurnError::Timeout(timeout)),
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
    use crate::settings::AuditSettings;
    use crate::{AuditLog, Direction, TokenUse};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Records committed events; can be switched "down" (I/O error, like an unreachable server)
    /// or "slow"; rejects, like a database, any batch holding an event of use case `bad`.
    #[derive(Default)]
    struct FakeStore {
        committed: Mutex<Vec<AuditEvent>>,
        transactions: AtomicUsize,
        jtis: Mutex<std::collections::HashSet<(String, String)>>,
        /// Transactions that carried both events and token ids.
        mixed: AtomicUsize,
        down: AtomicBool,
        slow: AtomicBool,
        probes: AtomicUsize,
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
        fn commit<'a>(
            &'a self,
            events: &'a [&'a AuditEvent],
            claims: &'a [JtiClaim],
        ) -> BoxFuture<'a, Result<Vec<bool>, sqlx::Error>> {
            Box::pin(async move {
                self.transactions.fetch_add(1, Ordering::SeqCst);
                if !events.is_empty() && !claims.is_empty() {
                    self.mixed.fetch_add(1, Ordering::SeqCst);
                }
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
                // Like the database: distinct claims only (ON CONFLICT cannot touch a row twice).
                let distinct: std::collections::HashSet<_> =
                    claims.iter().map(|c| (&c.issuer, &c.jti)).collect();
                assert_eq!(distinct.len(), claims.len(), "duplicate claims in one statement");
                // One transaction: both kinds become visible together.
                let mut seen = self.jtis.lock().expect("lock");
                self.committed
                    .lock()
                    .expect("lock")
                    .extend(events.iter().map(|e| (*e).clone()));
                Ok(claims
                    .iter()
                    .map(|c| seen.insert((c.issuer.clone(), c.jti.clone())))
                    .collect())
            })
        }
        fn probe(&self) -> BoxFuture<'_, Result<(), sqlx::Error>> {
            Box::pin(async move {
                self.probes.fetch_add(1, Ordering::SeqCst);
                if self.slow.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                if self.down.load(Ordering::SeqCst) {
                    return Err(sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()));
                }
                Ok(())
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
        let settings = settings.validate("audit").expect("valid settings");
        let sink = GroupCommitSink::start(store.clone(), &settings, AuditMetrics::default());
        (AuditLog::new(Arc::new(sink)), store)
    }

    fn ev(use_case: &str) -> AuditEvent {
        AuditEvent::new("test", use_case, Direction::ReceivedRequest)
    }

    /// Waits until the breaker has closed again (the probe reached the store).
    async fn until_available(log: &AuditLog) {
        let mut available = log.availability();
        tokio::time::timeout(Duration::from_secs(5), available.wait_for(|up| *up))
            .await
            .expect("the probe closes the breaker")
            .expect("breaker state");
    }

    fn failed_closed(r: &Result<(), AuditError>) -> bool {
        matches!(r, Err(AuditError::Unavailable(_) | AuditError::StoreDown { .. }))
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
        let tx = store.transactions.load(Ordering::SeqCst);
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
        let err = log.register_jti("iss", "a", exp).await.expect_err("breaker open");
        assert!(matches!(err, AuditError::StoreDown { what: JTIS, .. }), "{err}");
        store.down.store(false, Ordering::SeqCst);
        until_available(&log).await;
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
        assert!(results.iter().all(failed_closed));
        assert!(store.committed.lock().expect("lock").is_empty());
        store.down.store(false, Ordering::SeqCst);
        until_available(&log).await;
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_and_token_ids_share_turns() {
        let (log, store) = log(AuditSettings {
            max_concurrent_commits: 1,
            ..AuditSettings::default()
        });
        let exp = SystemTime::now() + Duration::from_secs(300);
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        log.record(ev("ok")).await.map(|()| true)
                    } else {
                        log.register_jti("iss", &format!("jti-{i}"), exp).await
                    }
                })
            })
            .collect();
        for t in tasks {
            assert!(
                t.await.expect("task").expect("answered"),
                "a fresh token id is accepted"
            );
        }
        assert_eq!(store.committed.lock().expect("lock").len(), 100);
        assert_eq!(store.jtis.lock().expect("lock").len(), 100);
        let (tx, mixed) = (
            store.transactions.load(Ordering::SeqCst),
            store.mixed.load(Ordering::SeqCst),
        );
        assert!(tx < 100, "{tx} transactions for 200 concurrent jobs");
        assert!(mixed > 0, "no transaction carried both kinds ({tx} transactions)");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rejected_event_does_not_fail_the_token_ids_of_its_turn() {
        let (log, store) = log(AuditSettings {
            batch_max_wait: Duration::from_millis(50),
            max_concurrent_commits: 1,
            ..AuditSettings::default()
        });
        let exp = SystemTime::now() + Duration::from_secs(300);
        let (bad, good, fresh, again) = tokio::join!(
            log.record(ev("bad")),
            log.record(ev("ok")),
            log.register_jti("iss", "a", exp),
            log.register_jti("iss", "a", exp),
        );
        assert!(bad.is_err());
        good.expect("neighbour committed");
        assert!(fresh.expect("answered"), "first presentation accepted");
        assert!(
            !again.expect("answered"),
            "the repeat in the same turn is a replay"
        );
        assert_eq!(
            store.transactions.load(Ordering::SeqCst),
            4,
            "one turn, then the token ids together and each write alone"
        );
        assert!(
            !log.register_jti("iss", "a", exp).await.expect("answered"),
            "committed"
        );
    }

    #[tokio::test]
    async fn a_turn_that_fails_fails_both_kinds_closed_with_their_own_messages() {
        let (log, store) = log(AuditSettings {
            batch_max_wait: Duration::from_millis(50),
            max_concurrent_commits: 1,
            ..AuditSettings::default()
        });
        let exp = SystemTime::now() + Duration::from_secs(300);
        store.down.store(true, Ordering::SeqCst);
        let (write, registration) = tokio::join!(log.record(ev("ok")), log.register_jti("iss", "b", exp));
        let (write, registration) = (write.expect_err("down"), registration.expect_err("down"));
        assert!(
            write.to_string().contains("audit events not committed"),
            "{write}"
        );
        assert!(
            registration.to_string().contains("jti replay store"),
            "{registration}"
        );
        assert_eq!(
            store.transactions.load(Ordering::SeqCst),
            1,
            "one turn, not retried"
        );
        store.down.store(false, Ordering::SeqCst);
        until_available(&log).await;
        assert!(
            log.register_jti("iss", "b", exp).await.expect("healed"),
            "never recorded"
        );
    }

    #[tokio::test]
    async fn tokens_registered_together_share_one_transaction_and_are_answered_in_order() {
        let (log, store) = log(AuditSettings::default());
        let exp = SystemTime::now() + Duration::from_secs(300);
        let token = |jti| TokenUse {
            issuer: "iss",
            jti,
            expires_at: exp,
        };
        assert!(log.register_jti("iss", "seen", exp).await.expect("answered"));
        let before = store.transactions.load(Ordering::SeqCst);
        let answers = log
            .register_jtis(&[token("a"), token("seen"), token("b"), token("a")])
            .await
            .expect("answered");
        assert_eq!(answers, [true, false, true, false]);
        assert_eq!(store.transactions.load(Ordering::SeqCst), before + 1);
        assert!(log.register_jtis(&[]).await.expect("answered").is_empty());
        assert_eq!(
            store.transactions.load(Ordering::SeqCst),
            before + 1,
            "nothing to commit"
        );
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_turn_opens_the_breaker_new_work_fails_at_once_and_the_probe_closes_it() {
        let (log, store) = log(AuditSettings {
            breaker_probe_interval: Duration::from_millis(50),
            ..AuditSettings::default()
        });
        let mut available = log.availability();
        log.record(ev("ok")).await.expect("up");
        assert_eq!(store.probes.load(Ordering::SeqCst), 0, "no probe while closed");
        store.down.store(true, Ordering::SeqCst);
        let first = log.record(ev("ok")).await;
        assert!(matches!(first, Err(AuditError::Unavailable(_))), "{first:?}");
        assert!(!*available.borrow_and_update(), "open after a failed turn");
        let tx = store.transactions.load(Ordering::SeqCst);
        for _ in 0..50 {
            let r = log.record(ev("ok")).await;
            assert!(
                matches!(r, Err(AuditError::StoreDown { what: EVENTS, retry_after }) if retry_after == Duration::from_secs(1)),
                "{r:?}"
            );
        }
        assert_eq!(
            store.transactions.load(Ordering::SeqCst),
            tx,
            "refused without touching the store"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(store.probes.load(Ordering::SeqCst) >= 2, "the probe retries");
        assert!(!*available.borrow(), "still open while the store is down");
        store.down.store(false, Ordering::SeqCst);
        let back = std::time::Instant::now();
        until_available(&log).await;
        let healed = back.elapsed();
        assert!(
            healed < Duration::from_secs(1),
            "closed {healed:?} after the store returned"
        );
        log.record(ev("ok")).await.expect("writes resume");
        assert_eq!(store.committed.lock().expect("lock").len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_store_answers_everyone_waiting_at_the_first_time_out_then_at_once() {
        let timeout = Duration::from_millis(300);
        let (log, store) = log(AuditSettings {
            write_timeout: timeout,
            max_concurrent_commits: 1,
            ..AuditSettings::default()
        });
        store.slow.store(true, Ordering::SeqCst);
        let start = std::time::Instant::now();
        // One turn hangs; the others queue behind it until it times out.
        let waits: Vec<_> = (0..20)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(10 * i)).await;
                    let r = log.record(ev("ok")).await;
                    (r, start.elapsed())
                })
            })
            .collect();
        for w in waits {
            let (r, at) = w.await.expect("task");
            assert!(failed_closed(&r), "{r:?}");
            // Not 2 × timeout (a second turn) but the first turn's time-out, plus scheduling.
            assert!(at < timeout + Duration::from_millis(250), "answered after {at:?}");
        }
        let again = std::time::Instant::now();
        let r = log.record(ev("ok")).await;
        assert!(matches!(r, Err(AuditError::StoreDown { .. })), "{r:?}");
        assert!(
            again.elapsed() < Duration::from_millis(50),
            "{:?}",
            again.elapsed()
        );
        assert_eq!(
            store.transactions.load(Ordering::SeqCst),
            1,
            "one turn hung, no other ran"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_value_does_not_open_the_breaker() {
        let (log, store) = log(AuditSettings::default());
        let available = log.availability();
        assert!(log.record(ev("bad")).await.is_err());
        assert!(*available.borrow());
        log.record(ev("ok")).await.expect("the next write is not refused");
        assert_eq!(store.probes.load(Ordering::SeqCst), 0);
    }
}
