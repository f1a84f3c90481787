//! The `[audit]` configuration section (SPEC.md §0 "Postgres", §4): where the log lives and how the
//! writer batches. [`AuditSettings::validate`] is the one place that knows the bounds; what it
//! returns, [`ValidAuditSettings`], is all the writer and the stores are built from, so they use
//! the values as they are.
//!
//! **Decision — embedded default:** with no `database_url` and no `DATABASE_URL` in the
//! environment, the log is a SQLite file (`sqlite_path`), so `make run` needs no server.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use service_config::{ConfigError, duration};

/// Where the audit log is kept and how it is written. Every key has a default.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// `postgres://user:password@host:port/db`, or `sqlite:PATH`. When unset, the
    /// `DATABASE_URL` environment variable is used if set, else SQLite at `sqlite_path`.
    /// Never logged with its password.
    /// Serialized (`--check-config`) without its password.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_redacted"
    )]
    pub database_url: Option<String>,
    /// The SQLite file used when no PostgreSQL URL is configured (created with its directory).
    pub sqlite_path: PathBuf,
    /// Most events committed in one transaction.
    pub batch_max_events: usize,
    /// How long a free writer waits, counted from the arrival of the oldest waiting event, for
    /// more events to join a transaction.
    ///
    /// **Decision — 0 by default:** events that arrive while earlier batches commit already join
    /// the next batch with no wait, so a linger mostly delays callers. Measured with the release
    /// benchmark (64 writers, busy 2-core machine): 0 ms and 2 ms within run-to-run noise
    /// (3.7k-7.4k events/s both), against ~270 events/s for single-event transactions.
    #[serde(with = "duration")]
    pub batch_max_wait: Duration,
    /// Writer turns committing at the same time (each on its own connection). While all are
    /// busy, new writes and jti registrations gather into the next turn.
    ///
    /// **Decision — 1 by default:** every commit waits for the same WAL flush, so a second turn
    /// in flight rarely finishes sooner; it only splits the queue into smaller transactions.
    /// Measured with twiin-authz (`make bench`): 1 turn at a time gave 0.17 server
    /// transactions and 0.13-0.16 ms of server CPU per token request against 0.29 and
    /// 0.16-0.21 ms with 2, with a lower p99 at half peak. Raise it for a remote database whose
    /// round trip, not its flush, bounds a turn.
    pub max_concurrent_commits: usize,
    /// Jobs waiting for the writer (each `record`/`record_all`/`register_jti` call counts once). When full,
    /// callers wait (backpressure) up to `write_timeout`.
    pub queue_capacity: usize,
    /// Longest a writer turn may take to commit, and a write to wait for its turn. Past it
    /// the turn is abandoned, its callers get `Unavailable` (fail closed) and the store is taken
    /// for down: the breaker opens (see `breaker_probe_interval`).
    ///
    /// **Decision — 1 s by default:** a turn of 512 events commits in tens of milliseconds on
    /// PostgreSQL (see `make bench`), so a store that cannot commit within a second is treated
    /// as down, and every caller has its answer within about a second (issue 19), instead of
    /// queueing behind a hung turn.
    #[serde(with = "duration")]
    pub write_timeout: Duration,
    /// While the breaker is open (after a turn that failed for any reason other than a refused
    /// value, or timed out), every write and jti registration fails at once with
    /// `AuditError::StoreDown`, and a background probe tries the store this often; its first
    /// success closes the breaker. Callers are told to retry after this interval rounded up to
    /// whole seconds.
    #[serde(with = "duration")]
    pub breaker_probe_interval: Duration,
    /// Connections to the database (the writer uses one at a time; `register_jti`, purges and
    /// the rest share the others).
    pub max_connections: u32,
    /// Events older than this many days are deleted. Off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// How often expired `jti`s (and, with `retention_days`, old events) are purged.
    #[serde(with = "duration")]
    pub jti_purge_interval: Duration,
    /// What a service does with the schema at start-up: `apply` the migrations (the default:
    /// `make run`, tests, a database the service owns) or only `check` that the schema is the
    /// one this version expects (production: the migrations run as their own step,
    /// `ehealth-audit migrate`, under an owner role; the services' role cannot change the schema).
    pub migrations: Migrations,
    /// Allows a PostgreSQL server that is neither on loopback nor on a Unix socket without
    /// `sslmode=verify-full` (or `verify-ca`) in `database_url`. Off: such a URL stops start-up,
    /// because the audit rows (patient and professional ids) and the password would cross the
    /// network unprotected or to an unverified server. Turn on only behind a TLS sidecar or an
    /// equivalent protection.
    pub allow_unverified_transport: bool,
}

