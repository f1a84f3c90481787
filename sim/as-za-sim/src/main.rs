//! `as-za-sim --config FILE [--listen ADDR]`: the Autorisatie Server ZA simulator (see the library).

fn main() -> std::process::ExitCode {
    sim_kit::serve::main("as-za-sim", "127.0.0.1:8093", as_za_sim::start)
}
