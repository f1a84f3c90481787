//! The audit log in PostgreSQL (SPEC.md §4), production and CI.
//!
//! A writer turn is one statement, one transaction, one round trip whatever its size: the events
//! go in as `INSERT ... SELECT ... FROM UNNEST($1::timestamptz[], ...)` (TECH-NOTES measured
//! 10,000 rows in ~60 ms this way against ~244 ms for single inserts in a transaction), the token
//! ids as `INSERT ... ON CONFLICT ... RETURNING`, and a turn with both runs the events insert as a
//! data-modifying `WITH` of the token ids' insert.
//!
//! **Decision — the writer's turns run on connections of their own**, not on the pool's: the
//! pool retries a refused connection until its acquire time-out, so a stopped server would make
//! every turn hang for `write_timeout` before failing. A writer connection is opened with one
//! attempt (a refused one fails the turn at once, and the breaker opens), checked with a ping
//! when it sat idle for more than a second, and dropped after any failure other than refused
//! values; the probe's fresh connection replaces them when the server is back. The pool serves
//! the migrations and the purges.

use std::str::FromStr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Postgres, Row};

use crate::settings::{Migrations, ValidAuditSettings, redact_url, scrub};
use crate::time::to_offset;
use crate::writer::{JtiClaim, Store, refuses_values};
use crate::{AuditError, AuditEvent, BoxFuture};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

pub(crate) struct PgStore {
    pool: PgPool,
    /// The service whose events the retention purge deletes (none: the purge deletes nothing).
    owner: Option<String>,
    options: PgConnectOptions,
    /// Idle writer connections, with when they were last used.
    writers: Mutex<Vec<(PgConnection, Instant)>>,
    /// Most idle writer connections kept (`max_concurrent_commits`).
    max_writers: usize,
}

/// A writer connection idle longer than this is pinged before a turn uses it.
const RECHECK_IDLE: Duration = Duration::from_secs(1);

/// How long the pool (start-up, migrations, purges, the reader) waits for a connection at least:
/// a server still starting when a service starts is waited for.
const MIN_POOL_WAIT: Duration = Duration::from_secs(5);

fn connect_options(url: &str) -> Result<PgConnectOptions, AuditError> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| unavailable(url, "invalid PostgreSQL URL", &e))?
        .application_name("ehealth-audit")
        .disable_statement_logging())
}

/// Connects, then runs the migrations (idempotent; concurrent start-ups serialise on the
/// migrator's advisory lock).
pub(crate) async fn connect_pool(
    url: &str,
    settings: &ValidAuditSettings,
    migrate: bool,
) -> Result<PgPool, AuditError> {
    let settings = settings.settings();
    let options = connect_options(url)?;
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.write_timeout.max(MIN_POOL_WAIT))
        // A connection broken by a server restart is noticed here and replaced.
        .test_before_acquire(true)
        .connect_with(options)
        .await
        .map_err(|e| unavailable(url, "cannot connect to PostgreSQL", &e))?;
    if migrate {
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| unavailable(url, "audit schema migration failed", &e))?;
    }
    Ok(pool)
}

pub(crate) fn unavailable(url: &str, what: &str, e: &dyn std::fmt::Display) -> AuditError {
    AuditError::Unavailable(format!(
        "{what} ({}): {}",
        redact_url(url),
        scrub(&e.to_string(), url)
    ))
}

impl PgStore {
    pub(crate) async fn connect(
        url: &str,
        settings: &ValidAuditSettings,
        owner: Option<String>,
    ) -> Result<PgStore, AuditError> {
        let apply = settings.settings().migrations == Migrations::Apply;
        let pool = connect_pool(url, settings, apply).await?;
        if !apply {
            crate::schema::check_applied(&crate::schema::Db::Pg(pool.clone()))
                .await
                .map_err(|e| AuditError::Unavailable(scrub(&e, url)))?;
        }
        Ok(PgStore {
            pool,
            owner,
            options: connect_options(url)?,
            writers: Mutex::new(Vec::new()),
            max_writers: settings.settings().max_concurrent_commits,
        })
    }

