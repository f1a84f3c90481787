//! The audit log (SPEC.md §4): append-only events of every request received and sent and every
//! response received and returned, with the attributes operators search by. Never raw tokens,
//! signatures, PINs, keys or document bodies.
//!
//! **Decision — fail closed:** [`AuditLog::record`] resolves only once the events are committed;
//! a use case that cannot log answers UNAVAILABLE instead of acting unlogged.
//!
//! This crate fixes the API the services use. The in-memory sink serves tests; the durable
//! sinks (PostgreSQL, SQLite) with group commit implement [`AuditSink`] and are opened with
//! [`AuditLog::connect`] from an [`AuditSettings`] section. See `AUDIT.md` beside this crate.
//!
//! Depends on `service-config` alone among the suite's crates, and on no gRPC crate: services
//! turn [`AuditError`] into their own errors (and those into gRPC statuses).

mod breaker;
mod postgres;
mod query;
mod redact;
mod schema;
mod settings;
mod sqlite;
pub mod time;
mod writer;

pub use query::{AuditReader, EventFilter, StoredEvent};
pub use redact::contains_token_like;
pub use schema::{Check, migrate, verify};
pub use settings::{AuditBackend, AuditSettings, Migrations, ValidAuditSettings, redact_url};
pub use writer::AuditMetrics;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

/// Which way a logged message went, seen from the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A request that reached the service.
    ReceivedRequest,
    /// A request the service sent to another system.
    SentRequest,
    /// The answer to a request the service sent.
    ReceivedResponse,
    /// The answer the service gave.
    ReturnedResponse,
}

impl Direction {
    /// The stored form: `received_request`, `sent_request`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ReceivedRequest => "received_request",
            Direction::SentRequest => "sent_request",
            Direction::ReceivedResponse => "received_response",
            Direction::ReturnedResponse => "returned_response",
        }
    }
}

impl std::str::FromStr for Direction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Direction::ReceivedRequest,
            Direction::SentRequest,
            Direction::ReceivedResponse,
            Direction::ReturnedResponse,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
        .ok_or_else(|| format!("`{s}` is not a direction"))
    }
}

/// One audit event. Typed columns for what operators search by; `attributes` for the rest.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// When it happened.
    pub time: SystemTime,
    /// `cps-relay`, `dmp-gateway`, `twiin-authz`.
    pub service: String,
    /// E.g. `uitgeven_twiin_assertions`, `uitgeven_aorta_access_token`, `td2.1`, `sign`.
    pub use_case: String,
    /// Which way the message went.
    pub direction: Direction,
    /// The W3C trace id of the call.
    pub trace_id: Option<String>,
    /// AORTA-ID `initialRequestID` and `requestID`.
    pub initial_request_id: Option<String>,
    /// See `initial_request_id`.
    pub request_id: Option<String>,
    /// The other party: caller address or certificate subject, or the called URL.
    pub peer: Option<String>,
    /// HTTP status or gRPC code name of the outcome, on responses.
    pub status: Option<String>,
    /// OAuth error, registry error code, or error kind, on failures.
    pub error_code: Option<String>,
    /// The OAuth client (an access node's URA OID), or the caller's identity.
    pub client_id: Option<String>,
    /// The healthcare provider's URA number.
    pub ura: Option<String>,
    /// Professional (RPPS) or user identifier.
    pub user_id: Option<String>,
    /// The user's role code.
    pub user_role: Option<String>,
    /// The Dutch patient's BSN.
    pub patient_bsn: Option<String>,
    /// The French patient's INS.
    pub patient_ins: Option<String>,
    /// The OAuth scope asked or granted.
    pub scope: Option<String>,
    /// `jti`s of the tokens involved (never the tokens).
    pub token_jtis: Vec<String>,
    /// Everything else worth keeping (never a token, a signature or a document body).
    pub attributes: serde_json::Value,
}

impl AuditEvent {
    /// An event of `service` and `use_case`, now, with every optional column empty.
    pub fn new(service: &str, use_case: &str, direction: Direction) -> Self {
        AuditEvent {
            time: SystemTime::now(),
            service: service.to_owned(),
            use_case: use_case.to_owned(),
            direction,
            trace_id: None,
            initial_request_id: None,
            request_id: None,
            peer: None,
            status: None,
            error_code: None,
            client_id: None,
            ura: None,
            user_id: None,
            user_role: None,
            patient_bsn: None,
            patient_ins: None,
            scope: None,
            token_jtis: Vec::new(),
            attributes: serde_json::Value::Null,
        }
    }
}

