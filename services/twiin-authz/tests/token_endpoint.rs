//! Use case "Uitgeven AORTA access_token" (SPEC.md §3.2): one test per outcome row of the seed's
//! table, the attack table, dependencies down or slow, audit fail-closed and replay across
//! replicas. Everything runs in process against the three simulators.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use twiin_authz::error::{BSN_MISSING, DESTINATION_REFUSES, NOT_QUALIFIED, PULL_WITHOUT_BASE};

async fn expect(w: &World, form: &[(String, String)], status: u16, error: &str, description: &str) {
    let (s, body, headers) = w.post(form).await;
    assert_eq!(
        (s, body["error"].as_str(), body["error_description"].as_str()),
        (status, Some(error), Some(description)),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
}

fn verify_aorta_token(token: &str) -> Value {
    let pki = aorta_pki();
    let signer =
        sim_kit::jose::RsaSigner::from_pkcs8_pem(AORTA_KID, &pki.token_signing_key_pem).expect("key");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(signer.public_jwk()).expect("jwk");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("key");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&["aorta"]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .expect("AORTA token verifies")
        .claims
}

// ---- successes (step 11) ----

#[tokio::test]
async fn push_notification_v2_scope_gets_an_aorta_token() {
    let w = World::start().await;
    let id = "initialRequestID=6f1c1e0e-6f0a-4a57-9d43-0b8a3c1f0a11; requestID=0d5a2c8b-1f1e-4f3e-8a8e-9b2b9a1c2d3e";
    let r = w
        .client
        .post(w.token_url())
        .header("AORTA-ID", id)
        .form(&w.form("system/Task.c"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers().get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "create:Task:1.0:notification~~normaal");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let claims = verify_aorta_token(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["sub"], URA_CARE);
    assert_eq!(claims["client_id"], EXT_CLIENT);
    assert_eq!(claims["_vrb"]["_vrb_user_id"], "UZI-900001");

    // Audit: all four directions, AORTA-ID chain kept, jti's but never tokens.
    let events = w.events_of("uitgeven_aorta_access_token");
    use audit_log::Direction::*;
    for d in [ReceivedRequest, SentRequest, ReceivedResponse, ReturnedResponse] {
        assert!(events.iter().any(|e| e.direction == d), "{d:?} logged");
    }
    assert!(
        events
            .iter()
            .all(|e| e.initial_request_id.as_deref() == Some("6f1c1e0e-6f0a-4a57-9d43-0b8a3c1f0a11"))
    );
    let returned = events
        .iter()
        .find(|e| e.direction == ReturnedResponse)
        .expect("returned");
    assert_eq!(returned.status.as_deref(), Some("200"));
    assert_eq!(returned.client_id.as_deref(), Some(EXT_CLIENT));
    assert_eq!(returned.ura.as_deref(), Some(URA_CARE));
    assert!(
        returned
            .token_jtis
            .contains(&claims["jti"].as_str().expect("jti").to_owned())
    );
    let dump = serde_json::to_string(&events).expect("json");
    assert!(!dump.contains(body["access_token"].as_str().expect("token")));
    assert!(!dump.contains(&w.form("x")[1].1[..40]), "no assertion in the log");
}

#[tokio::test]
async fn push_notification_v1_scope_gets_an_aorta_token() {
    let w = World::start().await;
    let (s, body, _) = w.post(&w.form("user/Task.write")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["scope"],
        "create:Task:1.0:notification~~normaal update:Task:1.0:notification~~normaal"
    );
}

#[tokio::test]
async fn consent_token_without_scope_gets_the_context_codes_scope() {
    let w = World::start().await;
    let mut f = w.form("");
    let g = with(
        w.grant_claims(),
        json!({"bsn": BSN, "authorization_base": consent_token()}),
    );
    set(&mut f, "assertion", Some(w.sign(&g)));
    set(&mut f, "scope", None);
    let (s, body, _) = w.post(&f).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["scope"],
        "search:Patient:1.0:request~aorta.contextcode.BGZOPV~normaal read:Task:1.0:workflow~aorta.contextcode.BGZOPV~normaal"
    );
    let claims = verify_aorta_token(body["access_token"].as_str().expect("token"));
    assert_eq!(claims["_vrb"]["_vrb_bsn"], BSN);
    assert_eq!(claims["_vrb"]["_vrb_authz_base"], consent_token());
}

#[tokio::test]
async fn pull_with_consent_token_and_bsn_gets_a_token() {
    let w = World::start().await;
    let mut f = w.form("system/Patient.s");
    let g = with(
        w.grant_claims(),
        json!({"bsn": BSN, "authorization_base": consent_token()}),
    );
    set(&mut f, "assertion", Some(w.sign(&g)));
    let (s, body, _) = w.post(&f).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["scope"],
        "search:Patient:1.0:request~aorta.contextcode.BGZOPV~normaal"
    );
}

// ---- step 2: invalid_request ----

