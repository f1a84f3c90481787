//! What the three services and the simulators share: configuration, telemetry, metrics, gRPC
//! server bootstrap, TLS helpers and the development PKI.

pub mod app;
pub mod audit;
pub mod config;
pub mod devpki;
pub mod https;
pub mod metrics;
pub mod server;
pub mod softhsm;
pub mod telemetry;
pub mod tls;

pub use tokio_util::sync::CancellationToken;
