//! The operator's side of the audit store on a real PostgreSQL (AUDIT.md "Roles", "verify",
//! "export"): migrations run by an owner role with `ehealth-audit migrate --grant-to`, a service
//! running under a role that can only insert, select and delete events, `verify` passing on that
//! set-up and failing on each kind of tampering, and `export` writing JSON lines per service and
//! time range.
mod common;

use std::process::{Command, Output};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use audit_log::{AuditEvent, AuditLog, AuditSettings, Direction, Migrations};
use common::TestDb;
use sqlx::Connection;

/// Two login roles of their own (an owner and a service role), dropped with the test database.
struct Roles {
    admin: String,
    db: String,
    owner: String,
    service: String,
    password: String,
    host: String,
    port: u16,
}

impl Roles {
    async fn create(db: &TestDb) -> Roles {
        let options = sqlx::postgres::PgConnectOptions::from_str(&db.url).expect("url");
        let tag = uuid_tag();
        let roles = Roles {
            admin: db.url.clone(),
            db: options.get_database().expect("a database").to_owned(),
            owner: format!("audit_owner_{tag}"),
            service: format!("audit_svc_{tag}"),
            password: format!("pw-{tag}"),
            host: options.get_host().to_owned(),
            port: options.get_port(),
        };
        roles
            .admin_sql(&[
                &format!("CREATE ROLE {} LOGIN PASSWORD '{}'", roles.owner, roles.password),
                &format!(
                    "CREATE ROLE {} LOGIN PASSWORD '{}'",
                    roles.service, roles.password
                ),
                // What a DBA gives the owner: the right to create the tables in the schema.
                &format!("GRANT CREATE, USAGE ON SCHEMA public TO {}", roles.owner),
            ])
            .await;
        roles
    }

    fn url(&self, role: &str) -> String {
        format!(
            "postgres://{role}:{}@{}:{}/{}",
            self.password, self.host, self.port, self.db
        )
    }

    /// Runs statements as the superuser of `DATABASE_URL`, in the test database.
    async fn admin_sql(&self, statements: &[&str]) {
        let mut conn = sqlx::PgConnection::connect(&self.admin)
            .await
            .expect("admin connection");
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
        }
    }

    /// Runs `sql` as the service role; the SQLSTATE of its error, if any.
    async fn as_service(&self, sql: &str) -> Option<String> {
        let mut conn = sqlx::PgConnection::connect(&self.url(&self.service))
            .await
            .expect("service connection");
        match sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
        {
            Ok(_) => None,
            Err(sqlx::Error::Database(e)) => Some(e.code().map(|c| c.into_owned()).unwrap_or_default()),
            Err(e) => panic!("`{sql}`: {e}"),
        }
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        // The owner's tables live in the test database: drop it first, then the roles.
        let admin = dev_support::test_database::with_database(&self.admin, "postgres");
        let statements = [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db),
            format!("DROP ROLE IF EXISTS {}", self.owner),
            format!("DROP ROLE IF EXISTS {}", self.service),
        ];
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    for sql in statements {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
                    }
                }
            });
        })
        .join();
    }
}

fn uuid_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