#[tokio::test]
async fn step2_request_validation() {
    let w = World::start().await;
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("grant_type", None, "Ongeldig verzoek: grant_type ontbreekt"),
        (
            "grant_type",
            Some("client_credentials".into()),
            "Ongeldig verzoek: grant_type moet urn:ietf:params:oauth:grant-type:jwt-bearer zijn",
        ),
        ("assertion", None, "Ongeldig verzoek: assertion ontbreekt"),
        (
            "assertion",
            Some("not-a-jwt".into()),
            "Ongeldig verzoek: assertion is geen JWT",
        ),
        (
            "client_assertion_type",
            None,
            "Ongeldig verzoek: client_assertion_type ontbreekt",
        ),
        (
            "client_assertion_type",
            Some("urn:x".into()),
            "Ongeldig verzoek: client_assertion_type moet urn:ietf:params:oauth:client-assertion-type:jwt-bearer zijn",
        ),
        (
            "client_assertion",
            None,
            "Ongeldig verzoek: client_assertion ontbreekt",
        ),
        (
            "client_assertion",
            Some("a.b".into()),
            "Ongeldig verzoek: client_assertion is geen JWT",
        ),
        (
            "scope",
            None,
            "Ongeldig verzoek: scope ontbreekt (verplicht zonder authorization_base)",
        ),
    ];
    for (key, value, description) in cases {
        let mut f = w.form("system/Task.c");
        set(&mut f, key, value);
        expect(&w, &f, 400, "invalid_request", description).await;
    }
    // authorization_base that is not a SAML AORTA consent token.
    let mut f = w.form("system/Task.c");
    let g = with(w.grant_claims(), json!({"authorization_base": "dGV4dA=="}));
    set(&mut f, "assertion", Some(w.sign(&g)));
    expect(
        &w,
        &f,
        400,
        "invalid_request",
        "Ongeldig verzoek: authorization_base is geen SAML AORTA consent_token",
    )
    .await;
    // A parameter twice.
    let mut f = w.form("system/Task.c");
    f.push(("scope".into(), "system/Task.u".into()));
    expect(
        &w,
        &f,
        400,
        "invalid_request",
        "Ongeldig verzoek: parameter scope komt meer dan eens voor",
    )
    .await;
    // Not a form.
    let r = w
        .client
        .post(w.token_url())
        .json(&json!({"grant_type": JWT_BEARER}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["error_description"],
        "Ongeldig verzoek: Content-Type moet application/x-www-form-urlencoded zijn"
    );
}

// ---- step 3: invalid_client (and the attack table) ----

