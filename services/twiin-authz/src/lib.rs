//! twiin-authz: the authorization server of a Twiin access node (GtK), SPEC.md §3. It issues
//! TWIIN assertions from an AORTA access token (use case 3.1, gRPC, for the Resource Broker
//! only) and answers OAuth2 JWT-bearer token requests from other access nodes (use case 3.2,
//! gRPC and HTTP `POST /oauth2/token`), with the audit log of SPEC.md §4. Safe by default:
//! production mode unless `development = true` ([`config`]).
//!
//! Private domain modules are transport-free: `jws`, `assertion`, `source_token`, `x5c`,
//! `client_auth`, `grant`, `scope_table`, `zorg_ab` (registrations and JWKS, single flight),
//! `as_za`, `aorta_id`, `broker`, `outbound`; the use cases are `issue_assertions` and
//! `issue_token`; `http` and `rpc` (the tonic surface) only translate, and open each request's
//! audit `trail`. [`run`] is what the binary calls.

mod aorta_id;
mod as_za;
mod assertion;
mod broker;
mod client_auth;
pub mod config;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod grant;
mod http;
mod issue_assertions;
mod issue_token;
mod jws;
mod outbound;
mod rpc;
mod scope_table;
mod single_flight;
mod source_token;
mod trail;
mod x5c;
mod zorg_ab;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use audit_log::AuditLog;
use ehealth_proto::twiin::v1::twiin_authz_server::TwiinAuthzServer;
use serde_json::json;
use service_kit::config::ServiceConfig;
use service_kit::metrics::Metrics;
use service_kit::server::GrpcServer;
use service_kit::{CancellationToken, StartError};

pub use config::Config;
pub use error::AuthzError;

use crate::aorta_id::AortaId;
use crate::assertion::SigningKeys;
use crate::broker::Brokers;
use crate::config::{AsZaSettings, ClientAuthSettings, HttpSettings, StelselSettings};
use crate::scope_table::ScopeTable;
use crate::source_token::Stelsel;
use crate::trail::Trail;
use crate::zorg_ab::ZorgAb;

/// What the service depends on from outside its configuration.
#[derive(Debug, Clone)]
pub struct Deps {
    /// Where every use case's trail and the jti replay store go.
    pub audit: AuditLog,
}

/// The service state both transports share.
pub struct Authz {
    issuer: String,
    /// Where the OAuth endpoint is reached (RFC 8414 `token_endpoint`, `jwks_uri`).
    endpoint_base: String,
    client_id: String,
    development: bool,
    audiences: Vec<String>,
    brokers: Brokers,
    grpc_timeout: Duration,
    limits: HttpSettings,
    keys: SigningKeys,
    stelsel: Arc<Stelsel>,
    stelsel_settings: StelselSettings,
    client_auth: ClientAuthSettings,
    max_assertion_lifetime: Duration,
    notification_marker: String,
    notification_scope: String,
    scope_table: ScopeTable,
    zorg_ab: ZorgAb,
    as_za: AsZaSettings,
    http: reqwest::Client,
    audit: AuditLog,
    /// Requests of both use cases by outcome.
    pub metrics: TwiinMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct OutcomeLabels {
    use_case: &'static str,
    /// `issued`, or the OAuth error (`invalid_client`, `access_denied`, ...).
    outcome: String,
}

/// Domain metrics: requests of both use cases by outcome.
#[derive(Clone, Debug, Default)]
pub struct TwiinMetrics {
    requests: prometheus_client::metrics::family::Family<
        OutcomeLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    shed: prometheus_client::metrics::counter::Counter,
}

impl TwiinMetrics {
    /// Registers `twiin_authz_requests` in the service's registry.
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(
            "twiin_authz_requests",
            "Use case requests by outcome: issued, or the OAuth error",
            self.requests.clone(),
        );
        metrics.register(
            "twiin_authz_http_shed",
            "OAuth2 HTTP requests answered 429 at once: the concurrency limit was reached",
            self.shed.clone(),
        );
    }

    /// Counts one HTTP request shed by the concurrency limit.
    pub(crate) fn shed(&self) {
        self.shed.inc();
    }

    /// HTTP requests shed by the concurrency limit so far.
    pub fn shed_count(&self) -> u64 {
        self.shed.get()
    }

    /// Counts one request of `use_case` ending as `result`.
    pub(crate) fn record<T>(&self, use_case: &'static str, result: &Result<T, error::AuthzError>) {
        let outcome = match result {
            Ok(_) => "issued".to_owned(),
            Err(e) => e.oauth_error().to_owned(),
        };
        self.requests
            .get_or_create(&OutcomeLabels { use_case, outcome })
            .inc();
    }

