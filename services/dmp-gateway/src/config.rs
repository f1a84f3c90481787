//! dmp-gateway configuration (SPEC.md §0, §2). Defaults are the local setup: gRPC on loopback,
//! the DMP simulator on 127.0.0.1:8443 trusted through the development IGC-Santé bundle, and one
//! relay, `local`, on 127.0.0.1:50051 whose session grants verify with the dev PKI's grant key.
//! The listener has no default TLS files: outside `development` mode start-up refuses until
//! `server.tls` names a certificate, a key and the `client_ca` of the callers (`make run` points
//! them at `.dev-pki/`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use dmp_protocol::transactions::default_paths;
use dmp_protocol::vihf::LpsIdentity;
use dmp_protocol::xds::{Code, FieldError, is_oid};
use serde::{Deserialize, Serialize};
use service_kit::config::{
    ConfigError, MetricsSettings, ServerSettings, ServiceConfig, TelemetrySettings, check_file, duration,
};

service_kit::service_config! {
    /// dmp-gateway's configuration file (`--config`), over these defaults, under `DMP_GATEWAY_*`.
    pub struct Config {
        /// Development mode (`make run`, tests): the gRPC listener may run without client
        /// certificates (plaintext or TLS only). Callers must still authenticate (a bearer JWT
        /// when they present no certificate). Never in production.
        pub development: bool,
        /// How callers authenticate besides their client certificate.
        pub auth: AuthSettings,
        /// The DMP and the TLS towards it.
        pub dmp: DmpSettings,
        /// The gateway's identity towards relays.
        pub relay_client: RelayClientSettings,
        /// The relays calls may name in `auth_context.relay_id`.
        pub relays: BTreeMap<String, RelaySettings>,
        /// The structure each caller identity acts for (VIHF Identifiant_Structure and
        /// Secteur_Activite), by caller identity; required for every caller outside development.
        pub callers: BTreeMap<String, CallerStructure>,
        /// Where every DMP transaction is recorded (SQLite file by default, PostgreSQL with
        /// DATABASE_URL).
        pub audit: audit_log::AuditSettings,
        /// The software identity written into every VIHF (`LPS_*` attributes).
        pub lps: LpsIdentity,
        /// XDS metadata and document limits of the DMP transactions.
        pub xds: XdsSettings,
    }
}

/// Where the DMP is and how the gateway talks to it (section `dmp`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DmpSettings {
    /// Base URL of the DMP web services.
    pub url: String,
    /// CA certificates (PEM) that issue the DMP's server certificate.
    pub ca_bundle: PathBuf,
    /// TLS versions offered: the DMP accepts only "1.2" for software access.
    pub tls_versions: Vec<String>,
    /// Longest wait for TCP + TLS.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Longest wait for an answer.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Longest wait for the relay's CertificateVerify signature during a handshake.
    #[serde(with = "duration")]
    pub signature_timeout: Duration,
    /// A professional's connections close after this long unused.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// How long the card certificate fetched from a relay is reused.
    #[serde(with = "duration")]
    pub certificate_ttl: Duration,
    /// A professional's connection pool (and its TLS resumption state) is closed this long
    /// after it opened, however busy; the next call re-authenticates with the card.
    #[serde(with = "duration")]
    pub max_pool_lifetime: Duration,
    /// Largest answer read.
    pub max_response_bytes: usize,
}

/// How callers authenticate (section `auth`). A client certificate (mutual TLS) always names
/// its caller; `jwt` adds bearer tokens for deployments behind an API gateway.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// OAuth2 bearer JWTs (`authorization: Bearer …`); off unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSettings>,
}

