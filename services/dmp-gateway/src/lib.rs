//! dmp-gateway: SPEC.md §2. It serves an integrator's backend and speaks the DMP's SOAP/XDS.b
//! transactions over mutual TLS, with the professional's CPS card as client certificate and
//! every signature made remotely by cps-relay.
//!
//! The wire protocols are `dmp-protocol`'s; here are the five transactions (one module each,
//! validate → build → parse), the protobuf mapping, the tonic surface and the transport.
//!
//! Issue 13: every call names its caller (`caller`: mutual TLS, or a bearer JWT) and acts for a
//! professional only under the professional's session grant (`grant`), inside the card session
//! the professional's relay reports (`session_watch`); the connection pools end with it.

mod caller;
mod config;
mod connections;
mod connector;
mod conversions;
mod dmp_tls;
mod error;
mod exchange;
mod find;
mod get_associations;
mod get_documents;
mod grant;
mod habilitations;
mod in_flight;
mod list_patients;
mod reconcile;
mod relay;
mod remote_key;
mod retrieve;
mod rpc;
pub mod samples;
mod session_watch;
mod set_visibility;
mod structure;
mod submit;
mod test_patient;
mod update_status;

use std::sync::Arc;

use ehealth_proto::dmp::v1::dmp_gateway_server::DmpGatewayServer;
use service_kit::metrics::Metrics;
use service_kit::server::GrpcServer;
use service_kit::{CancellationToken, StartError};

use connections::DmpEndpoint;

pub use caller::CallerIdentity;
pub use config::{
    AuthSettings, CallerStructure, Config, EXAMPLE_IDENTIFIERS, JwtSettings, RelayApi, RelaySettings,
    XdsSettings,
};
pub use connections::{Authorized, DmpConnections, Professional, TransportMetrics};
pub use dmp_tls::{TlsVersion, client_config};
pub use error::{DmpError, TransportError};
pub use exchange::{CallContext, DmpRequest, Incoming, Outgoing, Prepared, Transaction, prepare};
pub use find::Find;
pub use get_associations::GetAssociations;
pub use get_documents::GetDocuments;
pub use grant::{AccessError, GRANT_METADATA};
pub use habilitations::{ListAuthorizations, SetAuthorization};
pub use list_patients::ListPatients;
pub use relay::{RelayDirectory, RelayEndpoint};
pub use remote_key::{CardResolver, Consent, RemoteKey};
pub use retrieve::Retrieve;
pub use rpc::{CallAccess, Caller, DmpTransport, Gateway, Opened, ServicePaths};
pub use set_visibility::SetVisibility;
pub use structure::CallerStructures;
pub use submit::Submit;
pub use test_patient::TestPatient;
pub use update_status::UpdateStatus;

/// Builds the gRPC service from configuration and the transport.
pub fn gateway(
    config: &Config,
    connections: Arc<DmpConnections>,
    audit: audit_log::AuditLog,
) -> Result<Gateway, StartError> {
    Ok(Gateway::new(
        connections,
        audit,
        config.lps.clone(),
        config.xds.clone(),
        ServicePaths {
            base_url: config.dmp.url.clone(),
            repository: config.xds.repository_path.clone(),
            registry: config.xds.registry_path.clone(),
            patients: config.xds.patients_path.clone(),
            habilitations: config.xds.habilitations_path.clone(),
        },
    )
    .with_caller_structures(CallerStructures::new(config.callers.clone(), !config.development)))
}

