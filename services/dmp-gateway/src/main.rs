//! The `dmp-gateway` binary: configuration, then [`dmp_gateway::run`].

fn main() -> std::process::ExitCode {
    service_kit::app::main::<dmp_gateway::Config, _, _, _>("dmp-gateway", dmp_gateway::run)
}
