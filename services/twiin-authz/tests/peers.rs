//! Real Twiin peers (issue 14): a GtK that fills its client assertion as the AORTA-TWIIN Client
//! Authentication Assertion does (`iss` = its authorization server's HTTPS URL, `sub` = its
//! client id), signed PS256 or ES256, gets a token; the same with an `iss` not registered for
//! that client is `invalid_client`. And a burst of first requests for one client costs one JWKS
//! fetch and one ZORG-AB query.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use serde_json::{Value, json};

fn peer_client_claims(iss: &str) -> Value {
    let n = now();
    json!({"iss": iss, "sub": PEER_CLIENT, "aud": format!("{ISSUER}/oauth2/token"),
        "jti": uuid::Uuid::new_v4().to_string(), "iat": n, "exp": n + 120})
}

fn peer_grant_claims(iss: &str) -> Value {
    let n = now();
    json!({"iss": iss, "sub": URA_CARE, "aud": ISSUER,
        "jti": uuid::Uuid::new_v4().to_string(), "iat": n, "exp": n + 120,
        "user_id": "UZI-900003", "user_role": "01.015"})
}

fn peer_form(w: &World, alg: &str, client_iss: &str, grant_iss: &str) -> Vec<(String, String)> {
    vec![
        ("grant_type".into(), JWT_BEARER.into()),
        (
            "assertion".into(),
            w.peer.sign(alg, &peer_grant_claims(grant_iss)),
        ),
        ("client_assertion_type".into(), CLIENT_ASSERTION_TYPE.into()),
        (
            "client_assertion".into(),
            w.peer.sign(alg, &peer_client_claims(client_iss)),
        ),
        ("scope".into(), "system/Task.c".into()),
        ("client_id".into(), PEER_CLIENT.into()),
    ]
}

#[tokio::test]
async fn an_aorta_style_peer_gets_a_token_with_ps256_or_es256() {
    let w = World::start().await;
    for alg in ["PS256", "ES256"] {
        let (s, body, _) = w.post(&peer_form(&w, alg, PEER_AS, PEER_AS)).await;
        assert_eq!(s, 200, "{alg}: {body}");
        assert_eq!(body["scope"], "create:Task:1.0:notification~~normaal");
        let returned = w
            .events_of("uitgeven_aorta_access_token")
            .into_iter()
            .rfind(|e| e.direction == audit_log::Direction::ReturnedResponse)
            .expect("returned");
        assert_eq!(
            returned.client_id.as_deref(),
            Some(PEER_CLIENT),
            "the client is its sub"
        );
    }
    // RFC 7523's own form (iss = sub = client id) is accepted from it as well.
    let (s, body, _) = w.post(&peer_form(&w, "ES256", PEER_CLIENT, PEER_CLIENT)).await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test]
async fn an_iss_not_registered_for_the_client_is_invalid_client() {
    let w = World::start().await;
    // Another GtK's authorization server, and a made-up one.
    for iss in [EXT_AS, "https://as.elsewhere.test"] {
        let (s, body, _) = w.post(&peer_form(&w, "PS256", iss, PEER_AS)).await;
        assert_eq!(
            (s, body["error"].as_str(), body["error_description"].as_str()),
            (
                400,
                Some("invalid_client"),
                Some(
                    "Ongeldige client: iss is niet de client_id of de geregistreerde autorisatieserver van de client"
                )
            ),
            "{iss}"
        );
    }
    // The grant's iss follows the same rule.
    let (s, body, _) = w
        .post(&peer_form(&w, "ES256", PEER_AS, "https://as.elsewhere.test"))
        .await;
    assert_eq!(
        (s, body["error"].as_str(), body["error_description"].as_str()),
        (
            400,
            Some("invalid_grant"),
            Some("Ongeldige grant: iss is niet de geauthenticeerde client")
        )
    );
}

#[tokio::test]
async fn a_client_registered_in_the_configuration_needs_no_zorg_ab_entry() {
    let w = World::start_with(Options {
        configured_peer: Some("/peer-jwks"),
        ..Default::default()
    })
    .await;
    let n = now();
    let client = json!({"iss": CONFIGURED_AS, "sub": CONFIGURED_CLIENT, "aud": ISSUER,
        "jti": uuid::Uuid::new_v4().to_string(), "iat": n, "exp": n + 60});
    let form = vec![
        ("grant_type".to_owned(), JWT_BEARER.to_owned()),
        (
            "assertion".into(),
            w.peer.sign("ES256", &peer_grant_claims(CONFIGURED_AS)),
        ),
        ("client_assertion_type".into(), CLIENT_ASSERTION_TYPE.into()),
        ("client_assertion".into(), w.peer.sign("ES256", &client)),
        ("scope".into(), "system/Task.c".into()),
    ];
    let (s, body, _) = w.post(&form).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        w.zorg_hits.get("/applications?client_id=configured-gtk"),
        0,
        "ZORG-AB is not asked about a configured client"
    );
}

