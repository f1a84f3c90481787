//! Reading the audit log (SPEC.md §4 "Operators can read the log by correlation id or patient"):
//! what the `ehealth-audit` CLI and the tests use. Opens the database without migrating it, and a
//! SQLite file read-only.

use std::time::SystemTime;

use sqlx::postgres::{PgPool, Postgres};
use sqlx::sqlite::{Sqlite, SqlitePool};
use sqlx::{QueryBuilder, Row};

use crate::settings::{AuditBackend, AuditSettings};
use crate::time::{from_offset, from_text, rfc3339, to_offset, to_text};
use crate::{AuditError, AuditEvent, Direction};

/// Which events to list. Empty filter: all events. Filters combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Matches the trace id, the AORTA-ID `initialRequestID` or the `requestID`.
    pub correlation_id: Option<String>,
    /// Matches the patient's BSN or INS.
    pub patient: Option<String>,
    /// Matches the professional / user id.
    pub professional: Option<String>,
    /// Matches the service name.
    pub service: Option<String>,
    /// Events at or after this time.
    pub since: Option<SystemTime>,
    /// Events before this time.
    pub until: Option<SystemTime>,
    /// At most this many events (the oldest first).
    pub limit: Option<u32>,
}

/// An event as stored, with its row id and commit time.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The row id (insertion order).
    pub id: i64,
    /// When the database stored the row.
    pub recorded_at: SystemTime,
    /// The event as the service recorded it (redacted).
    pub event: AuditEvent,
}

impl StoredEvent {
    /// The JSON line the CLI prints: every column, times in RFC 3339.
    pub fn to_json(&self) -> serde_json::Value {
        let e = &self.event;
        serde_json::json!({
            "id": self.id,
            "time": rfc3339(e.time),
            "recorded_at": rfc3339(self.recorded_at),
            "service": e.service,
            "use_case": e.use_case,
            "direction": e.direction,
            "trace_id": e.trace_id,
            "initial_request_id": e.initial_request_id,
            "request_id": e.request_id,
            "peer": e.peer,
            "status": e.status,
            "error_code": e.error_code,
            "client_id": e.client_id,
            "ura": e.ura,
            "user_id": e.user_id,
            "user_role": e.user_role,
            "patient_bsn": e.patient_bsn,
            "patient_ins": e.patient_ins,
            "scope": e.scope,
            "token_jtis": e.token_jtis,
            "attributes": e.attributes,
        })
    }
}

enum Pool {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// A read-only view of the audit log.
pub struct AuditReader {
    pool: Pool,
}

impl std::fmt::Debug for AuditReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.pool {
            Pool::Pg(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        };
        f.debug_struct("AuditReader").field("backend", &kind).finish()
    }
}

const COLUMNS: &str = "id, time, recorded_at, service, use_case, direction, trace_id, initial_request_id, \
    request_id, peer, status, error_code, client_id, ura, user_id, user_role, patient_bsn, patient_ins, scope";

impl AuditReader {
    /// Opens the database named by `settings` (see [`AuditSettings::backend`]).
    pub async fn connect(settings: &AuditSettings) -> Result<AuditReader, AuditError> {
        let backend = settings.backend().map_err(AuditError::Unavailable)?;
        AuditReader::open(&backend, settings).await
    }

    /// Opens `backend` with the pool settings of `settings` (its database keys are ignored).
    pub async fn open(backend: &AuditBackend, settings: &AuditSettings) -> Result<AuditReader, AuditError> {
        let settings = settings.validate("audit")?;
        let pool = match backend {
            AuditBackend::Postgres { url } => {
                Pool::Pg(crate::postgres::connect_pool(url, &settings, false).await?)
            }
            AuditBackend::Sqlite { path } => {
                Pool::Sqlite(crate::sqlite::open_pool(path, &settings, false).await?)
            }
        };
        Ok(AuditReader { pool })
    }

