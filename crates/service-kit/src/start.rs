//! The start-up every service shares: once a service has built its gRPC services, [`start`]
//! binds the metrics endpoint and the gRPC listener and hands back a [`Running`] service; a
//! service's `run(config)` is its own `start` followed by [`Running::wait`].

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, MetricsSettings};
use crate::server::{GrpcServer, RunningServer, ServerError};

/// Why a service did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The gRPC listener could not be bound or configured, or it failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A file or a listener other than the gRPC one.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A configuration value that loading could not check (or that a test set by hand).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The audit log cannot be opened: a service that cannot log does not serve.
    #[error("audit log: {0}")]
    Audit(String),
    /// Something else the service needs cannot be used (card backend, key, certificate, table,
    /// HTTP client); the message names it.
    #[error("{0}")]
    Unusable(String),
}

/// A started service: where it listens, its server handle, and what the service hands its
/// callers beside them (`S`: its metrics, its transport, its use cases).
pub struct Running<S> {
    /// The bound gRPC address (the configured one, with port 0 resolved).
    pub grpc_addr: SocketAddr,
    /// The bound metrics address, when `metrics.listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The gRPC server: health reporter, and the drain to wait for.
    pub server: RunningServer,
    /// What this service exposes beside the server.
    pub service: S,
}

impl<S> Running<S> {
    /// Waits until the service has shut down (its `shutdown` token was cancelled) and drained.
    pub async fn wait(self) -> Result<(), StartError> {
        self.server.wait().await?;
        Ok(())
    }
}

/// Starts the metrics endpoint (when configured) and `grpc`, logs where `name` listens, and
/// returns once both listen. Everything stops when `shutdown` is cancelled.
pub async fn start<S>(
    name: &str,
    grpc: GrpcServer,
    metrics: &MetricsSettings,
    service: S,
    shutdown: CancellationToken,
) -> Result<Running<S>, StartError> {
    grpc.metrics().register_build_info(name);
    let metrics_addr = crate::metrics::start(metrics, grpc.metrics().clone(), shutdown.clone()).await?;
    let server = grpc.start(shutdown).await?;
    tracing::info!(grpc = %server.local_addr, metrics = ?metrics_addr, "{name} listening");
    Ok(Running {
        grpc_addr: server.local_addr,
        metrics_addr,
        server,
        service,
    })
}
