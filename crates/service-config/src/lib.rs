//! Layered configuration (SPEC.md §0): embedded defaults, then one TOML file (`--config PATH`),
//! then environment variables. Every key can be overridden from the environment with the
//! service's prefix and `__` between nested keys: `CPS_RELAY_SERVER__LISTEN=0.0.0.0:50051`.
//!
//! Unknown keys are errors (`deny_unknown_fields` on every section), so a misspelt key stops
//! start-up instead of being silently ignored. After deserialisation each service validates its
//! values and names the offending key in the error.
//!
//! A crate of its own, free of gRPC and databases, because both sides of the suite read it:
//! `service-kit` re-exports it as `service_kit::config`, and `audit-log` reads its `[audit]`
//! section with the same durations and key-naming errors without linking tonic.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A configuration that cannot be used. The message always names the key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// The file is unreadable, a value has the wrong type, or a key is unknown.
    #[error("configuration error: {0}")]
    Load(String),
    /// A value has the right type but is not acceptable.
    #[error("configuration error: key `{key}`: {reason}")]
    Invalid {
        /// The key, with its section: `server.concurrency_limit`.
        key: String,
        /// Why the value cannot be used.
        reason: String,
    },
}

impl ConfigError {
    /// The value of `key` is not acceptable, for `reason`.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl From<figment::Error> for ConfigError {
    fn from(errors: figment::Error) -> Self {
        // figment keeps every error; report each with its key path and where the value came from.
        let lines: Vec<String> = errors
            .into_iter()
            .map(|e| {
                let key = if e.path.is_empty() {
                    String::from("<root>")
                } else {
                    e.path.join(".")
                };
                let origin = e
                    .metadata
                    .as_ref()
                    .map(|m| format!(" (from {})", m.name))
                    .unwrap_or_default();
                format!("key `{key}`: {}{origin}", e.kind)
            })
            .collect();
        ConfigError::Load(lines.join("; "))
    }
}

/// A service's configuration: serialisable defaults and a validation of the loaded values.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default {
    /// Environment prefix, e.g. `CPS_RELAY_`.
    const ENV_PREFIX: &'static str;
    /// Checks the values that types alone cannot (paths, ranges, consistency).
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Loads `C` from its defaults, the optional TOML file and the environment, then validates it.
pub fn load<C: ServiceConfig>(file: Option<&Path>) -> Result<C, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(C::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::Load(format!(
                "configuration file {} does not exist",
                path.display()
            )));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let config: C = figment
        .merge(Env::prefixed(C::ENV_PREFIX).split("__"))
        .extract()?;
    config.validate()?;
    Ok(config)
}

/// Durations in configuration are written as humane strings: `"30s"`, `"250ms"`, `"5m"`.
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Reads `30s`, `250ms`, `5m`, `2h`, `1d`, or a bare number of seconds.
    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration like 30s, 250ms or 5m"))?;
        let d = match unit.trim() {
            "ms" => Duration::from_millis(n),
            "s" | "" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            other => return Err(format!("`{other}` is not a duration unit (ms, s, m, h, d)")),
        };
        Ok(d)
    }

    /// Writes whole seconds as `30s`, anything finer as milliseconds (`250ms`).
    pub fn format(d: &Duration) -> String {
        let ms = d.as_millis();
        if !ms.is_multiple_of(1000) {
            format!("{ms}ms")
        } else {
            format!("{}s", d.as_secs())
        }
    }

    /// For `#[serde(with = "duration")]`: the [`format`]ted text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(d))
    }

    /// For `#[serde(with = "duration")]`: text read by [`parse`], or an integer of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Seconds(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => parse(&s).map_err(serde::de::Error::custom),
            Raw::Seconds(n) => Ok(Duration::from_secs(n)),
        }
    }
}

/// TLS for a listener. With `client_ca` set, callers must present a certificate chaining to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// The listener's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that issues the callers' certificates; when set, callers must present one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

