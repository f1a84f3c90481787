//! `as-za-sim --config FILE [--listen ADDR]`: the Autorisatie Server ZA simulator (see the library).

fn main() -> std::process::ExitCode {
    sim_kit::serve::main(
        "as-za-sim",
        "127.0.0.1:8093",
        |data, listen, tls, shutdown| async move {
            let tls = tls.ok_or(
            "the Autorisatie Server ZA is served over mutual TLS: --tls-cert, --tls-key and --client-ca are required",
        )?;
            as_za_sim::start(data, listen, tls, shutdown).await
        },
    )
}
