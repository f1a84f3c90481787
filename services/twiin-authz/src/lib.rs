//! twiin-authz: the authorization server of a Twiin access node (GtK), SPEC.md §3. It issues
//! TWIIN assertions from an AORTA access token (use case 3.1, gRPC, internal callers) and
//! answers OAuth2 JWT-bearer token requests from other access nodes (use case 3.2, gRPC and
//! plain HTTP `POST /oauth2/token`), with the audit log of SPEC.md §4.
//!
//! Domain modules are transport-free: [`jws`], [`assertion`], [`source_token`],
//! [`client_auth`], [`grant`], [`scope_table`], [`zorg_ab`], [`as_za`], [`aorta_id`]; the use
//! cases are [`issue_assertions`] and [`issue_token`]; [`http`] and the gRPC impl below only
//! translate.

pub mod aorta_id;
pub mod as_za;
pub mod assertion;
pub mod client_auth;
pub mod config;
pub mod error;
pub mod grant;
pub mod http;
pub mod issue_assertions;
pub mod issue_token;
pub mod jws;
pub mod scope_table;
pub mod source_token;
pub mod trail;
pub mod zorg_ab;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use audit_log::AuditLog;
use ehealth_proto::twiin::v1 as pb;
use ehealth_proto::twiin::v1::twiin_authz_server::{TwiinAuthz, TwiinAuthzServer};
use serde_json::json;
use service_kit::metrics::Metrics;
use service_kit::server::GrpcServer;
use service_kit::{CancellationToken, StartError};

pub use config::Config;
pub use error::AuthzError;

use crate::aorta_id::AortaId;
use crate::assertion::SigningKeys;
use crate::config::{AsZaSettings, ClientAuthSettings, HttpSettings, StelselSettings};
use crate::scope_table::ScopeTable;
use crate::source_token::Stelsel;
use crate::zorg_ab::ZorgAb;

/// Who called, for the audit log.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub aorta_id: AortaId,
    pub peer: Option<String>,
    pub transport: &'static str,
}

/// What the service depends on from outside its configuration.
#[derive(Debug, Clone)]
pub struct Deps {
    pub audit: AuditLog,
}

/// The service state both transports share.
pub struct Authz {
    issuer: String,
    client_id: String,
    development: bool,
    audiences: Vec<String>,
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
    pub fn new(config: &Config, audit: AuditLog) -> Result<Self, StartError> {
        service_kit::tls::install_crypto_provider();
        let keys = SigningKeys::load(&config.assertions.signing_keys, config.assertions.max_lifetime)
            .map_err(|e| StartError::Unusable(e.to_string()))?;
        let scope_table = ScopeTable::new(config.interactions.clone())
            .map_err(|e| StartError::Unusable(format!("interactions: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| StartError::Unusable(format!("HTTP client: {e}")))?;
        let issuer = config.issuer.trim_end_matches('/').to_owned();
        Ok(Authz {
            client_id: config
                .assertions
                .client_id
                .clone()
                .unwrap_or_else(|| issuer.clone()),
            audiences: vec![issuer.clone(), format!("{issuer}{}", http::TOKEN_PATH)],
            issuer,
            development: config.development,
            limits: config.http.clone(),
            keys,
            stelsel: Arc::new(Stelsel::new(config.stelsel.max_age)),
            stelsel_settings: config.stelsel.clone(),
            client_auth: config.client_auth.clone(),
            max_assertion_lifetime: config.assertions.max_lifetime,
            notification_marker: config.assertions.notification_marker.clone(),
            notification_scope: config.assertions.notification_scope.clone(),
            scope_table,
            zorg_ab: ZorgAb::new(http.clone(), config.zorg_ab.clone(), config.development),
            as_za: config.as_za.clone(),
            http,
            audit,
            metrics: TwiinMetrics::default(),
        })
    }

    /// RFC 8414 metadata.
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
            "token_endpoint": format!("{}{}", self.issuer, http::TOKEN_PATH),
            "jwks_uri": format!("{}{}", self.issuer, http::JWKS_PATH),
            "grant_types_supported": [issue_assertions::JWT_BEARER],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": algs,
            "response_types_supported": [],
            "scopes_supported": scopes,
        })
    }

