//! twiin-authz: the authorization server of a Twiin access node (GtK), SPEC.md §3. It issues
//! TWIIN assertions from an AORTA access token (use case 3.1, gRPC, internal callers) and
//! answers OAuth2 JWT-bearer token requests from other access nodes (use case 3.2, gRPC and
//! plain HTTP `POST /oauth2/token`), with the audit log of SPEC.md §4.
//!
//! Domain modules are transport-free: [`jws`], [`assertion`], [`source_token`], [`x5c`],
//! [`client_auth`], [`grant`], [`scope_table`], [`zorg_ab`], [`as_za`], [`aorta_id`],
//! [`broker`]; the use cases are [`issue_assertions`] and [`issue_token`]; [`http`] and the
//! gRPC impl below only translate, and open each request's audit [`trail`].

pub mod aorta_id;
pub mod as_za;
pub mod assertion;
pub mod broker;
pub mod client_auth;
pub mod config;
pub mod error;
pub mod grant;
pub mod http;
pub mod issue_assertions;
pub mod issue_token;
pub mod jws;
pub mod outbound;
pub mod scope_table;
pub mod single_flight;
pub mod source_token;
pub mod trail;
pub mod x5c;
pub mod zorg_ab;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ehealth_proto::twiin::v1 as pb;
use ehealth_proto::twiin::v1::twiin_authz_server::{TwiinAuthz, TwiinAuthzServer};
use platform::CancellationToken;
use platform::audit::AuditLog;
use platform::config::ServiceConfig;
use platform::metrics::Metrics;
use platform::server::{GrpcServer, RunningServer, ServerError};
use serde_json::json;

pub use config::Config;
pub use error::AuthzError;

use crate::aorta_id::AortaId;
use crate::assertion::SigningKeys;
use crate::broker::{Brokers, CallerCertificate};
use crate::config::{AsZaSettings, ClientAuthSettings, HttpSettings, StelselSettings};
use crate::scope_table::ScopeTable;
use crate::source_token::Stelsel;
use crate::trail::{Outcome, Trail, UC_ASSERTIONS, UC_TOKEN};
use crate::zorg_ab::ZorgAb;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
    #[error("audit log: {0}")]
    Audit(String),
}

/// What the service depends on from outside its configuration.
#[derive(Debug, Clone)]
pub struct Deps {
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
}

