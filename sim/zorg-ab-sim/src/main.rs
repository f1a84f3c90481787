//! `zorg-ab-sim --config FILE [--listen ADDR]`: the ZORG-AB registry simulator (see the library).

fn main() -> std::process::ExitCode {
    sim_kit::serve::main("zorg-ab-sim", "127.0.0.1:8091", zorg_ab_sim::start)
}
