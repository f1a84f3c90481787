fn main() -> std::process::ExitCode {
    platform::app::main::<dmp_sim::settings::Settings, _, _, _>("dmp-sim", dmp_sim::settings::run)
}
