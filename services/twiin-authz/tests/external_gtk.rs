//! Interoperability with an independent JOSE implementation: `external_gtk.py` (PyJWT with
//! `cryptography`) reads our RFC 8414 metadata and follows it, verifies our ES512 TWIIN
//! assertions with the JWKS it names, and gets an AORTA access token at the token endpoint it
//! names (plain HTTP in development mode, as under `make run`) with its own private_key_jwt and
//! grant assertion.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use ehealth_proto::twiin::v1::IssueTwiinAssertionsRequest;
use serde_json::json;

#[tokio::test]
async fn pyjwt_gtk_verifies_our_assertions_and_gets_a_token() {
    let w = World::start().await;
    // Our assertions, as the resource broker would get them.
    let src = w.source_claims("create:Task:1.0:notification~~normaal");
    let out = w
        .grpc_client()
        .await
        .issue_twiin_assertions(IssueTwiinAssertionsRequest {
            source_token: w.source_token(&src),
            audience: "https://gtk-extern.test".into(),
            authz_base: String::new(),
        })
        .await
        .expect("assertions")
        .into_inner();
    let key_file = w.dir.path().join("ext-gtk.key.pem");
    std::fs::write(
        &key_file,
        pem::encode(&pem::Pem::new("PRIVATE KEY", w.ext_key.clone())),
    )
    .expect("key file");
    let args = json!({
        "metadata_url": format!("http://{}/.well-known/oauth-authorization-server", w.http),
        "client_assertion": out.client_assertion,
        "assertion": out.assertion,
        "twiin_audience": "https://gtk-extern.test",
        "expected_exp": src["exp"],
        "issuer": ISSUER,
        "key_file": key_file,
        "kid": EXT_KID,
        "client_id": EXT_CLIENT,
        "ura": URA_CARE,
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/external_gtk.py");
    let output = tokio::task::spawn_blocking(move || {
        let python = venv_python3();
        let mut child = Command::new(&python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; run scripts/install-test-deps.sh (it creates .local/venv \
                     with PyJWT)",
                    python.display()
                )
            });
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(args.to_string().as_bytes())
            .expect("write args");
        child.wait_with_output().expect("python3 runs")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.starts_with("OK "),
        "external GtK failed (is PyJWT with cryptography in .local/venv? run scripts/install-test-deps.sh)\nstdout: {stdout}\nstderr: {stderr}"
    );
}

/// The Python of the workspace's `.local/venv`, where `scripts/install-test-deps.sh` installs
/// PyJWT (the system's Python may be externally managed, PEP 668), else `python3` from `PATH`.
fn venv_python3() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map(|workspace| workspace.join(".local/venv/bin/python3"))
        .filter(|python| python.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"))
}
