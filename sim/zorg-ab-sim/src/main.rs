//! `zorg-ab-sim --config FILE [--listen ADDR]`: the ZORG-AB registry simulator (see the library).

fn main() -> std::process::ExitCode {
    sim_kit::serve::main(
        "zorg-ab-sim",
        "127.0.0.1:8091",
        |data, listen, tls, shutdown| async move {
            let tls = tls.ok_or(
                "ZORG-AB is served over mutual TLS: --tls-cert, --tls-key and --client-ca are required",
            )?;
            zorg_ab_sim::start(data, listen, tls, shutdown).await
        },
    )
}
