fn main() -> std::process::ExitCode {
    service_kit::app::main::<twiin_authz::Config, _, _, _>("twiin-authz", twiin_authz::run)
}