/// Why the log did not take an event or a token id.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// The database cannot be reached or refused the write: the caller must fail closed.
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    /// The store is known to be down (a recent turn failed; the breaker is open): refused at
    /// once, without waiting, until a background probe reaches the store again. The caller must
    /// fail closed and may tell its own caller to retry after `retry_after`.
    #[error(
        "audit log unavailable: {what} refused at once, the audit store is down (retry after {}s)",
        retry_after.as_secs()
    )]
    StoreDown {
        /// The operation refused (`audit write`, `jti replay store`).
        what: &'static str,
        /// When a retry may succeed: the probe interval, in whole seconds.
        retry_after: std::time::Duration,
    },
    /// The settings the log was opened with are not valid (names the key).
    #[error(transparent)]
    Settings(#[from] service_config::ConfigError),
}

/// The futures [`AuditSink`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where events go. Resolves when the events are durable.
pub trait AuditSink: Send + Sync + 'static {
    /// Stores `events` (all or none); resolves once they are durable.
    fn write<'a>(&'a self, events: Vec<AuditEvent>) -> BoxFuture<'a, Result<(), AuditError>>;

    /// Records each token's `jti` until it expires, all in one transaction; for each, `true`
    /// when first seen, `false` when replayed (also when the same token comes twice in `tokens`:
    /// the later ones are replays). Shared by all replicas using the same database.
    fn register_jtis<'a>(
        &'a self,
        tokens: &'a [TokenUse<'a>],
    ) -> BoxFuture<'a, Result<Vec<bool>, AuditError>>;

    /// Whether the store is usable now (`true`), changing as it goes down and comes back;
    /// `None` for a sink that is always usable.
    fn availability(&self) -> Option<watch::Receiver<bool>> {
        None
    }
}

/// A token presented to a service, for the `jti` replay store: `issuer` is the namespace of
/// `jti` (an issuer, or an issuer with the token's role), `expires_at` how long it is kept.
#[derive(Debug, Clone, Copy)]
pub struct TokenUse<'a> {
    /// Namespace of `jti`.
    pub issuer: &'a str,
    /// The token's id.
    pub jti: &'a str,
    /// Until when a second presentation is a replay.
    pub expires_at: SystemTime,
}

/// The handle services hold. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    sink: Option<Arc<dyn AuditSink>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.sink.is_some())
            .finish()
    }
}

impl AuditLog {
    /// A log writing to `sink`.
    pub fn new(sink: Arc<dyn AuditSink>) -> Self {
        AuditLog { sink: Some(sink) }
    }

    /// No audit at all: only for benchmarks that measure the audit's cost. jti replay is then
    /// checked in process memory.
    pub fn disabled() -> Self {
        AuditLog { sink: None }
    }

    /// Opens the durable log named by `settings` (PostgreSQL or SQLite, see
    /// [`AuditSettings::backend`]), runs the schema migrations (or checks them, see
    /// [`Migrations`]) and starts the group-commit writer on the current tokio runtime. Fails
    /// when the database cannot be reached now; once running, outages make writes fail closed
    /// and heal by themselves.
    ///
    /// For tools and tests: it belongs to no service, so it refuses `retention_days` (the
    /// retention purge deletes the rows of one service, see [`AuditLog::connect_for`]).
    pub async fn connect(settings: &AuditSettings) -> Result<AuditLog, AuditError> {
        if settings.retention_days.is_some() {
            return Err(AuditError::Settings(service_config::ConfigError::invalid(
                "audit.retention_days",
                "retention is per service: open the log with AuditLog::connect_for(service, ..)",
            )));
        }
        Self::open(None, settings, AuditMetrics::default()).await
    }

    /// [`AuditLog::connect`] for `service` (`cps-relay`, `dmp-gateway`, `twiin-authz`),
    /// counting into `metrics` (see [`AuditMetrics::registered`]), with the retention purge of
    /// `retention_days`.
    ///
    /// **Decision — retention per service:** the purge deletes only `service`'s own events
    /// older than its `retention_days`; services sharing a database keep their own retention
    /// (one without `retention_days` keeps its events forever).
    pub async fn connect_for(
        service: &str,
        settings: &AuditSettings,
        metrics: AuditMetrics,
    ) -> Result<AuditLog, AuditError> {
        Self::open(Some(service), settings, metrics).await
    }

    async fn open(
        service: Option<&str>,
        settings: &AuditSettings,
        metrics: AuditMetrics,
    ) -> Result<AuditLog, AuditError> {
        let valid = settings.validate("audit")?;
        let backend = settings.backend().map_err(AuditError::Unavailable)?;
        let owner = service.map(str::to_owned);
        let sink: Arc<dyn AuditSink> = match &backend {
            AuditBackend::Postgres { url } => Arc::new(writer::GroupCommitSink::start(
                postgres::PgStore::connect(url, &valid, owner).await?,
                &valid,
                metrics,
            )),
            AuditBackend::Sqlite { path } => Arc::new(writer::GroupCommitSink::start(
                sqlite::SqliteStore::open(path, &valid, owner).await?,
                &valid,
                metrics,
            )),
        };
        tracing::info!(backend = %backend, "audit log ready");
        Ok(AuditLog::new(sink))
    }

