//! Issue 16, the seed's CPS agent HTTP API on cps-relay: over the same mutual TLS as the gRPC
//! face, on a real SoftHSM2 token, it hands over the card's certificate and signs a real TLS 1.2
//! transcript of the allowed server under a session grant; and it refuses exactly what the
//! gRPC face refuses (a caller without the gateway role, data that is not TLS handshake input,
//! a signature without a grant), with the same codes and messages. Signatures made through it
//! are audited, naming the face.

mod support;

use audit_log::AuditLog;
use dev_support::devpki::files;
use relay_client::CpsAgentClient;
use support::*;
use tonic::Code;

const AGENT: &str = "agent-http";

fn setup() -> &'static Fixture {
    fixture(&[AGENT], &[])
}

fn agent_config() -> cps_relay::Config {
    let mut c = config(AGENT);
    c.agent_http.listen = Some("127.0.0.1:0".parse().expect("addr"));
    c
}

fn gateway_agent(relay: &Relay) -> CpsAgentClient {
    agent_as(relay, files::GATEWAY_CLIENT_CERT, files::GATEWAY_CLIENT_KEY)
}

/// Verifies an RSASSA-PKCS1-v1_5 SHA-256 signature with the certificate's public key.
fn verifies(cert_der: &[u8], data: &[u8], signature: &[u8]) -> bool {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).expect("certificate");
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        cert.public_key().subject_public_key.data.to_vec(),
    );
    key.verify(data, signature).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_face_serves_the_gateway_under_the_grpc_policy() {
    let f = setup();
    let (audit, sink) = AuditLog::memory();
    let relay = start(agent_config(), audit).await;
    let agent = gateway_agent(&relay);
    let mut grpc = gateway(&relay);

    // The certificate: the card's own, with its issuer, as the gRPC face gives it.
    let card = service_kit::tls::load_certs(&f.pki.path(files::CPS_AUTH_CERT)).expect("card certificate");
    let got = agent
        .certificate()
        .await
        .expect("the gateway reads the certificate");
    assert_eq!(got.leaf, card[0].to_vec());
    let over_grpc = grpc
        .get_authentication_certificate(ehealth_proto::cps::v1::GetAuthenticationCertificateRequest {})
        .await
        .expect("gRPC certificate")
        .into_inner();
    assert_eq!(got.chain, over_grpc.chain_der);
    assert!(!got.chain.is_empty(), "the issuing CA follows the leaf");

    // A signature needs the card session's grant, on both faces alike.
    let transcript = real_tls12_transcript(
        &f.pki.path(files::DMP_SERVER_CHAIN),
        &f.pki.path(files::DMP_SERVER_KEY),
        &f.pki.path(files::IGC_CA_BUNDLE),
        "localhost",
    );
    let mut req = login_request(PIN);
    req.grant_to = vec!["integrator".into()];
    let grant = holder(&relay)
        .login(req)
        .await
        .expect("login")
        .into_inner()
        .grants[0]
        .grant_id
        .clone();
    let http_err = agent.sign(transcript.clone(), None).await.expect_err("no grant");
    let grpc_err = grpc
        .sign_for_authentication(sign_request(transcript.clone(), None))
        .await
        .expect_err("no grant");
    assert_eq!(http_err.code(), Code::FailedPrecondition, "{http_err:?}");
    assert_eq!(
        (http_err.code(), http_err.message()),
        (grpc_err.code(), grpc_err.message())
    );

    // Under the grant: a real signature by the card's key over the transcript.
    let signature = agent
        .sign(transcript.clone(), Some(&grant))
        .await
        .expect("the allowed server's handshake is signed");
    assert_eq!(signature.len(), 256);
    assert!(verifies(&card[0], &transcript, &signature));

    // Not TLS handshake signing input: refused before the card, as over gRPC.
    let junk = b"GET / HTTP/1.1\r\nHost: anything\r\n\r\n".to_vec();
    let http_err = agent.sign(junk.clone(), Some(&grant)).await.expect_err("junk");
    let grpc_err = grpc
        .sign_for_authentication(sign_request(junk, Some(&grant)))
        .await
        .expect_err("junk");
    assert_eq!(http_err.code(), Code::InvalidArgument, "{http_err:?}");
    assert!(
        http_err.message().contains("not TLS handshake signing input"),
        "{}",
        http_err.message()
    );
    assert_eq!(
        (http_err.code(), http_err.message()),
        (grpc_err.code(), grpc_err.message())
    );

    // A server the card may not authenticate to: refused alike.
    let elsewhere = real_tls12_transcript(
        &f.pki.path(files::DMP_SERVER_CHAIN),
        &f.pki.path(files::DMP_SERVER_KEY),
        &f.pki.path(files::IGC_CA_BUNDLE),
        "dmp-sim",
    );
    let http_err = agent
        .sign(elsewhere.clone(), Some(&grant))
        .await
        .expect_err("host not allowed");
    let grpc_err = grpc
        .sign_for_authentication(sign_request(elsewhere, Some(&grant)))
        .await
        .expect_err("host not allowed");
    assert_eq!(http_err.code(), Code::InvalidArgument);
    assert_eq!(
        (http_err.code(), http_err.message()),
        (grpc_err.code(), grpc_err.message())
    );

    // The signature is audited with the face it came through.
    let signed: Vec<_> = sink
        .events()
        .into_iter()
        .filter(|e| e.use_case == "sign_for_authentication" && e.status.as_deref() == Some("OK"))
        .collect();
    assert_eq!(signed.len(), 1, "{signed:?}");
    assert_eq!(signed[0].attributes["api"], "cps-agent-http");
    assert_eq!(signed[0].peer.as_deref(), Some("dmp-gateway"));
    assert_eq!(signed[0].user_id.as_deref(), Some(DOCTOR));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_face_refuses_callers_without_the_gateway_role() {
    let f = setup();
    let relay = start(agent_config(), AuditLog::disabled()).await;
    let transcript = real_tls12_transcript(
        &f.pki.path(files::DMP_SERVER_CHAIN),
        &f.pki.path(files::DMP_SERVER_KEY),
        &f.pki.path(files::IGC_CA_BUNDLE),
        "localhost",
    );
    for (cert, key, who) in [
        (
            files::INTEGRATOR_CLIENT_CERT,
            files::INTEGRATOR_CLIENT_KEY,
            "integrator",
        ),
        (
            files::HOLDER_UI_CLIENT_CERT,
            files::HOLDER_UI_CLIENT_KEY,
            "holder-ui",
        ),
    ] {
        let agent = agent_as(&relay, cert, key);
        let mut grpc = client_as(&relay, cert, key).generated();
        let http_err = agent.certificate().await.expect_err(who);
        let grpc_err = grpc
            .get_authentication_certificate(ehealth_proto::cps::v1::GetAuthenticationCertificateRequest {})
            .await
            .expect_err(who);
        assert_eq!(http_err.code(), Code::PermissionDenied, "{who}: {http_err:?}");
        assert_eq!(
            (http_err.code(), http_err.message()),
            (grpc_err.code(), grpc_err.message())
        );
        let http_err = agent.sign(transcript.clone(), None).await.expect_err(who);
        let grpc_err = grpc
            .sign_for_authentication(sign_request(transcript.clone(), None))
            .await
            .expect_err(who);
        assert_eq!(http_err.code(), Code::PermissionDenied, "{who}: {http_err:?}");
        assert_eq!(
            (http_err.code(), http_err.message()),
            (grpc_err.code(), grpc_err.message())
        );
    }

    // A client certificate of another CA does not get past the TLS handshake.
    let addr = relay.agent_http.expect("agent face");
    let stranger = relay_client::RelayTls {
        ca_pem: std::fs::read(f.pki.path(files::SUITE_CA)).expect("ca"),
        cert_pem: std::fs::read(f.other_pki.path(files::GATEWAY_CLIENT_CERT)).expect("cert"),
        key_pem: std::fs::read(f.other_pki.path(files::GATEWAY_CLIENT_KEY)).expect("key"),
        server_name: "localhost".into(),
    };
    let err = CpsAgentClient::new(
        &format!("https://{addr}"),
        Some(&stranger),
        std::time::Duration::from_secs(5),
    )
    .expect("client")
    .certificate()
    .await
    .expect_err("a certificate of another CA");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}
