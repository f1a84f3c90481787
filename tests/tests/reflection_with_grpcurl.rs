//! The real grpcurl 1.8.6 lists and describes each service through reflection, as an operator
//! debugging the suite would.

use e2e_tests::*;

fn stdout_ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "grpcurl failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn listed(out: &str) -> Vec<&str> {
    let mut v: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    v.sort_unstable();
    v
}

const PLATFORM: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

fn expected(service: &'static str) -> Vec<&'static str> {
    let mut v = vec![service];
    v.extend(PLATFORM);
    v.sort_unstable();
    v
}

#[tokio::test]
async fn dmp_gateway_lists_and_describes() {
    let svc = start_dmp_gateway(dmp_gateway_config()).await;
    let addr = svc.grpc_addr.to_string();
    let tls = gateway_tls_args(pki());
    let out = tokio::task::spawn_blocking(move || {
        let with = |args: &[&str]| {
            let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
            all.extend_from_slice(args);
            grpcurl(&all)
        };
        (
            with(&[&addr, "list"]),
            with(&[&addr, "describe", "dmp.v1.DmpGateway"]),
        )
    })
    .await
    .expect("grpcurl task");
    assert_eq!(listed(&stdout_ok(&out.0)), expected("dmp.v1.DmpGateway"));
    let described = stdout_ok(&out.1);
    for rpc in [
        "SubmitDocuments",
        "FindDocuments",
        "RetrieveDocument",
        "TestPatientDmp",
        "UpdateDocumentStatus",
    ] {
        assert!(
            described.contains(&format!("rpc {rpc} ")),
            "{rpc} missing from:\n{described}"
        );
    }
    svc.stop().await;
}

#[tokio::test]
async fn twiin_authz_lists_and_describes() {
    let svc = start_twiin_authz(twiin_authz_config()).await;
    let addr = svc.grpc_addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        (
            grpcurl(&["-plaintext", &addr, "list"]),
            grpcurl(&["-plaintext", &addr, "describe", "twiin.v1.TwiinAuthz"]),
            grpcurl(&["-plaintext", &addr, "describe", "twiin.v1.TokenRequest"]),
        )
    })
    .await
    .expect("grpcurl task");
    assert_eq!(listed(&stdout_ok(&out.0)), expected("twiin.v1.TwiinAuthz"));
    let described = stdout_ok(&out.1);
    assert!(described.contains("rpc IssueTwiinAssertions "), "{described}");
    assert!(described.contains("rpc IssueAortaAccessToken "), "{described}");
    let message = stdout_ok(&out.2);
    assert!(message.contains("client_assertion_type"), "{message}");
    svc.stop().await;
}

#[tokio::test]
async fn cps_relay_requires_mutual_tls() {
    let pki = pki();
    let svc = start_cps_relay(cps_relay_config()).await;
    let addr = svc.grpc_addr.to_string();
    let tls = relay_tls_args(pki);
    let ca = pki
        .path(dev_support::devpki::files::SUITE_CA)
        .display()
        .to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut with_cert: Vec<&str> = tls.iter().map(String::as_str).collect();
        with_cert.extend([addr.as_str(), "list"]);
        let mut describe: Vec<&str> = tls.iter().map(String::as_str).collect();
        describe.extend([addr.as_str(), "describe", "cps.v1.CpsRelay"]);
        (
            grpcurl(&with_cert),
            grpcurl(&describe),
            grpcurl(&["-cacert", &ca, &addr, "list"]),
        )
    })
    .await
    .expect("grpcurl task");
    assert_eq!(listed(&stdout_ok(&out.0)), expected("cps.v1.CpsRelay"));
    let described = stdout_ok(&out.1);
    for rpc in [
        "GetAuthenticationCertificate",
        "SignForAuthentication",
        "GetStatus",
        "Login",
        "Logout",
    ] {
        assert!(
            described.contains(&format!("rpc {rpc} ")),
            "{rpc} missing from:\n{described}"
        );
    }
    // Without a client certificate the TLS handshake is refused.
    assert!(
        !out.2.status.success(),
        "a caller without a certificate was served"
    );
    svc.stop().await;
}

#[tokio::test]
async fn an_empty_dmp_request_is_refused_naming_the_field() {
    let svc = start_dmp_gateway(dmp_gateway_config()).await;
    let addr = svc.grpc_addr.to_string();
    let mut args = gateway_tls_args(pki());
    args.extend([
        "-d".into(),
        "{}".into(),
        addr,
        "dmp.v1.DmpGateway/TestPatientDmp".into(),
    ]);
    let out =
        tokio::task::spawn_blocking(move || grpcurl(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .expect("grpcurl task");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("auth_context: required"),
        "{err}"
    );
    svc.stop().await;
}