#[tokio::test]
async fn step3_client_assertion_attacks() {
    let w = World::start().await;
    let n = now();
    let es512 = json!({"alg": "ES512", "typ": "JWT", "kid": EXT_KID});
    let cases: Vec<(Value, Value, &str)> = vec![
        (
            es512.clone(),
            json!({"aud": "https://other-as.test"}),
            "Ongeldige client: aud is niet deze autorisatieserver",
        ),
        (
            es512.clone(),
            json!({"iat": n - 600, "exp": n - 300}),
            "Ongeldige client: verlopen (exp)",
        ),
        (
            es512.clone(),
            json!({"iat": n + 600, "exp": n + 700}),
            "Ongeldige client: iat ligt in de toekomst",
        ),
        (
            es512.clone(),
            json!({"iat": n, "exp": n + 7200}),
            "Ongeldige client: geldigheidsduur (exp - iat) te lang",
        ),
        // The client is its `sub`: an unregistered one is unknown, whatever `iss` says.
        (
            es512.clone(),
            json!({"sub": "https://someone-else.test"}),
            "Ongeldige client: onbekende applicatie https://someone-else.test in ZORG-AB",
        ),
        // `iss` must be the client id or the AS registered for that client.
        (
            es512.clone(),
            json!({"iss": "https://someone-else.test"}),
            "Ongeldige client: iss is niet de client_id of de geregistreerde autorisatieserver van de client",
        ),
        (
            es512.clone(),
            json!({"iss": PEER_AS}),
            "Ongeldige client: iss is niet de client_id of de geregistreerde autorisatieserver van de client",
        ),
        (
            es512.clone(),
            json!({"sub": null}),
            "Ongeldige client: sub ontbreekt (de client_id van de client)",
        ),
        (
            es512.clone(),
            json!({"jti": "j".repeat(257)}),
            "Ongeldige client: jti is langer dan 256 tekens",
        ),
        // A numeric kid is the client assertion's fault (RFC 7523: invalid_client), not an
        // unreadable request.
        (
            json!({"alg": "ES512", "typ": "JWT", "kid": 1}),
            json!({}),
            "Ongeldige client: kid in de header is geen tekst",
        ),
        (
            json!({"alg": "ES512", "typ": "JWT", "kid": EXT_KID, "crit": ["exp"]}),
            json!({}),
            "Ongeldige client: header-parameter crit wordt niet ondersteund",
        ),
        (
            es512.clone(),
            json!({"jti": null}),
            "Ongeldige client: jti ontbreekt",
        ),
        (
            json!({"alg": "ES512", "typ": "JWT", "kid": "unknown-kid"}),
            json!({}),
            "Ongeldige client: onbekende kid unknown-kid",
        ),
        (
            json!({"alg": "ES512", "typ": "JWT"}),
            json!({}),
            "Ongeldige client: kid ontbreekt in de header",
        ),
        (
            json!({"alg": "ES512", "typ": "at+jwt", "kid": EXT_KID}),
            json!({}),
            "Ongeldige client: typ at+jwt wordt niet geaccepteerd",
        ),
        (
            es512.clone(),
            json!({"iss": "https://unknown.test", "sub": "https://unknown.test"}),
            "Ongeldige client: onbekende applicatie https://unknown.test in ZORG-AB",
        ),
    ];
    for (header, patch, description) in cases {
        let mut f = w.form("system/Task.c");
        set(
            &mut f,
            "client_assertion",
            Some(w.sign_header(&header, &with(w.client_claims(), patch))),
        );
        expect(&w, &f, 400, "invalid_client", description).await;
    }
    // alg none.
    use base64::Engine;
    let b = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b(&json!({"alg": "none", "typ": "JWT", "kid": EXT_KID})),
        b(&w.client_claims())
    );
    let mut f = w.form("system/Task.c");
    set(&mut f, "client_assertion", Some(none));
    expect(
        &w,
        &f,
        400,
        "invalid_client",
        "Ongeldige client: algoritme none is niet toegestaan",
    )
    .await;
    // HS256 keyed with the public key (algorithm confusion).
    let input = format!(
        "{}.{}",
        b(&json!({"alg": "HS256", "typ": "JWT", "kid": EXT_KID})),
        b(&w.client_claims())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, w.ext_jwk.to_string().as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    let hs = format!(
        "{input}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    );
    let mut f = w.form("system/Task.c");
    set(&mut f, "client_assertion", Some(hs));
    expect(
        &w,
        &f,
        400,
        "invalid_client",
        "Ongeldige client: algoritme HS256 is niet toegestaan",
    )
    .await;
    // Signed by another key under our kid.
    let (other, _) = sim_kit::jose::p521_test_key(EXT_KID).expect("key");
    let forged = sim_kit::jose::sign_es512_with_header(&other, &es512, &w.client_claims()).expect("sign");
    let mut f = w.form("system/Task.c");
    set(&mut f, "client_assertion", Some(forged));
    expect(
        &w,
        &f,
        400,
        "invalid_client",
        "Ongeldige client: handtekening ongeldig",
    )
    .await;
    // Replay.
    let f = w.form("system/Task.c");
    assert_eq!(w.post(&f).await.0, 200);
    let mut again = w.form("system/Task.c");
    set(&mut again, "client_assertion", Some(f[3].1.clone()));
    expect(
        &w,
        &again,
        400,
        "invalid_client",
        "Ongeldige client: jti is al eerder gebruikt",
    )
    .await;
}

#[tokio::test]
async fn unknown_kid_refetches_the_jwks_at_most_once_per_interval() {
    let w = World::start_with(Options {
        tweak: |c| c.zorg_ab.jwks_refresh_min_interval = Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    assert_eq!(w.post(&w.form("system/Task.c")).await.0, 200);
    // Within the interval after a fetch an unknown kid causes no fetch at all ...
    let mut f = w.form("system/Task.c");
    let h = json!({"alg": "ES512", "typ": "JWT", "kid": "rotated-away"});
    set(
        &mut f,
        "client_assertion",
        Some(w.sign_header(&h, &w.client_claims())),
    );
    expect(
        &w,
        &f,
        400,
        "invalid_client",
        "Ongeldige client: onbekende kid rotated-away",
    )
    .await;
    assert_eq!(w.jwks_hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    // ... after it, one fetch for a burst of unknown kids.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = w.jwks_hits.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..5 {
        let mut f = w.form("system/Task.c");
        let h = json!({"alg": "ES512", "typ": "JWT", "kid": "rotated-away"});
        set(
            &mut f,
            "client_assertion",
            Some(w.sign_header(&h, &w.client_claims())),
        );
        expect(
            &w,
            &f,
            400,
            "invalid_client",
            "Ongeldige client: onbekende kid rotated-away",
        )
        .await;
    }
    let after = w.jwks_hits.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        after - before,
        1,
        "one refresh for the unknown kid, then rate-limited"
    );
}

// ---- step 4: invalid_grant ----

#[tokio::test]
async fn step4_grant_assertion() {
    let w = World::start().await;
    let n = now();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"aud": "https://other-as.test"}),
            "Ongeldige grant: aud is niet deze autorisatieserver",
        ),
        (
            json!({"iat": n - 600, "exp": n - 300}),
            "Ongeldige grant: verlopen (exp)",
        ),
        (
            json!({"iat": n + 600, "exp": n + 700}),
            "Ongeldige grant: iat ligt in de toekomst",
        ),
        (
            json!({"iat": n - 4000, "exp": n + 60}),
            "Ongeldige grant: geldigheidsduur (exp - iat) te lang",
        ),
        (
            json!({"sub": "1234"}),
            "Ongeldige grant: sub is geen URA (8 cijfers)",
        ),
        (
            json!({"iss": "https://someone-else.test"}),
            "Ongeldige grant: iss is niet de geauthenticeerde client",
        ),
        (
            json!({"bsn": "123456789"}),
            "Ongeldige grant: bsn is geen geldig BSN",
        ),
    ];
    for (patch, description) in cases {
        let mut f = w.form("system/Task.c");
        set(&mut f, "assertion", Some(w.sign(&with(w.grant_claims(), patch))));
        expect(&w, &f, 400, "invalid_grant", description).await;
    }
    let (other, _) = sim_kit::jose::p521_test_key(EXT_KID).expect("key");
    let forged = sim_kit::jose::sign_es512(&other, EXT_KID, &w.grant_claims()).expect("sign");
    let mut f = w.form("system/Task.c");
    set(&mut f, "assertion", Some(forged));
    expect(
        &w,
        &f,
        400,
        "invalid_grant",
        "Ongeldige grant: handtekening ongeldig",
    )
    .await;
    // Replayed grant with a fresh client assertion.
    let f = w.form("system/Task.c");
    assert_eq!(w.post(&f).await.0, 200);
    let mut again = w.form("system/Task.c");
    set(&mut again, "assertion", Some(f[1].1.clone()));
    expect(
        &w,
        &again,
        400,
        "invalid_grant",
        "Ongeldige grant: jti is al eerder gebruikt",
    )
    .await;
}

