//! The gRPC API is usable outside this workspace (issue 17): `tests/python/grpc_client.py`, a
//! Python grpcio client with stubs generated from proto/ at test time, asks twiin-authz for
//! TWIIN assertions (use case 3.1) and for an AORTA access token (3.2) over gRPC, against the
//! simulated ZORG-AB, Stelsel and Autorisatie Server ZA, and decodes the google.rpc details of a
//! refused token request.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_python_grpcio_client_gets_assertions_and_a_token() {
    let w = World::start().await;
    let src = w.source_claims("create:Task:1.0:notification~~normaal");
    let form: serde_json::Map<String, serde_json::Value> = w
        .form("system/Task.c")
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let args = json!({
        "twiin": w.grpc.to_string(),
        "source_token": w.source_token(&src),
        "audience": EXT_AS,
        "token_request": form,
    });
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("tests/python/grpc_client.py");
    let python = root.join(".local/venv/bin/python3");
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("twiin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; run scripts/install-test-deps.sh (it creates .local/venv \
                     with grpcio)",
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
        output.status.success(),
        "the Python client failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    let r: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(r["assertion_parts"], 3, "{r}");
    assert_eq!(
        r["client_assertion_type"], "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "{r}"
    );
    assert_eq!(r["expires_at"], src["exp"], "{r}");
    assert_eq!(r["token_type"], "Bearer", "{r}");
    assert_eq!(r["access_token_parts"], 3, "{r}");
    assert_eq!(r["scope"], "create:Task:1.0:notification~~normaal", "{r}");
    assert!(r["expires_in"].as_i64().is_some_and(|s| s > 0), "{r}");
    let refused = &r["refused"];
    assert_eq!(refused["code"], "INVALID_ARGUMENT", "{r}");
    assert_eq!(refused["reason"], "INVALID_REQUEST_FIELD", "{r}");
    assert_eq!(refused["domain"], "twiin-authz", "{r}");
    assert_eq!(refused["metadata"]["oauthError"], "invalid_request", "{r}");
    assert_eq!(refused["violations"][0]["field"], "grant_type", "{r}");
}
