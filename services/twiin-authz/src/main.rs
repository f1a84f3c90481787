//! The `twiin-authz` binary: configuration, telemetry and signals (the platform's `main`), then
//! [`twiin_authz::run`].

fn main() -> std::process::ExitCode {
    platform::app::main::<twiin_authz::Config, _, _, _>("twiin-authz", twiin_authz::run)
}