// ---- step 5 ----

#[tokio::test]
async fn step5_client_id_must_equal_sub() {
    let w = World::start().await;
    let mut f = w.form("system/Task.c");
    f.push(("client_id".into(), "https://someone-else.test".into()));
    expect(
        &w,
        &f,
        400,
        "invalid_request",
        "Ongeldig verzoek: client_id komt niet overeen met sub van de client_assertion",
    )
    .await;
    let mut ok = w.form("system/Task.c");
    ok.push(("client_id".into(), EXT_CLIENT.into()));
    assert_eq!(w.post(&ok).await.0, 200);
}

// ---- steps 6 and 7 ----

#[tokio::test]
async fn step6_initiating_application_not_qualified() {
    let w = World::start().await;
    let mut f = w.form("system/Task.c");
    set(
        &mut f,
        "assertion",
        Some(w.sign(&with(w.grant_claims(), json!({"sub": URA_UNQUALIFIED})))),
    );
    expect(&w, &f, 403, "access_denied", NOT_QUALIFIED).await;
    assert_eq!(
        NOT_QUALIFIED,
        "Initiërende applicatie beschikt niet over de vereiste capabilities."
    );
}

#[tokio::test]
async fn step6_can_be_switched_off() {
    let w = World::start_with(Options {
        tweak: |c| c.zorg_ab.check_capabilities = false,
        ..Default::default()
    })
    .await;
    let mut f = w.form("system/Task.c");
    set(
        &mut f,
        "assertion",
        Some(w.sign(&with(w.grant_claims(), json!({"sub": URA_UNQUALIFIED})))),
    );
    let (s, body, _) = w.post(&f).await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test]
async fn step7_destination_does_not_receive_via_twiin() {
    let w = World::start().await;
    let mut f = w.form("system/Task.c");
    set(
        &mut f,
        "assertion",
        Some(w.sign(&with(
            w.grant_claims(),
            json!({"destination": "urn:gbz:no-twiin"}),
        ))),
    );
    expect(&w, &f, 403, "access_denied", DESTINATION_REFUSES).await;
    assert_eq!(
        DESTINATION_REFUSES,
        "AORTA-deelnemer kan/wil interactie niet ontvangen via Twiin."
    );
}

#[tokio::test]
async fn step7_can_be_switched_off() {
    let w = World::start_with(Options {
        tweak: |c| c.zorg_ab.check_destination = false,
        ..Default::default()
    })
    .await;
    let mut f = w.form("system/Task.c");
    set(
        &mut f,
        "assertion",
        Some(w.sign(&with(
            w.grant_claims(),
            json!({"destination": "urn:gbz:no-twiin"}),
        ))),
    );
    assert_eq!(w.post(&f).await.0, 200);
}

// ---- steps 8 and 9 ----

#[tokio::test]
async fn step8_scope_cannot_be_translated() {
    let w = World::start().await;
    expect(
        &w,
        &w.form("system/Observation.c"),
        400,
        "invalid_request",
        "Kan scope niet vertalen: system/Observation.c",
    )
    .await;
    expect(
        &w,
        &w.form("openid"),
        400,
        "invalid_request",
        "Kan scope niet vertalen: openid",
    )
    .await;
}

