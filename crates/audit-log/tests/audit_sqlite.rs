//! The same audit suite on the embedded SQLite default (SPEC.md §4 "Decision — embedded default").
mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_column_round_trips_and_searches_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::round_trip(common::sqlite_settings(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_events_from_64_tasks_each_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::concurrent_10k(common::sqlite_settings(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jti_replay_is_detected_across_instances() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::jti_shared(common::sqlite_settings(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_jtis_and_old_events_are_purged() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::purges(common::sqlite_settings(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_raw_token_reaches_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::no_raw_tokens(common::sqlite_settings(&dir)).await;
}

#[tokio::test]
async fn reopening_keeps_events_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = common::sqlite_settings(&dir);
    let log = audit_log::AuditLog::connect(&settings).await.expect("first");
    log.record(common::tagged("kept")).await.expect("recorded");
    drop(log);
    let log = audit_log::AuditLog::connect(&settings).await.expect("again");
    log.record(common::tagged("second")).await.expect("recorded");
    let reader = audit_log::AuditReader::connect(&settings).await.expect("reader");
    let all = reader
        .list(&audit_log::EventFilter::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn a_sqlite_url_selects_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("by-url.sqlite");
    let settings = audit_log::AuditSettings {
        database_url: Some(format!("sqlite:{}", path.display())),
        ..audit_log::AuditSettings::default()
    };
    audit_log::AuditLog::connect(&settings)
        .await
        .expect("connect")
        .record(common::tagged("x"))
        .await
        .expect("recorded");
    assert!(path.is_file());
}

#[tokio::test]
async fn the_writer_counts_on_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = audit_log::AuditMetrics::registered(&mut registry);
    let log = audit_log::AuditLog::connect_for("dmp-gateway", &common::sqlite_settings(&dir), metrics)
        .await
        .expect("connect");
    log.record_all(vec![common::tagged("a"), common::tagged("b")])
        .await
        .expect("recorded");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("OpenMetrics text");
    assert!(text.contains("audit_events_committed_total 2"), "{text}");
    assert!(text.contains("audit_events_failed_total 0"), "{text}");
    assert!(text.contains("audit_transactions_total 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn awkward_token_ids_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::awkward_jtis_round_trip(common::sqlite_settings(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_and_token_ids_commit_together() {
    let dir = tempfile::tempdir().expect("tmp");
    common::mixed_turns(common::sqlite_settings(&dir)).await;
}

/// `make run` starts three services on one new SQLite file at the same moment: each must
/// come up, whoever migrates first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_opening_one_new_file_at_once_all_start() {
    for round in 0..5 {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = common::sqlite_settings(&dir);
        let (a, b, c) = tokio::join!(
            audit_log::AuditLog::connect(&settings),
            audit_log::AuditLog::connect(&settings),
            audit_log::AuditLog::connect(&settings),
        );
        for (which, log) in [("a", a), ("b", b), ("c", c)] {
            let log = log.unwrap_or_else(|e| panic!("round {round}: service {which} failed to start: {e}"));
            log.record(common::tagged(which)).await.expect("recorded");
        }
    }
}
