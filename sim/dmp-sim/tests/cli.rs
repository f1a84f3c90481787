//! The `dmp-sim` binary validates its configuration, naming the bad key.

use std::path::Path;
use std::process::Command;

use dev_support::devpki::{DevPki, files};

fn command() -> Command {
    let pki = DevPki::ensure(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dmp-sim-cli-pki")).expect("pki");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dmp-sim"));
    cmd.env("DMP_SIM_CERT", pki.path(files::DMP_SERVER_CHAIN))
        .env("DMP_SIM_KEY", pki.path(files::DMP_SERVER_KEY))
        .env("DMP_SIM_CLIENT_CA", pki.path(files::IGC_CA_BUNDLE));
    cmd
}

#[test]
fn check_config_accepts_the_defaults() {
    let out = command().arg("--check-config").output().expect("runs");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("207058575627097"));
}

#[test]
fn a_bad_patient_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sim.toml");
    std::fs::write(&file, "[[patients]]\nins = \"207058575627098\"\n").expect("write");
    let out = command()
        .arg("--config")
        .arg(&file)
        .arg("--check-config")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("patients[0].ins") && err.contains("does not match"),
        "{err}"
    );
}