    /// An in-memory log, for tests.
    pub fn memory() -> (Self, Arc<MemorySink>) {
        let sink = Arc::new(MemorySink::default());
        (AuditLog::new(sink.clone()), sink)
    }

    /// `true` while the store takes writes, `false` while it is known to be down (after a
    /// failed turn, until a probe reaches it again: see `AUDIT.md`). A log that cannot go down
    /// (disabled, or an in-memory sink not switched to failing) stays `true`. Services follow it
    /// to answer gRPC health NOT_SERVING while writes would fail.
    pub fn availability(&self) -> watch::Receiver<bool> {
        match self.sink.as_ref().and_then(|s| s.availability()) {
            Some(rx) => rx,
            // The sender goes at once: the value stays `true` and `changed()` ends.
            None => watch::channel(true).1,
        }
    }

    /// Records one event; resolves once it is committed.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.record_all(vec![event]).await
    }

    /// Records `events` in one write (never split); resolves once they are committed.
    pub async fn record_all(&self, events: Vec<AuditEvent>) -> Result<(), AuditError> {
        match &self.sink {
            Some(sink) => sink.write(events).await,
            None => Ok(()),
        }
    }

    /// Records a token `jti` from `issuer` until `expires_at`. Ok(true) when first seen,
    /// Ok(false) when replayed. Shared by all replicas using the same database.
    pub async fn register_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: SystemTime,
    ) -> Result<bool, AuditError> {
        let answers = self
            .register_jtis(&[TokenUse {
                issuer,
                jti,
                expires_at,
            }])
            .await?;
        Ok(answers.first().copied().unwrap_or(false))
    }

    /// [`AuditLog::register_jti`] for several tokens at once, in one transaction (one wait for
    /// the database instead of one per token); answers in the order of `tokens`.
    pub async fn register_jtis(&self, tokens: &[TokenUse<'_>]) -> Result<Vec<bool>, AuditError> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let answers = match &self.sink {
            Some(sink) => sink.register_jtis(tokens).await?,
            None => disabled_jtis().register_all(tokens),
        };
        // A token without an answer must never pass for a first use: fail closed.
        if answers.len() != tokens.len() {
            return Err(AuditError::Unavailable(format!(
                "jti replay store: {} answers for {} tokens",
                answers.len(),
                tokens.len()
            )));
        }
        Ok(answers)
    }
}

fn disabled_jtis() -> &'static MemoryJtis {
    static JTIS: std::sync::OnceLock<MemoryJtis> = std::sync::OnceLock::new();
    JTIS.get_or_init(MemoryJtis::default)
}

#[derive(Default)]
struct MemoryJtis(Mutex<JtiMap>);

#[derive(Default)]
struct JtiMap {
    entries: std::collections::HashMap<(String, String), SystemTime>,
    /// Expired entries are swept when the map reaches this size (then twice what is left), so
    /// a registration costs O(1) amortised rather than a scan of every live jti.
    sweep_at: usize,
}

impl MemoryJtis {
    fn register_all(&self, tokens: &[TokenUse<'_>]) -> Vec<bool> {
        tokens
            .iter()
            .map(|t| self.register(t.issuer, t.jti, t.expires_at))
            .collect()
    }

    fn register(&self, issuer: &str, jti: &str, expires_at: SystemTime) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        if map.entries.len() >= map.sweep_at {
            map.entries.retain(|_, exp| *exp > now);
            map.sweep_at = (map.entries.len() * 2).max(1024);
        }
        let key = (issuer.to_owned(), jti.to_owned());
        match map.entries.get(&key) {
            Some(exp) if *exp > now => false,
            _ => {
                map.entries.insert(key, expires_at);
                true
            }
        }
    }
}

/// Keeps events in memory, redacted as the durable sinks redact them; can be switched to failing
/// to test fail-closed paths.
pub struct MemorySink {
    events: Mutex<Vec<AuditEvent>>,
    jtis: MemoryJtis,
    failing: std::sync::atomic::AtomicBool,
    /// `true` while not failing, like a durable sink's breaker.
    available: watch::Sender<bool>,
}

impl Default for MemorySink {
    fn default() -> Self {
        MemorySink {
            events: Mutex::default(),
            jtis: MemoryJtis::default(),
            failing: std::sync::atomic::AtomicBool::new(false),
            available: watch::Sender::new(true),
        }
    }
}

