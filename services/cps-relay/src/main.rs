//! `cps-relay [--config PATH] [--check-config]`: the relay process (see the library).

fn main() -> std::process::ExitCode {
    service_kit::app::main::<cps_relay::Config, _, _, _>("cps-relay", cps_relay::run)
}
