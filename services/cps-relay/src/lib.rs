//! cps-relay: the CPS signing relay (SPEC.md §1). It owns the health professional's card and
//! answers, for callers authenticated by mutual TLS, the two questions of a TLS handshake: the
//! authentication certificate, and a signature over handshake data.

pub mod access;
pub mod card;
pub mod certificate;
pub mod client;
pub mod config;
pub mod error;
pub mod grant;
pub mod handshake;
pub(crate) mod pin;
pub mod roles;
pub mod scheme;
pub mod service;
pub mod session;
pub mod transcript;

use std::net::SocketAddr;
use std::sync::Arc;

use ehealth_proto::cps::v1::cps_relay_server::CpsRelayServer;
use platform::CancellationToken;
use platform::audit::AuditLog;
use platform::metrics::Metrics;
use platform::server::{GrpcServer, RunningServer, ServerError};

pub use client::{CpsRelayClient, RelayTls};
pub use config::Config;
pub use error::RelayError;
pub use scheme::Scheme;

use crate::card::Card;
use crate::config::BackendKind;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("card backend: {0}")]
    Card(#[from] RelayError),
    #[error("{0}")]
    Config(#[from] platform::config::ConfigError),
    #[error("audit log: {0}")]
    Audit(#[from] platform::audit::AuditError),
    #[error("{0}")]
    Signing(#[from] transcript::PolicyError),
    #[error("session grants: {0}")]
    Grants(String),
}

/// A started relay.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub server: RunningServer,
    pub relay_metrics: service::RelayMetrics,
}

/// Opens the configured card backend.
pub fn open_card(config: &Config) -> Result<Arc<dyn Card>, StartError> {
    Ok(match config.backend.kind {
        BackendKind::Software => {
            let s = &config.backend.software;
            Arc::new(card::software::SoftwareCard::load(
                &s.certificate_chain,
                &s.private_key,
            )?)
        }
        BackendKind::Pkcs11 => {
            let p = &config.backend.pkcs11;
            let chain = match &p.chain {
                Some(path) => platform::tls::load_certs(path)
                    .map_err(|e| RelayError::NoToken {
                        reason: e.to_string(),
                    })?
                    .into_iter()
                    .map(|c| c.to_vec())
                    .collect(),
                None => Vec::new(),
            };
            let card = card::pkcs11::Pkcs11Card::open(&p.module, p.selection()?, chain)?;
            if let Some(pin_file) = &p.pin_file {
                // Read in one allocation (sized from the file), trimmed in place and moved into
                // the zeroising secret: no other copy of the PIN is left behind.
                let mut pin = std::fs::read_to_string(pin_file)?;
                pin.truncate(pin.trim_end_matches(['\r', '\n']).len());
                card.login(&card::Pin::from(pin), false)?;
            }
            Arc::new(card)
        }
    })
}

/// Starts the relay with the given audit log and returns once it listens.
pub async fn start_with(
    config: Config,
    audit: AuditLog,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let card = open_card(&config)?;
    let metrics = Metrics::new();
    let relay_metrics = service::RelayMetrics::register(&metrics);
    let sessions = match config.backend.kind {
        BackendKind::Software => 4,
        BackendKind::Pkcs11 => config.backend.pkcs11.sessions,
    };
    let a = config.access.effective(config.development);
    if config.development {
        tracing::warn!(
            grants_required = config.grants.required,
            "development mode: access roles default to the dev PKI's identities"
        );
    }
    let g = &config.grants;
    let policy = service::Policy {
        access: access::Access::new(&a.allowed_clients, a.rate_per_second, a.burst),
        roles: roles::Roles::new(&a),
        servers: transcript::ServerPolicy::load(&config.signing)?,
        grants: grant::GrantSigner::load(&g.signing_key, &g.relay_id, g.max_lifetime)
            .map_err(|e| StartError::Grants(e.to_string()))?,
        grants_required: g.required,
        poll_interval: config.card.poll_interval,
        shutdown: shutdown.clone(),
    };
    let svc = service::RelayService::new(card, policy, audit, sessions, a.card_wait, relay_metrics.clone())?;
    let metrics_addr = platform::metrics::start(&config.metrics, metrics.clone(), shutdown.clone()).await?;
    let server = GrpcServer::new(config.server.clone(), metrics)
        .add_service(CpsRelayServer::new(svc))
        .descriptor_set(ehealth_proto::FILE_DESCRIPTOR_SET)
        .start(shutdown)
        .await?;
    tracing::info!(grpc = %server.local_addr, metrics = ?metrics_addr, "cps-relay listening (mutual TLS)");
    Ok(Running {
        grpc_addr: server.local_addr,
        metrics_addr,
        server,
        relay_metrics,
    })
}

/// Starts the relay with the audit log of its configuration (`[audit]`).
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let audit = AuditLog::connect(&config.audit).await?;
    start_with(config, audit, shutdown).await
}

/// Runs the relay until `shutdown` is cancelled and the calls in flight have drained.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let running = start(config, shutdown).await?;
    running.server.wait().await?;
    Ok(())
}
