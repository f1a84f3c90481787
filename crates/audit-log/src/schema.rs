//! The audit schema as an operator sees it (SPEC.md §4 "append-only"): the migrations as their
//! own step, the grants of the services' role, and `verify`, the check that the append-only
//! guarantees still hold.
//!
//! **Decision — two roles on PostgreSQL:** an *owner* role runs `ehealth-audit migrate` (a Helm
//! hook Job) and owns the tables; the services connect with a role that may only `SELECT`,
//! `INSERT` and `DELETE` audit events (the retention purge), and `SELECT`, `INSERT`, `UPDATE`,
//! `DELETE` the `jti` replay store (an expired `jti` is re-accepted by updating its row). It
//! cannot `UPDATE` or `TRUNCATE` events, alter, drop or disable anything, nor create objects.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;

use crate::AuditError;
use crate::settings::{AuditBackend, AuditSettings, redact_url, scrub};

/// A database holding (or about to hold) the audit tables.
#[derive(Clone)]
pub(crate) enum Db {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self {
            Db::Pg(_) => &crate::postgres::MIGRATOR,
            Db::Sqlite(_) => &crate::sqlite::MIGRATOR,
        }
    }

    /// `(version, checksum, success)` of every applied migration, or `None` when the database has
    /// no migrations table at all.
    async fn applied(&self) -> Result<Option<Vec<(i64, Vec<u8>, bool)>>, sqlx::Error> {
        let sql = "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version";
        let rows = match self {
            Db::Pg(pool) => sqlx::query_as(sql).fetch_all(pool).await,
            Db::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await,
        };
        match rows {
            Ok(rows) => Ok(Some(rows)),
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("42P01") || e.message().contains("no such table") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// What is wrong with the applied migrations compared with those this version ships; empty
/// when they are the same.
async fn migration_problems(db: &Db) -> Result<Vec<String>, sqlx::Error> {
    let Some(applied) = db.applied().await? else {
        return Ok(vec!["no audit schema: the migrations never ran".into()]);
    };
    let mut problems = Vec::new();
    let mut applied: BTreeMap<i64, (Vec<u8>, bool)> =
        applied.into_iter().map(|(v, c, s)| (v, (c, s))).collect();
    for m in db
        .migrator()
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        match applied.remove(&m.version) {
            None => problems.push(format!(
                "migration {} ({}) is not applied",
                m.version, m.description
            )),
            Some((_, false)) => problems.push(format!("migration {} failed half-way", m.version)),
            Some((checksum, true)) if checksum != *m.checksum => problems.push(format!(
                "migration {} was applied from a different file than this version ships",
                m.version
            )),
            Some(_) => {}
        }
    }
    for version in applied.keys() {
        problems.push(format!(
            "migration {version} is unknown to this version (a newer schema: upgrade the services)"
        ));
    }
    Ok(problems)
}

/// For `audit.migrations = "check"`: Ok when every migration of this version is applied as
/// shipped; otherwise what to do.
pub(crate) async fn check_applied(db: &Db) -> Result<(), String> {
    let problems = migration_problems(db)
        .await
        .map_err(|e| format!("cannot read the audit schema's migrations: {e}"))?;
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the audit schema is not the one this version expects ({}); run `ehealth-audit migrate` \
         with the owner role (the chart's migration Job), or set audit.migrations = \"apply\" \
         when the service's own role may create tables",
        problems.join("; ")
    ))
}

/// Opens `backend` for schema work (no migration, SQLite read-write only when `write`).
async fn open(backend: &AuditBackend, write: bool) -> Result<Db, AuditError> {
    let settings = AuditSettings::default().validate("audit")?;
    Ok(match backend {
        AuditBackend::Postgres { url } => Db::Pg(crate::postgres::connect_pool(url, &settings, false).await?),
        AuditBackend::Sqlite { path } => Db::Sqlite(crate::sqlite::open_pool(path, &settings, write).await?),
    })
}

