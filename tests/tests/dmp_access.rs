//! Issue 13, the gateway's side, end to end over real TLS with cards on SoftHSM2 tokens: who is
//! calling (mutual TLS, bearer JWTs), the professional's session grant, and connection pools
//! that end with the card session. In every refused case nothing reaches the DMP simulator and
//! the card signs nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use dev_support::devpki::files;
use dmp_gateway::{DmpConnections, JwtSettings, samples};
use dmp_sim::{DmpSimulator, SimConfig};
use e2e_tests::*;
use ehealth_proto::cps::v1::RevokeSessionGrantsRequest;
use ehealth_proto::dmp::v1 as pb;
use service_kit::CancellationToken;
use tonic::Code;

const DOCTOR: &str = "810100000001";
const NURSE: &str = "810100000002";

/// A relay on `token`, the DMP simulator behind its TLS 1.2 listener, and the gateway.
struct Suite {
    relay: Service,
    signatures: cps_relay::RelayMetrics,
    sim: Arc<DmpSimulator>,
    _dmp: CancellationToken,
    gateway: Service,
    transport: Arc<DmpConnections>,
}

impl Suite {
    /// Asserts that nothing reached the DMP and the card signed nothing.
    fn assert_untouched(&self, case: &str) {
        assert_eq!(self.sim.requests(), 0, "{case}: nothing reaches the DMP");
        assert_eq!(
            self.signatures.signatures_made(),
            0,
            "{case}: the card signs nothing"
        );
    }
}

fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

async fn suite_with(
    relay: (Service, cps_relay::RelayMetrics),
    edit: impl FnOnce(&mut dmp_gateway::Config),
) -> Suite {
    let (relay, signatures) = relay;
    let sim = Arc::new(DmpSimulator::new(SimConfig::default()));
    let (dmp, stop) =
        start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), dmp_sim::router(sim.clone())).await;
    let mut config = gateway_transport_config(dmp, &[(RELAY_ID, relay.grpc_addr)]);
    edit(&mut config);
    let (gateway, transport) = start_dmp_gateway_with_transport(config).await;
    Suite {
        relay,
        signatures,
        sim,
        _dmp: stop,
        gateway,
        transport,
    }
}

async fn suite(token: &str) -> Suite {
    suite_with(start_card_relay(token, any_port()).await, |_| {}).await
}

fn test_patient(relay_id: &str, professional: &str) -> pb::TestPatientDmpRequest {
    pb::TestPatientDmpRequest {
        auth_context: Some(pb::AuthenticationContext {
            relay_id: relay_id.into(),
            ..samples::auth_context(professional)
        }),
        patient: Some(samples::patient()),
    }
}

/// TestPatientDmp for the doctor through the harness's relay.
async fn call(client: &mut GatewayClient) -> Result<pb::TestPatientDmpResponse, tonic::Status> {
    call_for(client, RELAY_ID, DOCTOR).await
}

async fn call_for(
    client: &mut GatewayClient,
    relay_id: &str,
    professional: &str,
) -> Result<pb::TestPatientDmpResponse, tonic::Status> {
    client
        .test_patient_dmp(test_patient(relay_id, professional))
        .await
        .map(tonic::Response::into_inner)
}

/// Expects `code` and a message containing each of `parts`.
fn refused(result: Result<pb::TestPatientDmpResponse, tonic::Status>, code: Code, parts: &[&str]) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    for part in parts {
        assert!(
            status.message().contains(part),
            "{part:?} missing: {}",
            status.message()
        );
    }
}

