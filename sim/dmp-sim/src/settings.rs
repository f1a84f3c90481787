//! The `dmp-sim` binary's configuration (one TOML file, `DMP_SIM_` environment overrides,
//! validated at start-up with the key's name), and `run`: the TLS 1.2 listener demanding a
//! client certificate from the test IGC-Santé CA, serving the simulator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use dmp_protocol::xds::{Ins, InsAuthority, is_oid};
use ehealth_proto::dmp::v1::Authorization;
use serde::{Deserialize, Serialize};
use service_kit::CancellationToken;
use service_kit::config::{ConfigError, ServiceConfig, TelemetrySettings, check_file};

use crate::{DmpSimulator, SimConfig, SimPatient};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
/// The simulator's configuration file (`--config`), over embedded defaults.
pub struct Settings {
    /// HTTPS listen address (the gateway's default `dmp.url` is https://localhost:8443).
    pub listen: SocketAddr,
    /// The DMP server certificate chain and key (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CAs the professionals' card certificates must chain to.
    pub client_ca: PathBuf,
    /// The repository OID documents are stored under.
    pub repository_unique_id: String,
    /// Largest accepted HTTP body.
    pub max_body_bytes: usize,
    /// Patients with a DMP.
    pub patients: Vec<PatientSettings>,
    /// Logs and traces.
    pub telemetry: TelemetrySettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
/// A patient with a DMP, as configured.
pub struct PatientSettings {
    /// The INS (15 digits).
    pub ins: String,
    /// The INS assigning authority OID (default: the test NIR authority).
    #[serde(default = "test_nir")]
    pub authority: String,
    /// Every professional's authorization until TD0.3 changes theirs: VALIDE, EXPIRE,
    /// INTERDIT or NON_EXISTE.
    #[serde(default = "valide")]
    pub authorization: String,
    /// A closed DMP refuses every transaction but TD0.2.
    #[serde(default)]
    pub closed: bool,
}

fn test_nir() -> String {
    InsAuthority::TEST_NIR_OID.into()
}

fn valide() -> String {
    "VALIDE".into()
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            cert: ".dev-pki/dmp-server.pem".into(),
            key: ".dev-pki/dmp-server.key.pem".into(),
            client_ca: ".dev-pki/igc-sante-ca-bundle.pem".into(),
            repository_unique_id: SimConfig::default().repository_unique_id,
            max_body_bytes: SimConfig::default().max_body_bytes,
            patients: vec![PatientSettings {
                ins: "207058575627097".into(),
                authority: test_nir(),
                authorization: valide(),
                closed: false,
            }],
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl Settings {
    /// The simulator's configuration, or the first bad key.
    pub fn sim_config(&self) -> Result<SimConfig, ConfigError> {
        let mut patients = Vec::new();
        for (i, p) in self.patients.iter().enumerate() {
            let ins = Ins::new(&format!("patients[{i}]"), &p.ins, &p.authority)
                .map_err(|e| ConfigError::invalid(e.field, e.reason))?;
            let authorization = match p.authorization.as_str() {
                "VALIDE" => Authorization::Valide,
                "EXPIRE" => Authorization::Expire,
                "INTERDIT" => Authorization::Interdit,
                "NON_EXISTE" => Authorization::NonExiste,
                _ => {
                    return Err(ConfigError::invalid(
                        format!("patients[{i}].authorization"),
                        "use VALIDE, EXPIRE, INTERDIT or NON_EXISTE",
                    ));
                }
            };
            patients.push(SimPatient::new(ins, authorization, p.closed));
        }
        if !is_oid(&self.repository_unique_id) {
            return Err(ConfigError::invalid("repository_unique_id", "must be an OID"));
        }
        Ok(SimConfig {
            repository_unique_id: self.repository_unique_id.clone(),
            max_body_bytes: self.max_body_bytes,
            patients,
        })
    }
}

impl ServiceConfig for Settings {
    const ENV_PREFIX: &'static str = "DMP_SIM_";

    fn validate(&self) -> Result<(), ConfigError> {
        check_file("cert", &self.cert)?;
        check_file("key", &self.key)?;
        check_file("client_ca", &self.client_ca)?;
        self.sim_config().map(|_| ())
    }
}

impl service_kit::app::HasTelemetry for Settings {
    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }
}

/// Serves the simulator until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> Result<(), String> {
    service_kit::tls::install_crypto_provider();
    let sim = Arc::new(DmpSimulator::new(
        settings.sim_config().map_err(|e| e.to_string())?,
    ));
    let chain = service_kit::tls::load_certs(&settings.cert).map_err(|e| e.to_string())?;
    let key = service_kit::tls::load_private_key(&settings.key).map_err(|e| e.to_string())?;
    let roots = service_kit::tls::load_roots(&settings.client_ca).map_err(|e| e.to_string())?;
    // The DMP accepts TLS 1.2 only for software access.
    let tls = service_kit::tls::server_config(chain, key, Some(roots), &[&rustls::version::TLS12])
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("listen {}: {e}", settings.listen))?;
    tracing::info!(addr = %settings.listen, "dmp-sim listening (TLS 1.2, client certificate required)");
    service_kit::https::serve(listener, Arc::new(tls), crate::router(sim), shutdown).await;
    Ok(())
}