/// `ehealth-audit migrate`: applies the pending migrations (run it as the role that is to own
/// the tables), then gives each of `grant_to` the services' privileges (see the module's
/// decision) and nothing more: earlier grants on the audit tables are revoked first.
/// Returns what was done, for the operator.
pub async fn migrate(backend: &AuditBackend, grant_to: &[String]) -> Result<Vec<String>, AuditError> {
    let db = match backend {
        // Opening for write runs the SQLite migrations already.
        AuditBackend::Sqlite { path } => {
            if !grant_to.is_empty() {
                return Err(AuditError::Unavailable(
                    "--grant-to needs PostgreSQL: a SQLite file has no roles (protect it with file permissions)"
                        .into(),
                ));
            }
            let settings = AuditSettings::default().validate("audit")?;
            crate::sqlite::open_pool(path, &settings, true).await?;
            return Ok(vec![format!("schema up to date in {backend}")]);
        }
        AuditBackend::Postgres { .. } => open(backend, true).await?,
    };
    let (Db::Pg(pool), AuditBackend::Postgres { url }) = (&db, backend) else {
        return Err(AuditError::Unavailable("unexpected backend".into()));
    };
    crate::postgres::MIGRATOR
        .run(pool)
        .await
        .map_err(|e| crate::postgres::unavailable(url, "audit schema migration failed", &e))?;
    let mut done = vec![format!("schema up to date in {backend}")];
    for role in grant_to {
        grant(pool, role).await.map_err(|e| {
            AuditError::Unavailable(format!("granting to `{role}` failed: {}", scrub(&e, url)))
        })?;
        done.push(format!(
            "role {role}: SELECT, INSERT, DELETE on audit_events; SELECT, INSERT, UPDATE, DELETE on \
             audit_jti; SELECT on _sqlx_migrations"
        ));
    }
    Ok(done)
}