/// Waits (at most 10 s) until the relay's pools are gone.
async fn pools_gone(transport: &DmpConnections) {
    for _ in 0..100 {
        if transport.open_pools(RELAY_ID) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the pool outlived the card session: {} open",
        transport.open_pools(RELAY_ID)
    );
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_a_caller_credential_is_unauthenticated() {
    // In development mode the listener may be plaintext; callers must still be named.
    let s = suite_with(start_card_relay(SESSION_TOKENS[0], any_port()).await, |c| {
        c.development = true;
        c.server.tls = None;
    })
    .await;
    let (grant, _) = issue_grant(s.relay.grpc_addr).await;
    let channel = tonic::transport::Endpoint::from_shared(s.gateway.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    refused(
        call(&mut with_grant(channel.clone(), None)).await,
        Code::Unauthenticated,
        &["no caller credential", "client certificate"],
    );
    // A session grant names no caller: still refused, before the grant is looked at.
    refused(
        call(&mut with_grant(channel.clone(), Some(&grant))).await,
        Code::Unauthenticated,
        &["no caller credential"],
    );
    let mut req = tonic::Request::new(test_patient(RELAY_ID, DOCTOR));
    req.metadata_mut().insert(
        "authorization",
        "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln".parse().expect("ascii"),
    );
    refused(
        with_grant(channel, Some(&grant))
            .test_patient_dmp(req)
            .await
            .map(tonic::Response::into_inner),
        Code::Unauthenticated,
        &["bearer tokens are not accepted", "auth.jwt"],
    );
    s.assert_untouched("no credential");
    assert_eq!(s.transport.open_pools(RELAY_ID), 0);

    // Outside development mode the listener itself wants a client certificate.
    let gateway = start_dmp_gateway(gateway_transport_config(
        any_port(),
        &[(RELAY_ID, s.relay.grpc_addr)],
    ))
    .await;
    let pem = std::fs::read(pki().path(files::SUITE_CA)).expect("ca");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pem))
        .domain_name("localhost");
    let outcome = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", gateway.grpc_addr))
            .expect("endpoint")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        call(&mut with_grant(channel, Some(&grant)))
            .await
            .map_err(|s| s.to_string())
    }
    .await;
    assert!(outcome.is_err(), "a caller without a certificate was served");
    s.assert_untouched("no client certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_grants_are_checked_claim_by_claim() {
    let (other_relay, other_signatures) = start_card_relay_as("ws-2", SESSION_TOKENS[1], any_port()).await;
    let s = suite_with(start_card_relay(SESSION_TOKENS[2], any_port()).await, |c| {
        let other = gateway_transport_config(any_port(), &[("ws-2", other_relay.grpc_addr)]);
        c.relays.extend(other.relays);
    })
    .await;
    let (grant, grant_id) = issue_grant(s.relay.grpc_addr).await;

    let mut integrator = gateway_client(&s.gateway, None).await;
    refused(
        call(&mut integrator).await,
        Code::PermissionDenied,
        &[
            "no session grant (metadata dmp-session-grant)",
            "ask the professional to open a session for integrator on relay ws-1",
        ],
    );

    // Another caller (the holder's UI certificate is a suite certificate too) with the
    // integrator's grant: a grant that leaks is useless to anyone else.
    let mut stranger = gateway_client_as(
        s.gateway.grpc_addr,
        files::HOLDER_UI_CLIENT_CERT,
        files::HOLDER_UI_CLIENT_KEY,
        Some(&grant),
    )
    .await;
    refused(
        call(&mut stranger).await,
        Code::PermissionDenied,
        &["claim azp", "given to integrator, not to the caller holder-ui"],
    );

    let mut granted = gateway_client(&s.gateway, Some(&grant)).await;
    refused(
        call_for(&mut granted, RELAY_ID, NURSE).await,
        Code::PermissionDenied,
        &["claim sub", DOCTOR, NURSE],
    );
    refused(
        call_for(&mut granted, "ws-2", DOCTOR).await,
        Code::PermissionDenied,
        &["claim iss", "issued by relay ws-1", "names relay ws-2"],
    );

    // The same claims, expired (re-signed with the relay's grant key), and tampered.
    let (header, payload) = {
        let mut parts = grant.split('.');
        (
            parts.next().expect("header").to_owned(),
            parts.next().expect("payload").to_owned(),
        )
    };
    let header: serde_json::Value =
        serde_json::from_slice(&B64.decode(&header).expect("b64")).expect("header json");
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(&payload).expect("b64")).expect("claims json");
    claims["iat"] = (unix_now() - 600).into();
    claims["exp"] = (unix_now() - 120).into();
    let mut jws_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    jws_header.typ = Some("cps-session-grant+jwt".into());
    jws_header.kid = header["kid"].as_str().map(str::to_owned);
    let grant_key =
        service_kit::tls::load_private_key(&pki().path(files::RELAY_GRANT_KEY)).expect("grant key");
    let key = jsonwebtoken::EncodingKey::from_ec_der(grant_key.secret_der());
    let expired = jsonwebtoken::encode(&jws_header, &claims, &key).expect("sign");
    refused(
        call(&mut gateway_client(&s.gateway, Some(&expired)).await).await,
        Code::PermissionDenied,
        &["claim exp", "expired"],
    );
    claims["exp"] = (unix_now() + 3600).into();
    claims["sub"] = NURSE.into();
    let forged_payload = B64.encode(serde_json::to_vec(&claims).expect("json"));
    let tampered = grant.replacen(&payload, &forged_payload, 1);
    refused(
        call_for(
            &mut gateway_client(&s.gateway, Some(&tampered)).await,
            RELAY_ID,
            NURSE,
        )
        .await,
        Code::PermissionDenied,
        &["claim signature", "relays.ws-1.grant_key"],
    );

    // Revoked by the holder: the relay tells the gateway within seconds.
    holder_client(s.relay.grpc_addr)
        .generated()
        .revoke_session_grants(RevokeSessionGrantsRequest {
            grant_ids: vec![grant_id.clone()],
        })
        .await
        .expect("revoke");
    // The relay pushes the revocation on the gateway's WatchSession stream; a call that came
    // first would still be refused by the relay, which signs only under live grants.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut last = None;
    for _ in 0..50 {
        let r = call(&mut granted).await;
        if r.as_ref().is_err_and(|s| s.message().contains("claim jti")) {
            last = Some(r);
            break;
        }
        assert!(r.is_err(), "a revoked grant must not be served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    refused(
        last.expect("the revocation is seen within 5 s"),
        Code::PermissionDenied,
        &["claim jti", "revoked", &grant_id],
    );
    s.assert_untouched("refused grants");
    assert_eq!(other_signatures.signatures_made(), 0);

    // A fresh grant: served, and 20 calls of the professional's session cost one signature.
    let (grant, _) = issue_grant(s.relay.grpc_addr).await;
    let mut granted = gateway_client(&s.gateway, Some(&grant)).await;
    for _ in 0..20 {
        let r = call(&mut granted).await.expect("served under a live grant");
        assert!(r.dmp_exists);
    }
    assert_eq!(
        s.signatures.signatures_made(),
        1,
        "one card signature per session"
    );
    assert_eq!(s.sim.requests(), 20);
    assert_eq!(s.transport.open_pools(RELAY_ID), 1);
}