/// Builds the DMP transport from configuration.
pub fn connections(config: &Config, metrics: TransportMetrics) -> Result<Arc<DmpConnections>, StartError> {
    let d = &config.dmp;
    let base_url = d.uri()?;
    let host = base_url
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let server_name = rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| StartError::Unusable(format!("dmp.url host: {e}")))?;
    let roots =
        service_kit::tls::load_roots(&d.ca_bundle).map_err(|e| StartError::Unusable(e.to_string()))?;
    let endpoint = DmpEndpoint {
        base_url,
        server_name,
        roots: Arc::new(roots),
        versions: d.versions()?,
        connect_timeout: d.connect_timeout,
        request_timeout: d.request_timeout,
        signature_timeout: d.signature_timeout,
        idle_timeout: d.idle_timeout,
        certificate_ttl: d.certificate_ttl,
        max_pool_lifetime: d.max_pool_lifetime,
        max_response_bytes: d.max_response_bytes,
    };
    let rc = &config.relay_client;
    let mut relays = std::collections::BTreeMap::new();
    for (id, r) in &config.relays {
        // The name to verify in the relay's certificate: configured, else the endpoint's host
        // (validation made sure the endpoint is https://host:port).
        let server_name = match &r.server_name {
            Some(name) => name.clone(),
            None => r
                .endpoint
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| {
                    u.host()
                        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
                })
                .unwrap_or_default(),
        };
        relays.insert(
            id.clone(),
            relay::RelayEndpoint {
                id: id.clone(),
                endpoint: r.endpoint.clone(),
                server_name,
                api: r.api,
            },
        );
    }
    let grants = grant::GrantKeys::load(&config.relays).map_err(StartError::Unusable)?;
    // The gateway's identity towards every relay; each relay's own server name is applied per call.
    let tls = relay_client::RelayTls::from_files(&rc.ca, &rc.cert, &rc.key, "")
        .map_err(|e| StartError::Unusable(e.to_string()))?;
    let directory = relay::RelayDirectory::new(relays, tls, rc.call_timeout);
    Ok(DmpConnections::new(endpoint, directory, grants, metrics))
}

/// **Decision** — gRPC requests may be up to four times `xds.max_document_bytes` (+ 4 MiB), so
/// that a document over the limit reaches the gateway's own check and its precise message
/// (`documents[i].content: the document has N bytes, more than the configured limit…`) instead
/// of tonic's generic one, while the memory a single call can take stays bounded.
pub fn max_request_bytes(xds: &XdsSettings) -> usize {
    let doc = usize::try_from(xds.max_document_bytes).unwrap_or(usize::MAX);
    doc.saturating_mul(4).saturating_add(4 * 1024 * 1024)
}

/// A started service; beside the server, its DMP transport.
pub type Running = service_kit::Running<Arc<DmpConnections>>;

/// Starts the service and returns once it listens.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    service_kit::tls::install_crypto_provider();
    let metrics = Metrics::new();
    let connections = connections(&config, TransportMetrics::register(&metrics))?;
    connections.spawn_expiry(shutdown.clone());
    let audit = audit_log::AuditLog::connect_for(
        "dmp-gateway",
        &config.audit,
        metrics.register_with(audit_log::AuditMetrics::registered),
    )
    .await
    .map_err(|e| StartError::Audit(e.to_string()))?;
    let jwt = match &config.auth.jwt {
        Some(settings) => {
            let verifier = caller::JwtVerifier::load(settings)
                .await
                .map_err(StartError::Unusable)?;
            verifier.spawn_refresh(shutdown.clone());
            Some(verifier)
        }
        None => None,
    };
    // Every dmp.v1 call names its caller before the service sees it (health and reflection,
    // which reveal nothing of a patient, stay open to any TLS client).
    // Health NOT_SERVING while the audit store is down: every call would be refused.
    let audit_available = audit.availability();
    let service = DmpGatewayServer::new(gateway(&config, connections.clone(), audit)?)
        .max_decoding_message_size(max_request_bytes(&config.xds));
    let grpc = GrpcServer::new(config.server.clone(), metrics)
        .serving_while(audit_available)
        .add_service(in_flight::BytesInFlight::new(
            caller::Authenticated::new(service, caller::CallerAuth::new(jwt)),
            config.xds.max_bytes_in_flight,
        ))
        .descriptor_set(ehealth_proto::FILE_DESCRIPTOR_SET);
    service_kit::start("dmp-gateway", grpc, &config.metrics, connections, shutdown).await
}

/// Runs until `shutdown` is cancelled and the calls in flight have drained.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    start(config, shutdown).await?.wait().await
}
