//! The binary refuses a configuration with an unknown key, naming it, with exit code 2.

use std::process::Command;

#[test]
fn unknown_key_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:0\"\nlisten_port = 50052\n").expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_dmp-gateway"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("runs the binary");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_port"), "the message names the key: {err}");
}

/// Points the PKI-dependent keys at a freshly generated development PKI.
fn with_pki(cmd: &mut Command, dir: &std::path::Path) {
    use dev_support::devpki::files;
    let pki = dev_support::devpki::DevPki::ensure(dir).expect("pki");
    cmd.env("DMP_GATEWAY_DMP__CA_BUNDLE", pki.path(files::IGC_CA_BUNDLE))
        .env("DMP_GATEWAY_RELAY_CLIENT__CA", pki.path(files::SUITE_CA))
        .env(
            "DMP_GATEWAY_RELAY_CLIENT__CERT",
            pki.path(files::GATEWAY_CLIENT_CERT),
        )
        .env(
            "DMP_GATEWAY_RELAY_CLIENT__KEY",
            pki.path(files::GATEWAY_CLIENT_KEY),
        )
        .env(
            "DMP_GATEWAY_SERVER__TLS__CERT",
            pki.path(files::SERVICE_SERVER_CERT),
        )
        .env(
            "DMP_GATEWAY_SERVER__TLS__KEY",
            pki.path(files::SERVICE_SERVER_KEY),
        )
        .env("DMP_GATEWAY_SERVER__TLS__CLIENT_CA", pki.path(files::SUITE_CA))
        .env(
            "DMP_GATEWAY_RELAYS__LOCAL__GRANT_KEY",
            pki.path(files::RELAY_GRANT_PUBLIC_KEY),
        )
        // The installation's own identifiers (made up): production refuses the examples'.
        .env("DMP_GATEWAY_LPS__ID", "12.34.56.78")
        .env("DMP_GATEWAY_LPS__HOMOLOGATION_ID", "DMP-HOMOLOG-4242")
        .env("DMP_GATEWAY_XDS__SOURCE_ID", "1.2.250.1.4242.1")
        .env("DMP_GATEWAY_XDS__HL7_SENDER_OID", "1.2.250.1.4242.2");
}

#[test]
fn production_start_up_refuses_the_examples_identifiers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dmp-gateway"));
    with_pki(&mut cmd, dir.path());
    let out = cmd
        .arg("--check-config")
        .env("DMP_GATEWAY_XDS__SOURCE_ID", "1.2.250.1.999.1.1.7898")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("xds.source_id") && err.contains("official DMP examples"),
        "{err}"
    );
    // The same in development mode starts.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dmp-gateway"));
    with_pki(&mut cmd, dir.path());
    let out = cmd
        .arg("--check-config")
        .env("DMP_GATEWAY_XDS__SOURCE_ID", "1.2.250.1.999.1.1.7898")
        .env("DMP_GATEWAY_DEVELOPMENT", "true")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dmp-gateway"));
    with_pki(&mut cmd, dir.path());
    let out = cmd
        .arg("--check-config")
        .env("DMP_GATEWAY_SERVER__LISTEN", "127.0.0.1:6000")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("127.0.0.1:6000"),
        "environment override applied: {text}"
    );
}

#[test]
fn relay_must_be_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dmp-gateway"));
    with_pki(&mut cmd, dir.path());
    let out = cmd
        .env("DMP_GATEWAY_RELAYS__LOCAL__ENDPOINT", "http://127.0.0.1:50051")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("relays.local.endpoint") && err.contains("mutual TLS"),
        "{err}"
    );
}

/// The audit database URL carries the database password: `--check-config` shows the URL
/// without it (the password may also sit in a `password=` parameter).
#[test]
fn check_config_never_prints_the_database_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (url, shown) in [
        (
            "postgres://audit:Top-Secret-81@127.0.0.1:5432/audit",
            "postgres://audit:***@127.0.0.1:5432/audit",
        ),
        (
            "postgres://127.0.0.1/audit?user=audit&password=Top-Secret-81",
            "postgres://127.0.0.1/audit?user=audit&password=***",
        ),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dmp-gateway"));
        with_pki(&mut cmd, dir.path());
        let out = cmd
            .arg("--check-config")
            .env("DMP_GATEWAY_AUDIT__DATABASE_URL", url)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{out:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(shown), "the URL is shown, redacted: {text}");
        assert!(!text.contains("Top-Secret-81"), "password printed: {text}");
    }
}
