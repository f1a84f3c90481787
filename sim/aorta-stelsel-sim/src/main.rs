//! `aorta-stelsel-sim --config FILE [--listen ADDR]`: the AORTA Stelsel metadata simulator (see the library).

fn main() -> std::process::ExitCode {
    sim_kit::serve::main("aorta-stelsel-sim", "127.0.0.1:8092", aorta_stelsel_sim::start)
}
