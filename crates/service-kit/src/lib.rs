//! What every service and simulator of the suite runs on (SPEC.md preamble): layered
//! configuration, the process entry point, one start-up shape ([`start`], [`Running`],
//! [`StartError`]), the gRPC server with health, reflection, limits and graceful shutdown, an
//! HTTPS server for simulators, TLS helpers, telemetry, Prometheus metrics, and the error codes a
//! service's errors map to ([`error`]).
//!
//! Depends on no other crate of the suite except `service-config`; services, simulators and
//! `relay-client` depend on it. The audit log does not (it stays free of tonic).

pub mod app;
pub mod error;
pub mod https;
pub mod metrics;
pub mod server;
mod start;
pub mod telemetry;
pub mod tls;

/// Layered configuration and the sections every service shares (the `service-config` crate).
pub use service_config as config;
pub use start::{Running, StartError, start};
pub use tokio_util::sync::CancellationToken;

/// Declares a service's configuration struct: the sections every service has (`server`,
/// `metrics`, `telemetry`) followed by the service's own, with unknown keys refused and every
/// key defaulted from the struct's `Default`. Implements [`app::HasTelemetry`].
///
/// ```text
/// service_kit::service_config! {
///     /// cps-relay's configuration.
///     pub struct Config {
///         /// The card.
///         pub backend: BackendSettings,
///     }
/// }
/// ```
#[macro_export]
macro_rules! service_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, ::serde::Serialize, ::serde::Deserialize, PartialEq)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            /// The gRPC listener (`[server]`).
            pub server: $crate::config::ServerSettings,
            /// The Prometheus endpoint (`[metrics]`).
            pub metrics: $crate::config::MetricsSettings,
            /// Logs and traces (`[telemetry]`).
            pub telemetry: $crate::config::TelemetrySettings,
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl $crate::app::HasTelemetry for $name {
            fn telemetry(&self) -> &$crate::config::TelemetrySettings {
                &self.telemetry
            }
        }
    };
}
