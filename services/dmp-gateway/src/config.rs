//! dmp-gateway configuration (SPEC.md §0, §2). Defaults are the local setup: plaintext gRPC on
//! loopback (TLS is one `server.tls` section away), the DMP simulator on 127.0.0.1:8443 trusted
//! through the development IGC-Santé bundle, and one relay, `local`, on 127.0.0.1:50051.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::config::{
    ConfigError, MetricsSettings, ServerSettings, ServiceConfig, TelemetrySettings, check_file, duration,
};

service_kit::service_config! {
    /// dmp-gateway's configuration file (`--config`), over these defaults, under `DMP_GATEWAY_*`.
    pub struct Config {
        pub dmp: DmpSettings,
        pub relay_client: RelayClientSettings,
        /// The relays calls may name in `auth_context.relay_id`.
        pub relays: BTreeMap<String, RelaySettings>,
        /// Where every DMP transaction is recorded (SQLite file by default, PostgreSQL with
        /// DATABASE_URL).
        pub audit: audit_log::AuditSettings,
        /// The software identity written into every VIHF (`LPS_*` attributes).
        pub lps: crate::vihf::LpsIdentity,
        /// XDS metadata and document limits of the DMP transactions.
        pub xds: crate::transactions::XdsSettings,
        /// The key that signs each submission's XAdES signature document (RSA, PKCS#8 PEM) and
        /// its certificate: in production the structure's organisation certificate; the default
        /// is the dev PKI's card key, for the local suite only.
        pub signature: SignatureSettings,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DmpSettings {
    /// Base URL of the DMP web services.
    pub url: String,
    /// CA certificates (PEM) that issue the DMP's server certificate.
    pub ca_bundle: PathBuf,
    /// TLS versions offered: the DMP accepts only "1.2" for software access.
    pub tls_versions: Vec<String>,
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
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
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RelayClientSettings {
    /// CA that issues the relays' server certificates.
    pub ca: PathBuf,
    /// The gateway's client certificate and key towards relays.
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(with = "duration")]
    pub call_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelaySettings {
    /// `https://host:port`
    pub endpoint: String,
    /// Name in the relay's server certificate (defaults to the endpoint's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        let mut relays = BTreeMap::new();
        relays.insert(
            "local".to_owned(),
            RelaySettings {
                endpoint: "https://127.0.0.1:50051".into(),
                server_name: Some("localhost".into()),
            },
        );
        Config {
            server: ServerSettings::loopback(50052),
            metrics: MetricsSettings::loopback(9452),
            telemetry: TelemetrySettings::default(),
            dmp: DmpSettings::default(),
            relay_client: RelayClientSettings::default(),
            relays,
            audit: audit_log::AuditSettings::default(),
            lps: Default::default(),
            xds: Default::default(),
            signature: SignatureSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SignatureSettings {
    pub key: PathBuf,
    pub cert: PathBuf,
}

impl Default for SignatureSettings {
    fn default() -> Self {
        SignatureSettings {
            key: ".dev-pki/cps-auth.key.pem".into(),
            cert: ".dev-pki/cps-auth.pem".into(),
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

impl ServiceConfig for Config {
    const ENV_PREFIX: &'static str = "DMP_GATEWAY_";

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate("server")?;
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
        self.xds.validate("xds").map_err(|e| {
            let (key, reason) = e.split_once(": ").unwrap_or(("xds", e.as_str()));
            ConfigError::invalid(key, reason)
        })?;
        self.dmp.uri()?;
        self.dmp.versions()?;
        check_file("dmp.ca_bundle", &self.dmp.ca_bundle)?;
        check_file("signature.key", &self.signature.key)?;
        check_file("signature.cert", &self.signature.cert)?;
        check_file("relay_client.ca", &self.relay_client.ca)?;
        check_file("relay_client.cert", &self.relay_client.cert)?;
        check_file("relay_client.key", &self.relay_client.key)?;
        for (id, r) in &self.relays {
            let uri: http::Uri = r
                .endpoint
                .parse()
                .map_err(|e| ConfigError::invalid(format!("relays.{id}.endpoint"), format!("{e}")))?;
            if uri.scheme_str() != Some("https") || uri.host().is_none() {
                return Err(ConfigError::invalid(
                    format!("relays.{id}.endpoint"),
                    "must be https://host:port (the relay requires mutual TLS)",
                ));
            }
        }
        Ok(())
    }
}
