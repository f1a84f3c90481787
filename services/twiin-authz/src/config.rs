//! twiin-authz configuration (SPEC.md §0, §3). Addresses and key paths default to the local
//! setup (`make run`: 127.0.0.1:50053 and :8080, simulators on the ports `sim/README.md` lists,
//! keys from `.dev-pki/`), but **safe by default**: `development = false`, and outside
//! development start-up refuses every setting that is only fit for a laptop (http URLs,
//! plaintext listeners, no caller mTLS, no client certificate towards ZORG-AB and the AS ZA, a
//! SQLite audit log shared by nobody while several replicas run), naming the key. `make run`
//! and the tests opt into development mode explicitly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::config::{
    ConfigError, MetricsSettings, ServerSettings, ServerTlsSettings, ServiceConfig, TelemetrySettings,
    duration,
};

service_kit::service_config! {
    /// The whole configuration (one TOML file, `TWIIN_AUTHZ_` environment overrides). The
    /// gRPC listener (`server`) has TLS and caller mTLS outside development.
    pub struct Config {
        /// The OAuth2 HTTP endpoint.
        pub http: HttpSettings,
        /// This authorization server's HTTPS URL: `iss` of our assertions, RFC 8414 `issuer`, and
        /// (with `/oauth2/token`) the audiences we accept in assertions sent to us.
        pub issuer: String,
        /// Development mode: allows http URLs (simulators, jwks_uris), plaintext listeners, use case
        /// 3.1 without caller mTLS and outbound calls without a client certificate. Off by default.
        pub development: bool,
        /// Replicas of this service that share one audit log (the Helm chart sets it). More than
        /// one needs PostgreSQL: the `jti` replay store must be shared by all of them.
        pub replicas: u32,
        /// The TWIIN assertions this service issues (3.1).
        pub assertions: AssertionSettings,
        /// The rules for the assertions external GtKs send (3.2 steps 3 and 4).
        pub client_auth: ClientAuthSettings,
        /// The AORTA Stelseltoken and the AORTA access tokens it vouches for.
        pub stelsel: StelselSettings,
        /// ZORG-AB and the caches of what it says.
        pub zorg_ab: ZorgAbSettings,
        /// The Autorisatie Server ZA (GetTokenRequest).
        pub as_za: AsZaSettings,
        /// TLS of the calls this service makes (ZORG-AB, AS ZA, Stelsel, jwks_uris).
        pub outbound_tls: OutboundTlsSettings,
        /// Who may use use case 3.1 (the Resource Broker).
        pub resource_broker: ResourceBrokerSettings,
        /// Client registrations of external GtKs kept in this configuration, consulted before
        /// ZORG-AB (the seed allows "een interne configuratie in AS GTK").
        pub clients: Vec<ClientRegistration>,
        /// The AORTA interaction table (SPEC.md §3.2 step 8): SMART-on-FHIR resource + permission →
        /// AORTA interaction.
        pub interactions: Vec<InteractionRow>,
        /// The audit log of both use cases (SQLite file by default, PostgreSQL with DATABASE_URL).
        pub audit: audit_log::AuditSettings,
    }
}

/// The OAuth2 HTTP endpoint (`[http]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// The OAuth2 endpoint (`POST /oauth2/token`, metadata, JWKS).
    pub listen: SocketAddr,
    /// HTTPS for the OAuth2 endpoint (required outside development; on in the Helm chart).
    /// With `client_ca`, callers must present a certificate chaining to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Where external GtKs reach this endpoint (scheme, host, port): the RFC 8414 metadata
    /// advertises `token_endpoint` and `jwks_uri` under it. Unset: `issuer` with TLS, and in
    /// development without TLS `http://` + the bound address, so the metadata names what is
    /// actually served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Largest token request body.
    pub max_body_bytes: usize,
    /// Largest single token (assertion or client_assertion) in a request.
    pub max_token_bytes: usize,
    /// Longest a token request may take; past it the answer is 504 and the trail records it.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Longest a client may take to send a request head (and, on a new connection, to finish
    /// the TLS handshake), and keep an idle connection open between requests: past it the
    /// connection is closed, so slow clients (slowloris) hold no connection longer than this.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// `Cache-Control: must-revalidate, max-age` of the RFC 8414 metadata (the AORTA GTK
    /// interface page: configurable, 4 hours initially).
    #[serde(with = "duration")]
    pub metadata_max_age: Duration,
    /// The same for the JWKS document.
    #[serde(with = "duration")]
    pub jwks_max_age: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            max_body_bytes: 32 * 1024,
            max_token_bytes: 12 * 1024,
            public_url: None,
            request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            metadata_max_age: Duration::from_secs(4 * 3600),
            jwks_max_age: Duration::from_secs(4 * 3600),
        }
    }
}

