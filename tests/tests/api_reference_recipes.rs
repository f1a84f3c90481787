//! Every grpcurl recipe of docs/api.md (one per RPC, generated from the protos) runs as written
//! with the real grpcurl against the three services: grpcurl accepts its flags and JSON body and
//! the service answers (success, or a refusal of the placeholder values with a gRPC status),
//! never a flag, TLS, connection or request-parsing failure. Only the addresses, the dev PKI's
//! folder and the session grant are substituted.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use dev_support::devpki::files;
use e2e_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_reference_recipe_reaches_its_rpc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let api = std::fs::read_to_string(root.join("docs/api.md")).expect("docs/api.md");
    let (relay, _) =
        start_card_relay_as("local", DOCTOR_TOKENS[2], "127.0.0.1:0".parse().expect("addr")).await;
    let sim = Arc::new(dmp_sim::DmpSimulator::new(dmp_sim::SimConfig::default()));
    let (dmp, _stop) = start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), dmp_sim::router(sim)).await;
    let gateway = start_dmp_gateway(gateway_transport_config(dmp, &[("local", relay.grpc_addr)])).await;
    let twiin = start_twiin_authz(twiin_authz_config()).await;
    let (grant, grant_id) = issue_grant(relay.grpc_addr).await;

    let pki_dir = format!(
        "{}/",
        pki().path(files::SUITE_CA).parent().expect("PKI dir").display()
    );
    let grpcurl = grpcurl_bin().display().to_string();
    let substitute = |text: &str| {
        text.replace("127.0.0.1:50051", &relay.grpc_addr.to_string())
            .replace("127.0.0.1:50052", &gateway.grpc_addr.to_string())
            .replace("127.0.0.1:50053", &twiin.grpc_addr.to_string())
            .replace(".dev-pki/", &pki_dir)
    };
    // The TLS variables of the reference's first block; the grant comes from the harness.
    let mut prelude: String = api
        .lines()
        .filter(|l| l.contains("_TLS=\"-cacert"))
        .map(|l| format!("{}\n", substitute(l)))
        .collect();
    assert_eq!(prelude.lines().count(), 3, "{prelude}");
    prelude.push_str(&format!("GRANT='{grant}'\nGRANT_ID='{grant_id}'\n"));

    let mut methods = BTreeSet::new();
    for block in api.split("```sh\n").skip(2) {
        let recipe = &block[..block.find("\n```").expect("block end")];
        assert!(recipe.starts_with("grpcurl "), "{recipe}");
        let method = recipe.rsplit(' ').next().expect("method").to_owned();
        // Streams (WatchSession) run until stopped: a bound makes every recipe end.
        let command = substitute(recipe).replacen("grpcurl ", &format!("{grpcurl} -max-time 10 "), 1);
        let script = format!("{prelude}{command}\n");
        let out = tokio::task::spawn_blocking(move || {
            Command::new("bash")
                .arg("-c")
                .arg(&script)
                .output()
                .expect("bash runs")
        })
        .await
        .expect("recipe");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Success prints the response; a refusal prints the status (and its google.rpc details).
        let answered = (out.status.success() && stdout.trim_start().starts_with('{'))
            || stderr.starts_with("ERROR:\n  Code: ")
            || (method.ends_with("/WatchSession") && stdout.contains("\"reason\""));
        assert!(
            answered,
            "{method}: the recipe did not reach the RPC\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert!(!stderr.contains("Code: Unimplemented"), "{method}: {stderr}");
        // The google.rpc details of a refusal, readable through the services' reflection.
        if stderr.contains("Details:") {
            assert!(stderr.contains("\"reason\":\""), "{method}: {stderr}");
            assert!(!stderr.contains("is not recognized"), "{method}: {stderr}");
        }
        methods.insert(method);
    }
    // One recipe per RPC: 10 of cps.v1, 11 of dmp.v1, 2 of twiin.v1.
    assert_eq!(methods.len(), 23, "{methods:?}");
    assert!(methods.contains("dmp.v1.DmpGateway/RetrieveDocument"));
}