/// What a service does with the audit schema at start-up (`audit.migrations`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Migrations {
    /// Runs the pending migrations (needs a role that may create tables).
    #[default]
    Apply,
    /// Only checks that every migration of this version is applied, unaltered; start-up fails
    /// otherwise, naming `ehealth-audit migrate`.
    Check,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            database_url: None,
            sqlite_path: PathBuf::from(".local/audit.sqlite"),
            batch_max_events: 512,
            batch_max_wait: Duration::ZERO,
            max_concurrent_commits: 1,
            queue_capacity: 8192,
            write_timeout: Duration::from_secs(1),
            breaker_probe_interval: Duration::from_millis(250),
            max_connections: 8,
            retention_days: None,
            jti_purge_interval: Duration::from_secs(60),
            migrations: Migrations::Apply,
            allow_unverified_transport: false,
        }
    }
}

impl std::fmt::Debug for AuditSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSettings")
            .field("database_url", &self.database_url.as_deref().map(redact_url))
            .field("sqlite_path", &self.sqlite_path)
            .field("batch_max_events", &self.batch_max_events)
            .field("batch_max_wait", &self.batch_max_wait)
            .field("max_concurrent_commits", &self.max_concurrent_commits)
            .field("queue_capacity", &self.queue_capacity)
            .field("write_timeout", &self.write_timeout)
            .field("breaker_probe_interval", &self.breaker_probe_interval)
            .field("max_connections", &self.max_connections)
            .field("retention_days", &self.retention_days)
            .field("jti_purge_interval", &self.jti_purge_interval)
            .field("migrations", &self.migrations)
            .field("allow_unverified_transport", &self.allow_unverified_transport)
            .finish()
    }
}

/// Longest `write_timeout` accepted.
const MAX_WRITE_TIMEOUT: Duration = Duration::from_secs(3600);

/// [`AuditSettings`] that passed [`AuditSettings::validate`]: the only form the writer and the
/// stores accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAuditSettings(AuditSettings);

impl ValidAuditSettings {
    /// The checked values.
    pub fn settings(&self) -> &AuditSettings {
        &self.0
    }
}

/// The database the log lives in, once settings and environment are resolved.
#[derive(Clone, PartialEq, Eq)]
pub enum AuditBackend {
    /// A PostgreSQL server (production, CI).
    Postgres {
        /// `postgres://...`; shown only through [`redact_url`].
        url: String,
    },
    /// A SQLite file (the embedded default).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
}

impl std::fmt::Debug for AuditBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// Shows the backend for logs: the PostgreSQL URL without its password.
impl std::fmt::Display for AuditBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditBackend::Postgres { url } => write!(f, "PostgreSQL at {}", redact_url(url)),
            AuditBackend::Sqlite { path } => write!(f, "SQLite at {}", path.display()),
        }
    }
}

impl AuditBackend {
    /// Reads a URL: `postgres://`/`postgresql://` or `sqlite:PATH` (also `sqlite://PATH`).
    pub fn from_url(url: &str) -> Result<AuditBackend, String> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                return Err("a sqlite: URL needs a file path, e.g. sqlite:.local/audit.sqlite".into());
            }
            return Ok(AuditBackend::Sqlite {
                path: PathBuf::from(path),
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            sqlx::postgres::PgConnectOptions::from_str(url)
                .map_err(|e| format!("not a valid PostgreSQL URL: {}", scrub(&e.to_string(), url)))?;
            return Ok(AuditBackend::Postgres { url: url.to_owned() });
        }
        Err(format!(
            "`{}` is neither a postgres:// nor a sqlite: URL",
            redact_url(url)
        ))
    }
}

/// `database_url` as `--check-config` and every other serialization show it: without password.
fn serialize_redacted<S: serde::Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_some(&redact_url(url)),
        None => s.serialize_none(),
    }
}