/// One ES512 signing key of the TWIIN assertions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SigningKeySettings {
    /// Its `kid` in the JWKS and the assertions' header.
    pub kid: String,
    /// PKCS#8 PEM, P-521 (ES512). Not the TLS key.
    pub key: PathBuf,
    /// Unix seconds from which the key no longer signs; it stays in the JWKS until
    /// `retired_at + assertions.max_lifetime`, when the last token it signed has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<u64>,
}

/// The TWIIN assertions of use case 3.1 (`[assertions]`).
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

/// How the assertions of external GtKs are checked (`[client_auth]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientAuthSettings {
    /// Accepted signature algorithms of client_assertion and assertion (never none/HMAC).
    pub algorithms: Vec<Alg>,
    /// Accepted `typ` header values (absent `typ` is also accepted, RFC 7523 does not require it).
    pub typ: Vec<String>,
    /// Tolerance for `exp`, `iat` and `nbf`.
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

/// The AORTA Stelsel Metadata Interface (`[stelsel]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StelselSettings {
    /// Where the Stelseltoken is fetched (AORTA Stelsel Metadata Interface).
    pub url: String,
    /// PEM of the CA(s) the Stelseltoken's `x5c` chain must lead to.
    pub trust_anchor: PathBuf,
    /// How often the Stelseltoken is fetched anew.
    #[serde(with = "duration")]
    pub refresh_interval: Duration,
    /// A Stelseltoken issued longer ago than this is stale: the use cases answer UNAVAILABLE.
    #[serde(with = "duration")]
    pub max_age: Duration,
    /// Longest a fetch may take.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// `iss` required of AORTA access tokens (sourceToken): the AS ZA.
    pub access_token_issuer: String,
    /// `aud` required of AORTA access tokens.
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

/// ZORG-AB (`[zorg_ab]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ZorgAbSettings {
    /// Its base URL (`/applications` is below it).
    pub url: String,
    /// Longest a query (or a JWKS fetch) may take.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// How long application records and JWKS documents are reused.
    #[serde(with = "duration")]
    pub cache_ttl: Duration,
    /// A client's JWKS is fetched again for an unknown `kid` at most once per this interval.
    #[serde(with = "duration")]
    pub jwks_refresh_min_interval: Duration,
    /// How long an unknown client id or authorization server is remembered as unknown: ZORG-AB
    /// is asked about one name at most once per this interval, however many requests carry it.
    #[serde(with = "duration")]
    pub negative_cache_ttl: Duration,
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
            negative_cache_ttl: Duration::from_secs(60),
            destination: "urn:gbz:local-ehr".into(),
            check_capabilities: true,
            check_destination: true,
        }
    }
}

/// The Autorisatie Server ZA (`[as_za]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AsZaSettings {
    /// GetTokenRequest endpoint of the Autorisatie Server ZA.
    pub token_url: String,
    /// `aud` of the subject token we send (the AS ZA's issuer).
    pub audience: String,
    /// Longest a GetTokenRequest may take.
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

