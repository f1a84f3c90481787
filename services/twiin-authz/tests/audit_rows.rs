//! The audit trail meets every post-condition of the seed (issue 14), asserted column by column
//! on PostgreSQL: for every outcome row of both use cases and every refusal before a use case
//! starts, the stored rows are exactly the received request, each sent request with its
//! received response, and the returned response, with the columns and `attributes` keys the
//! services README table promises. `make test` sets DATABASE_URL; a missing database fails.

mod common;

use std::time::{Duration, SystemTime};

use audit_log::{AuditLog, AuditReader, Direction, EventFilter, StoredEvent};
use common::*;
use dev_support::test_database::TestDatabase;
use ehealth_proto::twiin::v1::{IssueTwiinAssertionsRequest, TokenRequest as GrpcTokenRequest};
use serde_json::{Value, json};

const UC_TOKEN: &str = "uitgeven_aorta_access_token";
const UC_ASSERTIONS: &str = "uitgeven_twiin_assertions";

/// The correlation ids one request is sent with.
struct Ids {
    initial: String,
    request: String,
    trace: String,
}

impl Ids {
    fn new() -> Ids {
        Ids {
            initial: uuid::Uuid::new_v4().to_string(),
            request: uuid::Uuid::new_v4().to_string(),
            trace: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    fn aorta_id(&self) -> String {
        format!("initialRequestID={}; requestID={}", self.initial, self.request)
    }

    fn traceparent(&self) -> String {
        format!("00-{}-00f067aa0ba902b7-01", self.trace)
    }
}

/// What the rows of one request must hold.
#[derive(Default)]
struct Want<'a> {
    use_case: &'a str,
    transport: &'a str,
    status: &'a str,
    error: Option<&'a str>,
    description: Option<&'a str>,
    /// The calls made, in order: a fragment of the URL and the status answered (None: no
    /// answer), and the error code of the answer.
    calls: Vec<(&'a str, Option<&'a str>, Option<&'a str>)>,
    client_id: Option<&'a str>,
    ura: Option<&'a str>,
    user_id: Option<&'a str>,
    user_role: Option<&'a str>,
    bsn: Option<&'a str>,
    scope: Option<&'a str>,
    /// The `jti`s known beforehand, in order; the subject token's and the AORTA token's (when
    /// `token_jti`) follow as the AS ZA exchange recorded them.
    jtis: Vec<String>,
    token_jti: bool,
    /// Attributes of the received request.
    received: Vec<(&'a str, Value)>,
    /// Attributes of the returned response.
    returned: Vec<(&'a str, Value)>,
}

async fn rows(reader: &AuditReader, ids: &Ids, expected: usize) -> Vec<StoredEvent> {
    // Trails of abandoned requests are written by their drop guard, shortly after.
    for _ in 0..200 {
        let mut events = reader
            .list(&EventFilter {
                correlation_id: Some(ids.initial.clone()),
                ..Default::default()
            })
            .await
            .expect("list");
        if events.len() >= expected {
            events.sort_by_key(|e| e.id);
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {expected} rows for {}", ids.initial);
}

fn attr<'e>(e: &'e StoredEvent, key: &str) -> Option<&'e Value> {
    e.event.attributes.get(key)
}

/// Checks every row of the request sent with `ids` against `want`; returns the rows.
async fn check(reader: &AuditReader, ids: &Ids, want: Want<'_>) -> Vec<StoredEvent> {
    let rows = rows(reader, ids, 2 + 2 * want.calls.len()).await;
    let name = format!("{} {} {:?}", want.use_case, want.status, want.description);
    assert_eq!(rows.len(), 2 + 2 * want.calls.len(), "{name}: {rows:#?}");
    let (received, returned) = (&rows[0], &rows[rows.len() - 1]);
    // Directions: received, (sent, received response)*, returned.
    assert_eq!(received.event.direction, Direction::ReceivedRequest, "{name}");
    assert_eq!(returned.event.direction, Direction::ReturnedResponse, "{name}");
    let mut jtis = want.jtis.clone();
    for (i, (fragment, status, error)) in want.calls.iter().enumerate() {
        let (sent, got) = (&rows[1 + 2 * i], &rows[2 + 2 * i]);
        assert_eq!(sent.event.direction, Direction::SentRequest, "{name} call {i}");
        assert_eq!(
            got.event.direction,
            Direction::ReceivedResponse,
            "{name} call {i}"
        );
        let url = sent.event.peer.clone().expect("the URL called");
        assert!(
            url.contains(fragment),
            "{name}: call {i} to {url}, not {fragment}"
        );
        assert_eq!(attr(sent, "url"), Some(&json!(url)), "{name}");
        assert!(
            attr(sent, "method").is_some_and(|m| m == "GET" || m == "POST"),
            "{name}"
        );
        assert_eq!(got.event.peer.as_deref(), Some(url.as_str()), "{name}");
        assert_eq!(got.event.status.as_deref(), *status, "{name}: status of {url}");
        assert_eq!(got.event.error_code.as_deref(), *error, "{name}: error of {url}");
        // Each call has its own requestID in the same chain.
        assert_eq!(sent.event.request_id, got.event.request_id, "{name}");
        assert_ne!(
            sent.event.request_id.as_deref(),
            Some(ids.request.as_str()),
            "{name}"
        );
        assert!(sent.event.time <= got.event.time, "{name}: answer after request");
        if status.is_some() {
            assert!(attr(got, "latency_ms").is_some_and(Value::is_number), "{name}");
        }
        if url.ends_with("/token") {
            // GetTokenRequest: the AORTA scope asked (when any) and the subject token's jti.
            let subject = attr(sent, "subject_token_jti")
                .and_then(Value::as_str)
                .expect("subject_token_jti");
            jtis.push(subject.to_owned());
            if *status == Some("200") {
                assert!(attr(got, "expires_in").is_some_and(Value::is_number), "{name}");
                assert!(attr(got, "granted_scope").is_some_and(Value::is_string), "{name}");
                if want.token_jti {
                    jtis.push(
                        attr(got, "token_jti")
                            .and_then(Value::as_str)
                            .expect("token_jti")
                            .to_owned(),
                    );
                }
            } else if status.is_some() {
                assert!(attr(got, "error_description").is_some(), "{name}");
            }
        }
    }
    for (i, e) in rows.iter().enumerate() {
        let ev = &e.event;
        let row = format!("{name}, row {i} ({:?})", ev.direction);
        assert_eq!(ev.service, "twiin-authz", "{row}");
        assert_eq!(ev.use_case, want.use_case, "{row}");
        assert_eq!(
            ev.trace_id.as_deref(),
            Some(ids.trace.as_str()),
            "{row}: trace id"
        );
        assert_eq!(
            ev.initial_request_id.as_deref(),
            Some(ids.initial.as_str()),
            "{row}"
        );
        assert_eq!(ev.client_id.as_deref(), want.client_id, "{row}: client_id");
        assert_eq!(ev.ura.as_deref(), want.ura, "{row}: ura");
        assert_eq!(ev.user_id.as_deref(), want.user_id, "{row}: user_id");
        assert_eq!(ev.user_role.as_deref(), want.user_role, "{row}: user_role");
        assert_eq!(ev.patient_bsn.as_deref(), want.bsn, "{row}: patient_bsn");
        assert_eq!(ev.patient_ins, None, "{row}");
        assert_eq!(ev.scope.as_deref(), want.scope, "{row}: scope");
        assert_eq!(ev.token_jtis, jtis, "{row}: token_jtis");
    }
    for e in [received, returned] {
        assert_eq!(
            e.event.request_id.as_deref(),
            Some(ids.request.as_str()),
            "{name}"
        );
        assert!(
            e.event
                .peer
                .as_deref()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{name}: the caller's address"
        );
    }
    assert_eq!(received.event.status, None, "{name}");
    assert_eq!(
        attr(received, "transport"),
        Some(&json!(want.transport)),
        "{name}"
    );
    for (k, v) in &want.received {
        assert_eq!(attr(received, k), Some(v), "{name}: received attribute {k}");
    }
    assert!(
        received.event.time < returned.event.time,
        "{name}: each event its own time"
    );
    assert_eq!(returned.event.status.as_deref(), Some(want.status), "{name}");
    assert_eq!(returned.event.error_code.as_deref(), want.error, "{name}");
    assert_eq!(
        attr(returned, "error_description").and_then(Value::as_str),
        want.description,
        "{name}"
    );
    assert!(
        attr(returned, "latency_ms").is_some_and(Value::is_number),
        "{name}"
    );
    for (k, v) in &want.returned {
        assert_eq!(attr(returned, k), Some(v), "{name}: returned attribute {k}");
    }
    rows
}

fn jti(token: &str) -> String {
    let (_, claims) = sim_kit::jose::decode_unverified(token).expect("JWS");
    claims["jti"].as_str().expect("jti").to_owned()
}

fn get<'f>(form: &'f [(String, String)], key: &str) -> &'f str {
    form.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// POSTs `body` with `content_type` and the ids; returns the status.
async fn post_raw(w: &World, ids: &Ids, content_type: &str, body: String) -> u16 {
    w.client
        .post(w.token_url())
        .header("content-type", content_type)
        .header("aorta-id", ids.aorta_id())
        .header("traceparent", ids.traceparent())
        .body(body)
        .send()
        .await
        .expect("POST")
        .status()
        .as_u16()
}

async fn post(w: &World, ids: &Ids, form: &[(String, String)]) -> u16 {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    post_raw(w, ids, "application/x-www-form-urlencoded", body).await
}

fn grpc_request<T>(ids: &Ids, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("aorta-id", ids.aorta_id().parse().expect("ascii"));
    r.metadata_mut()
        .insert("traceparent", ids.traceparent().parse().expect("ascii"));
    r
}

const ZORG_CLIENT: &str = "/applications?client_id=https%3A%2F%2Fgtk-extern.test";
const ZORG_DEST: &str = "/applications?client_id=urn%3Agbz%3Alocal-ehr";
const ZORG_NO_TWIIN: &str = "/applications?client_id=urn%3Agbz%3Ano-twiin";
const JWKS: &str = "/jwks";
const AS_ZA: &str = "/token";

struct Fixture {
    _db: TestDatabase,
    reader: AuditReader,
    audit: AuditLog,
}

async fn fixture() -> Fixture {
    let db = TestDatabase::create()
        .await
        .expect("a PostgreSQL database (make test sets DATABASE_URL)");
    let audit = AuditLog::connect(&audit_log::AuditSettings::for_url(db.url()))
        .await
        .expect("audit log");
    let reader = AuditReader::connect(&audit_log::AuditSettings::for_url(db.url()))
        .await
        .expect("reader");
    Fixture {
        _db: db,
        reader,
        audit,
    }
}

async fn world(f: &Fixture, opts: Options) -> World {
    let (_, unused) = AuditLog::memory();
    World::start_sharing(opts, f.audit.clone(), unused).await
}

/// Use case 3.2, every outcome row of the seed's table, over HTTP (and one over gRPC).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_outcome_is_recorded_column_by_column() {
    let f = fixture().await;
    let w = world(&f, Options::default()).await;
    let r = &f.reader;
    let ok_calls = |first: bool| {
        let mut calls = Vec::new();
        if first {
            calls.push((ZORG_CLIENT, Some("200"), None));
            calls.push((JWKS, Some("200"), None));
            calls.push((ZORG_DEST, Some("200"), None));
        }
        calls
    };

    // Step 11: issued. The first request of the client also fetches its registration, its
    // JWKS and the destination's registration.
    let ids = Ids::new();
    let form = w.form("system/Task.c");
    assert_eq!(post(&w, &ids, &form).await, 200);
    let (cj, gj) = (jti(get(&form, "client_assertion")), jti(get(&form, "assertion")));
    let mut calls = ok_calls(true);
    calls.push((AS_ZA, Some("200"), None));
    let rows = check(
        r,
        &ids,
        Want {
            use_case: UC_TOKEN,
            transport: "http",
            status: "200",
            calls,
            client_id: Some(EXT_CLIENT),
            ura: Some(URA_CARE),
            user_id: Some("UZI-900001"),
            user_role: Some("01.015"),
            scope: Some("system/Task.c"),
            jtis: vec![cj, gj],
            token_jti: true,
            received: vec![
                ("method", json!("POST")),
                ("path", json!("/oauth2/token")),
                ("content_type", json!("application/x-www-form-urlencoded")),
                ("grant_type", json!(JWT_BEARER)),
                ("client_assertion_type", json!(CLIENT_ASSERTION_TYPE)),
            ],
            returned: vec![
                ("granted_scope", json!("create:Task:1.0:notification~~normaal")),
                ("expires_in", json!(900)),
            ],
            ..Default::default()
        },
    )
    .await;
    // The GetTokenRequest: method, URL, AORTA scope, subject token jti.
    let sent = &rows[7];
    assert_eq!(attr(sent, "method"), Some(&json!("POST")));
    assert_eq!(
        attr(sent, "aorta_scope"),
        Some(&json!("create:Task:1.0:notification~~normaal"))
    );

    // Later requests use the cache: only the GetTokenRequest is sent.
    let refusal = |w: &World, grant: Value| {
        let mut form = w.form("system/Task.c");
        set(&mut form, "assertion", Some(w.sign(&grant)));
        form
    };
    type Case<'a> = (Vec<(String, String)>, Want<'a>);
    let mut cases: Vec<Case<'_>> = Vec::new();
    // Step 2: invalid_request (nothing is known of the client yet).
    let mut form = w.form("system/Task.c");
    set(&mut form, "grant_type", None);
    cases.push((
        form,
        Want {
            status: "400",
            error: Some("invalid_request"),
            description: Some("Ongeldig verzoek: grant_type ontbreekt"),
            scope: Some("system/Task.c"),
            ..Default::default()
        },
    ));
    // Step 3: invalid_client.
    let mut form = w.form("system/Task.c");
    set(
        &mut form,
        "client_assertion",
        Some(w.sign(&with(w.client_claims(), json!({"aud": "https://other.test"})))),
    );
    cases.push((
        form,
        Want {
            status: "400",
            error: Some("invalid_client"),
            description: Some("Ongeldige client: aud is niet deze autorisatieserver"),
            scope: Some("system/Task.c"),
            ..Default::default()
        },
    ));
    // Step 4: invalid_grant (the client assertion's jti is used up).
    let form = refusal(&w, with(w.grant_claims(), json!({"aud": "https://other.test"})));
    let cj = jti(get(&form, "client_assertion"));
    cases.push((
        form,
        Want {
            status: "400",
            error: Some("invalid_grant"),
            description: Some("Ongeldige grant: aud is niet deze autorisatieserver"),
            client_id: Some(EXT_CLIENT),
            scope: Some("system/Task.c"),
            jtis: vec![cj],
            ..Default::default()
        },
    ));
    let both =
        |form: &[(String, String)]| vec![jti(get(form, "client_assertion")), jti(get(form, "assertion"))];
    let subject = |ura: &'static str| (Some(EXT_CLIENT), Some(ura), Some("UZI-900001"), Some("01.015"));
    // Step 5: client_id mismatch.
    let mut form = w.form("system/Task.c");
    form.push(("client_id".into(), "https://someone-else.test".into()));
    let (c, u, us, ro) = subject(URA_CARE);
    cases.push((
        form.clone(),
        Want {
            status: "400",
            error: Some("invalid_request"),
            description: Some(
                "Ongeldig verzoek: client_id komt niet overeen met sub van de client_assertion",
            ),
            client_id: c,
            ura: u,
            user_id: us,
            user_role: ro,
            scope: Some("system/Task.c"),
            jtis: both(&form),
            received: vec![("client_id", json!("https://someone-else.test"))],
            ..Default::default()
        },
    ));
    // Step 6: not qualified.
    let form = refusal(&w, with(w.grant_claims(), json!({"sub": URA_UNQUALIFIED})));
    let (c, u, us, ro) = subject(URA_UNQUALIFIED);
    cases.push((
        form.clone(),
        Want {
            status: "403",
            error: Some("access_denied"),
            description: Some("Initiërende applicatie beschikt niet over de vereiste capabilities."),
            client_id: c,
            ura: u,
            user_id: us,
            user_role: ro,
            scope: Some("system/Task.c"),
            jtis: both(&form),
            ..Default::default()
        },
    ));
    // Step 7: destination does not receive via Twiin.
    let form = refusal(
        &w,
        with(w.grant_claims(), json!({"destination": "urn:gbz:no-twiin"})),
    );
    let (c, u, us, ro) = subject(URA_CARE);
    cases.push((
        form.clone(),
        Want {
            status: "403",
            error: Some("access_denied"),
            description: Some("AORTA-deelnemer kan/wil interactie niet ontvangen via Twiin."),
            calls: vec![(ZORG_NO_TWIIN, Some("200"), None)],
            client_id: c,
            ura: u,
            user_id: us,
            user_role: ro,
            scope: Some("system/Task.c"),
            jtis: both(&form),
            ..Default::default()
        },
    ));
    // Step 8: cannot translate / pull without authorization_base.
    for (scope, description) in [
        (
            "system/Observation.c",
            "Kan scope niet vertalen: system/Observation.c",
        ),
        (
            "system/Task.r",
            "Pull-interactie ontvangen zonder authorization_base",
        ),
    ] {
        let form = w.form(scope);
        cases.push((
            form.clone(),
            Want {
                status: "400",
                error: Some("invalid_request"),
                description: Some(description),
                client_id: c,
                ura: u,
                user_id: us,
                user_role: ro,
                scope: Some(scope),
                jtis: both(&form),
                ..Default::default()
            },
        ));
    }
    // Step 9: BSN missing.
    let mut form = w.form("system/Patient.s");
    set(
        &mut form,
        "assertion",
        Some(w.sign(&with(
            w.grant_claims(),
            json!({"authorization_base": consent_token()}),
        ))),
    );
    cases.push((
        form.clone(),
        Want {
            status: "400",
            error: Some("invalid_request"),
            description: Some("BSN van patient ontbreekt"),
            client_id: c,
            ura: u,
            user_id: us,
            user_role: ro,
            scope: Some("system/Patient.s"),
            jtis: both(&form),
            ..Default::default()
        },
    ));
    // Step 11: the AS ZA's refusal, passed on.
    let form = refusal(&w, with(w.grant_claims(), json!({"sub": URA_REFUSED_BY_AS_ZA})));
    let (c2, u2, us2, ro2) = subject(URA_REFUSED_BY_AS_ZA);
    cases.push((
        form.clone(),
        Want {
            status: "403",
            error: Some("access_denied"),
            description: Some("Zorgaanbieder heeft geen toegang tot deze interactie"),
            calls: vec![(AS_ZA, Some("403"), Some("access_denied"))],
            client_id: c2,
            ura: u2,
            user_id: us2,
            user_role: ro2,
            scope: Some("system/Task.c"),
            jtis: both(&form),
            ..Default::default()
        },
    ));
    for (form, want) in cases {
        let ids = Ids::new();
        let status = post(&w, &ids, &form).await;
        assert_eq!(status.to_string(), want.status, "{:?}", want.description);
        check(
            r,
            &ids,
            Want {
                use_case: UC_TOKEN,
                transport: "http",
                ..want
            },
        )
        .await;
    }

    // A consent token alone: the AS ZA decides the scope; step 7 then refuses it, and the
    // token it issued is recorded as discarded.
    let ids = Ids::new();
    let mut form = w.form("");
    set(&mut form, "scope", None);
    set(
        &mut form,
        "assertion",
        Some(w.sign(&with(
            w.grant_claims(),
            json!({"bsn": BSN, "authorization_base": consent_token(), "destination": "urn:gbz:no-twiin"}),
        ))),
    );
    assert_eq!(post(&w, &ids, &form).await, 403);
    let rows = check(
        r,
        &ids,
        Want {
            use_case: UC_TOKEN,
            transport: "http",
            status: "403",
            error: Some("access_denied"),
            description: Some("AORTA-deelnemer kan/wil interactie niet ontvangen via Twiin."),
            calls: vec![(AS_ZA, Some("200"), None)],
            client_id: Some(EXT_CLIENT),
            ura: Some(URA_CARE),
            user_id: Some("UZI-900001"),
            user_role: Some("01.015"),
            bsn: Some(BSN),
            scope: None,
            jtis: both(&form),
            token_jti: true,
            ..Default::default()
        },
    )
    .await;
    let returned = rows.last().expect("returned");
    let issued = attr(&rows[2], "token_jti").expect("the AS ZA's token");
    assert_eq!(attr(returned, "discarded_access_token_jti"), Some(issued));
    assert!(attr(returned, "discarded_granted_scope").is_some());

    // The same use case over gRPC.
    let ids = Ids::new();
    let form = w.form("system/Task.c");
    let msg = GrpcTokenRequest {
        grant_type: get(&form, "grant_type").into(),
        assertion: get(&form, "assertion").into(),
        client_assertion_type: get(&form, "client_assertion_type").into(),
        client_assertion: get(&form, "client_assertion").into(),
        scope: "system/Task.c".into(),
        client_id: String::new(),
    };
    let mut grpc = w.grpc_client().await;
    grpc.issue_aorta_access_token(grpc_request(&ids, msg))
        .await
        .expect("token over gRPC");
    check(
        r,
        &ids,
        Want {
            use_case: UC_TOKEN,
            transport: "grpc",
            status: "200",
            calls: vec![(AS_ZA, Some("200"), None)],
            client_id: Some(EXT_CLIENT),
            ura: Some(URA_CARE),
            user_id: Some("UZI-900001"),
            user_role: Some("01.015"),
            scope: Some("system/Task.c"),
            jtis: both(&form),
            token_jti: true,
            received: vec![("method", json!("twiin.v1.TwiinAuthz/IssueAortaAccessToken"))],
            returned: vec![("grpc_code", json!("OK"))],
            ..Default::default()
        },
    )
    .await;
    assert!(
        r.find_token_like().await.expect("scan").is_empty(),
        "no token in the table"
    );
}

/// Refusals before use case 3.2 starts, on both faces: each still gets its received request and
/// returned response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_use_case_are_recorded() {
    let f = fixture().await;
    let w = world(&f, Options::default()).await;
    let r = &f.reader;
    let form = w.form("system/Task.c");
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    // Wrong Content-Type.
    let ids = Ids::new();
    assert_eq!(post_raw(&w, &ids, "application/json", "{}".into()).await, 400);
    check(
        r,
        &ids,
        Want {
            use_case: UC_TOKEN,
            transport: "http",
            status: "400",
            error: Some("invalid_request"),
            description: Some("Ongeldig verzoek: Content-Type moet application/x-www-form-urlencoded zijn"),
            received: vec![
                ("content_type", json!("application/json")),
                ("body_bytes", json!(2)),
            ],
            ..Default::default()
        },
    )
    .await;
    // A repeated parameter.
    let ids = Ids::new();
    let twice = format!("{body}&scope=system%2FTask.u");
    assert_eq!(
        post_raw(&w, &ids, "application/x-www-form-urlencoded", twice).await,
        400
    );
    check(
        r,
        &ids,
        Want {
            use_case: UC_TOKEN,
            transport: "http",
            status: "400",
            error: Some("invalid_request"),
            description: Some("Ongeldig verzoek: parameter scope komt meer dan eens voor"),
            ..Default::default()
        },
    )
    .await;
    // An oversized body: 413.
    let ids = Ids::new();
    let big = format!("{body}&pad={}", "x".repeat(40 * 1024));
    assert_eq!(
        post_raw(&w, &ids, "application/x-www-form-urlencoded", big).await,
        413
    );
    check(
        r,
        &ids,
        Want {
            use_case: UC_TOKEN,
            transport: "http",
            status: "413",
            error: Some("invalid_request"),
            description: Some("Ongeldig verzoek: groter dan 32768 bytes"),
            ..Default::default()
        },
    )
    .await;
    // A malformed AORTA-ID: recorded under a new chain id, with the text received.
    let trace = Ids::new();
    let status = w
        .client
        .post(w.token_url())
        .header("aorta-id", "initialRequestID=nonsense")
        .header("traceparent", trace.traceparent())
        .form(&form)
        .send()
        .await
        .expect("POST")
        .status()
        .as_u16();
    assert_eq!(status, 400);
    let found = f
        .reader
        .list(&EventFilter {
            correlation_id: Some(trace.trace.clone()),
            ..Default::default()
        })
        .await
        .expect("by trace id");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(
        attr(&found[0], "aorta_id_received"),
        Some(&json!("initialRequestID=nonsense"))
    );
    assert_eq!(found[1].event.status.as_deref(), Some("400"));
    assert_eq!(
        attr(&found[1], "error_description").and_then(Value::as_str),
        Some("Ongeldig verzoek: AORTA-ID moet de vorm \"initialRequestID=<uuid>; requestID=<uuid>\" hebben")
    );
    assert_eq!(
        found[0].event.initial_request_id,
        found[1].event.initial_request_id
    );
    // The same over gRPC, for both use cases: a context failure before the use case.
    let mut grpc = w.grpc_client().await;
    for use_case in [UC_TOKEN, UC_ASSERTIONS] {
        let trace = Ids::new();
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert("aorta-id", "nonsense".parse().expect("ascii"));
        md.insert("traceparent", trace.traceparent().parse().expect("ascii"));
        let st = if use_case == UC_TOKEN {
            let mut req = tonic::Request::new(GrpcTokenRequest::default());
            *req.metadata_mut() = md;
            grpc.issue_aorta_access_token(req).await.expect_err("refused")
        } else {
            let mut req = tonic::Request::new(IssueTwiinAssertionsRequest::default());
            *req.metadata_mut() = md;
            grpc.issue_twiin_assertions(req).await.expect_err("refused")
        };
        assert_eq!(st.code(), tonic::Code::InvalidArgument);
        let found = f
            .reader
            .list(&EventFilter {
                correlation_id: Some(trace.trace.clone()),
                ..Default::default()
            })
            .await
            .expect("by trace id");
        assert_eq!(found.len(), 2, "{use_case}: {found:#?}");
        assert_eq!(found[0].event.use_case, use_case);
        assert_eq!(attr(&found[0], "aorta_id_received"), Some(&json!("nonsense")));
        assert_eq!(attr(&found[1], "grpc_code"), Some(&json!("INVALID_ARGUMENT")));
    }
}

