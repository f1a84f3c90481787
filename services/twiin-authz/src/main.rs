//! The `twiin-authz` binary: configuration, telemetry and signals (the service kit's `main`), then
//! [`twiin_authz::run`].

fn main() -> std::process::ExitCode {
    service_kit::app::main::<twiin_authz::Config, _, _, _>("twiin-authz", twiin_authz::run)
}