fn cli(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ehealth-audit"))
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .expect("runs ehealth-audit")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `verify` as the superuser, with the service role's grants checked too.
fn verify(roles: &Roles) -> Output {
    cli(&roles.admin, &["verify", "--service-role", &roles.service])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_migrates_and_the_service_role_can_only_insert_select_and_delete() {
    let db = TestDb::create().await;
    let roles = Roles::create(&db).await;

    // Before the migrations, a service that only checks the schema refuses to start, naming the command.
    let service_settings = AuditSettings {
        migrations: Migrations::Check,
        ..AuditSettings::for_url(&roles.url(&roles.service))
    };
    let err = AuditLog::connect_for("dmp-gateway", &service_settings, Default::default())
        .await
        .expect_err("no schema yet");
    assert!(err.to_string().contains("ehealth-audit migrate"), "{err}");
    assert!(!err.to_string().contains(&roles.password), "{err}");

    let out = cli(
        &roles.url(&roles.owner),
        &["migrate", "--grant-to", &roles.service],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("role {}", roles.service)),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(&roles.password), "{}", text(&out));
    // Idempotent: a second run (the next upgrade's hook) changes nothing and succeeds.
    let again = cli(
        &roles.url(&roles.owner),
        &["migrate", "--grant-to", &roles.service],
    );
    assert!(again.status.success(), "{}", text(&again));

    // The service runs with its role: writes, reads, jti replays (an expired jti is re-accepted,
    // which updates its row) and the retention purge (a delete).
    let log = AuditLog::connect_for(
        "dmp-gateway",
        &AuditSettings {
            retention_days: Some(1),
            jti_purge_interval: Duration::from_millis(100),
            ..service_settings.clone()
        },
        Default::default(),
    )
    .await
    .expect("the service starts with the restricted role");
    let mut old = common::tagged("old");
    old.time = SystemTime::now() - Duration::from_secs(3 * 86_400);
    log.record_all(vec![old, common::tagged("new")])
        .await
        .expect("insert");
    let past = SystemTime::now() - Duration::from_secs(1);
    assert!(log.register_jti("iss", "expired", past).await.expect("first"));
    assert!(
        log.register_jti("iss", "expired", past)
            .await
            .expect("expired: accepted again")
    );
    let later = SystemTime::now() + Duration::from_secs(600);
    assert!(log.register_jti("iss", "live", later).await.expect("first"));
    assert!(!log.register_jti("iss", "live", later).await.expect("replay"));
    let reader = audit_log::AuditReader::connect(&service_settings)
        .await
        .expect("reader");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ids: Vec<_> = reader
            .list(&Default::default())
            .await
            .expect("select")
            .into_iter()
            .filter_map(|e| e.event.request_id)
            .collect();
        if ids == ["new"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "old event not purged: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // What the role cannot do, refused by the server's permission check (SQLSTATE 42501, or
    // 42501-like "must be owner" for DDL).
    for sql in [
        "UPDATE audit_events SET status = 'forged'",
        "TRUNCATE audit_events",
        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
        "DROP TABLE audit_events",
        "CREATE TABLE audit_shadow (id int)",
        "DROP TRIGGER audit_events_append_only ON audit_events",
        "CREATE OR REPLACE FUNCTION audit_events_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "DELETE FROM _sqlx_migrations",
    ] {
        let code = roles.as_service(sql).await;
        assert_eq!(
            code.as_deref(),
            Some("42501"),
            "`{sql}` must be refused for lack of privilege"
        );
    }
    // And the role may delete events (the retention purge), nothing stops that but the grant.
    assert_eq!(
        roles.as_service("DELETE FROM audit_events WHERE false").await,
        None
    );

    // verify: everything holds, with the service role's grants checked.
    let out = verify(&roles);
    assert!(out.status.success(), "{}", text(&out));
    for name in [
        "migrations",
        "append-only triggers",
        "no rewrite rules",
        "identity",
        "grants",
        "service role",
    ] {
        assert!(
            text(&out).contains(&format!("ok    {name}:")),
            "{name}: {}",
            text(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_on_each_kind_of_tampering() {
    let db = TestDb::create().await;
    let roles = Roles::create(&db).await;
    let out = cli(
        &roles.url(&roles.owner),
        &["migrate", "--grant-to", &roles.service],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(verify(&roles).status.success(), "{}", text(&verify(&roles)));

    // (tampering, undoing it, what the report must say)
    let cases: [(String, String, &str); 8] = [
        (
            format!("GRANT UPDATE ON audit_events TO {}", roles.service),
            format!("REVOKE UPDATE ON audit_events FROM {}", roles.service),
            "holds UPDATE on audit_events",
        ),
        (
            "GRANT TRUNCATE ON audit_events TO PUBLIC".into(),
            "REVOKE TRUNCATE ON audit_events FROM PUBLIC".into(),
            "PUBLIC holds TRUNCATE on audit_events",
        ),
        (
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only".into(),
            "ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only".into(),
            "trigger audit_events_append_only is disabled",
        ),
        (
            "CREATE RULE audit_drop AS ON INSERT TO audit_events DO INSTEAD NOTHING".into(),
            "DROP RULE audit_drop ON audit_events".into(),
            "rule audit_drop on audit_events",
        ),
        (
            "CREATE OR REPLACE FUNCTION audit_events_refuse_update() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RETURN NEW; END $$"
                .into(),
            "CREATE OR REPLACE FUNCTION audit_events_refuse_update() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit_events is append-only: rows cannot be updated'; END $$"
                .into(),
            "the function of trigger audit_events_append_only was replaced",
        ),
        (
            // Raises the same exception, but only after letting the update through.
            "CREATE OR REPLACE FUNCTION audit_events_refuse_update() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RETURN NEW; RAISE EXCEPTION 'audit_events is append-only: rows cannot be updated'; END $$"
                .into(),
            "CREATE OR REPLACE FUNCTION audit_events_refuse_update() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit_events is append-only: rows cannot be updated'; END $$"
                .into(),
            "the function of trigger audit_events_append_only was replaced",
        ),
        (
            "UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = 1".into(),
            String::new(),
            "migration 1 was applied from a different file",
        ),
        (
            "DROP TRIGGER audit_events_no_truncate ON audit_events".into(),
            String::new(),
            "trigger audit_events_no_truncate is missing",
        ),
    ];
    for (tamper, undo, report) in cases {
        roles.admin_sql(&[&tamper]).await;
        let out = verify(&roles);
        assert_eq!(
            out.status.code(),
            Some(1),
            "`{tamper}` must fail verify: {}",
            text(&out)
        );
        assert!(
            text(&out).contains(report),
            "`{tamper}` reported as `{report}`: {}",
            text(&out)
        );
        assert!(text(&out).contains("FAIL"), "{}", text(&out));
        if !undo.is_empty() {
            roles.admin_sql(&[&undo]).await;
            let out = verify(&roles);
            assert!(out.status.success(), "after `{undo}`: {}", text(&out));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_json_lines_of_one_service_and_time_range() {
    let db = TestDb::create().await;
    let log = AuditLog::connect(&db.settings()).await.expect("connect");
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let mut events = Vec::new();
    for (i, service) in [
        "dmp-gateway",
        "twiin-authz",
        "dmp-gateway",
        "dmp-gateway",
        "cps-relay",
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = AuditEvent::new(service, "use", Direction::ReceivedRequest);
        e.time = base + Duration::from_secs(60 * i as u64);
        e.request_id = Some(format!("r{i}"));
        events.push(e);
    }
    log.record_all(events).await.expect("recorded");
    let out = cli(
        &db.url,
        &[
            "export",
            "--service",
            "dmp-gateway",
            "--since",
            &audit_log::time::rfc3339(base + Duration::from_secs(60)),
            "--until",
            &audit_log::time::rfc3339(base + Duration::from_secs(240)),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
        .collect();
    let ids: Vec<_> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap_or("?"))
        .collect();
    // r0 is before the range, r1 another service's, r4 at the range's end (exclusive) and another's.
    assert_eq!(ids, ["r2", "r3"], "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l["service"] == "dmp-gateway" && l["recorded_at"].is_string())
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("exported 2 events"));

    // The whole log, every service, oldest first.
    let all = cli(&db.url, &["export"]);
    assert!(all.status.success(), "{}", text(&all));
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 5);
}

/// Verify on the SQLite file: the trigger present and unaltered; a dropped trigger fails.
#[tokio::test]
async fn verify_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = common::sqlite_settings(&dir);
    AuditLog::connect(&settings).await.expect("creates the file");
    let path = settings.sqlite_path.to_str().expect("utf-8").to_owned();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ehealth-audit"))
            .args(["--sqlite", &path])
            .args(args)
            .env_remove("DATABASE_URL")
            .output()
            .expect("runs")
    };
    let out = run(&["verify"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{path}"))
        .await
        .expect("open");
    sqlx::query("DROP TRIGGER audit_events_append_only")
        .execute(&mut conn)
        .await
        .expect("drop");
    let out = run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("trigger audit_events_append_only is missing"),
        "{}",
        text(&out)
    );
    // Grants are a PostgreSQL matter.
    let out = run(&["migrate", "--grant-to", "someone"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("needs PostgreSQL"), "{}", text(&out));
}
