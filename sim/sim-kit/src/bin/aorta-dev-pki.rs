//! `aorta-dev-pki DIR`: writes the AORTA development PKI (Stelsel CA, Stelsel signer, AORTA
//! token-signing key, the simulators' TLS CA with their server certificate and the GtK's and the
//! Resource Broker's client certificates) into DIR unless a complete set is there.

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: aorta-dev-pki DIR");
        return std::process::ExitCode::from(2);
    };
    match sim_kit::pki::AortaPki::ensure(std::path::Path::new(&dir)) {
        Ok(d) => {
            println!("AORTA development PKI in {}", d.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aorta-dev-pki: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
