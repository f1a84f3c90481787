//! gRPC server bootstrap shared by the services and simulators (SPEC.md preamble): health
//! checking with real serving status, reflection (v1 and v1alpha, so grpcurl 1.8 works), tower
//! limits (timeout, global concurrency limit with load shedding), request ids, trace spans,
//! metrics, and graceful shutdown that first reports NOT_SERVING, then drains in-flight calls.
//!
//! **Decision — readiness follows the dependencies, liveness does not.** The overall status
//! (`""`) and each service's report NOT_SERVING while a dependency registered with
//! [`GrpcServer::serving_while`] is down (the audit store's breaker, issue 19), so load balancers
//! and readiness probes stop sending calls that would fail, and SERVING again once it is back.
//! [`LIVENESS`] stays SERVING while the process serves: a liveness probe on it does not restart
//! a healthy process because a database is down.

use std::convert::Infallible;
use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::config::{ServerSettings, ServerTlsSettings};

use crate::metrics::Metrics;

/// The health service name that reports whether the process serves at all (SERVING until it
/// shuts down), whatever its dependencies: what a liveness probe asks.
pub const LIVENESS: &str = "liveness";

/// Served by every server beside its own services.
const SHARED_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Why a gRPC server did not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address (main or health-only) cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The `server.tls` files cannot be read or used.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A descriptor set given for reflection is not valid.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The transport failed while serving.
    #[error("server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The serving task panicked or was cancelled.
    #[error("server task: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A gRPC server being assembled: the services it serves and the descriptors reflection shows.
pub struct GrpcServer {
    settings: ServerSettings,
    metrics: Metrics,
    routes: RoutesBuilder,
    service_names: Vec<&'static str>,
    descriptor_sets: Vec<&'static [u8]>,
    dependencies: Vec<tokio::sync::watch::Receiver<bool>>,
}

/// A started server.
pub struct RunningServer {
    /// The bound gRPC address.
    pub local_addr: SocketAddr,
    /// The bound address of the plaintext health-only listener (`server.health_listen`).
    pub health_addr: Option<SocketAddr>,
    /// Sets the serving status `grpc.health.v1.Health` reports.
    pub health: HealthReporter,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningServer {
    /// Waits until the server has shut down and drained.
    pub async fn wait(self) -> Result<(), ServerError> {
        self.task.await??;
        Ok(())
    }
}

impl GrpcServer {
    /// A server for `settings` whose calls are counted in `metrics`.
    pub fn new(settings: ServerSettings, metrics: Metrics) -> Self {
        GrpcServer {
            settings,
            metrics,
            routes: RoutesBuilder::default(),
            service_names: Vec::new(),
            descriptor_sets: Vec::new(),
            dependencies: Vec::new(),
        }
    }

    /// Reports NOT_SERVING (overall and for every service) while `available` is `false`, e.g.
    /// `audit_log::AuditLog::availability()`; SERVING again when every such dependency is back.
    pub fn serving_while(mut self, available: tokio::sync::watch::Receiver<bool>) -> Self {
        self.dependencies.push(available);
        self
    }

    /// The metrics the server records its calls in (and serves at `/metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Adds a generated tonic service; health reports it by its full name.
    pub fn add_service<S>(mut self, svc: S) -> Self
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.routes.add_service(svc);
        self
    }

    /// Adds an encoded `FileDescriptorSet` for reflection.
    pub fn descriptor_set(mut self, fds: &'static [u8]) -> Self {
        self.descriptor_sets.push(fds);
        self
    }