/// A warm pool, then `end` ends the card session: the pool goes within seconds, the next call
/// is FAILED_PRECONDITION naming why, and the card is asked for nothing.
async fn session_end_closes_the_pool(token: &str, end: impl AsyncFnOnce(&Suite), reasons: &[&str]) {
    let s = suite(token).await;
    let (grant, _) = issue_grant(s.relay.grpc_addr).await;
    let mut client = gateway_client(&s.gateway, Some(&grant)).await;
    call(&mut client).await.expect("warm");
    call(&mut client).await.expect("pooled");
    assert_eq!(s.signatures.signatures_made(), 1);
    assert_eq!(s.transport.open_pools(RELAY_ID), 1);
    let served = s.sim.requests();

    end(&s).await;
    pools_gone(&s.transport).await;
    let status = call(&mut client).await.expect_err("the session ended");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("the professional's card session ended"),
        "{}",
        status.message()
    );
    assert!(
        reasons.iter().any(|r| status.message().contains(r)),
        "one of {reasons:?} in: {}",
        status.message()
    );
    assert!(status.message().contains("ask for a new session grant"));
    assert_eq!(
        s.signatures.signatures_made(),
        1,
        "no signature for the old session"
    );
    assert_eq!(s.sim.requests(), served, "nothing more reached the DMP");
    assert_eq!(s.transport.open_pools(RELAY_ID), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_the_pool() {
    session_end_closes_the_pool(
        SESSION_TOKENS[3],
        async |s: &Suite| {
            holder_client(s.relay.grpc_addr).logout().await.expect("logout");
        },
        &["logged out"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_removal_closes_the_pool() {
    session_end_closes_the_pool(
        SESSION_TOKENS[4],
        async |_: &Suite| delete_token(SESSION_TOKENS[4]),
        &["the card was removed"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_swap_closes_the_pool() {
    session_end_closes_the_pool(
        SESSION_TOKENS[5],
        async |_: &Suite| {
            // Another professional's card under the same label; the relay polls every second,
            // and may see the reader empty in between.
            delete_token(SESSION_TOKENS[5]);
            new_card_in_process(SESSION_TOKENS[5], &pki().path("nurse.pem"));
        },
        &["another card is in the reader", "the card was removed"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_lives_at_most_max_pool_lifetime() {
    let s = suite_with(start_card_relay(SESSION_TOKENS[6], any_port()).await, |c| {
        c.dmp.max_pool_lifetime = Duration::from_millis(800);
    })
    .await;
    let (grant, _) = issue_grant(s.relay.grpc_addr).await;
    let mut client = gateway_client(&s.gateway, Some(&grant)).await;
    call(&mut client).await.expect("first");
    call(&mut client).await.expect("pooled");
    assert_eq!(s.signatures.signatures_made(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    call(&mut client).await.expect("after the pool's lifetime");
    assert_eq!(
        s.signatures.signatures_made(),
        2,
        "a new pool authenticates with the card again"
    );
    assert_eq!(s.transport.open_pools(RELAY_ID), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_jwts_name_the_caller() {
    const ISSUER: &str = "https://idp.example.test";
    let identity = format!("jwt:{ISSUER}#backend-7");
    let granted_to = identity.clone();
    let relay = start_card_relay_with(RELAY_ID, SESSION_TOKENS[7], any_port(), move |c| {
        c.access.grant_callers = vec![INTEGRATOR.into(), granted_to];
    })
    .await;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let new_key = || {
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .expect("key");
        jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref())
    };
    let idp_key = new_key();
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&idp_key, jsonwebtoken::Algorithm::ES256).expect("jwk");
    jwk.common.key_id = Some("idp-1".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_vec(&jsonwebtoken::jwk::JwkSet { keys: vec![jwk] }).expect("json"),
    )
    .expect("write jwks");
    let s = suite_with(relay, |c| {
        c.auth.jwt = Some(JwtSettings {
            issuer: ISSUER.into(),
            jwks: jwks.display().to_string(),
            audience: "dmp-gateway".into(),
            jwks_ca: None,
            jwks_refresh: Duration::from_secs(600),
        });
        // The JWT caller's structure (issue 16).
        c.callers.insert(
            format!("jwt:{ISSUER}#backend-7"),
            dmp_gateway::CallerStructure {
                structure_id: "10B0152872".into(),
                activity_sector: "SA07^1.2.250.1.71.4.2.4".into(),
            },
        );
    })
    .await;
    let token = |key: &jsonwebtoken::EncodingKey, aud: &str, exp: u64| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("idp-1".into());
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": "backend-7", "aud": aud, "exp": exp, "iat": unix_now(),
        });
        jsonwebtoken::encode(&header, &claims, key).expect("jwt")
    };
    let (grant, _) = issue_grant_to(s.relay.grpc_addr, &identity).await;
    let mut client = gateway_client(&s.gateway, Some(&grant)).await;
    let mut with_bearer = async |bearer: &str| {
        let mut req = tonic::Request::new(test_patient(RELAY_ID, DOCTOR));
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {bearer}").parse().expect("ascii"),
        );
        client
            .test_patient_dmp(req)
            .await
            .map(tonic::Response::into_inner)
    };

    refused(
        with_bearer(&token(&idp_key, "another-api", unix_now() + 300)).await,
        Code::Unauthenticated,
        &["bearer token refused"],
    );
    refused(
        with_bearer(&token(&idp_key, "dmp-gateway", unix_now() - 300)).await,
        Code::Unauthenticated,
        &["bearer token refused"],
    );
    refused(
        with_bearer(&token(&new_key(), "dmp-gateway", unix_now() + 300)).await,
        Code::Unauthenticated,
        &["bearer token refused"],
    );
    s.assert_untouched("bad bearer tokens");

    // The grant is the JWT caller's: presented by the integrator's certificate alone, refused.
    refused(
        call(&mut gateway_client(&s.gateway, Some(&grant)).await).await,
        Code::PermissionDenied,
        &["claim azp", &identity],
    );
    let r = with_bearer(&token(&idp_key, "dmp-gateway", unix_now() + 300))
        .await
        .expect("the JWT caller acts under its grant");
    assert!(r.dmp_exists);
    assert_eq!(s.signatures.signatures_made(), 1);
}

/// Removes a token as another process would (the card leaves its reader).
fn delete_token(label: &str) {
    let out = std::process::Command::new("softhsm2-util")
        .args(["--delete-token", "--token", label])
        .output()
        .expect("softhsm2-util is installed");
    assert!(out.status.success(), "{out:?}");
}

/// Puts a card labelled `label` holding only the certificate of `cert_pem` into the free slot,
/// from this process (a running SoftHSM does not see tokens another process creates).
fn new_card_in_process(label: &str, cert_pem: &std::path::Path) {
    use cryptoki::object::{Attribute, CertificateType, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let ctx = cps_relay::pkcs11_context(&hsm().softhsm.module()).expect("PKCS#11 context");
    let free = ctx
        .get_all_slots()
        .expect("slots")
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|i| !i.token_initialized()))
        .expect("SoftHSM keeps a free slot");
    let so = AuthPin::new(SO_PIN.into());
    ctx.init_token(free, &so, label).expect("init token");
    let slot = ctx
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|i| i.label().trim() == label))
        .expect("the new card");
    let session = ctx.open_rw_session(slot).expect("session");
    session.login(UserType::So, Some(&so)).expect("SO login");
    session
        .init_pin(&AuthPin::new(CARD_PIN.into()))
        .expect("user PIN");
    session.logout().expect("SO logout");
    session
        .login(UserType::User, Some(&AuthPin::new(CARD_PIN.into())))
        .expect("user login");
    let der = service_kit::tls::load_certs(cert_pem).expect("certificate")[0].to_vec();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("parse");
    session
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Id(vec![1]),
            Attribute::Label(b"auth".to_vec()),
            Attribute::Subject(parsed.tbs_certificate.subject.as_raw().to_vec()),
            Attribute::Value(der),
        ])
        .expect("certificate object");
    session.logout().expect("logout");
}