/// The gRPC listener and its tower limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// The gRPC listen address.
    pub listen: SocketAddr,
    /// Off (plaintext) unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// A second, plaintext listener that serves only `grpc.health.v1.Health` (same serving
    /// status as the main listener); off unless set.
    ///
    /// **Decision** — Kubernetes' native gRPC probes speak plaintext and cannot present a
    /// client certificate, so with `tls` on (and always for cps-relay's mutual TLS) they need
    /// this port. It reveals only whether the service is serving; every other RPC stays behind
    /// the TLS listener. The Helm chart sets it to `0.0.0.0:<health port>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_listen: Option<SocketAddr>,
    /// Longest time a call may run (a shorter `grpc-timeout` from the caller wins).
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Calls served at once across all connections; the next ones are shed with
    /// RESOURCE_EXHAUSTED rather than queued.
    pub concurrency_limit: usize,
    /// On shutdown, how long health answers NOT_SERVING before the listener closes, so load
    /// balancers stop sending; in-flight calls are then drained.
    #[serde(with = "duration")]
    pub drain_grace: Duration,
    /// After the grace period, how long calls in flight may take to finish before the
    /// remaining connections are closed.
    #[serde(with = "duration")]
    pub drain_timeout: Duration,
}

impl ServerSettings {
    /// Plaintext on 127.0.0.1:`port`, with the suite's default limits.
    pub fn loopback(port: u16) -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            tls: None,
            health_listen: None,
            request_timeout: Duration::from_secs(30),
            concurrency_limit: 1024,
            drain_grace: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(20),
        }
    }

    /// Checks the values; errors name `{prefix}.key`.
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        if self.concurrency_limit == 0 {
            return Err(ConfigError::invalid(
                format!("{prefix}.concurrency_limit"),
                "must be at least 1",
            ));
        }
        if let Some(health) = self.health_listen
            && health == self.listen
            && health.port() != 0
        {
            return Err(ConfigError::invalid(
                format!("{prefix}.health_listen"),
                format!("must differ from {prefix}.listen ({health})"),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                format!("{prefix}.request_timeout"),
                "must be more than 0",
            ));
        }
        if let Some(tls) = &self.tls {
            check_file(&format!("{prefix}.tls.cert"), &tls.cert)?;
            check_file(&format!("{prefix}.tls.key"), &tls.key)?;
            if let Some(ca) = &tls.client_ca {
                check_file(&format!("{prefix}.tls.client_ca"), ca)?;
            }
        }
        Ok(())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line per event, for people.
    #[default]
    Human,
    /// One JSON object per event, for log collectors.
    Json,
}

/// The `[telemetry]` section: how logs are written (traces follow `OTEL_EXPORTER_OTLP_ENDPOINT`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Human or JSON lines.
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info,cps_relay=debug`. `RUST_LOG` wins when set.
    pub log_filter: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            log_format: LogFormat::Human,
            log_filter: "info".into(),
        }
    }
}

/// The `[metrics]` section: where Prometheus scrapes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Address of the Prometheus endpoint (`GET /metrics`); off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

impl MetricsSettings {
    /// `http://127.0.0.1:port/metrics`.
    pub fn loopback(port: u16) -> Self {
        MetricsSettings {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        }
    }
}