/// Bearer JWTs of one issuer (section `auth.jwt`). A caller with a valid token is
/// `jwt:<issuer>#<sub>`, a name no certificate identity can take.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// The issuer's public keys: a JWKS file, or an `https://` URL.
    pub jwks: String,
    /// The `aud` tokens must carry.
    pub audience: String,
    /// CA certificates (PEM) that issue the JWKS URL's server certificate; the system's roots
    /// when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_ca: Option<PathBuf>,
    /// How often the JWKS is read again (a key rotation is seen within this delay).
    #[serde(default = "default_jwks_refresh", with = "duration")]
    pub jwks_refresh: Duration,
}

fn default_jwks_refresh() -> Duration {
    Duration::from_secs(600)
}

impl JwtSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("auth.jwt.issuer", &self.issuer),
            ("auth.jwt.audience", &self.audience),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::invalid(key, "must not be empty"));
            }
        }
        if self.jwks.starts_with("http://") {
            return Err(ConfigError::invalid(
                "auth.jwt.jwks",
                "an http:// JWKS could be swapped on the way: use https:// or a file",
            ));
        }
        if !self.jwks.starts_with("https://") {
            check_file("auth.jwt.jwks", std::path::Path::new(&self.jwks))?;
        }
        if let Some(ca) = &self.jwks_ca {
            check_file("auth.jwt.jwks_ca", ca)?;
        }
        if self.jwks_refresh < Duration::from_secs(1) {
            return Err(ConfigError::invalid("auth.jwt.jwks_refresh", "at least 1s"));
        }
        Ok(())
    }
}

/// The gateway's mutual-TLS identity towards relays (section `relay_client`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RelayClientSettings {
    /// CA that issues the relays' server certificates.
    pub ca: PathBuf,
    /// The gateway's client certificate and key towards relays.
    pub cert: PathBuf,
    /// The key of `cert` (PEM).
    pub key: PathBuf,
    /// Deadline of a relay call.
    #[serde(with = "duration")]
    pub call_timeout: Duration,
}

/// The API a relay speaks (`relays.<id>.api`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RelayApi {
    /// cps-relay's `cps.v1.CpsRelay` over gRPC with mutual TLS: certificate, signatures and the
    /// card session's state (WatchSession).
    #[default]
    Grpc,
    /// The seed's DevBox-Santé CPS agent HTTP API (`GET /cps/authenticationCertificate`,
    /// `POST /cps/sign/for/authentication/SHA256WithRSA`; bodies in `relay_client::agent`):
    /// cps-relay's `agent_http` face, or another agent speaking it. It reports no card session:
    /// the agent itself refuses signatures outside the grant's card session, and the gateway's
    /// pools towards it close after `dmp.certificate_ttl`.
    CpsAgent,
}

/// One relay calls may name (section `relays.<id>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// `https://host:port` (a CPS agent: its base URL, `https://host:port[/path]`; `http://`
    /// only in development mode).
    pub endpoint: String,
    /// The API the relay speaks: `grpc` (default) or `cps_agent`.
    #[serde(default)]
    pub api: RelayApi,
    /// Name in the relay's server certificate (defaults to the endpoint's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The relay's session-grant public key (P-256, PEM `PUBLIC KEY`): the professional's
    /// consents this relay issues verify with it.
    #[serde(default = "default_grant_key")]
    pub grant_key: PathBuf,
}

fn default_grant_key() -> PathBuf {
    ".dev-pki/cps-relay-grant.pub.pem".into()
}

impl Default for Config {
    fn default() -> Self {
        let mut relays = BTreeMap::new();
        relays.insert(
            "local".to_owned(),
            RelaySettings {
                endpoint: "https://127.0.0.1:50051".into(),
                server_name: Some("localhost".into()),
                api: RelayApi::Grpc,
                grant_key: default_grant_key(),
            },
        );
        Config {
            development: false,
            auth: AuthSettings::default(),
            server: ServerSettings::loopback(50052),
            metrics: MetricsSettings::loopback(9452),
            telemetry: TelemetrySettings::default(),
            dmp: DmpSettings::default(),
            relay_client: RelayClientSettings::default(),
            relays,
            callers: BTreeMap::new(),
            audit: audit_log::AuditSettings::default(),
            lps: Default::default(),
            xds: Default::default(),
        }
    }
}

