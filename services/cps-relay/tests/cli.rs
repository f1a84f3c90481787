//! The relay refuses to start where it would become reachable beyond the workstation without an
//! explicit decision, naming the key, with exit code 2.

use std::process::Command;

#[test]
fn relay_beyond_loopback_needs_an_explicit_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, "[server]\nlisten = \"0.0.0.0:50051\"\n").expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_cps-relay"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("runs the binary");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.listen") && err.contains("allow_non_loopback"),
        "{err}"
    );
}

#[test]
fn bad_pin_source_uri_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_cps-relay"))
        .env("CPS_RELAY_BACKEND__KIND", "pkcs11")
        .env(
            "CPS_RELAY_BACKEND__PKCS11__URI",
            "pkcs11:token=CPS?pin-value=1234",
        )
        .output()
        .expect("runs the binary");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backend.pkcs11.uri") && err.contains("PIN"), "{err}");
}