    /// Binds the listener and starts serving until `shutdown` is cancelled.
    pub async fn start(self, shutdown: CancellationToken) -> Result<RunningServer, ServerError> {
        let GrpcServer {
            settings,
            metrics,
            mut routes,
            service_names,
            descriptor_sets,
            dependencies,
        } = self;

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status(LIVENESS, ServingStatus::Serving).await;
        // Held while a status is set: a dependency coming back never overwrites the
        // NOT_SERVING of a shutdown. `true` once shutting down.
        let stopping = std::sync::Arc::new(tokio::sync::Mutex::new(false));
        let ready = dependencies.iter().all(|d| *d.borrow());
        set_status(&health, &service_names, ready).await;
        if !dependencies.is_empty() {
            tokio::spawn(follow_dependencies(
                dependencies,
                health.clone(),
                service_names.clone(),
                stopping.clone(),
                shutdown.clone(),
            ));
        }
        let health_only = settings.health_listen.map(|addr| (addr, health_service.clone()));
        routes.add_service(health_service);

        // google.rpc's error details too: every error status carries them (crate::error), and a
        // reflection client such as grpcurl can then print them instead of raw bytes.
        let mut reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
        let mut reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
        for fds in &descriptor_sets {
            reflection_v1 = reflection_v1.register_encoded_file_descriptor_set(fds);
            reflection_v1alpha = reflection_v1alpha.register_encoded_file_descriptor_set(fds);
        }
        // The descriptor sets describe every package of the suite; list only what this server
        // actually serves.
        for name in service_names.iter().copied().chain(SHARED_SERVICES) {
            reflection_v1 = reflection_v1.with_service_name(name);
            reflection_v1alpha = reflection_v1alpha.with_service_name(name);
        }
        routes.add_service(
            reflection_v1
                .build_v1()
                .map_err(|e| ServerError::Reflection(e.to_string()))?,
        );
        routes.add_service(
            reflection_v1alpha
                .build_v1alpha()
                .map_err(|e| ServerError::Reflection(e.to_string()))?,
        );

        // The methods the call metrics may name: this server's services, health and reflection.
        let mut known = crate::metrics::KnownMethods::from_descriptor_sets(
            descriptor_sets.iter().copied(),
            &service_names,
        );
        for path in [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            known.insert(path);
        }

        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: settings.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: settings.listen,
            source,
        })?;

        // The probe port: plaintext, health only, bound before anything is served so a bad
        // address fails start-up like the main one.
        let health_listener = match health_only {
            Some((addr, svc)) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Bind { addr, source })?;
                let bound = l
                    .local_addr()
                    .map_err(|source| ServerError::Bind { addr, source })?;
                Some((l, bound, svc))
            }
            None => None,
        };
        let health_addr = health_listener.as_ref().map(|(_, a, _)| *a);

        let layers = tower::ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(
                tower_http::trace::TraceLayer::new_for_grpc()
                    .make_span_with(|req: &http::Request<tonic::body::Body>| {
                        crate::telemetry::grpc_server_span(req)
                    })
                    .on_failure(crate::telemetry::log_grpc_failure),
            )
            .layer(metrics.grpc_layer(known))
            .load_shed()
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                settings.concurrency_limit,
            ))
            .into_inner();

        let mut builder = Server::builder()
            .timeout(settings.request_timeout)
            .tcp_nodelay(true)
            // Large messages (DMP documents of several MiB) would otherwise crawl through the
            // default 64 KiB HTTP/2 windows; BDP-based windows grow as the link allows.
            .http2_adaptive_window(Some(true));
        if let Some(tls) = &settings.tls
            && let Ok(chain) = crate::tls::load_certs(&tls.cert)
            && let Some(leaf) = chain.first()
        {
            // Unreadable files fail in tonic_tls below, with their name.
            metrics.record_certificate_expiry("grpc-server", leaf);
        }
        if let Some(tls) = &settings.tls {
            builder = builder
                .tls_config(tonic_tls(tls)?)
                .map_err(|e| ServerError::Tls(e.to_string()))?;
        }
        let router = builder.layer(layers).add_routes(routes.routes());

        let drain_grace = settings.drain_grace;
        let drain_timeout = settings.drain_timeout;
        let reporter = health.clone();
        let deadline_token = shutdown.clone();
        let signal = async move {
            shutdown.cancelled().await;
            // Tell load balancers first, keep serving during the grace period, then stop
            // accepting and let tonic drain the calls in flight.
            {
                let mut stopping = stopping.lock().await;
                *stopping = true;
                set_status(&reporter, &service_names, false).await;
                reporter
                    .set_service_status(LIVENESS, ServingStatus::NotServing)
                    .await;
            }
            tracing::info!(grace = ?drain_grace, "shutting down: health NOT_SERVING, draining");
            tokio::time::sleep(drain_grace).await;
        };
        // The health-only listener answers (NOT_SERVING) through the grace period, then closes
        // with the main one.
        let health_task = health_listener.map(|(l, _, svc)| {
            let token = deadline_token.clone();
            AbortOnDrop(tokio::spawn(async move {
                Server::builder()
                    .timeout(std::time::Duration::from_secs(5))
                    .add_service(svc)
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(l),
                        async move {
                            token.cancelled().await;
                            tokio::time::sleep(drain_grace).await;
                        },
                    )
                    .await
            }))
        });
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let main = router.serve_with_incoming_shutdown(incoming, signal);
        let serve = async move {
            let result = main.await;
            if let Some(mut task) = health_task {
                match (&mut task.0).await {
                    Ok(Err(e)) => tracing::warn!("health listener: {e}"),
                    Err(e) => tracing::warn!("health listener task: {e}"),
                    Ok(Ok(())) => {}
                }
            }
            result
        };
        // Long-lived streams (a health Watch, a stuck client) must not hold shutdown forever.
        let task = tokio::spawn(async move {
            tokio::select! {
                result = serve => result,
                () = async {
                    deadline_token.cancelled().await;
                    tokio::time::sleep(drain_grace + drain_timeout).await;
                } => {
                    tracing::warn!(timeout = ?drain_timeout, "drain timeout: closing the remaining connections");
                    Ok(())
                }
            }
        });
        Ok(RunningServer {
            local_addr,
            health_addr,
            health,
            task,
        })
    }
}