/// Use case 3.1, every outcome row, and the Resource Broker check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_assertions_outcome_is_recorded_column_by_column() {
    let f = fixture().await;
    let w = world(&f, Options::default()).await;
    let r = &f.reader;
    let mut grpc = w.grpc_client().await;
    let scope = "create:Task:1.0:notification~~normaal";
    let req = |token: String, audience: &str| IssueTwiinAssertionsRequest {
        source_token: token,
        audience: audience.into(),
        authz_base: String::new(),
    };
    // Step 6: issued (the audience's registration is looked up once).
    let ids = Ids::new();
    let src = w.source_claims(scope);
    let out = grpc
        .issue_twiin_assertions(grpc_request(&ids, req(w.source_token(&src), EXT_AS)))
        .await
        .expect("assertions")
        .into_inner();
    let src_jti = src["jti"].as_str().expect("jti").to_owned();
    check(
        r,
        &ids,
        Want {
            use_case: UC_ASSERTIONS,
            transport: "grpc",
            status: "200",
            calls: vec![(
                "/applications?authorization_server=https%3A%2F%2Fgtk-extern.test",
                Some("200"),
                None,
            )],
            client_id: Some(EXT_CLIENT),
            ura: Some(URA_CARE),
            user_id: Some("UZI-900001"),
            user_role: Some("01.015"),
            bsn: Some(BSN),
            scope: Some(scope),
            jtis: vec![src_jti, jti(&out.client_assertion), jti(&out.assertion)],
            received: vec![
                ("method", json!("twiin.v1.TwiinAuthz/IssueTwiinAssertions")),
                ("audience", json!(EXT_AS)),
            ],
            returned: vec![
                ("grpc_code", json!("OK")),
                ("granted_scope", json!("system/Task.cu")),
            ],
            ..Default::default()
        },
    )
    .await;
    // Step 2, step 3, step 5, and an unregistered audience.
    let pull = w.source_claims("search:Patient:1.0:request~aorta.contextcode.BGZOPV~normaal");
    let expired = with(w.source_claims(scope), json!({"exp": now() - 5}));
    let cases = [
        (
            req(String::new(), EXT_AS),
            "400",
            "INVALID_ARGUMENT",
            "invalid_request",
            "Ongeldig verzoek: sourceToken ontbreekt",
            None,
        ),
        (
            req(w.source_token(&expired), EXT_AS),
            "401",
            "UNAUTHENTICATED",
            "invalid_token",
            "Ongeldig token: verlopen",
            None,
        ),
        (
            req(w.source_token(&pull), EXT_AS),
            "400",
            "INVALID_ARGUMENT",
            "invalid_request",
            "AORTA access_token mist vereiste authorization_base",
            Some(pull.clone()),
        ),
        (
            req(
                w.source_token(&w.source_claims(scope)),
                "https://unregistered.test",
            ),
            "400",
            "INVALID_ARGUMENT",
            "invalid_request",
            "Ongeldig verzoek: audience is geen in ZORG-AB geregistreerde autorisatieserver",
            None,
        ),
    ];
    for (msg, status, code, error, description, passed_step3) in cases {
        let ids = Ids::new();
        let audience = msg.audience.clone();
        let token = msg.source_token.clone();
        grpc.issue_twiin_assertions(grpc_request(&ids, msg))
            .await
            .expect_err(description);
        let unregistered = audience == "https://unregistered.test";
        // The audience's registration is found before step 5: its client id is recorded.
        let audience_known = passed_step3.is_some();
        let step3 = audience_known || unregistered;
        let claims = passed_step3.unwrap_or_else(|| {
            sim_kit::jose::decode_unverified(&token)
                .map(|(_, c)| c)
                .unwrap_or(Value::Null)
        });
        check(
            r,
            &ids,
            Want {
                use_case: UC_ASSERTIONS,
                transport: "grpc",
                status,
                error: Some(error),
                description: Some(description),
                calls: if unregistered {
                    vec![(
                        "authorization_server=https%3A%2F%2Funregistered.test",
                        Some("404"),
                        Some("not_found"),
                    )]
                } else {
                    vec![]
                },
                client_id: audience_known.then_some(EXT_CLIENT),
                ura: step3.then_some(URA_CARE),
                user_id: step3.then_some("UZI-900001"),
                user_role: step3.then_some("01.015"),
                bsn: step3.then_some(BSN),
                scope: step3.then(|| claims["scope"].as_str().expect("scope")),
                jtis: if step3 {
                    vec![claims["jti"].as_str().expect("jti").to_owned()]
                } else {
                    vec![]
                },
                returned: vec![("grpc_code", json!(code))],
                ..Default::default()
            },
        )
        .await;
    }
    // Not the Resource Broker (identities configured, no certificate).
    let brokers = world(
        &f,
        Options {
            tweak: |c| c.resource_broker.identities = vec!["resource-broker.localhost".into()],
            ..Default::default()
        },
    )
    .await;
    let ids = Ids::new();
    let st = brokers
        .grpc_client()
        .await
        .issue_twiin_assertions(grpc_request(
            &ids,
            req(brokers.source_token(&brokers.source_claims(scope)), EXT_AS),
        ))
        .await
        .expect_err("not the broker");
    assert_eq!(st.code(), tonic::Code::PermissionDenied);
    check(
        r,
        &ids,
        Want {
            use_case: UC_ASSERTIONS,
            transport: "grpc",
            status: "403",
            error: Some("access_denied"),
            description: Some("Alleen de Resource Broker mag TWIIN assertions aanvragen"),
            returned: vec![("grpc_code", json!("PERMISSION_DENIED"))],
            received: vec![("audience", json!(EXT_AS))],
            ..Default::default()
        },
    )
    .await;
}

