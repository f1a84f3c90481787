//! The `dmp-sim` binary: the DMP simulator on its configuration (sim/README-dmp.md).

fn main() -> std::process::ExitCode {
    service_kit::app::main::<dmp_sim::settings::Settings, _, _, _>("dmp-sim", dmp_sim::settings::run)
}
