//! Use case "Uitgeven TWIIN Assertions" (SPEC.md §3.1) over gRPC: one test per outcome row, the
//! assertions' form (ES512, typ JWT, kid, exp = the AORTA token's exp), stale Stelseltoken and
//! audit fail-closed.

mod common;

use std::time::Duration;

use common::*;
use ehealth_proto::twiin::v1::IssueTwiinAssertionsRequest;
use serde_json::{Value, json};
use twiin_authz::error::MISSING_AUTHZ_BASE;

fn req(token: String) -> IssueTwiinAssertionsRequest {
    IssueTwiinAssertionsRequest {
        source_token: token,
        audience: EXT_AS.into(),
        authz_base: String::new(),
    }
}

async fn jwks(w: &World) -> Value {
    w.client
        .get(format!("http://{}/.well-known/jwks.json", w.http))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json")
}

/// The JOSE header fields the assertions are checked on.
struct Header {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
}

/// Verifies with the published JWKS (by the simulators' own ES512 code, not the service's);
/// returns (header, claims).
async fn verify(w: &World, token: &str) -> (Header, Value) {
    let keys = jwks(w).await;
    let keys = keys["keys"].as_array().expect("keys").clone();
    let (header, claims) = sim_kit::jose::verify_es512(token, &keys).expect("verifies with a published key");
    let text = |k: &str| header.get(k).and_then(Value::as_str).map(str::to_owned);
    (
        Header {
            alg: text("alg").expect("alg"),
            typ: text("typ"),
            kid: text("kid"),
        },
        claims,
    )
}