impl AuditBackend {
    /// **Decision — verified TLS off the machine:** a PostgreSQL server reached over the network
    /// (not loopback, not a Unix socket) must be named with `sslmode=verify-full` or
    /// `verify-ca`, unless `allow` (`audit.allow_unverified_transport`). `disable`, `allow` and
    /// `prefer` may send everything in clear text, `require` accepts any certificate (sqlx's
    /// `require` never checks the CA, even with `sslrootcert`).
    pub fn check_transport(self, allow: bool) -> Result<AuditBackend, String> {
        let AuditBackend::Postgres { url } = &self else {
            return Ok(self);
        };
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| format!("not a valid PostgreSQL URL: {}", scrub(&e.to_string(), url)))?;
        let host = options.get_host().trim_start_matches('[').trim_end_matches(']');
        let local = options.get_socket().is_some()
            || host.starts_with('/')
            || host.eq_ignore_ascii_case("localhost")
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let verified = matches!(
            options.get_ssl_mode(),
            sqlx::postgres::PgSslMode::VerifyFull | sqlx::postgres::PgSslMode::VerifyCa
        );
        if local || verified || allow {
            return Ok(self);
        }
        Err(format!(
            "the PostgreSQL server {host} is reached over the network without a verified TLS \
             connection: add `sslmode=verify-full&sslrootcert=/path/to/ca.pem` to the URL (or set \
             audit.allow_unverified_transport = true behind a TLS sidecar)"
        ))
    }
}

impl AuditSettings {
    /// Default settings with the log in the database at `url` (`postgres://...` or `sqlite:PATH`).
    pub fn for_url(url: &str) -> AuditSettings {
        AuditSettings {
            database_url: Some(url.to_owned()),
            ..AuditSettings::default()
        }
    }

    /// Checks the values; errors name `{prefix}.key`.
    pub fn validate(&self, prefix: &str) -> Result<ValidAuditSettings, ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        if let Some(url) = &self.database_url {
            AuditBackend::from_url(url)
                .and_then(|b| b.check_transport(self.allow_unverified_transport))
                .map_err(|e| ConfigError::invalid(key("database_url"), e))?;
        }
        if self.sqlite_path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(key("sqlite_path"), "must not be empty"));
        }
        if self.batch_max_events == 0 || self.batch_max_events > 100_000 {
            return Err(ConfigError::invalid(
                key("batch_max_events"),
                "must be between 1 and 100000",
            ));
        }
        if self.batch_max_wait > Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                key("batch_max_wait"),
                "must be at most 1s (it delays every audited answer)",
            ));
        }
        if self.max_concurrent_commits == 0 || self.max_concurrent_commits > 64 {
            return Err(ConfigError::invalid(
                key("max_concurrent_commits"),
                "must be between 1 and 64",
            ));
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::invalid(key("queue_capacity"), "must be at least 1"));
        }
        if self.write_timeout.is_zero() || self.write_timeout > MAX_WRITE_TIMEOUT {
            return Err(ConfigError::invalid(
                key("write_timeout"),
                "must be more than 0 and at most 1h (callers wait that long before failing closed)",
            ));
        }
        if self.breaker_probe_interval < Duration::from_millis(10)
            || self.breaker_probe_interval > Duration::from_secs(10)
        {
            return Err(ConfigError::invalid(
                key("breaker_probe_interval"),
                "must be between 10ms and 10s (the store is back in use at most this long after it returns)",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(key("max_connections"), "must be at least 1"));
        }
        if self.retention_days == Some(0) {
            return Err(ConfigError::invalid(
                key("retention_days"),
                "must be at least 1 (leave it unset to keep events forever)",
            ));
        }
        if self.jti_purge_interval.is_zero() {
            return Err(ConfigError::invalid(
                key("jti_purge_interval"),
                "must be more than 0",
            ));
        }
        Ok(ValidAuditSettings(self.clone()))
    }

    /// `database_url`, else a non-empty `DATABASE_URL` from the environment, else SQLite at
    /// `sqlite_path`.
    pub fn backend(&self) -> Result<AuditBackend, String> {
        let from_env = std::env::var("DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty());
        match self.database_url.as_deref().or(from_env.as_deref()) {
            Some(url) => {
                AuditBackend::from_url(url).and_then(|b| b.check_transport(self.allow_unverified_transport))
            }
            None => Ok(AuditBackend::Sqlite {
                path: self.sqlite_path.clone(),
            }),
        }
    }
}

/// The URL with its password (user-info or `password=` parameter) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(pw) = url_password(url) {
        out = out.replace(pw, "***");
    }
    redact_password_params(&out)
}