    /// Requests of `use_case` that ended with `outcome` so far.
    pub fn count(&self, use_case: &'static str, outcome: &str) -> u64 {
        self.requests
            .get_or_create(&OutcomeLabels {
                use_case,
                outcome: outcome.to_owned(),
            })
            .get()
    }
}

impl std::fmt::Debug for Authz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authz").field("issuer", &self.issuer).finish()
    }
}

impl Authz {
    /// The service state; `endpoint_base` is where external GtKs reach the OAuth endpoint
    /// (see `http.public_url`).
    pub(crate) fn new(config: &Config, audit: AuditLog, endpoint_base: String) -> Result<Self, StartError> {
        service_kit::tls::install_crypto_provider();
        let keys = SigningKeys::load(&config.assertions.signing_keys, config.assertions.max_lifetime)
            .map_err(|e| StartError::Unusable(e.to_string()))?;
        let scope_table = ScopeTable::new(config.interactions.clone())
            .map_err(|e| StartError::Unusable(format!("interactions: {e}")))?;
        let http =
            outbound::client(&config.outbound_tls, config.development).map_err(StartError::Unusable)?;
        let issuer = config.issuer.trim_end_matches('/').to_owned();
        let endpoint_base = endpoint_base.trim_end_matches('/').to_owned();
        let mut audiences = vec![issuer.clone(), format!("{issuer}{}", http::TOKEN_PATH)];
        let advertised = format!("{endpoint_base}{}", http::TOKEN_PATH);
        if !audiences.contains(&advertised) {
            audiences.push(advertised);
        }
        Ok(Authz {
            client_id: config
                .assertions
                .client_id
                .clone()
                .unwrap_or_else(|| issuer.clone()),
            audiences,
            issuer,
            endpoint_base,
            development: config.development,
            brokers: Brokers::new(&config.resource_broker.identities, config.development),
            grpc_timeout: config.server.request_timeout,
            limits: config.http.clone(),
            keys,
            stelsel: Arc::new(Stelsel::new(config.stelsel.max_age)),
            stelsel_settings: config.stelsel.clone(),
            client_auth: config.client_auth.clone(),
            max_assertion_lifetime: config.assertions.max_lifetime,
            notification_marker: config.assertions.notification_marker.clone(),
            notification_scope: config.assertions.notification_scope.clone(),
            scope_table,
            zorg_ab: ZorgAb::new(
                http.clone(),
                config.zorg_ab.clone(),
                &config.clients,
                config.development,
            ),
            as_za: config.as_za.clone(),
            http,
            audit,
            metrics: TwiinMetrics::default(),
        })
    }

    /// RFC 8414 metadata: the endpoints as they are actually served.
    pub(crate) fn metadata(&self) -> serde_json::Value {
        let algs: Vec<&str> = self.client_auth.algorithms.iter().map(|a| a.name()).collect();
        let scopes: Vec<String> = self
            .scope_table
            .rows()
            .iter()
            .map(|r| format!("system/{}.{}", r.resource, r.permission))
            .collect();
        json!({
            "issuer": self.issuer,
            "token_endpoint": format!("{}{}", self.endpoint_base, http::TOKEN_PATH),
            "jwks_uri": format!("{}{}", self.endpoint_base, http::JWKS_PATH),
            "grant_types_supported": [issue_assertions::JWT_BEARER],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": algs,
            "response_types_supported": [],
            "scopes_supported": scopes,
        })
    }

    /// The audit trail of a request received now.
    pub(crate) fn trail(
        &self,
        use_case: &'static str,
        id: AortaId,
        peer: Option<String>,
        transport: &'static str,
        traceparent: Option<&str>,
    ) -> Trail {
        Trail::new(
            self.audit.clone(),
            use_case,
            id,
            peer,
            transport,
            trail::trace_id(traceparent),
        )
    }

    /// Fetches the Stelseltoken once now and records the fetch in the audit log (errors are
    /// kept for the UNAVAILABLE answers and logged).
    pub(crate) async fn refresh_stelsel(&self) -> Result<(), source_token::StelselError> {
        let s = &self.stelsel_settings;
        let (result, exchange) = self
            .stelsel
            .refresh(&self.http, &s.url, &s.trust_anchor, s.timeout)
            .await;
        trail::record_stelsel_fetch(&self.audit, &exchange).await;
        result
    }
}