    /// Fetches the Stelseltoken once now (errors are kept for the UNAVAILABLE answers).
    pub async fn refresh_stelsel(&self) -> Result<(), source_token::StelselError> {
        let s = &self.stelsel_settings;
        self.stelsel
            .refresh(&self.http, &s.url, &s.trust_anchor, s.timeout)
            .await
    }
}

fn context<T>(req: &tonic::Request<T>) -> Result<CallContext, tonic::Status> {
    let header = match req.metadata().get(aorta_id::HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            tonic::Status::from(AuthzError::InvalidRequest(
                "Ongeldig verzoek: AORTA-ID is ongeldig".into(),
            ))
        })?),
    };
    let aorta_id = AortaId::accept(header)
        .map_err(|e| tonic::Status::from(AuthzError::InvalidRequest(format!("Ongeldig verzoek: {e}"))))?;
    Ok(CallContext {
        aorta_id,
        peer: req.remote_addr().map(|a| a.to_string()),
        transport: "grpc",
    })
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
        let ctx = context(&request)?;
        let r = request.into_inner();
        let req = issue_assertions::AssertionsRequest {
            source_token: r.source_token,
            audience: r.audience,
            authz_base: opt(r.authz_base),
        };
        let out = self.0.issue_assertions(req, ctx).await?;
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
        let ctx = context(&request)?;
        let r = request.into_inner();
        let req = issue_token::TokenRequest {
            grant_type: opt(r.grant_type),
            assertion: opt(r.assertion),
            client_assertion_type: opt(r.client_assertion_type),
            client_assertion: opt(r.client_assertion),
            scope: opt(r.scope),
            client_id: opt(r.client_id),
        };
        let t = self.0.issue_token(req, ctx).await?;
        Ok(tonic::Response::new(pb::TokenResponse {
            access_token: t.access_token,
            token_type: t.token_type,
            expires_in: t.expires_in,
            scope: t.scope,
            issued_token_type: t.issued_token_type,
        }))
    }
}

/// A started service: beside the gRPC server, the OAuth2 HTTP endpoint and the use cases.
pub type Running = service_kit::Running<Started>;

/// What twiin-authz hands its callers beside the gRPC server.
pub struct Started {
    pub http_addr: SocketAddr,
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
/// listen (after one Stelseltoken fetch attempt).
pub async fn start_with(
    config: Config,
    deps: Deps,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let authz = Arc::new(Authz::new(&config, deps.audit)?);
    let metrics = Metrics::new();
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

    let listener = tokio::net::TcpListener::bind(config.http.listen).await?;
    let http_addr = listener.local_addr()?;
    let router = http::router(authz.clone()).layer(
        tower::ServiceBuilder::new()
            .layer(
                tower_http::trace::TraceLayer::new_for_http()
                    .make_span_with(|req: &axum::http::Request<axum::body::Body>| {
                        service_kit::telemetry::http_server_span(req)
                    })
                    .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG)),
            )
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                axum::http::StatusCode::GATEWAY_TIMEOUT,
                config.http.request_timeout,
            ))
            .layer(tower::limit::ConcurrencyLimitLayer::new(
                config.server.concurrency_limit,
            )),
    );
    match &config.http.tls {
        Some(tls) => {
            http::serve_tls(listener, router, tls, shutdown.clone())
                .await
                .map_err(StartError::Unusable)?;
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

    let grpc = GrpcServer::new(config.server.clone(), metrics)
        .add_service(TwiinAuthzServer::new(Grpc(authz.clone())))
        .descriptor_set(ehealth_proto::FILE_DESCRIPTOR_SET);
    tracing::info!(http = %http_addr, "twiin-authz OAuth2 HTTP endpoint listening");
    let started = Started { http_addr, authz };
    service_kit::start("twiin-authz", grpc, &config.metrics, started, shutdown).await
}

/// Runs until `shutdown` is cancelled and the calls in flight have drained.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    start(config, shutdown).await?.wait().await
}
