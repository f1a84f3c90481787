//! The grpcurl recipes of `services/dmp-gateway/README.md` ("Try it locally") run as written,
//! with the real grpcurl, against the gateway, a SoftHSM card relay named `local` and the DMP
//! simulator: only the relay's and the gateway's addresses, the grpcurl binary and the dev PKI's
//! directory (`.dev-pki/` for `make run`) are substituted. The recipes call the gateway as the
//! integrator over mutual TLS, under a session grant the holder's UI asks the relay for.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use dev_support::devpki::files;
use e2e_tests::*;

/// The shell block of the README's "Try it locally" section.
fn recipes() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("services/dmp-gateway/README.md")).expect("README");
    let section = &readme[readme.find("## Try it locally").expect("section")..];
    let start = section.find("```sh\n").expect("sh block") + "```sh\n".len();
    let end = start + section[start..].find("\n```").expect("block end");
    section[start..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_recipe_runs_against_the_suite() {
    // The recipes name relay `local`, as `make run` does; its grants' `iss` must say so too.
    let (relay, _) =
        start_card_relay_as("local", DOCTOR_TOKENS[0], "127.0.0.1:0".parse().expect("addr")).await;
    let sim = Arc::new(dmp_sim::DmpSimulator::new(dmp_sim::SimConfig::default()));
    let (dmp, _stop) =
        start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), dmp_sim::router(sim.clone())).await;
    let gateway = start_dmp_gateway(gateway_transport_config(dmp, &[("local", relay.grpc_addr)])).await;
    let grpcurl = grpcurl_bin().display().to_string();
    let pki_dir = format!(
        "{}/",
        pki().path(files::SUITE_CA).parent().expect("PKI dir").display()
    );
    let script = recipes()
        .replace("127.0.0.1:50051", &relay.grpc_addr.to_string())
        .replace("127.0.0.1:50052", &gateway.grpc_addr.to_string())
        .replace(".dev-pki/", &pki_dir)
        .replace("grpcurl $", &format!("{grpcurl} $"));
    assert!(script.contains(&format!(
        "{grpcurl} $GATEWAY_TLS -H \"dmp-session-grant: $GRANT\""
    )));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(root)
            .output()
            .expect("bash runs")
    })
    .await
    .expect("recipes");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "a recipe failed:\n{stderr}\n---\n{stdout}"
    );
    for expected in [
        r#""dmpExists": true"#,
        r#""authorization": "AUTHORIZATION_VALIDE""#,
        r#""status": "DMPOk""#,
        r#""professionalId": "810100000001""#,
        r#""familyName": "patb-quatre""#,
        r#""status": "REGISTRY_RESPONSE_STATUS_SUCCESS""#,
        r#""documentUniqueIds": ["#,
        r#""uniqueId": "1.2.250.1.999.1.1.7898.100.1""#,
        r#""mimeType": "text/xml""#,
        r#""VISIBILITY_MASKED_TO_PROFESSIONALS""#,
        r#""newStatus": "DOCUMENT_STATUS_ARCHIVED""#,
    ] {
        assert!(stdout.contains(expected), "{expected} missing from:\n{stdout}");
    }
    // Two documents of the submission (the CDA and its signature), archived once.
    assert_eq!(sim.document_count(), 2);
}
