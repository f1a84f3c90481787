//! twiin-authz configuration (SPEC.md §0, §3). Defaults are the local setup (`make run`):
//! plaintext gRPC on 127.0.0.1:50053, the OAuth2 HTTP endpoint on 127.0.0.1:8080, simulators on
//! the ports `sim/README.md` lists, keys from `.dev-pki/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::config::{
    ConfigError, MetricsSettings, ServerSettings, ServerTlsSettings, ServiceConfig, TelemetrySettings,
    duration,
};

use crate::jws::Alg;
use crate::scope_table::InteractionRow;

service_kit::service_config! {
    /// twiin-authz's configuration file (`--config`), over these defaults, under `TWIIN_AUTHZ_*`.
    pub struct Config {
        pub http: HttpSettings,
        /// This authorization server's HTTPS URL: `iss` of our assertions, RFC 8414 `issuer`, and
        /// (with `/oauth2/token`) the audiences we accept in assertions sent to us.
        pub issuer: String,
        /// Development mode allows `http` jwks_uris (the simulators). Off in production.
        pub development: bool,
        pub assertions: AssertionSettings,
        pub client_auth: ClientAuthSettings,
        pub stelsel: StelselSettings,
        pub zorg_ab: ZorgAbSettings,
        pub as_za: AsZaSettings,
        /// The AORTA interaction table (SPEC.md §3.2 step 8): SMART-on-FHIR resource + permission →
        /// AORTA interaction.
        pub interactions: Vec<InteractionRow>,
        /// The audit log of both use cases (SQLite file by default, PostgreSQL with DATABASE_URL).
        pub audit: audit_log::AuditSettings,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// The OAuth2 endpoint (`POST /oauth2/token`, metadata, JWKS).
    pub listen: SocketAddr,
    /// HTTPS for the OAuth2 endpoint (plain HTTP on loopback when unset; on in the Helm chart).
    /// With `client_ca`, callers must present a certificate chaining to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Largest token request body.
    pub max_body_bytes: usize,
    /// Largest single token (assertion or client_assertion) in a request.
    pub max_token_bytes: usize,
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// `Cache-Control` max-age of the metadata and JWKS documents.
    #[serde(with = "duration")]
    pub metadata_max_age: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            max_body_bytes: 32 * 1024,
            max_token_bytes: 12 * 1024,
            request_timeout: Duration::from_secs(10),
            metadata_max_age: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SigningKeySettings {
    pub kid: String,
    /// PKCS#8 PEM, P-521 (ES512). Not the TLS key.
    pub key: PathBuf,
    /// Unix seconds from which the key no longer signs; it stays in the JWKS until
    /// `retired_at + assertions.max_lifetime`, when the last token it signed has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AssertionSettings {
    /// The first key not retired signs; all keys still within their grace are published.
    pub signing_keys: Vec<SigningKeySettings>,
    /// `sub` (and `iss`) of our client assertions: our client id at other GtKs. Defaults to
    /// `issuer` so that `iss = sub` (RFC 7523 §3) and `iss` is our HTTPS URL (VZVZ).
    pub client_id: Option<String>,
    /// 3.1 step 5: the string whose presence in the AORTA access_token's scope marks a
    /// notification.
    pub notification_marker: String,
    /// 3.1 step 5: the scope returned with the assertions in that case.
    pub notification_scope: String,
    /// Longest remaining lifetime of a sourceToken we issue assertions for (their exp equals
    /// its exp); also how long a retired signing key stays published.
    #[serde(with = "duration")]
    pub max_lifetime: Duration,
}

impl Default for AssertionSettings {
    fn default() -> Self {
        AssertionSettings {
            signing_keys: vec![SigningKeySettings {
                kid: "twiin-authz-1".into(),
                key: PathBuf::from(".dev-pki/twiin-assertion-signing.key.pem"),
                retired_at: None,
            }],
            client_id: None,
            notification_marker: "Task:1.0:notification".into(),
            notification_scope: "system/Task.cu".into(),
            max_lifetime: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientAuthSettings {
    /// Accepted signature algorithms of client_assertion and assertion (never none/HMAC).
    pub algorithms: Vec<Alg>,
    /// Accepted `typ` header values (absent `typ` is also accepted, RFC 7523 does not require it).
    pub typ: Vec<String>,
    #[serde(with = "duration")]
    pub max_clock_skew: Duration,
    /// Longest `exp - iat` of an assertion.
    #[serde(with = "duration")]
    pub max_assertion_lifetime: Duration,
    /// Oldest `iat` of a grant assertion.
    #[serde(with = "duration")]
    pub max_grant_age: Duration,
}

impl Default for ClientAuthSettings {
    fn default() -> Self {
        ClientAuthSettings {
            algorithms: vec![Alg::ES512, Alg::ES384, Alg::ES256, Alg::PS256, Alg::RS256],
            typ: vec!["JWT".into()],
            max_clock_skew: Duration::from_secs(60),
            max_assertion_lifetime: Duration::from_secs(3600),
            max_grant_age: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StelselSettings {
    /// Where the Stelseltoken is fetched (AORTA Stelsel Metadata Interface).
    pub url: String,
    /// PEM of the CA(s) the Stelseltoken's `x5c` chain must lead to.
    pub trust_anchor: PathBuf,
    #[serde(with = "duration")]
    pub refresh_interval: Duration,
    /// A Stelseltoken issued longer ago than this is stale: the use cases answer UNAVAILABLE.
    #[serde(with = "duration")]
    pub max_age: Duration,
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// `iss` and `aud` required of AORTA access tokens (sourceToken).
    pub access_token_issuer: String,
    pub access_token_audience: String,
}

impl Default for StelselSettings {
    fn default() -> Self {
        StelselSettings {
            url: "http://127.0.0.1:8092/stelseltoken".into(),
            trust_anchor: PathBuf::from(".dev-pki/aorta/stelsel-ca.pem"),
            refresh_interval: Duration::from_secs(300),
            max_age: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(5),
            access_token_issuer: "https://as-za.aorta.localhost".into(),
            access_token_audience: "aorta".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ZorgAbSettings {
    pub url: String,
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// How long application records and JWKS documents are reused.
    #[serde(with = "duration")]
    pub cache_ttl: Duration,
    /// A client's JWKS is fetched again for an unknown `kid` at most once per this interval.
    #[serde(with = "duration")]
    pub jwks_refresh_min_interval: Duration,
    /// The ZORG-AB client id of the GBZ application behind this GtK (step 7's destination),
    /// used when the grant assertion names no `destination`.
    pub destination: String,
    /// 3.2 step 6 (initiating application qualified). On by default.
    pub check_capabilities: bool,
    /// 3.2 step 7 (destination accepts via Twiin). On by default.
    pub check_destination: bool,
}

impl Default for ZorgAbSettings {
    fn default() -> Self {
        ZorgAbSettings {
            url: "http://127.0.0.1:8091".into(),
            timeout: Duration::from_secs(3),
            cache_ttl: Duration::from_secs(300),
            jwks_refresh_min_interval: Duration::from_secs(60),
            destination: "urn:gbz:local-ehr".into(),
            check_capabilities: true,
            check_destination: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AsZaSettings {
    /// GetTokenRequest endpoint of the Autorisatie Server ZA.
    pub token_url: String,
    /// `aud` of the subject token we send (the AS ZA's issuer).
    pub audience: String,
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for AsZaSettings {
    fn default() -> Self {
        AsZaSettings {
            token_url: "http://127.0.0.1:8093/token".into(),
            audience: "https://as-za.aorta.localhost".into(),
            timeout: Duration::from_secs(5),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerSettings::loopback(50053),
            metrics: MetricsSettings::loopback(9453),
            telemetry: TelemetrySettings::default(),
            http: HttpSettings::default(),
            issuer: "https://localhost:8080".into(),
            development: true,
            assertions: AssertionSettings::default(),
            client_auth: ClientAuthSettings::default(),
            stelsel: StelselSettings::default(),
            zorg_ab: ZorgAbSettings::default(),
            as_za: AsZaSettings::default(),
            interactions: crate::scope_table::default_rows(),
            audit: audit_log::AuditSettings::default(),
        }
    }
}

fn check_url(key: &str, value: &str, https_only: bool) -> Result<(), ConfigError> {
    let u = url::Url::parse(value)
        .map_err(|e| ConfigError::invalid(key, format!("{value:?} is not a URL: {e}")))?;
    match u.scheme() {
        "https" => Ok(()),
        "http" if !https_only => Ok(()),
        s => Err(ConfigError::invalid(
            key,
            format!(
                "scheme {s} is not allowed{}",
                if https_only {
                    " outside development (https only)"
                } else {
                    ""
                }
            ),
        )),
    }
}

impl ServiceConfig for Config {
    const ENV_PREFIX: &'static str = "TWIIN_AUTHZ_";

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        self.audit.validate("audit")?;
        check_url("issuer", &self.issuer, !self.development)?;
        if !self.issuer.starts_with("https://") {
            return Err(ConfigError::invalid("issuer", "must be this AS's https URL"));
        }
        check_url("stelsel.url", &self.stelsel.url, !self.development)?;
        check_url("zorg_ab.url", &self.zorg_ab.url, !self.development)?;
        check_url("as_za.token_url", &self.as_za.token_url, !self.development)?;
        if self.assertions.signing_keys.is_empty() {
            return Err(ConfigError::invalid(
                "assertions.signing_keys",
                "at least one key is needed",
            ));
        }
        for (i, k) in self.assertions.signing_keys.iter().enumerate() {
            service_kit::config::check_file(&format!("assertions.signing_keys[{i}].key"), &k.key)?;
        }
        if self.assertions.notification_marker.is_empty() {
            return Err(ConfigError::invalid(
                "assertions.notification_marker",
                "must not be empty",
            ));
        }
        if self.client_auth.algorithms.is_empty() {
            return Err(ConfigError::invalid(
                "client_auth.algorithms",
                "at least one algorithm",
            ));
        }
        if let Some(tls) = &self.http.tls {
            service_kit::config::check_file("http.tls.cert", &tls.cert)?;
            service_kit::config::check_file("http.tls.key", &tls.key)?;
            if let Some(ca) = &tls.client_ca {
                service_kit::config::check_file("http.tls.client_ca", ca)?;
            }
        }
        if self.http.max_body_bytes < 1024 || self.http.max_token_bytes < 512 {
            return Err(ConfigError::invalid(
                "http.max_body_bytes",
                "at least 1024 (and max_token_bytes 512)",
            ));
        }
        if self.stelsel.max_age.is_zero() {
            return Err(ConfigError::invalid("stelsel.max_age", "must be more than 0"));
        }
        crate::scope_table::ScopeTable::new(self.interactions.clone())
            .map_err(|e| ConfigError::invalid("interactions", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().expect("tmp");
        let key = dir.path().join("k.pem");
        std::fs::write(&key, "placeholder").expect("write");
        let mut c = Config::default();
        c.assertions.signing_keys[0].key = key;
        (dir, c)
    }

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        let (_d, c) = valid();
        c.validate().expect("defaults are valid");
        let key_of = |c: &Config| c.validate().expect_err("invalid").to_string();
        let (_d, mut c) = valid();
        c.issuer = "http://twiin.test".into();
        assert!(key_of(&c).contains("issuer"));
        let (_d, mut c) = valid();
        c.development = false;
        assert!(
            key_of(&c).contains("stelsel.url"),
            "http URLs refused outside development"
        );
        let (_d, mut c) = valid();
        c.assertions.signing_keys[0].key = "/nonexistent.pem".into();
        assert!(key_of(&c).contains("assertions.signing_keys[0].key"));
        let (_d, mut c) = valid();
        c.interactions[0].permission = 'x';
        assert!(key_of(&c).contains("interactions"));
        let (_d, mut c) = valid();
        c.client_auth.algorithms.clear();
        assert!(key_of(&c).contains("client_auth.algorithms"));
    }
}
