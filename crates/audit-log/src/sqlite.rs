//! The audit log in a SQLite file (SPEC.md §4 "embedded default"), for `make run` and anyone
//! without a PostgreSQL server. Same schema, same writer; a writer turn (events and token ids) is one
//! transaction of prepared single-row inserts (no network, so rows cost microseconds).
//!
//! **Decision — durability:** WAL journal with `synchronous = FULL`, so a commit the writer
//! acknowledges survives a power cut, as on PostgreSQL. Several processes (the three services of
//! `make run`) may share the file: SQLite serialises their writers, waiting up to `write_timeout`.

use std::path::Path;
use std::time::SystemTime;

use sqlx::ConnectOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::settings::{Migrations, ValidAuditSettings};
use crate::time::to_text;
use crate::writer::{JtiClaim, Store};
use crate::{AuditError, AuditEvent, BoxFuture};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

pub(crate) struct SqliteStore {
    pool: SqlitePool,
    /// The service whose events the retention purge deletes (none: the purge deletes nothing).
    owner: Option<String>,
}

/// Opens the file. For writing it is created (with its directory) and migrated; for reading it
/// must exist and is opened read-only.
pub(crate) async fn open_pool(
    path: &Path,
    settings: &ValidAuditSettings,
    write: bool,
) -> Result<SqlitePool, AuditError> {
    let migrate = settings.settings().migrations == Migrations::Apply;
    let settings = settings.settings();
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        AuditError::Unavailable(format!("{what} (SQLite at {}): {e}", path.display()))
    };
    if write {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the audit directory", &e))?;
        }
    } else if !path.is_file() {
        return Err(fail("no audit database", &"the file does not exist"));
    }
    let mut options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(write)
        .read_only(!write)
        .busy_timeout(settings.write_timeout)
        .disable_statement_logging();
    if write {
        options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
    }
    let connect = || {
        SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.write_timeout)
            .connect_with(options.clone())
    };
    if !write {
        return connect()
            .await
            .map_err(|e| fail("cannot open the audit database", &e));
    }
    // Services started at the same moment on one new file (`make run`) race to create it: the
    // switch to WAL answers "database is locked" without waiting, and sqlx takes no lock while
    // migrating, so the loser of either race fails. Its work was rolled back; opening again
    // finds the file ready.
    const ATTEMPTS: u32 = 8;
    let mut attempt = 1;
    loop {
        let opened = match connect().await {
            Ok(pool) if !migrate => {
                return match crate::schema::check_applied(&crate::schema::Db::Sqlite(pool.clone())).await {
                    Ok(()) => Ok(pool),
                    Err(e) => Err(fail("audit schema check failed", &e)),
                };
            }
            Ok(pool) => match MIGRATOR.run(&pool).await {
                Ok(()) => return Ok(pool),
                Err(e) => fail("audit schema migration failed", &e),
            },
            Err(e) => fail("cannot open the audit database", &e),
        };
        if attempt == ATTEMPTS {
            return Err(opened);
        }
        tracing::debug!(attempt, error = %opened, "opening the new audit file raced another process; retrying");
        tokio::time::sleep(std::time::Duration::from_millis(25 * u64::from(attempt))).await;
        attempt += 1;
    }
}

impl SqliteStore {
    pub(crate) async fn open(
        path: &Path,
        settings: &ValidAuditSettings,
        owner: Option<String>,
    ) -> Result<SqliteStore, AuditError> {
        Ok(SqliteStore {
            pool: open_pool(path, settings, true).await?,
            owner,
        })
    }
}

const INSERT: &str = "
INSERT INTO audit_events (time, service, use_case, direction, trace_id, initial_request_id, request_id,
    peer, status, error_code, client_id, ura, user_id, user_role, patient_bsn, patient_ins, scope,
    token_jtis, attributes, recorded_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

impl Store for SqliteStore {
    fn commit<'a>(
        &'a self,
        events: &'a [&'a AuditEvent],
        claims: &'a [JtiClaim],
    ) -> BoxFuture<'a, Result<Vec<bool>, sqlx::Error>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            // The column default only has milliseconds; keep microseconds as on PostgreSQL.
            let now = to_text(SystemTime::now());
            for e in events {
                sqlx::query(INSERT)
                    .bind(to_text(e.time))
                    .bind(e.service.as_str())
                    .bind(e.use_case.as_str())
                    .bind(e.direction.as_str())
                    .bind(e.trace_id.as_deref())
                    .bind(e.initial_request_id.as_deref())
                    .bind(e.request_id.as_deref())
                    .bind(e.peer.as_deref())
                    .bind(e.status.as_deref())
                    .bind(e.error_code.as_deref())
                    .bind(e.client_id.as_deref())
                    .bind(e.ura.as_deref())
                    .bind(e.user_id.as_deref())
                    .bind(e.user_role.as_deref())
                    .bind(e.patient_bsn.as_deref())
                    .bind(e.patient_ins.as_deref())
                    .bind(e.scope.as_deref())
                    .bind(serde_json::Value::from(e.token_jtis.clone()).to_string())
                    .bind((!e.attributes.is_null()).then(|| e.attributes.to_string()))
                    .bind(now.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            let mut accepted = Vec::with_capacity(claims.len());
            for c in claims {
                let done = sqlx::query(
                    "INSERT INTO audit_jti (issuer, jti, expires_at, first_seen) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (issuer, jti) DO UPDATE
                         SET expires_at = excluded.expires_at, first_seen = excluded.first_seen
                         WHERE audit_jti.expires_at <= ?4",
                )
                .bind(&c.issuer)
                .bind(&c.jti)
                .bind(to_text(c.expires_at))
                .bind(&now)
                .execute(&mut *tx)
                .await?;
                accepted.push(done.rows_affected() == 1);
            }
            tx.commit().await?;
            Ok(accepted)
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }

    fn purge_jtis(&self) -> BoxFuture<'_, Result<u64, sqlx::Error>> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM audit_jti WHERE expires_at <= ?")
                .bind(to_text(SystemTime::now()))
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    fn purge_events(&self, before: SystemTime) -> BoxFuture<'_, Result<u64, sqlx::Error>> {
        Box::pin(async move {
            let Some(owner) = self.owner.as_deref() else {
                return Ok(0);
            };
            let mut total = 0;
            loop {
                let done = sqlx::query(
                    "DELETE FROM audit_events WHERE id IN
                         (SELECT id FROM audit_events WHERE service = ? AND time < ?
                          ORDER BY time LIMIT 10000)",
                )
                .bind(owner)
                .bind(to_text(before))
                .execute(&self.pool)
                .await?;
                total += done.rows_affected();
                if done.rows_affected() < 10_000 {
                    return Ok(total);
                }
            }
        })
    }
}