/// A started service: beside the gRPC server, the OAuth2 HTTP endpoint and the use cases.
pub type Running = service_kit::Running<Started>;

/// What twiin-authz hands its callers beside the gRPC server.
pub struct Started {
    /// The bound OAuth2 HTTP address.
    pub http_addr: SocketAddr,
    /// The service state.
    pub authz: Arc<Authz>,
}

/// Starts the service with the durable audit log of its configuration (`[audit]`: PostgreSQL,
/// or the SQLite file of the embedded default). Tests and embedders may use [`start_with`].
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let metrics = Metrics::new();
    let audit = AuditLog::connect_for(
        "twiin-authz",
        &config.audit,
        metrics.register_with(audit_log::AuditMetrics::registered),
    )
    .await
    .map_err(|e| StartError::Audit(e.to_string()))?;
    start_metered(config, Deps { audit }, metrics, shutdown).await
}

/// Starts gRPC, the OAuth2 HTTP listener and the Stelseltoken refresher; returns once both
/// listen (after one Stelseltoken fetch attempt). Refuses a configuration that does not
/// validate (production mode's rules included), naming the key.
pub async fn start_with(
    config: Config,
    deps: Deps,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    start_metered(config, deps, Metrics::new(), shutdown).await
}

/// [`start_with`] into `metrics` (which may already hold the audit log's counters).
async fn start_metered(
    config: Config,
    deps: Deps,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.http.listen).await?;
    let http_addr = listener.local_addr()?;
    let endpoint_base = match (&config.http.public_url, &config.http.tls) {
        (Some(url), _) => url.clone(),
        (None, Some(_)) => config.issuer.clone(),
        // Development without TLS: advertise what is served, not an https URL nobody answers.
        (None, None) => format!("http://{http_addr}"),
    };
    let authz = Arc::new(Authz::new(&config, deps.audit, endpoint_base)?);
    if config.development {
        tracing::warn!(
            "development mode: http URLs, plaintext listeners and an open use case 3.1 are allowed"
        );
    }
    authz.metrics.register(&metrics);

    if let Err(e) = authz.refresh_stelsel().await {
        tracing::warn!(error = %e, "no AORTA Stelseltoken yet; the use cases answer UNAVAILABLE until one is fetched");
    }
    let refresher = authz.clone();
    let interval = config.stelsel.refresh_interval;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            let ok = refresher.stelsel.current(assertion::unix_now()).is_ok();
            // Retry soon while we have nothing usable; otherwise at the configured interval.
            let wait = if ok {
                interval
            } else {
                interval.min(Duration::from_secs(5))
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            if let Err(e) = refresher.refresh_stelsel().await {
                tracing::warn!(error = %e, "AORTA Stelseltoken refresh failed");
            }
        }
    });

    // Overload is shed before anything is read: past `server.concurrency_limit` requests in
    // flight, 429 at once (see `http::overloaded`).
    let shed = authz.clone();
    let router = http::router(authz.clone()).layer(
        tower::ServiceBuilder::new()
            .layer(
                tower_http::trace::TraceLayer::new_for_http()
                    .make_span_with(|req: &axum::http::Request<axum::body::Body>| {
                        service_kit::telemetry::http_server_span(req)
                    })
                    .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG)),
            )
            .layer(axum::error_handling::HandleErrorLayer::new(
                move |e: tower::BoxError| http::overloaded(shed.clone(), e),
            ))
            .load_shed()
            .layer(tower::limit::ConcurrencyLimitLayer::new(
                config.server.concurrency_limit,
            )),
    );
    http::serve(
        listener,
        router,
        config.http.tls.as_ref(),
        config.http.header_read_timeout,
        config.server.drain_grace + config.server.drain_timeout,
        shutdown.clone(),
    )
    .await
    .map_err(StartError::Unusable)?;

    // Health NOT_SERVING while the audit store is down: both use cases would answer 503.
    let grpc = GrpcServer::new(config.server.clone(), metrics)
        .serving_while(authz.audit.availability())
        .add_service(TwiinAuthzServer::new(rpc::Grpc(authz.clone())))
        .descriptor_set(ehealth_proto::FILE_DESCRIPTOR_SET);
    tracing::info!(http = %http_addr, "twiin-authz OAuth2 HTTP endpoint listening");
    let started = Started { http_addr, authz };
    service_kit::start("twiin-authz", grpc, &config.metrics, started, shutdown).await
}

/// Runs until `shutdown` is cancelled and the calls in flight have drained.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    start(config, shutdown).await?.wait().await
}