    fn idle_writers(&self) -> std::sync::MutexGuard<'_, Vec<(PgConnection, Instant)>> {
        self.writers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle writer connection that still answers, else a new one (one attempt).
    async fn writer(&self) -> Result<PgConnection, sqlx::Error> {
        loop {
            let idle = self.idle_writers().pop();
            match idle {
                Some((conn, since)) if since.elapsed() < RECHECK_IDLE => return Ok(conn),
                Some((mut conn, _)) => {
                    if conn.ping().await.is_ok() {
                        return Ok(conn);
                    }
                }
                None => return PgConnection::connect_with(&self.options).await,
            }
        }
    }

    /// Keeps `conn` for the next turn after `result`; after a failure other than refused
    /// values, drops it and every idle one (they likely share its fate).
    fn release<T>(&self, conn: PgConnection, result: &Result<T, sqlx::Error>) {
        let mut idle = self.idle_writers();
        match result {
            Err(e) if !refuses_values(e) => idle.clear(),
            _ if idle.len() < self.max_writers => idle.push((conn, Instant::now())),
            _ => {}
        }
    }

    async fn commit_on(
        conn: &mut PgConnection,
        events: &[&AuditEvent],
        claims: &[JtiClaim],
    ) -> Result<Vec<bool>, sqlx::Error> {
        if claims.is_empty() {
            if !events.is_empty() {
                bind_events(sqlx::query(INSERT_EVENTS), events)
                    .execute(&mut *conn)
                    .await?;
            }
            return Ok(Vec::new());
        }
        let query = if events.is_empty() {
            sqlx::query(INSERT_JTIS.as_str())
        } else {
            bind_events(sqlx::query(INSERT_BOTH.as_str()), events)
        };
        let rows = bind_claims(query, claims).fetch_all(&mut *conn).await?;
        let mut accepted = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            accepted.insert((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
        }
        Ok(claims
            .iter()
            .map(|c| accepted.contains(&(c.issuer.clone(), c.jti.clone())))
            .collect())
    }
}

/// The events insert; its parameters are `$1` to `$19`.
const INSERT_EVENTS: &str = "
INSERT INTO audit_events (time, service, use_case, direction, trace_id, initial_request_id, request_id,
    peer, status, error_code, client_id, ura, user_id, user_role, patient_bsn, patient_ins, scope,
    token_jtis, attributes)
SELECT t, service, use_case, direction, trace_id, initial_request_id, request_id,
    peer, status, error_code, client_id, ura, user_id, user_role, patient_bsn, patient_ins, scope,
    jtis::text[], attributes::jsonb
FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
    $16::text[], $17::text[], $18::text[], $19::text[])
    WITH ORDINALITY AS u(t, service, use_case, direction, trace_id, initial_request_id, request_id,
    peer, status, error_code, client_id, ura, user_id, user_role, patient_bsn, patient_ins, scope,
    jtis, attributes, n)
ORDER BY n";

/// The token ids' insert, its three parameters numbered from `$first`. A row comes back for
/// each jti inserted, or re-accepted because it had expired.
fn insert_jtis(first: usize) -> String {
    format!(
        "INSERT INTO audit_jti (issuer, jti, expires_at)
         SELECT * FROM UNNEST(${}::text[], ${}::text[], ${}::timestamptz[])
         ON CONFLICT (issuer, jti) DO UPDATE
             SET expires_at = EXCLUDED.expires_at, first_seen = now()
             WHERE audit_jti.expires_at <= now()
         RETURNING issuer, jti",
        first,
        first + 1,
        first + 2
    )
}