impl Default for DmpSettings {
    fn default() -> Self {
        DmpSettings {
            url: "https://localhost:8443".into(),
            ca_bundle: ".dev-pki/igc-sante-ca-bundle.pem".into(),
            tls_versions: vec!["1.2".into()],
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            signature_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            certificate_ttl: Duration::from_secs(300),
            max_pool_lifetime: Duration::from_secs(8 * 3600),
            max_response_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Default for RelayClientSettings {
    fn default() -> Self {
        RelayClientSettings {
            ca: ".dev-pki/suite-ca.pem".into(),
            cert: ".dev-pki/dmp-gateway-client.pem".into(),
            key: ".dev-pki/dmp-gateway-client.key.pem".into(),
            call_timeout: Duration::from_secs(10),
        }
    }
}

impl DmpSettings {
    /// `tls_versions`, checked.
    pub fn versions(&self) -> Result<Vec<crate::dmp_tls::TlsVersion>, ConfigError> {
        let mut v = Vec::new();
        for (i, s) in self.tls_versions.iter().enumerate() {
            v.push(match s.as_str() {
                "1.2" => crate::dmp_tls::TlsVersion::Tls12,
                "1.3" => crate::dmp_tls::TlsVersion::Tls13,
                _ => {
                    return Err(ConfigError::invalid(
                        format!("dmp.tls_versions[{i}]"),
                        "use \"1.2\" or \"1.3\"",
                    ));
                }
            });
        }
        if v.is_empty() {
            return Err(ConfigError::invalid(
                "dmp.tls_versions",
                "offer at least one version",
            ));
        }
        Ok(v)
    }

    /// `url`, checked: https with a host.
    pub fn uri(&self) -> Result<http::Uri, ConfigError> {
        let uri: http::Uri = self
            .url
            .parse()
            .map_err(|e| ConfigError::invalid("dmp.url", format!("{e}")))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(ConfigError::invalid(
                "dmp.url",
                "must be an https:// URL with a host",
            ));
        }
        Ok(uri)
    }
}

/// The identifiers of the official DMP examples and of this suite's development defaults,
/// by configuration key: fine for `make run` and tests, never towards a real DMP.
pub const EXAMPLE_IDENTIFIERS: [(&str, &[&str]); 5] = [
    ("lps.id", &["00.00.00.00", "01.01.01.01"]),
    ("lps.name", &["LPS GIE-SV"]),
    ("lps.homologation_id", &["TEST-HOMOLOGATION", "NumAutorisation"]),
    ("xds.source_id", &["1.2.250.1.999.1.1.7898"]),
    (
        "xds.hl7_sender_oid",
        &["1.2.250.1.999.1.1.7898", "1.3.6.1.4.1.48364"],
    ),
];

impl Config {
    /// Outside development, the identifiers the DMP registers an installation under must be
    /// the integrator's own (README "Identifiers of the installation").
    fn refuse_example_identifiers(&self) -> Result<(), ConfigError> {
        for (key, examples) in EXAMPLE_IDENTIFIERS {
            let value = match key {
                "lps.id" => &self.lps.id,
                "lps.name" => &self.lps.name,
                "lps.homologation_id" => &self.lps.homologation_id,
                "xds.source_id" => &self.xds.source_id,
                _ => &self.xds.hl7_sender_oid,
            };
            if examples.contains(&value.trim()) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "`{value}` is a test value of the official DMP examples, accepted only with \
                         development = true: set your installation's own (dmp-gateway README, \
                         \"Identifiers of the installation\")"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl ServiceConfig for Config {
    const ENV_PREFIX: &'static str = "DMP_GATEWAY_";

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
        let mutual_tls = self.server.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        if !mutual_tls && !self.development {
            return Err(ConfigError::invalid(
                if self.server.tls.is_some() {
                    "server.tls.client_ca"
                } else {
                    "server.tls"
                },
                "dmp-gateway requires its callers' client certificates (mutual TLS) outside development \
                 mode: set server.tls with client_ca (development = true only for a local trial)",
            ));
        }
        if let Some(jwt) = &self.auth.jwt {
            jwt.validate()?;
        }
        if self.dmp.max_pool_lifetime.is_zero() {
            return Err(ConfigError::invalid(
                "dmp.max_pool_lifetime",
                "must be more than 0",
            ));
        }
        self.audit.validate("audit")?;
        for (key, value) in [
            ("lps.id", &self.lps.id),
            ("lps.name", &self.lps.name),
            ("lps.version", &self.lps.version),
            ("lps.homologation_id", &self.lps.homologation_id),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::invalid(key, "must not be empty"));
            }
        }
        if !self.development {
            self.refuse_example_identifiers()?;
        }
        self.xds.validate("xds")?;
        self.dmp.uri()?;
        self.dmp.versions()?;
        check_file("dmp.ca_bundle", &self.dmp.ca_bundle)?;
        check_file("relay_client.ca", &self.relay_client.ca)?;
        check_file("relay_client.cert", &self.relay_client.cert)?;
        check_file("relay_client.key", &self.relay_client.key)?;
        for (id, r) in &self.relays {
            let uri: http::Uri = r
                .endpoint
                .parse()
                .map_err(|e| ConfigError::invalid(format!("relays.{id}.endpoint"), format!("{e}")))?;
            let plain_agent =
                r.api == RelayApi::CpsAgent && self.development && uri.scheme_str() == Some("http");
            if (uri.scheme_str() != Some("https") && !plain_agent) || uri.host().is_none() {
                return Err(ConfigError::invalid(
                    format!("relays.{id}.endpoint"),
                    match r.api {
                        RelayApi::Grpc => "must be https://host:port (the relay requires mutual TLS)",
                        RelayApi::CpsAgent => {
                            "must be https://host:port[/path] (mutual TLS with relay_client's certificate; \
                             http:// only with development = true)"
                        }
                    },
                ));
            }
            if r.api == RelayApi::Grpc && !matches!(uri.path(), "" | "/") {
                return Err(ConfigError::invalid(
                    format!("relays.{id}.endpoint"),
                    "a gRPC relay's endpoint has no path: https://host:port",
                ));
            }
            check_file(&format!("relays.{id}.grant_key"), &r.grant_key)?;
        }
        for (caller, c) in &self.callers {
            if c.structure_id.is_empty() || !c.structure_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ConfigError::invalid(
                    format!("callers.{caller}.structure_id"),
                    "letters and digits (Identifiant_Structure)",
                ));
            }
            if !c
                .activity_sector
                .split_once('^')
                .is_some_and(|(code, oid)| !code.is_empty() && is_oid(oid))
            {
                return Err(ConfigError::invalid(
                    format!("callers.{caller}.activity_sector"),
                    "a Secteur_Activite like SA07^1.2.250.1.71.4.2.4",
                ));
            }
        }
        Ok(())
    }
}