impl MemorySink {
    /// What was recorded, redacted, oldest first.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes every later write and registration fail (`true`) or succeed again; the log's
    /// [`AuditLog::availability`] follows, as a durable sink's breaker would.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, std::sync::atomic::Ordering::SeqCst);
        self.available.send_replace(!failing);
    }

    fn check(&self) -> Result<(), AuditError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            Err(AuditError::Unavailable("memory sink switched to failing".into()))
        } else {
            Ok(())
        }
    }
}

impl AuditSink for MemorySink {
    fn write<'a>(&'a self, events: Vec<AuditEvent>) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(async move {
            self.check()?;
            // Redacted like the durable sinks, so tests see what a database would hold.
            self.events
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(events.into_iter().map(redact::event));
            Ok(())
        })
    }

    fn register_jtis<'a>(
        &'a self,
        tokens: &'a [TokenUse<'a>],
    ) -> BoxFuture<'a, Result<Vec<bool>, AuditError>> {
        Box::pin(async move {
            self.check()?;
            Ok(tokens
                .iter()
                .map(|t| {
                    let (issuer, jti) = (redact::text(t.issuer.to_owned()), redact::text(t.jti.to_owned()));
                    self.jtis.register(&issuer, &jti, t.expires_at)
                })
                .collect())
        })
    }

    fn availability(&self) -> Option<watch::Receiver<bool>> {
        Some(self.available.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Answers every registration with nothing, like a broken backend.
    struct Mute;
    impl AuditSink for Mute {
        fn write<'a>(&'a self, _: Vec<AuditEvent>) -> BoxFuture<'a, Result<(), AuditError>> {
            Box::pin(async { Ok(()) })
        }
        fn register_jtis<'a>(
            &'a self,
            _: &'a [TokenUse<'a>],
        ) -> BoxFuture<'a, Result<Vec<bool>, AuditError>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    #[tokio::test]
    async fn a_token_without_an_answer_fails_closed() {
        let log = AuditLog::new(std::sync::Arc::new(Mute));
        let exp = SystemTime::now() + Duration::from_secs(60);
        let err = log.register_jti("iss", "a", exp).await.expect_err("no answer");
        assert!(matches!(err, AuditError::Unavailable(_)), "{err}");
    }

    #[tokio::test]
    async fn memory_sink_redacts_like_the_database_sinks() {
        let (log, sink) = AuditLog::memory();
        let mut e = AuditEvent::new("twiin-authz", "uc", Direction::ReceivedRequest);
        e.client_id = Some("eyJhbGciOiJFUzUxMiJ9.eyJzdWIiOiJ4In0.c2ln".into());
        log.record(e).await.expect("recorded");
        assert_eq!(
            sink.events()[0].client_id.as_deref(),
            Some(redact::REDACTED_TOKEN)
        );
    }

    #[tokio::test]
    async fn memory_sink_records_and_fails_closed() {
        let (log, sink) = AuditLog::memory();
        log.record(AuditEvent::new("twiin-authz", "uc", Direction::ReceivedRequest))
            .await
            .expect("recorded");
        assert_eq!(sink.events().len(), 1);
        let available = log.availability();
        assert!(*available.borrow());
        sink.set_failing(true);
        assert!(!*available.borrow(), "availability follows the switch");
        assert!(
            log.record(AuditEvent::new("twiin-authz", "uc", Direction::ReturnedResponse))
                .await
                .is_err()
        );
        assert_eq!(sink.events().len(), 1);
    }

    #[tokio::test]
    async fn jti_replay_is_detected() {
        let (log, _) = AuditLog::memory();
        let exp = SystemTime::now() + Duration::from_secs(60);
        assert!(log.register_jti("iss", "a", exp).await.expect("ok"));
        assert!(!log.register_jti("iss", "a", exp).await.expect("ok"));
        assert!(log.register_jti("other", "a", exp).await.expect("ok"));
        // An expired entry, swept or not, counts as new.
        let past = SystemTime::now() - Duration::from_secs(1);
        assert!(log.register_jti("iss", "old", past).await.expect("ok"));
        assert!(log.register_jti("iss", "old", exp).await.expect("ok"));
        assert!(!log.register_jti("iss", "old", exp).await.expect("ok"));
    }

    #[test]
    fn expired_jtis_are_swept_from_memory() {
        let jtis = MemoryJtis::default();
        let past = SystemTime::now() - Duration::from_secs(1);
        for i in 0..5000 {
            assert!(jtis.register("iss", &format!("gone-{i}"), past));
        }
        let len = jtis.0.lock().expect("lock").entries.len();
        assert!(len <= 1024, "{len} expired entries kept");
    }
}