static INSERT_JTIS: LazyLock<String> = LazyLock::new(|| insert_jtis(1));
static INSERT_BOTH: LazyLock<String> =
    LazyLock::new(|| format!("WITH events AS ({INSERT_EVENTS}) {}", insert_jtis(20)));

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Binds the 19 columns of `events` (see [`INSERT_EVENTS`]).
fn bind_events<'q>(mut query: PgQuery<'q>, events: &[&'q AuditEvent]) -> PgQuery<'q> {
    let n = events.len();
    let mut time = Vec::with_capacity(n);
    let mut text: [Vec<Option<&str>>; 16] = std::array::from_fn(|_| Vec::with_capacity(n));
    let mut jtis = Vec::with_capacity(n);
    let mut attributes = Vec::with_capacity(n);
    for e in events {
        time.push(to_offset(e.time));
        let columns = [
            Some(e.service.as_str()),
            Some(e.use_case.as_str()),
            Some(e.direction.as_str()),
            e.trace_id.as_deref(),
            e.initial_request_id.as_deref(),
            e.request_id.as_deref(),
            e.peer.as_deref(),
            e.status.as_deref(),
            e.error_code.as_deref(),
            e.client_id.as_deref(),
            e.ura.as_deref(),
            e.user_id.as_deref(),
            e.user_role.as_deref(),
            e.patient_bsn.as_deref(),
            e.patient_ins.as_deref(),
            e.scope.as_deref(),
        ];
        for (column, value) in text.iter_mut().zip(columns) {
            column.push(value);
        }
        jtis.push(array_literal(&e.token_jtis));
        attributes.push((!e.attributes.is_null()).then(|| e.attributes.to_string()));
    }
    query = query.bind(time);
    for column in text {
        query = query.bind(column);
    }
    query.bind(jtis).bind(attributes)
}

/// Binds the three columns of `claims` (see [`insert_jtis`]).
fn bind_claims<'q>(query: PgQuery<'q>, claims: &'q [JtiClaim]) -> PgQuery<'q> {
    let issuers: Vec<&str> = claims.iter().map(|c| c.issuer.as_str()).collect();
    let jtis: Vec<&str> = claims.iter().map(|c| c.jti.as_str()).collect();
    let expiries: Vec<_> = claims.iter().map(|c| to_offset(c.expires_at)).collect();
    query.bind(issuers).bind(jtis).bind(expiries)
}

/// `values` as a PostgreSQL array literal (`{"a","b"}`), every element quoted and escaped: one
/// `text[]` column of an UNNEST cannot carry arrays, and the server parses this far more cheaply
/// than JSON expanded by a subquery per row.
fn array_literal(values: &[String]) -> String {
    let mut out = String::with_capacity(2 + values.iter().map(|v| v.len() + 3).sum::<usize>());
    out.push('{');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in v.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    out.push('}');
    out
}

impl Store for PgStore {
    fn commit<'a>(
        &'a self,
        events: &'a [&'a AuditEvent],
        claims: &'a [JtiClaim],
    ) -> BoxFuture<'a, Result<Vec<bool>, sqlx::Error>> {
        Box::pin(async move {
            // A turn abandoned at its time-out drops the connection with it (the server rolls
            // back whatever did not reach COMMIT).
            let mut conn = self.writer().await?;
            let result = Self::commit_on(&mut conn, events, claims).await;
            self.release(conn, &result);
            result
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(async move {
            let mut conn = PgConnection::connect_with(&self.options).await?;
            sqlx::query("SELECT 1").execute(&mut conn).await?;
            // The server is back: start again from this fresh connection.
            let mut idle = self.idle_writers();
            idle.clear();
            idle.push((conn, Instant::now()));
            Ok(())
        })
    }

    fn purge_jtis(&self) -> BoxFuture<'_, Result<u64, sqlx::Error>> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM audit_jti WHERE expires_at <= now()")
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
            // Only the owner's rows; in slices, so a first purge of a large table does not hold
            // one huge transaction. Served by the (service, time) index.
            let mut total = 0;
            loop {
                let done = sqlx::query(
                    "DELETE FROM audit_events WHERE id IN
                         (SELECT id FROM audit_events WHERE service = $1 AND time < $2
                          ORDER BY time LIMIT 10000)",
                )
                .bind(owner)
                .bind(to_offset(before))
                .execute(&self.pool)
                .await?;
                total += done.rows_affected();
                if done.rows_affected() < 10_000 {
                    return Ok(total);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }
}