/// Dependencies: a stale Stelseltoken, an unreachable AS ZA, and time-outs on both faces (the
/// handler is dropped; its trail records the time-out and the call left without an answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_dependencies_and_time_outs_are_recorded() {
    let f = fixture().await;
    let r = &f.reader;
    // Stale Stelseltoken: 503 after step 2.
    let stale = world(
        &f,
        Options {
            stelsel_backdate_secs: 7200,
            stelsel_max_age: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .await;
    let ids = Ids::new();
    assert_eq!(post(&stale, &ids, &stale.form("system/Task.c")).await, 503);
    check(
        r,
        &ids,
        Want {
            use_case: UC_TOKEN,
            transport: "http",
            status: "503",
            error: Some("temporarily_unavailable"),
            description: Some("geen voldoende actueel AORTA Stelseltoken"),
            scope: Some("system/Task.c"),
            ..Default::default()
        },
    )
    .await;
    // The AS ZA unreachable: the call is recorded with what went wrong.
    static DOWN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let _ = DOWN.set(format!("https://{}/token", closed_port()));
    let down = world(
        &f,
        Options {
            tweak: |c| c.as_za.token_url = DOWN.get().expect("url").clone(),
            ..Default::default()
        },
    )
    .await;
    let ids = Ids::new();
    let form = down.form("system/Task.c");
    assert_eq!(post(&down, &ids, &form).await, 503);
    let rows = check(
        r,
        &ids,
        Want {
            use_case: UC_TOKEN,
            transport: "http",
            status: "503",
            error: Some("temporarily_unavailable"),
            description: Some("Autorisatie Server ZA niet bereikbaar"),
            calls: vec![
                (ZORG_CLIENT, Some("200"), None),
                (JWKS, Some("200"), None),
                (ZORG_DEST, Some("200"), None),
                (AS_ZA, None, Some("unreachable")),
            ],
            client_id: Some(EXT_CLIENT),
            ura: Some(URA_CARE),
            user_id: Some("UZI-900001"),
            user_role: Some("01.015"),
            scope: Some("system/Task.c"),
            jtis: vec![jti(get(&form, "client_assertion")), jti(get(&form, "assertion"))],
            ..Default::default()
        },
    )
    .await;
    // The details stay in the audit log, not in the answer.
    assert!(attr(&rows[8], "error_description").is_some_and(|d| d.as_str().is_some_and(|d| !d.is_empty())));
    // Time-outs: the AS ZA never answers, the request budget is short.
    let shutdown = service_kit::CancellationToken::new();
    static HOLE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let _ = HOLE.set(format!("https://{}/token", blackhole(shutdown.clone()).await));
    let slow = world(
        &f,
        Options {
            tweak: |c| {
                c.as_za.token_url = HOLE.get().expect("url").clone();
                c.as_za.timeout = Duration::from_secs(30);
                c.zorg_ab.timeout = Duration::from_secs(5);
                c.http.request_timeout = Duration::from_secs(2);
                c.server.request_timeout = Duration::from_secs(2);
            },
            ..Default::default()
        },
    )
    .await;
    let ids = Ids::new();
    let form = slow.form("system/Task.c");
    assert_eq!(post(&slow, &ids, &form).await, 504);
    let timed_out = Want {
        use_case: UC_TOKEN,
        transport: "http",
        status: "504",
        error: Some("temporarily_unavailable"),
        description: Some("time-out: de verwerking duurde te lang; er is niets uitgegeven"),
        calls: vec![
            (ZORG_CLIENT, Some("200"), None),
            (JWKS, Some("200"), None),
            (ZORG_DEST, Some("200"), None),
            (AS_ZA, None, Some("no_answer")),
        ],
        client_id: Some(EXT_CLIENT),
        ura: Some(URA_CARE),
        user_id: Some("UZI-900001"),
        user_role: Some("01.015"),
        scope: Some("system/Task.c"),
        jtis: vec![jti(get(&form, "client_assertion")), jti(get(&form, "assertion"))],
        ..Default::default()
    };
    check(r, &ids, timed_out).await;
    // gRPC: the server's deadline drops the handler.
    let ids = Ids::new();
    let form = slow.form("system/Task.c");
    let msg = GrpcTokenRequest {
        grant_type: get(&form, "grant_type").into(),
        assertion: get(&form, "assertion").into(),
        client_assertion_type: get(&form, "client_assertion_type").into(),
        client_assertion: get(&form, "client_assertion").into(),
        scope: "system/Task.c".into(),
        client_id: String::new(),
    };
    slow.grpc_client()
        .await
        .issue_aorta_access_token(grpc_request(&ids, msg))
        .await
        .expect_err("deadline");
    check(
        r,
        &ids,
        Want {
            use_case: UC_TOKEN,
            transport: "grpc",
            status: "504",
            error: Some("temporarily_unavailable"),
            description: Some("time-out: de verwerking duurde te lang; er is niets uitgegeven"),
            calls: vec![(AS_ZA, None, Some("no_answer"))],
            client_id: Some(EXT_CLIENT),
            ura: Some(URA_CARE),
            user_id: Some("UZI-900001"),
            user_role: Some("01.015"),
            scope: Some("system/Task.c"),
            jtis: vec![jti(get(&form, "client_assertion")), jti(get(&form, "assertion"))],
            returned: vec![("grpc_code", json!("DEADLINE_EXCEEDED"))],
            ..Default::default()
        },
    )
    .await;
    shutdown.cancel();
}

/// The Stelseltoken fetches (the precondition of both use cases) are recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stelseltoken_fetches_are_recorded() {
    let f = fixture().await;
    let started = SystemTime::now();
    let _w = world(&f, Options::default()).await;
    let fetches: Vec<StoredEvent> = f
        .reader
        .list(&EventFilter {
            since: Some(started - Duration::from_secs(1)),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_iter()
        .filter(|e| e.event.use_case == "ophalen_stelseltoken")
        .collect();
    assert_eq!(fetches.len(), 2, "{fetches:#?}");
    let (sent, got) = (&fetches[0], &fetches[1]);
    assert_eq!(sent.event.direction, Direction::SentRequest);
    assert_eq!(got.event.direction, Direction::ReceivedResponse);
    assert!(
        sent.event
            .peer
            .as_deref()
            .is_some_and(|p| p.ends_with("/stelseltoken"))
    );
    assert_eq!(attr(sent, "method"), Some(&json!("GET")));
    assert_eq!(got.event.status.as_deref(), Some("200"));
    assert_eq!(got.event.error_code, None);
    assert!(attr(got, "latency_ms").is_some_and(Value::is_number));
    assert_eq!(got.event.token_jtis.len(), 1, "the Stelseltoken's jti");
    assert!(sent.event.trace_id.is_some() && sent.event.initial_request_id.is_some());
}
