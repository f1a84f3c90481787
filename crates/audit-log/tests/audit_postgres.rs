//! The audit log on PostgreSQL (SPEC.md §4), each test in a database of its own.
mod common;

use common::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_column_round_trips_and_searches_work() {
    let db = TestDb::create().await;
    common::round_trip(db.settings()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_events_from_64_tasks_each_stored_once() {
    let db = TestDb::create().await;
    common::concurrent_10k(db.settings()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jti_replay_is_detected_across_instances() {
    let db = TestDb::create().await;
    common::jti_shared(db.settings()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_jtis_and_old_events_are_purged() {
    let db = TestDb::create().await;
    common::purges(db.settings()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_raw_token_reaches_the_table() {
    let db = TestDb::create().await;
    common::no_raw_tokens(db.settings()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_are_idempotent_and_concurrent_start_ups_agree() {
    let db = TestDb::create().await;
    let settings = db.settings();
    let (a, b) = tokio::join!(
        audit_log::AuditLog::connect(&settings),
        audit_log::AuditLog::connect(&settings)
    );
    a.expect("first");
    b.expect("second");
    audit_log::AuditLog::connect(&settings)
        .await
        .expect("third, after");
}

#[tokio::test]
async fn unreachable_database_fails_with_a_message_without_password() {
    let settings = audit_log::AuditSettings {
        database_url: Some("postgres://audit:hunter2secret@127.0.0.1:1/audit".into()),
        write_timeout: std::time::Duration::from_millis(500),
        ..audit_log::AuditSettings::default()
    };
    let err = audit_log::AuditLog::connect(&settings)
        .await
        .expect_err("port 1 is closed");
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
    assert!(!msg.contains("hunter2secret"), "{msg}");
    // Services answer this kind with UNAVAILABLE (asserted where the mapping lives, in each
    // service's error type: cps-relay `error::tests`).
    assert!(matches!(err, audit_log::AuditError::Unavailable(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn awkward_token_ids_round_trip() {
    let db = TestDb::create().await;
    common::awkward_jtis_round_trip(db.settings()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_and_token_ids_commit_together() {
    let db = TestDb::create().await;
    common::mixed_turns(db.settings()).await;
}