/// A role name as an SQL identifier, quoted.
fn ident(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > 63 || name.chars().any(char::is_control) {
        return Err("a role name has 1 to 63 characters and no control characters".into());
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

async fn grant(pool: &PgPool, role: &str) -> Result<(), String> {
    let quoted = ident(role)?;
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(role)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    if !exists {
        return Err(format!(
            "no role `{role}`: create it first, e.g. CREATE ROLE {quoted} LOGIN PASSWORD '...'"
        ));
    }
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    let schema = ident(&schema)?;
    for sql in [
        format!("REVOKE ALL ON audit_events, audit_jti, _sqlx_migrations FROM {quoted}"),
        format!("GRANT USAGE ON SCHEMA {schema} TO {quoted}"),
        format!("GRANT SELECT, INSERT, DELETE ON audit_events TO {quoted}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON audit_jti TO {quoted}"),
        format!("GRANT SELECT ON _sqlx_migrations TO {quoted}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut *tx)
            .await
            .map_err(|e| format!("`{sql}`: {e}"))?;
    }
    tx.commit().await.map_err(|e| e.to_string())
}

/// One line of `ehealth-audit verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `migrations`, `append-only trigger`.
    pub name: &'static str,
    /// Ok: what holds. Err: what does not.
    pub outcome: Result<String, String>,
}

impl Check {
    fn new(name: &'static str, problems: Vec<String>, ok: impl Into<String>) -> Check {
        Check {
            name,
            outcome: if problems.is_empty() {
                Ok(ok.into())
            } else {
                Err(problems.join("; "))
            },
        }
    }
}

/// The body of the function behind the append-only trigger, as the migration creates it.
const REFUSE_UPDATE_BODY: &str = "RAISE EXCEPTION 'audit_events is append-only: rows cannot be updated';";
const REFUSE_TRUNCATE_BODY: &str = "RAISE EXCEPTION 'audit_events is append-only: it cannot be truncated';";

/// `ehealth-audit verify`: whether the append-only guarantees hold (see AUDIT.md "verify").
/// With `service_role`, also that this role has the services' privileges and no more.
pub async fn verify(backend: &AuditBackend, service_role: Option<&str>) -> Result<Vec<Check>, AuditError> {
    let db = open(backend, false).await?;
    let fail = |e: sqlx::Error| {
        let text = e.to_string();
        AuditError::Unavailable(match backend {
            AuditBackend::Postgres { url } => format!("verify ({}): {}", redact_url(url), scrub(&text, url)),
            AuditBackend::Sqlite { .. } => format!("verify ({backend}): {text}"),
        })
    };
    let shipped = db
        .migrator()
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .count();
    let mut checks = vec![Check::new(
        "migrations",
        migration_problems(&db).await.map_err(fail)?,
        format!("{shipped} applied, each as shipped"),
    )];
    match &db {
        Db::Pg(pool) => checks.extend(verify_pg(pool, service_role).await.map_err(fail)?),
        Db::Sqlite(pool) => {
            if service_role.is_some() {
                return Err(AuditError::Unavailable(
                    "--service-role needs PostgreSQL: a SQLite file has no roles".into(),
                ));
            }
            checks.extend(verify_sqlite(pool).await.map_err(fail)?);
        }
    }
    Ok(checks)
}

async fn verify_pg(pool: &PgPool, service_role: Option<&str>) -> Result<Vec<Check>, sqlx::Error> {
    let mut checks = Vec::new();
    // Triggers on audit_events: exactly ours, enabled (`O`: fires in normal sessions; `D`
    // disabled, `R` replica only), calling the shipped function bodies.
    let rows = sqlx::query(
        "SELECT t.tgname::text AS name, t.tgenabled::text AS enabled, p.proname::text AS function,
                p.prosrc AS body, pg_get_triggerdef(t.oid) AS def
         FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
         WHERE t.tgrelid = 'audit_events'::regclass AND NOT t.tgisinternal ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for row in &rows {
        let name: String = row.try_get("name")?;
        let enabled: String = row.try_get("enabled")?;
        let body: String = row.try_get("body")?;
        let def: String = row.try_get("def")?;
        let function: String = row.try_get("function")?;
        let expected = match name.as_str() {
            "audit_events_append_only" => Some((
                "BEFORE UPDATE ON",
                "FOR EACH ROW",
                "audit_events_refuse_update",
                REFUSE_UPDATE_BODY,
            )),
            "audit_events_no_truncate" => Some((
                "BEFORE TRUNCATE ON",
                "FOR EACH STATEMENT",
                "audit_events_refuse_truncate",
                REFUSE_TRUNCATE_BODY,
            )),
            _ => None,
        };
        let Some((timing, each, expected_function, expected_body)) = expected else {
            problems.push(format!(
                "unexpected trigger {name} ({def}): it may change or drop rows"
            ));
            continue;
        };
        seen.push(name.clone());
        if !matches!(enabled.as_str(), "O" | "A") {
            problems.push(format!("trigger {name} is disabled (tgenabled = {enabled})"));
        }
        if !def.contains(timing) || !def.contains(each) || function != expected_function {
            problems.push(format!("trigger {name} was redefined: {def}"));
        }
        // The body as shipped, whitespace aside: nothing before or after the exception.
        let normalized: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
        if normalized != format!("BEGIN {expected_body} END") {
            problems.push(format!("the function of trigger {name} was replaced"));
        }
    }
    for wanted in ["audit_events_append_only", "audit_events_no_truncate"] {
        if !seen.iter().any(|s| s == wanted) {
            problems.push(format!("trigger {wanted} is missing"));
        }
    }
    checks.push(Check::new(
        "append-only triggers",
        problems,
        "UPDATE and TRUNCATE of audit_events are refused by enabled, unaltered triggers; no other trigger",
    ));

    // A rewrite rule (DO INSTEAD NOTHING) would drop events silently.
    let rules: Vec<String> =
        sqlx::query_scalar("SELECT rulename::text FROM pg_rules WHERE tablename = 'audit_events'")
            .fetch_all(pool)
            .await?;
    checks.push(Check::new(
        "no rewrite rules",
        rules
            .iter()
            .map(|r| format!("rule {r} on audit_events"))
            .collect(),
        "no rule rewrites writes to audit_events",
    ));

    // Ids are given by the database alone.
    let identity: String = sqlx::query_scalar(
        "SELECT attidentity::text FROM pg_attribute WHERE attrelid = 'audit_events'::regclass AND attname = 'id'",
    )
    .fetch_one(pool)
    .await?;
    checks.push(Check::new(
        "identity",
        if identity == "a" {
            Vec::new()
        } else {
            vec![format!(
                "audit_events.id is no longer GENERATED ALWAYS (attidentity = '{identity}')"
            )]
        },
        "audit_events.id is GENERATED ALWAYS",
    ));

    // Nobody but the owner may change or empty events (superusers are beyond any grant).
    let grants: Vec<(String, String)> = sqlx::query_as(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END,
                a.privilege_type
         FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = 'audit_events'::regclass AND a.grantee <> c.relowner
           AND a.privilege_type IN ('UPDATE', 'TRUNCATE', 'TRIGGER', 'REFERENCES')
         ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'audit_events'::regclass",
    )
    .fetch_one(pool)
    .await?;
    checks.push(Check::new(
        "grants",
        grants
            .iter()
            .map(|(role, privilege)| format!("{role} holds {privilege} on audit_events"))
            .collect(),
        format!("only the owner ({owner}) may update, truncate or add triggers to audit_events"),
    ));

    if let Some(role) = service_role {
        checks.push(Check::new(
            "service role",
            service_role_problems(pool, role, &owner).await?,
            format!(
                "{role}: SELECT, INSERT, DELETE on audit_events; SELECT, INSERT, UPDATE, DELETE on \
                 audit_jti; nothing else; not the owner"
            ),
        ));
    }
    Ok(checks)
}

/// The privileges a service role must have (`true`) or must not have (`false`), per table.
const SERVICE_PRIVILEGES: [(&str, [(&str, bool); 7]); 2] = [
    (
        "audit_events",
        [
            ("SELECT", true),
            ("INSERT", true),
            ("DELETE", true),
            ("UPDATE", false),
            ("TRUNCATE", false),
            ("TRIGGER", false),
            ("REFERENCES", false),
        ],
    ),
    (
        "audit_jti",
        [
            ("SELECT", true),
            ("INSERT", true),
            ("DELETE", true),
            ("UPDATE", true),
            ("TRUNCATE", false),
            ("TRIGGER", false),
            ("REFERENCES", false),
        ],
    ),
];

async fn service_role_problems(pool: &PgPool, role: &str, owner: &str) -> Result<Vec<String>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT rolsuper, rolbypassrls, pg_has_role(oid, (SELECT relowner FROM pg_class
                WHERE oid = 'audit_events'::regclass), 'USAGE') AS owns,
                has_schema_privilege(oid, current_schema(), 'CREATE') AS creates
         FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(vec![format!("no role {role}")]);
    };
    let mut problems = Vec::new();
    if row.try_get::<bool, _>("rolsuper")? {
        problems.push(format!("{role} is a superuser"));
    }
    if row.try_get::<bool, _>("owns")? {
        problems.push(format!(
            "{role} is (or acts as) the owner {owner}: it could alter or drop the tables"
        ));
    }
    if row.try_get::<bool, _>("creates")? {
        problems.push(format!("{role} may create objects in the schema"));
    }
    for (table, privileges) in SERVICE_PRIVILEGES {
        for (privilege, wanted) in privileges {
            let has: bool = sqlx::query_scalar("SELECT has_table_privilege($1, $2, $3)")
                .bind(role)
                .bind(table)
                .bind(privilege)
                .fetch_one(pool)
                .await?;
            match (wanted, has) {
                (true, false) => problems.push(format!("{role} lacks {privilege} on {table}")),
                (false, true) => problems.push(format!("{role} holds {privilege} on {table}")),
                _ => {}
            }
        }
    }
    Ok(problems)
}

async fn verify_sqlite(pool: &SqlitePool) -> Result<Vec<Check>, sqlx::Error> {
    let triggers: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events' ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    let mut problems = Vec::new();
    let mut found = false;
    for (name, sql) in &triggers {
        let sql: String = sql
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if name == "audit_events_append_only" {
            found = true;
            if !(sql.contains("BEFORE UPDATE ON audit_events")
                && sql.contains("RAISE(ABORT, 'audit_events is append-only: rows cannot be updated')"))
            {
                problems.push(format!("trigger {name} was redefined: {sql}"));
            }
        } else {
            problems.push(format!("unexpected trigger {name}: it may change or drop rows"));
        }
    }
    if !found {
        problems.push("trigger audit_events_append_only is missing".into());
    }
    Ok(vec![Check::new(
        "append-only trigger",
        problems,
        "UPDATE of audit_events is refused by the unaltered trigger; no other trigger (SQLite has no \
         roles: the file's permissions decide who may write)",
    )])
}