impl TwiinMetrics {
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(
            "twiin_authz_requests",
            "Use case requests by outcome: issued, or the OAuth error",
            self.requests.clone(),
        );
    }

    pub fn record<T>(&self, use_case: &'static str, result: &Result<T, error::AuthzError>) {
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
    pub fn new(config: &Config, audit: AuditLog, endpoint_base: String) -> Result<Self, StartError> {
        platform::tls::install_crypto_provider();
        let keys = SigningKeys::load(&config.assertions.signing_keys, config.assertions.max_lifetime)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let scope_table = ScopeTable::new(config.interactions.clone())
            .map_err(|e| StartError::Config(format!("interactions: {e}")))?;
        let http = outbound::client(&config.outbound_tls, config.development).map_err(StartError::Config)?;
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
    pub fn metadata(&self) -> serde_json::Value {
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
    pub fn trail(
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
    pub async fn refresh_stelsel(&self) -> Result<(), source_token::StelselError> {
        let s = &self.stelsel_settings;
        let (result, exchange) = self
            .stelsel
            .refresh(&self.http, &s.url, &s.trust_anchor, s.timeout)
            .await;
        trail::record_stelsel_fetch(&self.audit, &exchange).await;
        result
    }
}

/// The gRPC face of a request: its trail (with the AORTA-ID of the metadata, or a new one when
/// that is malformed, which the caller then gets refused).
fn grpc_trail<T>(
    authz: &Authz,
    use_case: &'static str,
    req: &tonic::Request<T>,
) -> (Trail, Result<AortaId, AuthzError>) {
    let md = req.metadata();
    let traceparent = md.get("traceparent").and_then(|v| v.to_str().ok());
    let mut trail = authz
        .trail(
            use_case,
            AortaId::new(),
            req.remote_addr().map(|a| a.to_string()),
            "grpc",
            traceparent,
        )
        .with_deadline(authz.grpc_timeout);
    trail.note(
        "method",
        match use_case {
            UC_ASSERTIONS => "twiin.v1.TwiinAuthz/IssueTwiinAssertions",
            _ => "twiin.v1.TwiinAuthz/IssueAortaAccessToken",
        },
    );
    let id = match md.get(aorta_id::HEADER) {
        None => Ok(AortaId::new()),
        Some(v) => {
            let parsed = v
                .to_str()
                .map_err(|_| ())
                .and_then(|t| AortaId::accept(Some(t)).map_err(|_| ()));
            match parsed {
                Ok(id) => Ok(id),
                Err(()) => {
                    let raw: String = String::from_utf8_lossy(v.as_bytes()).chars().take(200).collect();
                    trail.note("aorta_id_received", raw);
                    Err(AuthzError::InvalidRequest(format!(
                        "Ongeldig verzoek: {}",
                        aorta_id::MalformedAortaId
                    )))
                }
            }
        }
    };
    if let Ok(id) = &id {
        trail.set_aorta_id(id.clone());
    }
    (trail, id)
}

/// A refusal before the use case, written to the trail first.
async fn grpc_refuse(trail: Trail, e: AuthzError) -> tonic::Status {
    match trail.finish(&Outcome::of::<()>(&Err(e.clone()))).await {
        Ok(()) => e.into(),
        Err(audit) => audit.into(),
    }
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct Grpc(pub Arc<Authz>);

#[tonic::async_trait]
impl TwiinAuthz for Grpc {
    async fn issue_twiin_assertions(
        &self,
        request: tonic::Request<pb::IssueTwiinAssertionsRequest>,
    ) -> Result<tonic::Response<pb::IssueTwiinAssertionsResponse>, tonic::Status> {
        let (trail, id) = grpc_trail(&self.0, UC_ASSERTIONS, &request);
        if let Err(e) = id {
            return Err(grpc_refuse(trail, e).await);
        }
        let caller = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|leaf| CallerCertificate::from_der(leaf)));
        let r = request.into_inner();
        let req = issue_assertions::AssertionsRequest {
            source_token: r.source_token,
            audience: r.audience,
            authz_base: opt(r.authz_base),
        };
        let out = self.0.issue_assertions(req, caller.as_ref(), trail).await?;
        Ok(tonic::Response::new(pb::IssueTwiinAssertionsResponse {
            client_assertion: out.client_assertion,
            client_assertion_type: issue_assertions::CLIENT_ASSERTION_TYPE.into(),
            assertion: out.assertion,
            grant_type: issue_assertions::JWT_BEARER.into(),
            scope: out.scope,
            expires_at: out.expires_at as i64,
        }))
    }

    async fn issue_aorta_access_token(
        &self,
        request: tonic::Request<pb::TokenRequest>,
    ) -> Result<tonic::Response<pb::TokenResponse>, tonic::Status> {
        let (trail, id) = grpc_trail(&self.0, UC_TOKEN, &request);
        if let Err(e) = id {
            return Err(grpc_refuse(trail, e).await);
        }
        let r = request.into_inner();
        let req = issue_token::TokenRequest {
            grant_type: opt(r.grant_type),
            assertion: opt(r.assertion),
            client_assertion_type: opt(r.client_assertion_type),
            client_assertion: opt(r.client_assertion),
            scope: opt(r.scope),
            client_id: opt(r.client_id),
        };
        let t = self.0.issue_token(req, trail).await?;
        Ok(tonic::Response::new(pb::TokenResponse {
            access_token: t.access_token,
            token_type: t.token_type,
            expires_in: t.expires_in,
            scope: t.scope,
            issued_token_type: t.issued_token_type,
        }))
    }
}

/// A started service.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub server: RunningServer,
    pub authz: Arc<Authz>,
}

/// Starts the service with the durable audit log of its configuration (`[audit]`: PostgreSQL,
/// or the SQLite file of the embedded default). Tests and embedders may use [`start_with`].
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, StartError> {
    let audit = AuditLog::connect(&config.audit)
        .await
        .map_err(|e| StartError::Audit(e.to_string()))?;
    start_with(config, Deps { audit }, shutdown).await
}

/// Starts gRPC, the OAuth2 HTTP listener and the Stelseltoken refresher; returns once both
/// listen (after one Stelseltoken fetch attempt). Refuses a configuration that does not
/// validate (production mode's rules included), naming the key.
pub async fn start_with(
    config: Config,
    deps: Deps,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    config.validate().map_err(|e| StartError::Config(e.to_string()))?;
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
    let metrics = Metrics::new();
    authz.metrics.register(&metrics);
    let metrics_addr = platform::metrics::start(&config.metrics, metrics.clone(), shutdown.clone()).await?;

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

    let router = http::router(authz.clone()).layer(
        tower::ServiceBuilder::new()
            .layer(
                tower_http::trace::TraceLayer::new_for_http()
                    .make_span_with(|req: &axum::http::Request<axum::body::Body>| {
                        platform::telemetry::http_server_span(req)
                    })
                    .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG)),
            )
            .layer(tower::limit::ConcurrencyLimitLayer::new(
                config.server.concurrency_limit,
            )),
    );
    match &config.http.tls {
        Some(tls) => {
            http::serve_tls(listener, router, tls, shutdown.clone())
                .await
                .map_err(StartError::Config)?;
        }
        None => {
            // Small JSON answers: without TCP_NODELAY, Nagle + delayed ACK stall them ~40 ms.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "TCP_NODELAY");
                }
            });
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let serve = axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move { stop.cancelled().await });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "OAuth2 HTTP listener stopped");
                }
            });
        }
    }

    let server = GrpcServer::new(config.server.clone(), metrics)
        .add_service(TwiinAuthzServer::new(Grpc(authz.clone())))
        .descriptor_set(ehealth_proto::FILE_DESCRIPTOR_SET)
        .start(shutdown)
        .await?;
    tracing::info!(grpc = %server.local_addr, http = %http_addr, metrics = ?metrics_addr, "twiin-authz listening");
    Ok(Running {
        grpc_addr: server.local_addr,
        http_addr,
        metrics_addr,
        server,
        authz,
    })
}

/// Runs until `shutdown` is cancelled and the calls in flight have drained.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let running = start(config, shutdown).await?;
    running.server.wait().await?;
    Ok(())
}
