//! A bad value from the environment stops start-up, naming the key, with exit code 2.

use std::process::Command;

#[test]
fn bad_environment_value_stops_start_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_twiin-authz"))
        .env("TWIIN_AUTHZ_SERVER__REQUEST_TIMEOUT", "a while")
        .output()
        .expect("runs the binary");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.request_timeout"),
        "the message names the key: {err}"
    );
}

#[test]
fn missing_config_file_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_twiin-authz"))
        .args(["--config", "/nonexistent/twiin-authz.toml"])
        .output()
        .expect("runs the binary");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/twiin-authz.toml"));
}