#[tokio::test]
async fn step8_pull_interaction_without_authorization_base() {
    let w = World::start().await;
    expect(
        &w,
        &w.form("system/Task.r"),
        400,
        "invalid_request",
        PULL_WITHOUT_BASE,
    )
    .await;
    assert_eq!(
        PULL_WITHOUT_BASE,
        "Pull-interactie ontvangen zonder authorization_base"
    );
}

#[tokio::test]
async fn step9_bsn_required_beyond_notifications() {
    let w = World::start().await;
    let mut f = w.form("system/Patient.s");
    let g = with(w.grant_claims(), json!({"authorization_base": consent_token()}));
    set(&mut f, "assertion", Some(w.sign(&g)));
    expect(&w, &f, 400, "invalid_request", BSN_MISSING).await;
    assert_eq!(BSN_MISSING, "BSN van patient ontbreekt");
}

// ---- steps 10 and 11: GetTokenRequest outcomes passed on ----

#[tokio::test]
async fn step11_as_za_refusal_is_passed_on_faithfully() {
    let w = World::start().await;
    let mut f = w.form("system/Task.c");
    set(
        &mut f,
        "assertion",
        Some(w.sign(&with(w.grant_claims(), json!({"sub": URA_REFUSED_BY_AS_ZA})))),
    );
    expect(
        &w,
        &f,
        403,
        "access_denied",
        "Zorgaanbieder heeft geen toegang tot deze interactie",
    )
    .await;
}

// ---- size limits ----

#[tokio::test]
async fn oversized_form_and_token_are_refused() {
    let w = World::start().await;
    let mut f = w.form("system/Task.c");
    set(&mut f, "scope", Some("x".repeat(64 * 1024)));
    let (s, body, _) = w.post(&f).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (413, Some("invalid_request")),
        "{body}"
    );
    assert_eq!(
        body["error_description"],
        "Ongeldig verzoek: groter dan 32768 bytes"
    );
    let mut f = w.form("system/Task.c");
    let big = w.sign(&with(w.grant_claims(), json!({"pad": "y".repeat(13 * 1024)})));
    set(&mut f, "assertion", Some(big));
    expect(
        &w,
        &f,
        400,
        "invalid_request",
        "Ongeldig verzoek: assertion is groter dan 12288 bytes",
    )
    .await;
}

// ---- audit: fail closed, replay across replicas ----

#[tokio::test]
async fn audit_failure_fails_closed_with_503() {
    let w = World::start().await;
    w.sink.set_failing(true);
    let (s, body, headers) = w.post(&w.form("system/Task.c")).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1"),
        "a 503 says when to retry"
    );
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    w.sink.set_failing(false);
    assert_eq!(w.post(&w.form("system/Task.c")).await.0, 200);
}

/// While the audit store is down, gRPC health says so (NOT_SERVING overall and for the
/// service), and SERVING again once it is back; `liveness` stays SERVING.
#[tokio::test]
async fn health_is_not_serving_while_the_audit_store_is_down() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    let w = World::start().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", w.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut status_within_1s = async |service: &str, want: ServingStatus| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            let got = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .expect("health answers")
                .into_inner()
                .status;
            if got == want as i32 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "`{service}`: {got}, expected {want:?} within 1 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    status_within_1s("", ServingStatus::Serving).await;
    w.sink.set_failing(true);
    status_within_1s("", ServingStatus::NotServing).await;
    status_within_1s("twiin.v1.TwiinAuthz", ServingStatus::NotServing).await;
    status_within_1s("liveness", ServingStatus::Serving).await;
    w.sink.set_failing(false);
    status_within_1s("", ServingStatus::Serving).await;
    status_within_1s("twiin.v1.TwiinAuthz", ServingStatus::Serving).await;
}

/// Both token ids are registered in one round trip once both assertions passed their checks
/// (`client_auth`'s decision); the answers keep the seed's order.
#[tokio::test]
async fn a_replayed_client_assertion_is_invalid_client_whatever_the_grant() {
    let w = World::start().await;
    let first = w.form("system/Task.c");
    assert_eq!(w.post(&first).await.0, 200);
    let replayed_client = first[3].1.clone();
    // With a grant that fails its own checks: still the replay, step 3 comes first.
    let mut bad_grant = w.form("system/Task.c");
    set(&mut bad_grant, "client_assertion", Some(replayed_client.clone()));
    set(
        &mut bad_grant,
        "assertion",
        Some(w.sign(&with(w.grant_claims(), json!({"aud": "https://elders.example"})))),
    );
    expect(
        &w,
        &bad_grant,
        400,
        "invalid_client",
        "Ongeldige client: jti is al eerder gebruikt",
    )
    .await;
    // With a fresh, valid grant: the replay too; that grant was presented, so it is used up.
    let mut fresh_grant = w.form("system/Task.c");
    let grant = fresh_grant[1].1.clone();
    set(&mut fresh_grant, "client_assertion", Some(replayed_client));
    expect(
        &w,
        &fresh_grant,
        400,
        "invalid_client",
        "Ongeldige client: jti is al eerder gebruikt",
    )
    .await;
    let mut again = w.form("system/Task.c");
    set(&mut again, "assertion", Some(grant));
    expect(
        &w,
        &again,
        400,
        "invalid_grant",
        "Ongeldige grant: jti is al eerder gebruikt",
    )
    .await;
}