/// TLS of outgoing calls. Redirects are never followed and answers are read with size caps.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundTlsSettings {
    /// PEM certificate chain presented to servers that ask for one: the UZI server certificate
    /// ZORG-AB and the Autorisatie Server ZA admit GtKs by. Required outside development.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Its PEM private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// PEM CA certificates trusted besides the system's roots (e.g. a private PKI of ZORG-AB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// Use case 3.1 is for the Resource Broker only (SPEC.md §3.1, "slechts benaderbaar voor").
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceBrokerSettings {
    /// The broker's client certificates on the gRPC listener (`server.tls.client_ca` checks the
    /// chain): each entry is a SHA-256 fingerprint (64 hex digits) or a DNS name of the
    /// certificate's subjectAltName. Required outside development; in development an empty
    /// list lets any caller use 3.1.
    pub identities: Vec<String>,
}

/// An external GtK registered here rather than (or before) in ZORG-AB: the same record ZORG-AB
/// gives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistration {
    /// Its client id (the `sub` of its client assertions).
    pub client_id: String,
    /// URA of the organization that runs it.
    pub ura: String,
    /// Where its JWKS is published.
    pub jwks_uri: String,
    /// The HTTPS URL of its authorization server, accepted as `iss` of its assertions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_server: Option<String>,
    /// Interactions it may initiate, and for which URAs (step 6).
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Interactions it wants to receive via Twiin (step 7, when it is a destination).
    #[serde(default)]
    pub receives_via_twiin: Vec<String>,
}

/// Algorithms accepted for signatures by others (`client_auth.algorithms`). HMAC and `none` are
/// not among them, so they can never be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
}

/// One row of the table (configuration data, see the service README).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InteractionRow {
    /// FHIR resource type, e.g. `Task`.
    pub resource: String,
    /// SMART v2 permission letter: one of `c r u d s`.
    pub permission: char,
    /// AORTA interaction id, e.g. `create:Task:1.0:notification`.
    pub interaction: String,
    /// Pull interactions (reading) need an authorization_base.
    #[serde(default)]
    pub pull: bool,
    /// Sending or updating a notification: allowed without authorization_base and without BSN.
    #[serde(default)]
    pub notification: bool,
}

/// An interaction an application may initiate, and on behalf of which URAs (ZORG-AB's record).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Capability {
    /// AORTA interaction id, e.g. `create:Task:1.0:notification`.
    pub interaction: String,
    /// URAs of the care providers it may initiate it for.
    pub on_behalf_of: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerSettings::loopback(50053),
            metrics: MetricsSettings::loopback(9453),
            telemetry: TelemetrySettings::default(),
            http: HttpSettings::default(),
            issuer: "https://localhost:8080".into(),
            development: false,
            replicas: 1,
            assertions: AssertionSettings::default(),
            client_auth: ClientAuthSettings::default(),
            stelsel: StelselSettings::default(),
            zorg_ab: ZorgAbSettings::default(),
            as_za: AsZaSettings::default(),
            outbound_tls: OutboundTlsSettings::default(),
            resource_broker: ResourceBrokerSettings::default(),
            clients: Vec::new(),
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
                    " outside development (https only; set development = true for local tests)"
                } else {
                    ""
                }
            ),
        )),
    }
}

/// Outside development: `what` must be configured at `key`.
fn production_needs(key: &str, what: &str) -> ConfigError {
    ConfigError::invalid(
        key,
        format!("{what} is required outside development (development = false)"),
    )
}

/// A broker identity: a SHA-256 fingerprint or a DNS name.
fn valid_identity(id: &str) -> bool {
    let fingerprint = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let dns = !id.is_empty()
        && id.len() <= 253
        && id.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
        });
    fingerprint || dns
}