#[tokio::test]
async fn notification_token_gives_both_assertions_and_the_notification_scope() {
    let w = World::start().await;
    let src = w.source_claims("create:Task:1.0:notification~~normaal");
    let mut c = w.grpc_client().await;
    let out = c
        .issue_twiin_assertions(req(w.source_token(&src)))
        .await
        .expect("OK")
        .into_inner();
    assert_eq!(out.scope.as_deref(), Some("system/Task.cu"));
    assert_eq!(out.expires_at as u64, src["exp"].as_u64().expect("exp"));
    assert_eq!(
        out.client_assertion_type,
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(out.grant_type, "urn:ietf:params:oauth:grant-type:jwt-bearer");
    let (h, ca) = verify(&w, &out.client_assertion).await;
    assert_eq!(
        (h.alg.as_str(), h.typ.as_deref(), h.kid.as_deref()),
        ("ES512", Some("JWT"), Some(OUR_KID))
    );
    assert_eq!(ca["iss"], ISSUER);
    assert_eq!(ca["sub"], ISSUER);
    assert_eq!(ca["aud"], EXT_AS);
    assert_eq!(ca["exp"], src["exp"]);
    assert!(uuid::Uuid::parse_str(ca["jti"].as_str().expect("jti")).is_ok());
    let (_, g) = verify(&w, &out.assertion).await;
    assert_eq!(g["sub"], URA_CARE);
    assert_eq!(g["iss"], ISSUER);
    assert_eq!(g["aud"], EXT_AS);
    assert_eq!(g["exp"], src["exp"]);
    assert_eq!(g["bsn"], BSN);
    assert_ne!(g["jti"], ca["jti"]);
    // Audit: source jti and both new jtis, never the tokens.
    let events = w.sink.events();
    let ret = events
        .iter()
        .find(|e| e.direction == audit_log::Direction::ReturnedResponse)
        .expect("returned");
    assert_eq!(ret.use_case, "uitgeven_twiin_assertions");
    assert_eq!(ret.token_jtis.len(), 3);
    let dump = serde_json::to_string(&events).expect("json");
    assert!(!dump.contains(&out.assertion) && !dump.contains(&out.client_assertion));
}

#[tokio::test]
async fn token_with_authz_base_gives_assertions_without_scope() {
    let w = World::start().await;
    let src = with(
        w.source_claims("search:Patient:1.0:request~aorta.contextcode.BGZOPV~normaal"),
        json!({"_vrb": {"_vrb_ura": URA_CARE, "_vrb_authz_base": consent_token()}}),
    );
    let mut c = w.grpc_client().await;
    let out = c
        .issue_twiin_assertions(req(w.source_token(&src)))
        .await
        .expect("OK")
        .into_inner();
    assert_eq!(out.scope, None);
    let (_, g) = verify(&w, &out.assertion).await;
    assert_eq!(g["authorization_base"], consent_token());
}

#[tokio::test]
async fn request_authz_base_goes_into_the_grant_assertion() {
    let w = World::start().await;
    let src = w.source_claims("create:Task:1.0:notification~~normaal");
    let mut c = w.grpc_client().await;
    let mut r = req(w.source_token(&src));
    r.authz_base = "Task/notification-123".into();
    let out = c.issue_twiin_assertions(r).await.expect("OK").into_inner();
    let (_, g) = verify(&w, &out.assertion).await;
    assert_eq!(g["authorization_base"], "Task/notification-123");
}

#[tokio::test]
async fn step2_invalid_request_is_invalid_argument() {
    let w = World::start().await;
    let mut c = w.grpc_client().await;
    let cases = [
        (req(String::new()), "Ongeldig verzoek: sourceToken ontbreekt"),
        (
            IssueTwiinAssertionsRequest {
                audience: String::new(),
                ..req("x.y.z".into())
            },
            "Ongeldig verzoek: audience ontbreekt",
        ),
        (
            IssueTwiinAssertionsRequest {
                audience: "ftp://x".into(),
                ..req("x.y.z".into())
            },
            "Ongeldig verzoek: audience moet de https-URL van de autorisatieserver van het externe GtK zijn",
        ),
        (
            req("a".repeat(20_000)),
            "Ongeldig verzoek: sourceToken is te groot",
        ),
    ];
    for (r, msg) in cases {
        let st = c.issue_twiin_assertions(r).await.expect_err("invalid");
        assert_eq!((st.code(), st.message()), (tonic::Code::InvalidArgument, msg));
        assert_eq!(
            st.metadata().get("http-status").and_then(|v| v.to_str().ok()),
            Some("400")
        );
    }
}

#[tokio::test]
async fn step3_invalid_source_token_is_unauthenticated() {
    let w = World::start().await;
    let mut c = w.grpc_client().await;
    let n = now();
    let scope = "create:Task:1.0:notification~~normaal";
    let other = sim_kit::jose::RsaSigner::from_pkcs8_pem(
        AORTA_KID,
        &sim_kit::pki::AortaPki::generate()
            .expect("pki")
            .token_signing_key_pem,
    )
    .expect("key");
    let mut h = serde_json::Map::new();
    h.insert("typ".into(), json!("JWT"));
    let forged = other.sign(h, &w.source_claims(scope)).expect("sign");
    let cases = [
        (
            w.source_token(&with(w.source_claims(scope), json!({"exp": n - 120}))),
            "Ongeldig token: verlopen",
        ),
        (
            w.source_token(&with(w.source_claims(scope), json!({"iss": "https://evil.test"}))),
            "Ongeldig token: iss is niet de Autorisatie Server ZA",
        ),
        (
            w.source_token(&with(w.source_claims(scope), json!({"aud": "other"}))),
            "Ongeldig token: aud is niet de verwachte audience",
        ),
        (
            w.source_token(&with(w.source_claims(scope), json!({"exp": n + 86_400}))),
            "Ongeldig token: leeft langer dan toegestaan (assertions.max_lifetime)",
        ),
        (forged, "Ongeldig token: handtekening ongeldig"),
        (
            "x.y.z".to_owned(),
            "Ongeldig token: geen geldige compacte JWS (base64url)",
        ),
    ];
    for (t, msg) in cases {
        let st = c.issue_twiin_assertions(req(t)).await.expect_err("invalid");
        assert_eq!((st.code(), st.message()), (tonic::Code::Unauthenticated, msg));
        assert_eq!(
            st.metadata().get("http-status").and_then(|v| v.to_str().ok()),
            Some("401")
        );
    }
}

#[tokio::test]
async fn step5_missing_authorization_base() {
    let w = World::start().await;
    let mut c = w.grpc_client().await;
    let src = w.source_claims("search:Patient:1.0:request~aorta.contextcode.BGZOPV~normaal");
    let st = c
        .issue_twiin_assertions(req(w.source_token(&src)))
        .await
        .expect_err("refused");
    assert_eq!(
        (st.code(), st.message()),
        (tonic::Code::InvalidArgument, MISSING_AUTHZ_BASE)
    );
    assert_eq!(
        MISSING_AUTHZ_BASE,
        "AORTA access_token mist vereiste authorization_base"
    );
}

#[tokio::test]
async fn stale_stelseltoken_is_unavailable() {
    let w = World::start_with(Options {
        stelsel_backdate_secs: 7200,
        stelsel_max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    let mut c = w.grpc_client().await;
    let src = w.source_claims("create:Task:1.0:notification~~normaal");
    let st = c
        .issue_twiin_assertions(req(w.source_token(&src)))
        .await
        .expect_err("stale");
    assert_eq!(st.code(), tonic::Code::Unavailable);
    assert!(
        st.message()
            .starts_with("geen voldoende actueel AORTA Stelseltoken"),
        "{}",
        st.message()
    );
}

#[tokio::test]
async fn audit_failure_is_unavailable_and_nothing_is_issued() {
    let w = World::start().await;
    w.sink.set_failing(true);
    let mut c = w.grpc_client().await;
    let src = w.source_claims("create:Task:1.0:notification~~normaal");
    let st = c
        .issue_twiin_assertions(req(w.source_token(&src)))
        .await
        .expect_err("fail closed");
    assert_eq!(st.code(), tonic::Code::Unavailable);
    assert_eq!(
        st.metadata()
            .get("grpc-retry-pushback-ms")
            .and_then(|v| v.to_str().ok()),
        Some("1000"),
        "the caller is told when to retry"
    );
}

#[tokio::test]
async fn malformed_aorta_id_is_invalid_argument_and_a_valid_one_is_logged() {
    let w = World::start().await;
    let mut c = w.grpc_client().await;
    let src = w.source_claims("create:Task:1.0:notification~~normaal");
    let mut r = tonic::Request::new(req(w.source_token(&src)));
    r.metadata_mut()
        .insert("aorta-id", "nonsense".parse().expect("ascii"));
    let st = c.issue_twiin_assertions(r).await.expect_err("bad header");
    assert_eq!(st.code(), tonic::Code::InvalidArgument);
    let id = "initialRequestID=6f1c1e0e-6f0a-4a57-9d43-0b8a3c1f0a11; requestID=0d5a2c8b-1f1e-4f3e-8a8e-9b2b9a1c2d3e";
    let mut r = tonic::Request::new(req(w.source_token(&src)));
    r.metadata_mut().insert("aorta-id", id.parse().expect("ascii"));
    c.issue_twiin_assertions(r).await.expect("OK");
    assert!(
        w.sink
            .events()
            .iter()
            .any(|e| e.request_id.as_deref() == Some("0d5a2c8b-1f1e-4f3e-8a8e-9b2b9a1c2d3e"))
    );
}

// ---- who may call 3.1, and for which audience (issue 14) ----

#[tokio::test]
async fn an_expired_source_token_is_refused_without_clock_skew() {
    let w = World::start().await;
    let mut c = w.grpc_client().await;
    let src = with(
        w.source_claims("create:Task:1.0:notification~~normaal"),
        json!({"exp": now() - 5}),
    );
    let st = c
        .issue_twiin_assertions(req(w.source_token(&src)))
        .await
        .expect_err("expired, even within the skew");
    assert_eq!(
        (st.code(), st.message()),
        (tonic::Code::Unauthenticated, "Ongeldig token: verlopen")
    );
}

#[tokio::test]
async fn production_3_1_is_for_the_resource_broker_only() {
    use sim_kit::pki::files;
    let w = World::start_with(Options {
        production: true,
        ..Default::default()
    })
    .await;
    let src = w.source_claims("create:Task:1.0:notification~~normaal");
    // The broker's certificate: served.
    let mut broker = w.grpc_client().await;
    broker
        .issue_twiin_assertions(req(w.source_token(&src)))
        .await
        .expect("the Resource Broker is served");
    // No client certificate: the TLS layer (caller mTLS) lets nothing through.
    let refused = match w.grpc_client_as(None).await {
        Err(_) => true,
        Ok(mut c) => c.issue_twiin_assertions(req(w.source_token(&src))).await.is_err(),
    };
    assert!(refused, "a caller without a certificate gets nothing");
    // A certificate of the same CA that is not the broker's.
    let mut other = w
        .grpc_client_as(Some((files::GTK_CLIENT_CERT, files::GTK_CLIENT_KEY)))
        .await
        .expect("TLS with a client certificate");
    let st = other
        .issue_twiin_assertions(req(w.source_token(&src)))
        .await
        .expect_err("not the broker");
    assert_eq!(
        (st.code(), st.message()),
        (
            tonic::Code::PermissionDenied,
            "Alleen de Resource Broker mag TWIIN assertions aanvragen"
        )
    );
    let ret = w
        .events_of("uitgeven_twiin_assertions")
        .into_iter()
        .rfind(|e| e.direction == audit_log::Direction::ReturnedResponse)
        .expect("the refusal is audited");
    assert_eq!(ret.status.as_deref(), Some("403"));
    assert_eq!(ret.attributes["grpc_code"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn configured_broker_identities_refuse_callers_without_a_certificate() {
    let w = World::start_with(Options {
        tweak: |c| c.resource_broker.identities = vec!["resource-broker.localhost".into()],
        ..Default::default()
    })
    .await;
    let mut c = w.grpc_client().await;
    let src = w.source_claims("create:Task:1.0:notification~~normaal");
    let st = c
        .issue_twiin_assertions(req(w.source_token(&src)))
        .await
        .expect_err("no certificate");
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn the_audience_must_be_a_registered_external_authorization_server() {
    let w = World::start().await;
    let mut c = w.grpc_client().await;
    let src = w.source_claims("create:Task:1.0:notification~~normaal");
    let cases = [
        (
            "https://unregistered.test",
            "Ongeldig verzoek: audience is geen in ZORG-AB geregistreerde autorisatieserver",
        ),
        (
            ISSUER,
            "Ongeldig verzoek: audience moet de autorisatieserver van een extern GtK zijn (niet deze, niet de Autorisatie Server ZA)",
        ),
        (
            AS_ZA_ISSUER,
            "Ongeldig verzoek: audience moet de autorisatieserver van een extern GtK zijn (niet deze, niet de Autorisatie Server ZA)",
        ),
    ];
    for (audience, msg) in cases {
        let st = c
            .issue_twiin_assertions(IssueTwiinAssertionsRequest {
                audience: audience.into(),
                ..req(w.source_token(&src))
            })
            .await
            .expect_err("refused");
        assert_eq!(
            (st.code(), st.message()),
            (tonic::Code::InvalidArgument, msg),
            "{audience}"
        );
    }
    // The AORTA peer's authorization server is registered: served.
    c.issue_twiin_assertions(IssueTwiinAssertionsRequest {
        audience: PEER_AS.into(),
        ..req(w.source_token(&src))
    })
    .await
    .expect("a registered AS");
}