#[tokio::test]
async fn jti_replay_is_caught_across_two_instances_sharing_the_audit_store() {
    let (audit, sink) = audit_log::AuditLog::memory();
    let a = World::start_sharing(Options::default(), audit.clone(), sink.clone()).await;
    let b = World::start_sharing(Options::default(), audit, sink).await;
    let jti = uuid::Uuid::new_v4().to_string();
    // The same client (each world's ZORG-AB points at that world's copy of its JWKS) uses one
    // jti at replica a, then again at replica b.
    let mut f = a.form("system/Task.c");
    set(
        &mut f,
        "client_assertion",
        Some(a.sign(&with(a.client_claims(), json!({"jti": jti})))),
    );
    assert_eq!(a.post(&f).await.0, 200);
    let mut g = b.form("system/Task.c");
    set(
        &mut g,
        "client_assertion",
        Some(b.sign(&with(b.client_claims(), json!({"jti": jti})))),
    );
    expect(
        &b,
        &g,
        400,
        "invalid_client",
        "Ongeldige client: jti is al eerder gebruikt",
    )
    .await;
}

// ---- dependencies down or slow ----

#[tokio::test]
async fn zorg_ab_down_is_503_never_a_token() {
    let w = World::start_with(Options {
        tweak: |c| c.zorg_ab.url = format!("http://{}", closed_port()),
        ..Default::default()
    })
    .await;
    let (s, body, _) = w.post(&w.form("system/Task.c")).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .expect("d")
            .starts_with("ZORG-AB niet bereikbaar")
    );
}

#[tokio::test]
async fn zorg_ab_slow_is_504_never_a_token() {
    let shutdown = service_kit::CancellationToken::new();
    let hole = blackhole(shutdown.clone()).await;
    static HOLE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let _ = HOLE.set(format!("http://{hole}"));
    let w = World::start_with(Options {
        tweak: |c| c.zorg_ab.url = HOLE.get().expect("hole").clone(),
        ..Default::default()
    })
    .await;
    let (s, body, _) = w.post(&w.form("system/Task.c")).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (504, Some("temporarily_unavailable")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .expect("d")
            .starts_with("ZORG-AB antwoordt niet op tijd")
    );
    shutdown.cancel();
}

#[tokio::test]
async fn as_za_down_or_slow_never_yields_a_token() {
    let w = World::start_with(Options {
        tweak: |c| c.as_za.token_url = format!("http://{}/token", closed_port()),
        ..Default::default()
    })
    .await;
    let (s, body, _) = w.post(&w.form("system/Task.c")).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .expect("d")
            .starts_with("Autorisatie Server ZA niet bereikbaar")
    );

    let shutdown = service_kit::CancellationToken::new();
    let hole = blackhole(shutdown.clone()).await;
    static HOLE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let _ = HOLE.set(format!("http://{hole}/token"));
    let w = World::start_with(Options {
        tweak: |c| c.as_za.token_url = HOLE.get().expect("hole").clone(),
        ..Default::default()
    })
    .await;
    let (s, body, _) = w.post(&w.form("system/Task.c")).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (504, Some("temporarily_unavailable")),
        "{body}"
    );
    shutdown.cancel();
}

// ---- gRPC face ----

