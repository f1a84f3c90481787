//! The API is usable outside this workspace (issue 17): `tests/python/grpc_client.py`, a Python
//! grpcio client whose stubs are generated from proto/ at test time, asks the relay's holder
//! role for a session grant, then submits a CDA document through dmp-gateway (to the DMP
//! simulator, signing the TLS handshake on a SoftHSM card through cps-relay), finds it and
//! retrieves it, and decodes the google.rpc details of a refused submission.

use std::path::Path;
use std::sync::Arc;

use dev_support::devpki::files;
use e2e_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_submits_finds_and_retrieves_a_document() {
    let (relay, _) =
        start_card_relay_as("local", DOCTOR_TOKENS[0], "127.0.0.1:0".parse().expect("addr")).await;
    let sim = Arc::new(dmp_sim::DmpSimulator::new(dmp_sim::SimConfig::default()));
    let (dmp, _stop) =
        start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), dmp_sim::router(sim.clone())).await;
    let gateway = start_dmp_gateway(gateway_transport_config(dmp, &[("local", relay.grpc_addr)])).await;

    let unique_id = "1.2.250.1.999.1.1.7898.171.1";
    let dir = tempfile::tempdir().expect("temporary folder");
    let cda_path = dir.path().join("cda.xml");
    let cda = dmp_gateway::samples::cda(unique_id, dmp_gateway::samples::TEST_INS, "810100000001", 0);
    std::fs::write(&cda_path, &cda).expect("CDA file");
    let pki = pki();
    let args = json!({
        "relay": relay.grpc_addr.to_string(),
        "gateway": gateway.grpc_addr.to_string(),
        "relay_id": "local",
        "ca": pki.path(files::SUITE_CA),
        "holder_cert": pki.path(files::HOLDER_UI_CLIENT_CERT),
        "holder_key": pki.path(files::HOLDER_UI_CLIENT_KEY),
        "integrator_cert": pki.path(files::INTEGRATOR_CLIENT_CERT),
        "integrator_key": pki.path(files::INTEGRATOR_CLIENT_KEY),
        "cda": cda_path,
        "document_unique_id": unique_id,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/grpc_client.py");
    let out = tokio::task::spawn_blocking(move || run_python(&script, &["dmp"], &args))
        .await
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client failed (grpcio in .local/venv? run scripts/install-test-deps.sh)\nstdout: {stdout}\nstderr: {stderr}"
    );
    let r: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(r["submit_status"], "REGISTRY_RESPONSE_STATUS_SUCCESS", "{r}");
    assert_eq!(r["submitted_unique_ids"][0], unique_id, "{r}");
    assert_eq!(r["found_status"], "DOCUMENT_STATUS_APPROVED", "{r}");
    assert_eq!(r["found_mime_type"], "text/xml", "{r}");
    assert_eq!(r["retrieved_unique_id"], unique_id, "{r}");
    assert_eq!(r["retrieved_same_bytes"], true, "{r}");
    assert_eq!(r["retrieved_bytes"], cda.len(), "{r}");
    // The refusal, decoded in Python: the reason, the domain and the field.
    let refused = &r["refused"];
    assert_eq!(refused["code"], "INVALID_ARGUMENT", "{r}");
    assert_eq!(refused["reason"], "INVALID_FIELD", "{r}");
    assert_eq!(refused["domain"], "dmp-gateway", "{r}");
    assert_eq!(
        refused["violations"][0]["field"], "documents[0].metadata.class_code",
        "{r}"
    );
    // The submission reached the simulated DMP: the document and its signature.
    assert_eq!(sim.document_count(), 2);
}
