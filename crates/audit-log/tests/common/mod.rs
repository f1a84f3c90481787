//! Shared by the audit integration tests: a fresh PostgreSQL database per test, sample events,
//! and the test bodies run on both backends.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use audit_log::{AuditEvent, AuditLog, AuditReader, AuditSettings, Direction, EventFilter};

/// A database of its own, dropped (even when the test panics) with the value.
pub(crate) struct TestDb {
    inner: dev_support::test_database::TestDatabase,
    pub(crate) url: String,
}

impl TestDb {
    pub(crate) async fn create() -> TestDb {
        let inner = dev_support::test_database::TestDatabase::create()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        TestDb {
            url: inner.url().to_owned(),
            inner,
        }
    }

    pub(crate) fn settings(&self) -> AuditSettings {
        AuditSettings::for_url(self.inner.url())
    }
}

/// SQLite in `dir`, named by URL so a `DATABASE_URL` in the environment does not take over.
pub(crate) fn sqlite_settings(dir: &tempfile::TempDir) -> AuditSettings {
    let path = dir.path().join("nested/dir/audit.sqlite");
    AuditSettings {
        database_url: Some(format!("sqlite:{}", path.display())),
        sqlite_path: path,
        ..AuditSettings::default()
    }
}

/// An event with every column set, unique by `i`.
pub(crate) fn full_event(i: usize) -> AuditEvent {
    let mut e = AuditEvent::new(
        "twiin-authz",
        "uitgeven_aorta_access_token",
        Direction::ReturnedResponse,
    );
    e.time = SystemTime::now() - Duration::from_secs(60);
    e.trace_id = Some(format!("4bf92f3577b34da6a3ce929d0e0e{i:04x}"));
    e.initial_request_id = Some(format!("initial-{i}"));
    e.request_id = Some(format!("request-{i}"));
    e.peer = Some("CN=gtk.example.nl, O=Example GtK".into());
    e.status = Some("200".into());
    e.error_code = Some("invalid_grant".into());
    e.client_id = Some("urn:oid:2.16.840.1.113883.2.4.6.6.90000017".into());
    e.ura = Some("90000017".into());
    e.user_id = Some(format!("uzi-{i}"));
    e.user_role = Some("01.015".into());
    e.patient_bsn = Some("999911120".into());
    e.patient_ins = Some("1 55 08 75 123 456 78".into());
    e.scope = Some("eOverdracht-receiver".into());
    e.token_jtis = vec![format!("jti-{i}-a"), format!("jti-{i}-b")];
    e.attributes =
        serde_json::json!({"n": i, "nested": {"ok": true, "list": [1, "two", null]}, "unicode": "é€"});
    e
}

/// A minimal event carrying `id` in `request_id`.
pub(crate) fn tagged(id: &str) -> AuditEvent {
    let mut e = AuditEvent::new("dmp-gateway", "td2.1", Direction::ReceivedRequest);
    e.request_id = Some(id.into());
    e
}

/// Every column written comes back as written (times at microsecond precision).
pub(crate) async fn round_trip(settings: AuditSettings) {
    let log = AuditLog::connect(&settings).await.expect("connect");
    let written: Vec<AuditEvent> = (0..3).map(full_event).collect();
    log.record_all(written.clone()).await.expect("recorded");
    let mut sparse = AuditEvent::new("cps-relay", "sign", Direction::ReceivedRequest);
    sparse.user_id = Some("uzi-sparse".into());
    log.record(sparse.clone()).await.expect("recorded");

    let reader = AuditReader::connect(&settings).await.expect("reader");
    let stored = reader.list(&EventFilter::default()).await.expect("list");
    assert_eq!(stored.len(), 4);
    let mut expected = written;
    expected.push(sparse);
    for (s, mut e) in stored.into_iter().zip(expected) {
        e.time = audit_log::time::stored_precision(e.time);
        assert_eq!(s.event, e);
        assert!(s.recorded_at >= e.time);
    }

    // Searches.
    let by = |f: EventFilter| {
        let reader = &reader;
        async move { reader.list(&f).await.expect("list") }
    };
    let one = by(EventFilter {
        correlation_id: Some("initial-1".into()),
        ..EventFilter::default()
    })
    .await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].event.request_id.as_deref(), Some("request-1"));
    assert_eq!(
        by(EventFilter {
            correlation_id: Some("request-2".into()),
            ..EventFilter::default()
        })
        .await
        .len(),
        1
    );
    assert_eq!(
        by(EventFilter {
            patient: Some("1 55 08 75 123 456 78".into()),
            ..EventFilter::default()
        })
        .await
        .len(),
        3
    );
    assert_eq!(
        by(EventFilter {
            professional: Some("uzi-sparse".into()),
            ..EventFilter::default()
        })
        .await
        .len(),
        1
    );
    let recent = by(EventFilter {
        since: Some(SystemTime::now() - Duration::from_secs(30)),
        ..EventFilter::default()
    })
    .await;
    assert_eq!(recent.len(), 1, "only the sparse event is from the last 30 s");
    assert_eq!(
        by(EventFilter {
            until: Some(SystemTime::now() - Duration::from_secs(30)),
            limit: Some(2),
            ..EventFilter::default()
        })
        .await
        .len(),
        2
    );
    // Append-only: the schema refuses updates.
    assert!(
        update_refused(&settings).await,
        "an UPDATE of audit_events must fail"
    );
}