/// The structure a caller identity acts for (section `callers.<identity>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerStructure {
    /// `Identifiant_Structure` (e.g. the FINESS or SIRET-based id, `10B0152872`).
    pub structure_id: String,
    /// `Secteur_Activite`, `code^OID` (e.g. `SA07^1.2.250.1.71.4.2.4`).
    pub activity_sector: String,
}

/// Settings of the transactions (configuration section `xds`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XdsSettings {
    /// XDSSubmissionSet.sourceId: the OID of the sending software installation.
    pub source_id: String,
    /// Largest accepted document, in bytes.
    pub max_document_bytes: u64,
    /// Most documents in one submission.
    pub max_documents: usize,
    /// Most request bytes of all calls being handled at once (memory bound, issue 19): a call
    /// whose body does not fit the rest is refused `RESOURCE_EXHAUSTED`. At least one largest
    /// request (4 × `max_document_bytes` + 4 MiB).
    pub max_bytes_in_flight: u64,
    /// VIHF purposeofuse when the call gives none.
    pub default_purpose_of_use: String,
    /// RepositoryUniqueId used by RetrieveDocument when the call gives none.
    pub repository_unique_id: String,
    /// OID of the sending device in HL7v3 messages (TD0.2).
    pub hl7_sender_oid: String,
    /// contentTypeCode of the submission set that carries a status update (ITI-57), which no
    /// call field provides: `code^display^scheme`.
    pub status_update_content_type: String,
    /// Path of the DMP repository (ITI-41, ITI-43) under `dmp.url`.
    pub repository_path: String,
    /// Path of the DMP registry (ITI-18, ITI-57) under `dmp.url`.
    pub registry_path: String,
    /// Path of the DMP patient service (TD0.2) under `dmp.url`.
    pub patients_path: String,
    /// Path of the DMP authorization service (TD0.3, TD1.6) under `dmp.url`.
    pub habilitations_path: String,
}

