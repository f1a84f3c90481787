fn main() -> std::process::ExitCode {
    platform::app::main::<twiin_authz::Config, _, _, _>("twiin-authz", twiin_authz::run)
}