/// The outbound client follows no redirect and reads a JWKS of at most 64 KiB: either
/// answer leaves the client's keys unknown (503, generic text; the details in the trail).
#[tokio::test]
async fn a_jwks_uri_that_redirects_or_answers_too_much_is_not_followed() {
    for (path, detail) in [
        ("/redirect-jwks", "HTTP 307"),
        ("/huge-jwks", "groter dan 65536 bytes"),
    ] {
        let w = World::start_with(Options {
            configured_peer: Some(path),
            ..Default::default()
        })
        .await;
        let n = now();
        let client = json!({"iss": CONFIGURED_AS, "sub": CONFIGURED_CLIENT, "aud": ISSUER,
            "jti": uuid::Uuid::new_v4().to_string(), "iat": n, "exp": n + 60});
        let form = vec![
            ("grant_type".to_owned(), JWT_BEARER.to_owned()),
            (
                "assertion".into(),
                w.peer.sign("ES256", &peer_grant_claims(CONFIGURED_AS)),
            ),
            ("client_assertion_type".into(), CLIENT_ASSERTION_TYPE.into()),
            ("client_assertion".into(), w.peer.sign("ES256", &client)),
            ("scope".into(), "system/Task.c".into()),
        ];
        let (s, body, _) = w.post(&form).await;
        assert_eq!(
            (s, body["error"].as_str(), body["error_description"].as_str()),
            (
                503,
                Some("temporarily_unavailable"),
                Some("JWKS van de client niet bereikbaar")
            ),
            "{path}"
        );
        let fetch = w
            .events_of("uitgeven_aorta_access_token")
            .into_iter()
            .find(|e| {
                e.direction == audit_log::Direction::ReceivedResponse
                    && e.peer.as_deref().is_some_and(|p| p.ends_with(path))
            })
            .expect("the JWKS fetch is in the trail");
        let recorded = fetch.attributes["error_description"].as_str().unwrap_or_default();
        assert!(recorded.contains(detail), "{path}: {recorded}");
    }
}

/// 64 concurrent first requests of one client: one JWKS fetch and one ZORG-AB query for it
/// (counted by the JWKS host and the ZORG-AB simulator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_first_requests_makes_one_fetch_of_each() {
    // 64 token exchanges at once on a debug build: generous deadlines, the count is the point.
    let w = std::sync::Arc::new(
        World::start_with(Options {
            tweak: |c| {
                c.zorg_ab.timeout = std::time::Duration::from_secs(20);
                c.as_za.timeout = std::time::Duration::from_secs(20);
                c.http.request_timeout = std::time::Duration::from_secs(30);
            },
            ..Default::default()
        })
        .await,
    );
    let forms: Vec<_> = (0..64).map(|_| w.form("system/Task.c")).collect();
    let mut tasks = Vec::new();
    for f in forms {
        let w = w.clone();
        tasks.push(tokio::spawn(async move { w.post(&f).await.0 }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("request"), 200);
    }
    let client_query = format!(
        "/applications?client_id={}",
        url::form_urlencoded::byte_serialize(EXT_CLIENT.as_bytes()).collect::<String>()
    );
    assert_eq!(w.jwks_hits.load(Ordering::SeqCst), 1, "one JWKS fetch");
    assert_eq!(
        w.zorg_hits.get(&client_query),
        1,
        "one ZORG-AB query for the client"
    );
}

/// Made-up issuers cost one ZORG-AB query each per negative-cache interval, however often
/// they come back.
#[tokio::test]
async fn unknown_clients_are_remembered_as_unknown() {
    let w = World::start().await;
    for _ in 0..5 {
        let mut f = w.form("system/Task.c");
        set(
            &mut f,
            "client_assertion",
            Some(w.sign(&with(
                w.client_claims(),
                json!({"iss": "https://random.test", "sub": "https://random.test"}),
            ))),
        );
        let (s, body, _) = w.post(&f).await;
        assert_eq!((s, body["error"].as_str()), (400, Some("invalid_client")));
    }
    assert_eq!(
        w.zorg_hits
            .get("/applications?client_id=https%3A%2F%2Frandom.test"),
        1
    );
}