async fn update_refused(settings: &AuditSettings) -> bool {
    const SQL: &str = "UPDATE audit_events SET status = 'tampered'";
    match settings.backend().expect("backend") {
        audit_log::AuditBackend::Postgres { url } => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("connect");
            sqlx::query(SQL).execute(&mut c).await.is_err()
        }
        audit_log::AuditBackend::Sqlite { path } => {
            let url = format!("sqlite:{}", path.display());
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("connect");
            sqlx::query(SQL).execute(&mut c).await.is_err()
        }
    }
}

/// 10,000 events from 64 concurrent tasks: each present exactly once, and batched.
pub(crate) async fn concurrent_10k(settings: AuditSettings) {
    let log = AuditLog::connect(&settings).await.expect("connect");
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let per_task = 10_000 / 64 + usize::from(t < 10_000 % 64);
                for n in 0..per_task {
                    log.record(tagged(&format!("t{t}-n{n}"))).await.expect("recorded");
                }
                per_task
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    assert_eq!(total, 10_000);
    let reader = AuditReader::connect(&settings).await.expect("reader");
    let stored = reader.list(&EventFilter::default()).await.expect("list");
    assert_eq!(stored.len(), 10_000);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for s in &stored {
        *seen
            .entry(s.event.request_id.clone().expect("tagged"))
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 10_000);
    assert!(seen.values().all(|&n| n == 1));
    // Group commit happened: far fewer distinct commit times than events would be the proof on
    // PostgreSQL (recorded_at = transaction start); on SQLite recorded_at has millisecond steps.
    if matches!(settings.backend(), Ok(audit_log::AuditBackend::Postgres { .. })) {
        let commits: std::collections::HashSet<SystemTime> = stored.iter().map(|s| s.recorded_at).collect();
        assert!(
            commits.len() < 10_000 / 4,
            "{} transactions for 10,000 events",
            commits.len()
        );
    }
}

/// Two logs on one database see each other's jtis; expired ones may be used again.
pub(crate) async fn jti_shared(settings: AuditSettings) {
    let a = AuditLog::connect(&settings).await.expect("connect a");
    let b = AuditLog::connect(&settings).await.expect("connect b");
    let exp = SystemTime::now() + Duration::from_secs(300);
    assert!(
        a.register_jti("https://gtk-a.example", "jti-1", exp)
            .await
            .expect("ok")
    );
    assert!(
        !b.register_jti("https://gtk-a.example", "jti-1", exp)
            .await
            .expect("ok"),
        "replay across replicas"
    );
    assert!(
        !a.register_jti("https://gtk-a.example", "jti-1", exp)
            .await
            .expect("ok")
    );
    assert!(
        b.register_jti("https://gtk-b.example", "jti-1", exp)
            .await
            .expect("ok"),
        "other issuer"
    );

    // Concurrent first uses of one jti: exactly one wins.
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let log = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { log.register_jti("iss", "raced", exp).await.expect("ok") })
        })
        .collect();
    let mut wins = 0;
    for r in racers {
        wins += usize::from(r.await.expect("task"));
    }
    assert_eq!(wins, 1);

    // An expired entry not yet purged counts as new.
    let past = SystemTime::now() - Duration::from_secs(1);
    assert!(a.register_jti("iss", "old", past).await.expect("ok"));
    assert!(b.register_jti("iss", "old", exp).await.expect("ok"));
    assert!(!a.register_jti("iss", "old", exp).await.expect("ok"));
}