    /// The events matching `filter`, oldest first.
    pub async fn list(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, AuditError> {
        match &self.pool {
            Pool::Pg(pool) => {
                let mut q = QueryBuilder::<Postgres>::new(format!(
                    "SELECT {COLUMNS}, token_jtis, attributes::text AS attributes FROM audit_events WHERE TRUE"
                ));
                push_filter(&mut q, filter, to_offset);
                let rows = q.build().fetch_all(pool).await.map_err(read_error)?;
                rows.iter().map(pg_row).collect()
            }
            Pool::Sqlite(pool) => {
                let mut q = QueryBuilder::<Sqlite>::new(format!(
                    "SELECT {COLUMNS}, token_jtis, attributes FROM audit_events WHERE TRUE"
                ));
                push_filter(&mut q, filter, to_text);
                let rows = q.build().fetch_all(pool).await.map_err(read_error)?;
                rows.iter().map(sqlite_row).collect()
            }
        }
    }

    /// Every event matching `filter` (its `limit` included), oldest first, handed to `each` one
    /// at a time as the rows stream in: memory stays flat however many events match (the CLI's
    /// `export`). Stops at the first error of `each`.
    pub async fn export<E: std::fmt::Display>(
        &self,
        filter: &EventFilter,
        mut each: impl FnMut(StoredEvent) -> Result<(), E>,
    ) -> Result<u64, AuditError> {
        use futures_util::TryStreamExt;
        let stop = |e: E| AuditError::Unavailable(format!("export stopped: {e}"));
        let mut count = 0;
        match &self.pool {
            Pool::Pg(pool) => {
                let mut q = QueryBuilder::<Postgres>::new(format!(
                    "SELECT {COLUMNS}, token_jtis, attributes::text AS attributes FROM audit_events WHERE TRUE"
                ));
                push_filter(&mut q, filter, to_offset);
                let mut rows = q.build().fetch(pool);
                while let Some(row) = rows.try_next().await.map_err(read_error)? {
                    each(pg_row(&row)?).map_err(stop)?;
                    count += 1;
                }
            }
            Pool::Sqlite(pool) => {
                let mut q = QueryBuilder::<Sqlite>::new(format!(
                    "SELECT {COLUMNS}, token_jtis, attributes FROM audit_events WHERE TRUE"
                ));
                push_filter(&mut q, filter, to_text);
                let mut rows = q.build().fetch(pool);
                while let Some(row) = rows.try_next().await.map_err(read_error)? {
                    each(sqlite_row(&row)?).map_err(stop)?;
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// Every stored event holding a string that looks like a compact JWS/JWE (`eyJ...`): should
    /// always be empty. Reads the whole table; meant for tests and spot checks.
    pub async fn find_token_like(&self) -> Result<Vec<StoredEvent>, AuditError> {
        let all = self.list(&EventFilter::default()).await?;
        Ok(all
            .into_iter()
            .filter(|e| crate::redact::contains_token_like(&e.to_json().to_string()))
            .collect())
    }

    /// Every `(issuer, jti)` pair currently in the replay store.
    pub async fn jtis(&self) -> Result<Vec<(String, String)>, AuditError> {
        let sql = "SELECT issuer, jti FROM audit_jti ORDER BY issuer, jti";
        let rows: Vec<(String, String)> = match &self.pool {
            Pool::Pg(pool) => sqlx::query_as(sql).fetch_all(pool).await,
            Pool::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await,
        }
        .map_err(read_error)?;
        Ok(rows)
    }
}

fn push_filter<'a, DB, T>(q: &mut QueryBuilder<DB>, f: &'a EventFilter, time: fn(SystemTime) -> T)
where
    DB: sqlx::Database,
    T: 'a + sqlx::Encode<'a, DB> + sqlx::Type<DB> + Send,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if let Some(id) = f.correlation_id.as_deref() {
        q.push(" AND (trace_id = ").push_bind(id);
        q.push(" OR initial_request_id = ").push_bind(id);
        q.push(" OR request_id = ").push_bind(id).push(")");
    }
    if let Some(p) = f.patient.as_deref() {
        q.push(" AND (patient_bsn = ").push_bind(p);
        q.push(" OR patient_ins = ").push_bind(p).push(")");
    }
    if let Some(u) = f.professional.as_deref() {
        q.push(" AND user_id = ").push_bind(u);
    }
    if let Some(s) = f.service.as_deref() {
        q.push(" AND service = ").push_bind(s);
    }
    if let Some(t) = f.since {
        q.push(" AND time >= ").push_bind(time(t));
    }
    if let Some(t) = f.until {
        q.push(" AND time < ").push_bind(time(t));
    }
    q.push(" ORDER BY time, id");
    if let Some(n) = f.limit {
        q.push(" LIMIT ").push_bind(i64::from(n));
    }
}

fn read_error(e: sqlx::Error) -> AuditError {
    let missing_table = match &e {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("42P01") || db.message().contains("no such table")
        }
        _ => false,
    };
    if missing_table {
        AuditError::Unavailable(
            "this database has no audit tables: run `ehealth-audit migrate` (or start a service with \
             audit.migrations = \"apply\")"
                .into(),
        )
    } else {
        AuditError::Unavailable(format!("reading the audit log failed: {e}"))
    }
}

fn corrupt(what: impl std::fmt::Display) -> AuditError {
    AuditError::Unavailable(format!("unreadable audit row: {what}"))
}

/// The text columns after `direction`, in `COLUMNS` order.
const OPTIONAL_TEXT: [&str; 13] = [
    "trace_id",
    "initial_request_id",
    "request_id",
    "peer",
    "status",
    "error_code",
    "client_id",
    "ura",
    "user_id",
    "user_role",
    "patient_bsn",
    "patient_ins",
    "scope",
];

fn build<R: Row>(
    row: &R,
    time: SystemTime,
    recorded_at: SystemTime,
    token_jtis: Vec<String>,
    attributes: Option<String>,
) -> Result<StoredEvent, AuditError>
where
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let text = |c: &str| row.try_get::<Option<String>, _>(c).map_err(corrupt);
    let direction: String = row.try_get("direction").map_err(corrupt)?;
    let mut event = AuditEvent::new(
        &row.try_get::<String, _>("service").map_err(corrupt)?,
        &row.try_get::<String, _>("use_case").map_err(corrupt)?,
        direction.parse::<Direction>().map_err(corrupt)?,
    );
    event.time = time;
    let mut values = Vec::with_capacity(OPTIONAL_TEXT.len());
    for c in OPTIONAL_TEXT {
        values.push(text(c)?);
    }
    let mut values = values.into_iter();
    for field in [
        &mut event.trace_id,
        &mut event.initial_request_id,
        &mut event.request_id,
        &mut event.peer,
        &mut event.status,
        &mut event.error_code,
        &mut event.client_id,
        &mut event.ura,
        &mut event.user_id,
        &mut event.user_role,
        &mut event.patient_bsn,
        &mut event.patient_ins,
        &mut event.scope,
    ] {
        *field = values.next().flatten();
    }
    event.token_jtis = token_jtis;
    event.attributes = match attributes {
        Some(a) => serde_json::from_str(&a).map_err(corrupt)?,
        None => serde_json::Value::Null,
    };
    Ok(StoredEvent {
        id: row.try_get("id").map_err(corrupt)?,
        recorded_at,
        event,
    })
}

fn pg_row(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, AuditError> {
    let time: time::OffsetDateTime = row.try_get("time").map_err(corrupt)?;
    let recorded_at: time::OffsetDateTime = row.try_get("recorded_at").map_err(corrupt)?;
    let jtis: Vec<String> = row.try_get("token_jtis").map_err(corrupt)?;
    let attributes: Option<String> = row.try_get("attributes").map_err(corrupt)?;
    build(row, from_offset(time), from_offset(recorded_at), jtis, attributes)
}

fn sqlite_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredEvent, AuditError> {
    let time: String = row.try_get("time").map_err(corrupt)?;
    let recorded_at: String = row.try_get("recorded_at").map_err(corrupt)?;
    let jtis: String = row.try_get("token_jtis").map_err(corrupt)?;
    let jtis: Vec<String> = serde_json::from_str(&jtis).map_err(corrupt)?;
    let attributes: Option<String> = row.try_get("attributes").map_err(corrupt)?;
    build(
        row,
        from_text(&time).map_err(corrupt)?,
        from_text(&recorded_at).map_err(corrupt)?,
        jtis,
        attributes,
    )
}
