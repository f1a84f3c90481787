//! `dev-pki [DIR]`: makes the development PKI in DIR (default `.dev-pki`) unless it exists, and
//! prints where the files are.

fn main() -> std::process::ExitCode {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".dev-pki".into());
    match dev_support::devpki::DevPki::ensure(std::path::Path::new(&dir)) {
        Ok(pki) => {
            println!("development PKI ready in {}", pki.dir().display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dev-pki: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
