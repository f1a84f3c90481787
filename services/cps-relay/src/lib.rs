//! cps-relay: the CPS signing relay (SPEC.md §1). It owns the health professional's card and
//! answers, for callers authenticated by mutual TLS, the two questions of a TLS handshake: the
//! authentication certificate, and a signature over handshake data.
//!
//! `rpc` is the relay service, its use cases and its `cps.v1.CpsRelay` face; `agent_http` serves
//! the seed's CPS agent HTTP API with the same use cases; the domain lives in private modules: `card` (the
//! backends, PKCS#11 and software, and the card threads), `access` (which certificates may
//! call, how often), `roles` (what each caller identity may call, for which professionals),
//! `session` (card sessions and their watchers), `grant` (session grants), `pin` (the PIN
//! throttle), `transcript` (which servers the card may authenticate to), `handshake` (what
//! counts as TLS signing input), `certificate`, `scheme`. Callers use the `relay-client` crate,
//! never this one.

mod access;
mod agent_http;
mod card;
mod certificate;
mod config;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod grant;
mod handshake;
mod pin;
mod roles;
mod rpc;
mod scheme;
mod session;
mod signed_info;
mod transcript;

use std::sync::Arc;

use audit_log::AuditLog;
use ehealth_proto::cps::v1::cps_relay_server::CpsRelayServer;
use service_kit::metrics::Metrics;
use service_kit::server::GrpcServer;
use service_kit::{CancellationToken, StartError};

pub use card::pkcs11::context as pkcs11_context;
pub use config::{
    AccessSettings, AgentHttpSettings, BackendKind, BackendSettings, CardSettings, Config, GatewayAccess,
    GrantSettings, Pkcs11Settings, SigningSettings, SoftwareSettings,
};
pub use error::RelayError;
pub use handshake::sample_tls12_transcript;
pub use rpc::RelayMetrics;
pub use scheme::{sha256, sha256_digest_info};

use crate::card::Card;

/// A started relay; beside the server, its signature counters and the CPS agent HTTP address.
pub type Running = service_kit::Running<Started>;

/// What a started relay hands its caller beside the gRPC server.
pub struct Started {
    /// Signature counters.
    pub metrics: RelayMetrics,
    /// The bound address of the CPS agent HTTP API, when `agent_http.listen` is set.
    pub agent_http_addr: Option<std::net::SocketAddr>,
}

/// Opens the configured card backend.
fn open_card(config: &Config) -> Result<Arc<dyn Card>, StartError> {
    Ok(match config.backend.kind {
        BackendKind::Software => {
            let s = &config.backend.software;
            let signature = s
                .signature_certificate_chain
                .as_deref()
                .zip(s.signature_private_key.as_deref());
            Arc::new(card::software::SoftwareCard::load(
                &s.certificate_chain,
                &s.private_key,
                signature,
            )?)
        }
        BackendKind::Pkcs11 => {
            let p = &config.backend.pkcs11;
            let chain = match &p.chain {
                Some(path) => service_kit::tls::load_certs(path)
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
    start_metered(config, audit, Metrics::new(), shutdown).await
}

/// [`start_with`] into `metrics` (which may already hold the audit log's counters).
async fn start_metered(
    config: Config,
    audit: AuditLog,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let card = open_card(&config)?;
    let relay_metrics = RelayMetrics::register(&metrics);
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
    let policy = rpc::Policy {
        access: access::Access::new(&a.allowed_clients, a.rate_per_second, a.burst),
        roles: roles::Roles::new(&a),
        servers: transcript::ServerPolicy::load(&config.signing)
            .map_err(|e| StartError::Unusable(e.to_string()))?,
        grants: grant::GrantSigner::load(&g.signing_key, &g.relay_id, g.max_lifetime)
            .map_err(|e| StartError::Unusable(format!("session grants: {e}")))?,
        grants_required: g.required,
        poll_interval: config.card.poll_interval,
        shutdown: shutdown.clone(),
    };
    // Health NOT_SERVING while the audit store is down: every signature would be refused.
    let audit_available = audit.availability();
    let relay = Arc::new(rpc::RelayService::new(
        card,
        policy,
        audit,
        sessions,
        a.card_wait,
        relay_metrics.clone(),
    )?);
    let agent_http_addr = match config.agent_http.listen {
        Some(listen) => Some(start_agent_http(&config, listen, relay.clone(), shutdown.clone()).await?),
        None => None,
    };
    let grpc = GrpcServer::new(config.server.clone(), metrics)
        .serving_while(audit_available)
        .add_service(CpsRelayServer::from_arc(relay))
        .descriptor_set(ehealth_proto::FILE_DESCRIPTOR_SET);
    let started = Started {
        metrics: relay_metrics,
        agent_http_addr,
    };
    service_kit::start("cps-relay", grpc, &config.metrics, started, shutdown).await
}

/// Binds the CPS agent HTTP API on `listen` with the gRPC face's mutual TLS and serves it until
/// `shutdown`; returns the bound address.
async fn start_agent_http(
    config: &Config,
    listen: std::net::SocketAddr,
    relay: Arc<rpc::RelayService>,
    shutdown: CancellationToken,
) -> Result<std::net::SocketAddr, StartError> {
    let tls = config
        .server
        .tls
        .as_ref()
        .ok_or_else(|| StartError::Unusable("agent_http needs server.tls (mutual TLS)".into()))?;
    let client_ca = tls
        .client_ca
        .as_ref()
        .ok_or_else(|| StartError::Unusable("agent_http needs server.tls.client_ca".into()))?;
    let unusable = |key: &str, e: service_kit::tls::TlsError| StartError::Unusable(format!("{key}: {e}"));
    let chain = service_kit::tls::load_certs(&tls.cert).map_err(|e| unusable("server.tls.cert", e))?;
    let key = service_kit::tls::load_private_key(&tls.key).map_err(|e| unusable("server.tls.key", e))?;
    let roots = service_kit::tls::load_roots(client_ca).map_err(|e| unusable("server.tls.client_ca", e))?;
    let mut server_config =
        service_kit::tls::server_config(chain, key, Some(roots), rustls::DEFAULT_VERSIONS)
            .map_err(|e| unusable("server.tls", e))?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = agent_http::router(relay).layer(tower::limit::ConcurrencyLimitLayer::new(
        config.server.concurrency_limit,
    ));
    tokio::spawn(service_kit::https::serve(
        listener,
        Arc::new(server_config),
        app,
        shutdown,
    ));
    tracing::info!(agent_http = %addr, "cps-relay CPS agent HTTP API listening");
    Ok(addr)
}

/// Starts the relay with the audit log of its configuration (`[audit]`).
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let metrics = Metrics::new();
    let audit = AuditLog::connect_for(
        "cps-relay",
        &config.audit,
        metrics.register_with(audit_log::AuditMetrics::registered),
    )
    .await
    .map_err(|e| StartError::Audit(e.to_string()))?;
    start_metered(config, audit, metrics, shutdown).await
}

/// Runs the relay until `shutdown` is cancelled and the calls in flight have drained.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    start(config, shutdown).await?.wait().await
}