impl Default for XdsSettings {
    fn default() -> Self {
        XdsSettings {
            source_id: "1.2.250.1.999.1.1.7898".into(),
            max_document_bytes: 20 * 1024 * 1024,
            max_documents: 20,
            max_bytes_in_flight: 256 * 1024 * 1024,
            default_purpose_of_use: "normal".into(),
            repository_unique_id: "1.2.250.1.213.4.1.1.1.2".into(),
            hl7_sender_oid: "1.2.250.1.999.1.1.7898".into(),
            status_update_content_type: "04^Hospitalisation de jour^1.2.250.1.213.2.2".into(),
            repository_path: default_paths::REPOSITORY.into(),
            registry_path: default_paths::REGISTRY.into(),
            patients_path: default_paths::PATIENTS.into(),
            habilitations_path: default_paths::HABILITATIONS.into(),
        }
    }
}

impl XdsSettings {
    /// Validation naming the configuration key (`prefix` is the section name).
    fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        for (k, oid) in [
            ("source_id", &self.source_id),
            ("repository_unique_id", &self.repository_unique_id),
            ("hl7_sender_oid", &self.hl7_sender_oid),
        ] {
            if !is_oid(oid) {
                return Err(ConfigError::invalid(key(k), format!("`{oid}` is not an OID")));
            }
        }
        if self.max_document_bytes == 0 {
            return Err(ConfigError::invalid(
                key("max_document_bytes"),
                "must be positive",
            ));
        }
        if self.max_documents == 0 {
            return Err(ConfigError::invalid(key("max_documents"), "must be positive"));
        }
        let largest = crate::max_request_bytes(self) as u64;
        if self.max_bytes_in_flight < largest {
            return Err(ConfigError::invalid(
                key("max_bytes_in_flight"),
                format!("must be at least {largest} (one largest request: 4 × max_document_bytes + 4 MiB)"),
            ));
        }
        for (k, path) in [
            ("repository_path", &self.repository_path),
            ("registry_path", &self.registry_path),
            ("patients_path", &self.patients_path),
            ("habilitations_path", &self.habilitations_path),
        ] {
            if !path.starts_with('/') {
                return Err(ConfigError::invalid(
                    key(k),
                    format!("`{path}` must start with /"),
                ));
            }
        }
        self.status_update_code()
            .map_err(|e| ConfigError::invalid(key("status_update_content_type"), e.reason))?;
        Ok(())
    }

    /// The contentTypeCode of an ITI-57 submission set.
    pub(crate) fn status_update_code(&self) -> Result<Code, FieldError> {
        let p: Vec<&str> = self.status_update_content_type.split('^').collect();
        if p.len() != 3 {
            return Err(FieldError::new(
                "status_update_content_type",
                "expected code^display^scheme",
            ));
        }
        Code::from_parts("status_update_content_type", p[0], p[2], p[1])
    }
}