/// The purge task removes expired jtis and, with retention on, the old events of its own
/// service only: a service without retention sharing the database keeps all of its events.
pub(crate) async fn purges(mut settings: AuditSettings) {
    settings.jti_purge_interval = Duration::from_millis(100);
    let keeper = AuditLog::connect_for("twiin-authz", &settings, Default::default())
        .await
        .expect("connect twiin-authz, no retention");
    settings.retention_days = Some(1);
    let log = AuditLog::connect_for("dmp-gateway", &settings, Default::default())
        .await
        .expect("connect dmp-gateway, 1 day");
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86_400);
    let mut old = tagged("old");
    old.time = two_days_ago;
    // Another service's old event, written through the purging service's own log: the purge
    // goes by the row's service, not by who wrote it.
    let mut others_old = AuditEvent::new(
        "twiin-authz",
        "uitgeven_aorta_access_token",
        Direction::ReceivedRequest,
    );
    others_old.request_id = Some("others-old".into());
    others_old.time = two_days_ago;
    log.record_all(vec![old, tagged("new"), others_old.clone()])
        .await
        .expect("recorded");
    others_old.request_id = Some("keeper-old".into());
    keeper.record(others_old).await.expect("recorded");
    log.register_jti("iss", "expiring", SystemTime::now() + Duration::from_millis(200))
        .await
        .expect("ok");
    log.register_jti("iss", "lasting", SystemTime::now() + Duration::from_secs(600))
        .await
        .expect("ok");
    let reader = AuditReader::connect(&AuditSettings {
        retention_days: None,
        ..settings.clone()
    })
    .await
    .expect("reader");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = reader.list(&EventFilter::default()).await.expect("list");
        let jtis = reader.jtis().await.expect("jtis");
        let mut ids: Vec<_> = events.iter().filter_map(|e| e.event.request_id.clone()).collect();
        ids.sort();
        if ids == ["keeper-old", "new", "others-old"] && jtis == [("iss".to_string(), "lasting".to_string())]
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not purged as expected: events {ids:?}, jtis {jtis:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A log that belongs to no service has no retention purge to run: it refuses the setting.
    let err = AuditLog::connect(&settings)
        .await
        .expect_err("retention without a service");
    assert!(err.to_string().contains("audit.retention_days"), "{err}");
}

/// Tokens passed by mistake do not reach the table; a scan of every row finds none.
pub(crate) async fn no_raw_tokens(settings: AuditSettings) {
    const JWT: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2d0ay5leGFtcGxlIn0.\
                       c2lnbmF0dXJlLWJ5dGVzLWZvci10ZXN0aW5n";
    let log = AuditLog::connect(&settings).await.expect("connect");
    let mut e = full_event(7);
    e.peer = Some(format!("Authorization: Bearer {JWT}"));
    e.scope = Some(JWT.into());
    e.token_jtis.push(JWT.into());
    e.attributes = serde_json::json!({"client_assertion": JWT, "deep": [{"x": JWT}], "nul": "a\u{0}b"});
    log.record_all(vec![e, full_event(8)]).await.expect("recorded");
    let reader = AuditReader::connect(&settings).await.expect("reader");
    assert_eq!(reader.list(&EventFilter::default()).await.expect("list").len(), 2);
    let leaks = reader.find_token_like().await.expect("scan");
    assert!(leaks.is_empty(), "raw tokens stored: {leaks:?}");
    // And a scan of the raw table text, independent of the reader's decoding.
    let raw = raw_table_text(&settings).await;
    assert!(
        !raw.contains("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"),
        "raw token in table"
    );
    assert!(raw.contains("[redacted token]"));
}

/// Every row of audit_events as text, straight from the database.
pub(crate) async fn raw_table_text(settings: &AuditSettings) -> String {
    match settings.backend().expect("backend") {
        audit_log::AuditBackend::Postgres { url } => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("connect");
            let rows: Vec<(String,)> = sqlx::query_as("SELECT row_to_json(e)::text FROM audit_events e")
                .fetch_all(&mut c)
                .await
                .expect("scan");
            rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
        }
        audit_log::AuditBackend::Sqlite { path } => {
            let url = format!("sqlite:{}", path.display());
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("connect");
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT json_array(id, time, service, use_case, direction, trace_id, initial_request_id, \
                 request_id, peer, status, error_code, client_id, ura, user_id, user_role, patient_bsn, \
                 patient_ins, scope, token_jtis, attributes) FROM audit_events",
            )
            .fetch_all(&mut c)
            .await
            .expect("scan");
            rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
        }
    }
}

