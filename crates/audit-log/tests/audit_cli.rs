//! `ehealth-audit list`, run as a process against databases the tests filled (SPEC.md §4
//! "Operators can read the log by correlation id or patient from a CLI").
mod common;

use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use audit_log::{AuditEvent, AuditLog, AuditSettings, Direction};

fn cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ehealth-audit"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run ehealth-audit")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "ehealth-audit failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).expect("utf-8")
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

async fn fill(settings: &AuditSettings) {
    let log = AuditLog::connect(settings).await.expect("connect");
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000); // 2026-09-21T14:13:20Z
    let mut events = Vec::new();
    for (i, (patient, user, corr)) in [
        ("999911120", "uzi-1", "corr-a"),
        ("999911120", "uzi-2", "corr-b"),
        ("2 84 05 75 999 123 45", "rpps-810002", "corr-c"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = AuditEvent::new(
            "twiin-authz",
            "uitgeven_twiin_assertions",
            Direction::ReceivedRequest,
        );
        e.time = base + Duration::from_secs(60 * i as u64);
        if patient.contains(' ') {
            e.patient_ins = Some(patient.into());
            e.service = "dmp-gateway".into();
        } else {
            e.patient_bsn = Some(patient.into());
        }
        e.user_id = Some(user.into());
        e.initial_request_id = Some(corr.into());
        e.peer = Some("evil\u{1b}[31mred".into());
        e.attributes = serde_json::json!({"i": i});
        events.push(e);
    }
    log.record_all(events).await.expect("recorded");
}

fn check(db: &[&str]) {
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = db.iter().map(|s| s.to_string()).collect();
        a.push("list".into());
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(["--format".to_string(), "json".to_string()]);
        a
    };
    let all = json_lines(&cli(&args(&[])));
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["time"], "2026-09-21T14:13:20.000000Z");
    assert_eq!(all[0]["attributes"]["i"], 0);

    let by_patient = json_lines(&cli(&args(&["--patient", "999911120"])));
    assert_eq!(by_patient.len(), 2);
    let by_ins = json_lines(&cli(&args(&["--patient", "2 84 05 75 999 123 45"])));
    assert_eq!(by_ins.len(), 1);
    assert_eq!(by_ins[0]["service"], "dmp-gateway");
    let by_pro = json_lines(&cli(&args(&["--professional", "uzi-2"])));
    assert_eq!(by_pro.len(), 1);
    assert_eq!(by_pro[0]["initial_request_id"], "corr-b");
    let by_corr = json_lines(&cli(&args(&["--correlation-id", "corr-c"])));
    assert_eq!(by_corr.len(), 1);
    let window = json_lines(&cli(&args(&[
        "--since",
        "2026-09-21T14:14:00Z",
        "--until",
        "2026-09-21T16:15:00+02:00",
    ])));
    assert_eq!(window.len(), 1, "{window:?}");
    assert_eq!(window[0]["user_id"], "uzi-2");

    // Cut lists say so on stderr.
    let cut = cli(&args(&["--limit", "1"]));
    assert_eq!(json_lines(&cut).len(), 1);
    assert!(String::from_utf8_lossy(&cut.stderr).contains("more match"));

    // The table: a header, one line per event, no terminal control characters.
    let mut table_args: Vec<&str> = db.to_vec();
    table_args.extend_from_slice(&["list", "--patient", "999911120"]);
    let table = stdout(&cli(&table_args));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("PATIENT") && lines[0].contains("CORRELATION"));
    assert!(
        lines[1].contains("corr-a") && lines[1].contains("uzi-1") && lines[1].contains("received_request")
    );
    assert!(!table.contains('\u{1b}'));

    // Bad input gets a clear message and a failure status.
    let mut bad: Vec<&str> = db.to_vec();
    bad.extend_from_slice(&["list", "--since", "yesterday"]);
    let out = cli(&bad);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_from_postgres() {
    let db = common::TestDb::create().await;
    fill(&db.settings()).await;
    check(&["--database-url", &db.url]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_from_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = common::sqlite_settings(&dir);
    fill(&settings).await;
    let path = settings.sqlite_path.display().to_string();
    check(&["--sqlite", &path]);
}

#[test]
fn a_missing_database_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("none.sqlite");
    let out = cli(&["--sqlite", path.to_str().expect("utf-8"), "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!path.exists(), "the CLI must not create databases");
}