#[tokio::test]
async fn grpc_token_request_success_and_oauth_error_metadata() {
    let w = World::start().await;
    let mut client = w.grpc_client().await;
    let f = w.form("system/Task.c");
    let get = |k: &str| {
        f.iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let req = ehealth_proto::twiin::v1::TokenRequest {
        grant_type: get("grant_type"),
        assertion: get("assertion"),
        client_assertion_type: get("client_assertion_type"),
        client_assertion: get("client_assertion"),
        scope: get("scope"),
        client_id: String::new(),
    };
    let ok = client
        .issue_aorta_access_token(req.clone())
        .await
        .expect("token")
        .into_inner();
    assert_eq!(ok.scope, "create:Task:1.0:notification~~normaal");
    verify_aorta_token(&ok.access_token);
    let mut denied = w.form("system/Task.c");
    set(
        &mut denied,
        "assertion",
        Some(w.sign(&with(w.grant_claims(), json!({"sub": URA_UNQUALIFIED})))),
    );
    let req = ehealth_proto::twiin::v1::TokenRequest {
        assertion: denied
            .iter()
            .find(|(k, _)| k == "assertion")
            .expect("a")
            .1
            .clone(),
        client_assertion: w.sign(&w.client_claims()),
        ..req
    };
    let st = client.issue_aorta_access_token(req).await.expect_err("denied");
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    assert_eq!(st.message(), NOT_QUALIFIED);
    assert_eq!(
        st.metadata().get("oauth-error").and_then(|v| v.to_str().ok()),
        Some("access_denied")
    );
}

async fn get_json(w: &World, path: &str) -> (Value, reqwest::header::HeaderMap) {
    let r = w
        .client
        .get(format!("{}{path}", w.base_url()))
        .send()
        .await
        .expect("GET");
    let headers = r.headers().clone();
    (r.json().await.expect("json"), headers)
}

fn header(h: &reqwest::header::HeaderMap, k: &str) -> Option<String> {
    h.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// RFC 8414 metadata names the endpoints as they are served; both documents carry the
/// Cache-Control of the AORTA "Interfaces Autorisatie Server GTK" page.
#[tokio::test]
async fn metadata_and_jwks_are_published() {
    let w = World::start().await;
    let (m, headers) = get_json(&w, "/.well-known/oauth-authorization-server").await;
    assert_eq!(m["issuer"], ISSUER);
    // Development without TLS: the plain-HTTP address actually served, not an https URL
    // nobody answers.
    assert_eq!(m["token_endpoint"], format!("http://{}/oauth2/token", w.http));
    assert_eq!(m["jwks_uri"], format!("http://{}/.well-known/jwks.json", w.http));
    assert_eq!(
        m["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    assert_eq!(
        header(&headers, "cache-control").as_deref(),
        Some("must-revalidate, max-age=14400")
    );
    assert_eq!(header(&headers, "pragma").as_deref(), Some("no-cache"));
    let (jwks, headers) = get_json(&w, "/.well-known/jwks.json").await;
    assert_eq!(
        header(&headers, "cache-control").as_deref(),
        Some("must-revalidate, max-age=14400")
    );
    assert_eq!(header(&headers, "pragma").as_deref(), Some("no-cache"));
    assert_eq!(jwks["keys"][0]["kid"], OUR_KID);
    assert_eq!(jwks["keys"][0]["crv"], "P-521");
    // A client following the metadata reaches the token endpoint, with it as `aud`.
    let mut f = w.form("system/Task.c");
    let token_endpoint = m["token_endpoint"].as_str().expect("token_endpoint").to_owned();
    set(
        &mut f,
        "client_assertion",
        Some(w.sign(&with(w.client_claims(), json!({"aud": token_endpoint})))),
    );
    let r = w
        .client
        .post(&token_endpoint)
        .form(&f)
        .send()
        .await
        .expect("POST");
    assert_eq!(
        r.status().as_u16(),
        200,
        "aud = the advertised token endpoint is accepted"
    );
}

/// Production mode: TLS everywhere; the metadata names the issuer's https endpoints.
#[tokio::test]
async fn production_metadata_names_the_https_endpoints() {
    let w = World::start_with(Options {
        production: true,
        tweak: |c| c.http.metadata_max_age = Duration::from_secs(600),
        ..Default::default()
    })
    .await;
    let (m, headers) = get_json(&w, "/.well-known/oauth-authorization-server").await;
    assert_eq!(m["issuer"], ISSUER);
    assert_eq!(m["token_endpoint"], format!("{ISSUER}/oauth2/token"));
    assert_eq!(m["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
    assert_eq!(
        header(&headers, "cache-control").as_deref(),
        Some("must-revalidate, max-age=600")
    );
}

#[tokio::test]
async fn http_jwks_uri_is_refused_outside_development() {
    let w = World::start_with(Options {
        production: true,
        ..Default::default()
    })
    .await;
    let (s, body, _) = w.post(&w.form("system/Task.c")).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (400, Some("invalid_client")),
        "{body}"
    );
    let d = body["error_description"].as_str().expect("description");
    assert!(
        d.starts_with("Ongeldige client: jwks_uri http://127.0.0.1:") && d.ends_with("/jwks is niet https"),
        "{d}"
    );
}

#[tokio::test]
async fn https_token_endpoint_with_the_tls_switch() {
    let pki_dir = tempfile::tempdir().expect("tmp");
    let pki = dev_support::devpki::DevPki::ensure(&pki_dir.path().join("pki")).expect("dev PKI");
    static TLS: std::sync::OnceLock<service_kit::config::ServerTlsSettings> = std::sync::OnceLock::new();
    let _ = TLS.set(service_kit::config::ServerTlsSettings {
        cert: pki.path(dev_support::devpki::files::SERVICE_SERVER_CERT),
        key: pki.path(dev_support::devpki::files::SERVICE_SERVER_KEY),
        client_ca: None,
    });
    let w = World::start_with(Options {
        tweak: |c| c.http.tls = TLS.get().cloned(),
        ..Default::default()
    })
    .await;
    let ca = std::fs::read(pki.path(dev_support::devpki::files::SUITE_CA)).expect("CA");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("CA cert")])
        .build()
        .expect("client");
    let r = client
        .post(format!("https://localhost:{}/oauth2/token", w.http.port()))
        .form(&w.form("system/Task.c"))
        .send()
        .await
        .expect("HTTPS POST");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.json::<Value>().await.expect("json")["access_token"].is_string());
    // Plain HTTP on the TLS port gets nothing.
    assert!(
        w.client
            .post(w.token_url())
            .form(&w.form("system/Task.c"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn stale_stelseltoken_is_503_for_token_requests_too() {
    let w = World::start_with(Options {
        stelsel_backdate_secs: 7200,
        stelsel_max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    let (s, body, _) = w.post(&w.form("system/Task.c")).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .expect("d")
            .starts_with("geen voldoende actueel AORTA Stelseltoken")
    );
    assert!(body.get("access_token").is_none());
}

#[tokio::test]
async fn refusals_are_audited_with_their_outcome_and_the_zorg_ab_exchanges() {
    let w = World::start().await;
    let mut f = w.form("system/Task.c");
    set(
        &mut f,
        "assertion",
        Some(w.sign(&with(w.grant_claims(), json!({"sub": URA_UNQUALIFIED})))),
    );
    expect(&w, &f, 403, "access_denied", NOT_QUALIFIED).await;
    let events = w.events_of("uitgeven_aorta_access_token");
    use audit_log::Direction::*;
    let sent: Vec<_> = events.iter().filter(|e| e.direction == SentRequest).collect();
    assert!(sent.iter().any(|e| {
        e.peer
            .as_deref()
            .is_some_and(|p| p.contains("/applications?client_id="))
    }));
    assert!(
        sent.iter()
            .any(|e| e.peer.as_deref().is_some_and(|p| p.ends_with("/jwks")))
    );
    assert!(
        events
            .iter()
            .any(|e| e.direction == ReceivedResponse && e.status.as_deref() == Some("200"))
    );
    let ret = events
        .iter()
        .find(|e| e.direction == ReturnedResponse)
        .expect("returned");
    assert_eq!(ret.status.as_deref(), Some("403"));
    assert_eq!(ret.error_code.as_deref(), Some("access_denied"));
    assert_eq!(ret.ura.as_deref(), Some(URA_UNQUALIFIED));
    assert_eq!(ret.user_id.as_deref(), Some("UZI-900001"));
    assert_eq!(ret.token_jtis.len(), 2, "client assertion and grant jti");
    // Each outgoing call has its own requestID within the same initialRequestID.
    let received = events
        .iter()
        .find(|e| e.direction == ReceivedRequest)
        .expect("received");
    assert!(
        sent.iter()
            .all(|e| e.initial_request_id == received.initial_request_id
                && e.request_id != received.request_id)
    );
}

/// The same flow with the durable audit log on PostgreSQL (`make test` sets DATABASE_URL; a
/// missing database fails the test): the four directions are stored, found by the AORTA-ID
/// correlation id, with jti's and never a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_flow_is_recorded_in_postgres() {
    use audit_log::{AuditLog, AuditReader, EventFilter};
    use dev_support::test_database::TestDatabase;
    let db = TestDatabase::create()
        .await
        .expect("a PostgreSQL database (make test sets DATABASE_URL)");
    let audit = AuditLog::connect(&audit_log::AuditSettings::for_url(db.url()))
        .await
        .expect("audit log");
    let (_, unused) = AuditLog::memory();
    let w = World::start_sharing(Options::default(), audit, unused).await;
    let initial = "9a1c1e0e-6f0a-4a57-9d43-0b8a3c1f0a99";
    let r = w
        .client
        .post(w.token_url())
        .header(
            "AORTA-ID",
            format!("initialRequestID={initial}; requestID=1d5a2c8b-1f1e-4f3e-8a8e-9b2b9a1c2d3f"),
        )
        .form(&w.form("system/Task.c"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.expect("json");
    let claims = verify_aorta_token(body["access_token"].as_str().expect("token"));

    let reader = AuditReader::connect(&audit_log::AuditSettings::for_url(db.url()))
        .await
        .expect("reader");
    let events = reader
        .list(&EventFilter {
            correlation_id: Some(initial.into()),
            ..Default::default()
        })
        .await
        .expect("list");
    use audit_log::Direction::*;
    for d in [ReceivedRequest, SentRequest, ReceivedResponse, ReturnedResponse] {
        assert!(
            events.iter().any(|e| e.event.direction == d),
            "{d:?} stored: {events:?}"
        );
    }
    let returned = events
        .iter()
        .find(|e| e.event.direction == ReturnedResponse)
        .expect("returned");
    assert_eq!(returned.event.status.as_deref(), Some("200"));
    assert_eq!(returned.event.client_id.as_deref(), Some(EXT_CLIENT));
    assert!(
        returned
            .event
            .token_jtis
            .contains(&claims["jti"].as_str().expect("jti").to_owned())
    );
    assert!(
        reader.find_token_like().await.expect("scan").is_empty(),
        "no token in the table"
    );
}