impl Config {
    /// What production mode refuses (SPEC.md §3 "safe by default"); every error names its key.
    fn validate_production(&self) -> Result<(), ConfigError> {
        let https = !self.development;
        check_url("stelsel.url", &self.stelsel.url, https)?;
        check_url("zorg_ab.url", &self.zorg_ab.url, https)?;
        check_url("as_za.token_url", &self.as_za.token_url, https)?;
        check_url("as_za.audience", &self.as_za.audience, https)?;
        check_url(
            "stelsel.access_token_issuer",
            &self.stelsel.access_token_issuer,
            https,
        )?;
        if let Some(u) = &self.http.public_url {
            check_url("http.public_url", u, https)?;
        }
        for (i, c) in self.clients.iter().enumerate() {
            check_url(&format!("clients[{i}].jwks_uri"), &c.jwks_uri, https)?;
            if let Some(a) = &c.authorization_server {
                check_url(&format!("clients[{i}].authorization_server"), a, true)?;
            }
        }
        if self.development {
            return Ok(());
        }
        let Some(tls) = &self.server.tls else {
            return Err(production_needs(
                "server.tls",
                "TLS on the gRPC listener (the Resource Broker's calls carry AORTA access tokens)",
            ));
        };
        if tls.client_ca.is_none() {
            return Err(production_needs(
                "server.tls.client_ca",
                "caller mTLS on the gRPC listener (use case 3.1 is for the Resource Broker only)",
            ));
        }
        if self.resource_broker.identities.is_empty() {
            return Err(production_needs(
                "resource_broker.identities",
                "the Resource Broker's certificate identity",
            ));
        }
        if self.http.tls.is_none() {
            return Err(production_needs(
                "http.tls",
                "TLS on the OAuth2 endpoint (external GtKs send bearer assertions)",
            ));
        }
        if self.outbound_tls.cert.is_none() {
            return Err(production_needs(
                "outbound_tls.cert",
                "the client certificate ZORG-AB and the Autorisatie Server ZA admit this GtK by",
            ));
        }
        Ok(())
    }
}

impl ServiceConfig for Config {
    const ENV_PREFIX: &'static str = "TWIIN_AUTHZ_";

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        self.audit.validate("audit")?;
        check_url("issuer", &self.issuer, false)?;
        if !self.issuer.starts_with("https://") {
            return Err(ConfigError::invalid("issuer", "must be this AS's https URL"));
        }
        self.validate_production()?;
        if self.replicas == 0 {
            return Err(ConfigError::invalid("replicas", "must be at least 1"));
        }
        // In any mode: replicas that do not share the jti store would each accept a replay.
        if self.replicas > 1 && matches!(self.audit.backend(), Ok(audit_log::AuditBackend::Sqlite { .. })) {
            return Err(ConfigError::invalid(
                "replicas",
                format!(
                    "{} replicas need the PostgreSQL audit log (audit.database_url or DATABASE_URL): \
                     with SQLite each replica keeps its own jti replay store",
                    self.replicas
                ),
            ));
        }
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
        let o = &self.outbound_tls;
        match (&o.cert, &o.key) {
            (Some(cert), Some(key)) => {
                service_kit::config::check_file("outbound_tls.cert", cert)?;
                service_kit::config::check_file("outbound_tls.key", key)?;
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "outbound_tls.key",
                    "goes with outbound_tls.cert",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "outbound_tls.cert",
                    "goes with outbound_tls.key",
                ));
            }
        }
        if let Some(ca) = &o.ca {
            service_kit::config::check_file("outbound_tls.ca", ca)?;
        }
        for (i, id) in self.resource_broker.identities.iter().enumerate() {
            if !valid_identity(id) {
                return Err(ConfigError::invalid(
                    format!("resource_broker.identities[{i}]"),
                    "a SHA-256 fingerprint (64 hex digits) or a DNS name",
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            if c.client_id.is_empty() || !seen.insert(&c.client_id) {
                return Err(ConfigError::invalid(
                    format!("clients[{i}].client_id"),
                    "must be set and unique",
                ));
            }
            if !crate::grant::valid_ura(&c.ura) {
                return Err(ConfigError::invalid(format!("clients[{i}].ura"), "8 digits"));
            }
        }
        if self.http.max_body_bytes < 1024 || self.http.max_token_bytes < 512 {
            return Err(ConfigError::invalid(
                "http.max_body_bytes",
                "at least 1024 (and max_token_bytes 512)",
            ));
        }
        if self.http.header_read_timeout.is_zero() || self.http.header_read_timeout > Duration::from_secs(300)
        {
            return Err(ConfigError::invalid(
                "http.header_read_timeout",
                "must be more than 0 and at most 5m (a slow client holds a connection that long)",
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
mod tests;
