fn main() -> std::process::ExitCode {
    platform::app::main::<cps_relay::Config, _, _, _>("cps-relay", cps_relay::run)
}