/// Removes `url`'s password from `text` (error messages may quote the URL).
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let mut out = text.to_owned();
    if let Some(pw) = url_password(url) {
        out = out.replace(pw, "***");
    }
    out = out.replace(url, &redact_url(url));
    redact_password_params(&out)
}

/// The password in `scheme://user:password@host/...`, if any.
fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let userinfo = &authority[..authority.rfind('@')?];
    let pw = &userinfo[userinfo.find(':')? + 1..];
    (!pw.is_empty()).then_some(pw)
}

fn redact_password_params(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("password=") {
        let value_start = i + "password=".len();
        out.push_str(&rest[..value_start]);
        out.push_str("***");
        let after = &rest[value_start..];
        let end = after
            .find(|c: char| c == '&' || c == '#' || c.is_whitespace())
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Format;

    #[test]
    fn passwords_never_show() {
        let url = "postgres://audit:s3cr%21t@db.example:5432/audit?sslmode=disable";
        let shown = redact_url(url);
        assert_eq!(
            shown,
            "postgres://audit:***@db.example:5432/audit?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://db/audit?user=a&password=hunter2&x=1"),
            "postgres://db/audit?user=a&password=***&x=1"
        );
        assert_eq!(redact_url("postgres://a@h/db"), "postgres://a@h/db");
        let backend = AuditBackend::from_url(url).expect("valid");
        assert!(!format!("{backend} {backend:?}").contains("s3cr"));
        let settings = AuditSettings {
            database_url: Some(url.into()),
            ..AuditSettings::default()
        };
        assert!(!format!("{settings:?}").contains("s3cr"));
    }

    #[test]
    fn urls_are_recognised() {
        assert_eq!(
            AuditBackend::from_url("sqlite:/tmp/a.sqlite"),
            Ok(AuditBackend::Sqlite {
                path: "/tmp/a.sqlite".into()
            })
        );
        assert!(matches!(
            AuditBackend::from_url("postgresql://u@127.0.0.1/db"),
            Ok(AuditBackend::Postgres { .. })
        ));
        let err = AuditBackend::from_url("mysql://u:pw@h/db").expect_err("unsupported");
        assert!(!err.contains("pw@"), "{err}");
        assert!(AuditBackend::from_url("sqlite:").is_err());
    }

    #[test]
    fn validation_names_keys() {
        let ok = AuditSettings::default();
        ok.validate("audit").expect("defaults are valid");
        let cases: Vec<(AuditSettings, &str)> = vec![
            (
                AuditSettings {
                    batch_max_events: 0,
                    ..ok.clone()
                },
                "audit.batch_max_events",
            ),
            (
                AuditSettings {
                    retention_days: Some(0),
                    ..ok.clone()
                },
                "audit.retention_days",
            ),
            (
                AuditSettings {
                    database_url: Some("mysql://x:topsecret@h/db".into()),
                    ..ok.clone()
                },
                "audit.database_url",
            ),
            (
                AuditSettings {
                    write_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "audit.write_timeout",
            ),
            (
                AuditSettings {
                    breaker_probe_interval: Duration::from_secs(60),
                    ..ok.clone()
                },
                "audit.breaker_probe_interval",
            ),
            (
                AuditSettings {
                    breaker_probe_interval: Duration::ZERO,
                    ..ok.clone()
                },
                "audit.breaker_probe_interval",
            ),
        ];
        for (settings, key) in cases {
            let msg = settings.validate("audit").expect_err(key).to_string();
            assert!(msg.contains(key), "{msg}");
            assert!(!msg.contains("topsecret"), "{msg}");
        }
    }

    #[test]
    fn section_parses_with_durations() {
        let s: AuditSettings = figment::Figment::new()
            .merge(figment::providers::Serialized::defaults(AuditSettings::default()))
            .merge(figment::providers::Toml::string(
                "batch_max_wait = \"5ms\"\nretention_days = 30\n",
            ))
            .extract()
            .expect("parses");
        assert_eq!(s.batch_max_wait, Duration::from_millis(5));
        assert_eq!(s.retention_days, Some(30));
        let err = figment::Figment::new()
            .merge(figment::providers::Toml::string("batch_size = 3\n"))
            .extract::<AuditSettings>()
            .expect_err("unknown key");
        assert!(err.to_string().contains("batch_size"), "{err}");
    }
}