/// The overall status and every service's.
async fn set_status(reporter: &HealthReporter, service_names: &[&'static str], serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    for name in service_names {
        reporter.set_service_status(*name, status).await;
    }
}

/// Keeps the health status in step with `dependencies` until shutdown.
async fn follow_dependencies(
    mut dependencies: Vec<tokio::sync::watch::Receiver<bool>>,
    reporter: HealthReporter,
    service_names: Vec<&'static str>,
    stopping: std::sync::Arc<tokio::sync::Mutex<bool>>,
    shutdown: CancellationToken,
) {
    loop {
        let gone = {
            let changed =
                futures_util::future::select_all(dependencies.iter_mut().map(|d| Box::pin(d.changed())));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                (result, _, _) = changed => result.is_err(),
            }
        };
        if gone {
            // A dependency gone for good (its sender dropped) no longer counts.
            dependencies.retain(|d| d.has_changed().is_ok());
            if dependencies.is_empty() {
                return;
            }
        }
        let ready = dependencies.iter_mut().all(|d| *d.borrow_and_update());
        let stopping = stopping.lock().await;
        if *stopping {
            return;
        }
        if ready {
            tracing::info!("dependencies available again: health SERVING");
        } else {
            tracing::warn!("a dependency is down: health NOT_SERVING until it is back");
        }
        set_status(&reporter, &service_names, ready).await;
    }
}

/// Aborts the task when dropped: the health listener must not outlive a server whose drain
/// timed out (a health `Watch` stream would otherwise keep it open).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn tonic_tls(tls: &ServerTlsSettings) -> Result<ServerTlsConfig, ServerError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| ServerError::Tls(format!("cannot read {}: {e}", p.display())))
    };
    let mut cfg = ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
    if let Some(ca) = &tls.client_ca {
        cfg = cfg.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(cfg)
}

/// Resolves when the process receives SIGTERM or Ctrl-C, then cancels `token`.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received"),
        _ = term => tracing::info!("SIGTERM received"),
        _ = token.cancelled() => {}
    }
    token.cancel();
}