/// Fails with the key's name when `path` is not a readable file.
pub fn check_file(key: &str, path: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(ConfigError::invalid(
            key,
            format!("{} is not a file", path.display()),
        )),
        Err(e) => Err(ConfigError::invalid(
            key,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        server: ServerSettings,
        telemetry: TelemetrySettings,
    }

    impl Default for Demo {
        fn default() -> Self {
            Demo {
                server: ServerSettings::loopback(7000),
                telemetry: TelemetrySettings::default(),
            }
        }
    }

    impl ServiceConfig for Demo {
        const ENV_PREFIX: &'static str = "DEMO_";
        fn validate(&self) -> Result<(), ConfigError> {
            self.server.validate("server")
        }
    }

    /// Same shape, own prefix: the environment test sets variables process-wide, and must not
    /// reach the tests that run beside it.
    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(transparent)]
    struct EnvDemo(Demo);

    impl ServiceConfig for EnvDemo {
        const ENV_PREFIX: &'static str = "DEMOENV_";
        fn validate(&self) -> Result<(), ConfigError> {
            self.0.validate()
        }
    }

    fn write(content: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), content).expect("write");
        f
    }

    #[test]
    fn defaults_then_file() {
        let f = write("[server]\nlisten = \"127.0.0.1:7100\"\nrequest_timeout = \"250ms\"\n");
        let c: Demo = load(Some(f.path())).expect("loads");
        assert_eq!(c.server.listen.port(), 7100);
        assert_eq!(c.server.request_timeout, Duration::from_millis(250));
        assert_eq!(c.server.concurrency_limit, 1024);
    }

    #[test]
    fn unknown_key_is_named() {
        let f = write("[server]\nlisten = \"127.0.0.1:7100\"\nlisten_port = 3\n");
        let err = load::<Demo>(Some(f.path())).expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("listen_port"), "{msg}");
    }

    #[test]
    fn bad_value_is_named() {
        let f = write("[server]\nlisten = \"not an address\"\n");
        let msg = load::<Demo>(Some(f.path())).expect_err("bad value").to_string();
        assert!(msg.contains("server.listen"), "{msg}");
    }

    #[test]
    fn validation_names_the_key() {
        let f = write("[server]\nconcurrency_limit = 0\n");
        let msg = load::<Demo>(Some(f.path())).expect_err("invalid").to_string();
        assert!(msg.contains("server.concurrency_limit"), "{msg}");
        let f = write("[server.tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n");
        let msg = load::<Demo>(Some(f.path())).expect_err("invalid").to_string();
        assert!(msg.contains("server.tls.cert"), "{msg}");
    }

    #[test]
    fn health_listen_is_optional_and_must_differ_from_listen() {
        let f = write("[server]\nlisten = \"0.0.0.0:7100\"\nhealth_listen = \"0.0.0.0:7101\"\n");
        let c: Demo = load(Some(f.path())).expect("loads");
        assert_eq!(c.server.health_listen.map(|a| a.port()), Some(7101));
        let f = write("[server]\nlisten = \"0.0.0.0:7100\"\nhealth_listen = \"0.0.0.0:7100\"\n");
        let msg = load::<Demo>(Some(f.path())).expect_err("same port").to_string();
        assert!(msg.contains("server.health_listen"), "{msg}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let msg = load::<Demo>(Some(Path::new("/nonexistent.toml")))
            .expect_err("missing")
            .to_string();
        assert!(msg.contains("/nonexistent.toml"), "{msg}");
    }

    #[test]
    // figment's Jail API returns its own (large) error type.
    #[allow(clippy::result_large_err)]
    fn environment_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("demo.toml", "[server]\nlisten = \"127.0.0.1:7100\"\n")?;
            jail.set_env("DEMOENV_SERVER__LISTEN", "127.0.0.1:7200");
            jail.set_env("DEMOENV_TELEMETRY__LOG_FORMAT", "json");
            let c: EnvDemo = load(Some(Path::new("demo.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.0.server.listen.port(), 7200);
            assert_eq!(c.0.telemetry.log_format, LogFormat::Json);
            jail.set_env("DEMOENV_SERVER__REQUEST_TIMEOUT", "soon");
            let msg = load::<EnvDemo>(None).expect_err("bad env value").to_string();
            assert!(msg.contains("server.request_timeout"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn durations() {
        assert_eq!(duration::parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration::parse("30"), Ok(Duration::from_secs(30)));
        assert!(duration::parse("5 parsecs").is_err());
        assert!(duration::parse("").is_err());
    }
}