/// Token ids with the characters an array literal must escape come back unchanged, and an
/// event without any keeps an empty list.
pub(crate) async fn awkward_jtis_round_trip(settings: AuditSettings) {
    let log = AuditLog::connect(&settings).await.expect("connect");
    let awkward = vec![
        r#"a"b"#.to_string(),
        r"c\d".to_string(),
        "{x,y}".to_string(),
        "NULL".to_string(),
        String::new(),
        " spaced ".to_string(),
        "é€".to_string(),
    ];
    let mut e = tagged("awkward");
    e.token_jtis = awkward.clone();
    log.record_all(vec![e, tagged("none")]).await.expect("recorded");
    let reader = AuditReader::connect(&settings).await.expect("reader");
    let events = reader.list(&EventFilter::default()).await.expect("list");
    let jtis = |id: &str| {
        events
            .iter()
            .find(|e| e.event.request_id.as_deref() == Some(id))
            .map(|e| e.event.token_jtis.clone())
            .expect("event stored")
    };
    assert_eq!(jtis("awkward"), awkward);
    assert!(jtis("none").is_empty());
}

/// Events and token ids queued together commit in one transaction (one statement on
/// PostgreSQL): the token's `first_seen` is its turn's `recorded_at`. Replays within the turn and
/// of committed ids are refused.
pub(crate) async fn mixed_turns(settings: AuditSettings) {
    let settings = AuditSettings {
        batch_max_wait: Duration::from_millis(100),
        max_concurrent_commits: 1,
        ..settings
    };
    let log = AuditLog::connect(&settings).await.expect("connect");
    let exp = SystemTime::now() + Duration::from_secs(300);
    assert!(log.register_jti("iss", "before", exp).await.expect("registered"));
    let (events, fresh, repeat, replay) = tokio::join!(
        log.record_all(vec![tagged("mixed-1"), tagged("mixed-2")]),
        log.register_jti("iss", "mixed", exp),
        log.register_jti("iss", "mixed", exp),
        log.register_jti("iss", "before", exp),
    );
    events.expect("events committed");
    assert!(fresh.expect("answered"), "first presentation accepted");
    assert!(
        !repeat.expect("answered"),
        "a repeat in the same turn is a replay"
    );
    assert!(!replay.expect("answered"), "a committed id is a replay");
    assert!(!log.register_jti("iss", "mixed", exp).await.expect("answered"));

    let reader = AuditReader::connect(&settings).await.expect("reader");
    let stored = reader.list(&EventFilter::default()).await.expect("list");
    let recorded: std::collections::HashSet<SystemTime> = stored
        .iter()
        .filter(|s| {
            s.event
                .request_id
                .as_deref()
                .is_some_and(|r| r.starts_with("mixed-"))
        })
        .map(|s| s.recorded_at)
        .collect();
    assert_eq!(recorded.len(), 1, "both events in one transaction");
    let first_seen = match settings.backend().expect("backend") {
        audit_log::AuditBackend::Postgres { url } => {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("connect");
            let (micros,): (i64,) = sqlx::query_as(
                "SELECT (extract(epoch FROM first_seen) * 1000000)::bigint FROM audit_jti WHERE jti = 'mixed'",
            )
            .fetch_one(&mut c)
            .await
            .expect("token id stored");
            std::time::UNIX_EPOCH + Duration::from_micros(micros as u64)
        }
        audit_log::AuditBackend::Sqlite { path } => {
            let url = format!("sqlite:{}", path.display());
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("connect");
            let (text,): (String,) = sqlx::query_as("SELECT first_seen FROM audit_jti WHERE jti = 'mixed'")
                .fetch_one(&mut c)
                .await
                .expect("token id stored");
            let recorded_text: (String,) =
                sqlx::query_as("SELECT recorded_at FROM audit_events WHERE request_id = 'mixed-1'")
                    .fetch_one(&mut c)
                    .await
                    .expect("event stored");
            assert_eq!(text, recorded_text.0, "token id and events in one transaction");
            return;
        }
    };
    assert_eq!(
        recorded.into_iter().next(),
        Some(first_seen),
        "token id and events in one transaction"
    );
}
