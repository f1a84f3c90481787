//! The Autorisatie Server ZA simulator validates GetTokenRequest (RFC 8693) and answers its own
//! OAuth errors; only a correct exchange gets a signed AORTA access token.

use as_za_sim::{ContextCode, Data, Interaction, Refusal, TrustedIssuer};
use serde_json::{Value, json};
use sim_kit::jose::{RsaSigner, p521_test_key, sign_es512_with_header};
use sim_kit::pki::{AortaPki, files};
use sim_kit::serve::Tls;

const ISS: &str = "https://gtk.test";
const AUD: &str = "https://as-za.test";

struct Fx {
    url: String,
    key: Vec<u8>,
    pki: AortaPki,
    client: reqwest::Client,
    stop: sim_kit::CancellationToken,
    dir: tempfile::TempDir,
}

/// A subject token as a GtK signs it (typ `gtk-subject+jwt`).
fn sign_es512(key: &[u8], kid: &str, claims: &Value) -> Result<String, sim_kit::jose::JoseError> {
    sign_es512_with_header(
        key,
        &json!({"alg": "ES512", "typ": as_za_sim::SUBJECT_TOKEN_TYP, "kid": kid}),
        claims,
    )
}

/// A client trusting the test CA, with the GtK's client certificate when `with_cert`.
fn client(dir: &std::path::Path, with_cert: bool) -> reqwest::Client {
    let read = |f: &str| std::fs::read(dir.join(f)).expect("pki file");
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&read(files::TLS_CA)).expect("ca")]);
    if with_cert {
        let mut pem = read(files::GTK_CLIENT_CERT);
        pem.extend(read(files::GTK_CLIENT_KEY));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    b.build().expect("client")
}

async fn fx() -> Fx {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = AortaPki::generate().expect("pki");
    pki.write(dir.path()).expect("write");
    let (key, jwk) = p521_test_key("gtk-1").expect("key");
    let i = |id: &str, pull| Interaction { id: id.into(), pull };
    let data = Data {
        issuer: AUD.into(),
        audience: "aorta".into(),
        access_token_ttl_secs: 300,
        signing_kid: "at-1".into(),
        signing_key: dir.path().join(files::AORTA_TOKEN_SIGNING_KEY),
        trusted_issuers: vec![TrustedIssuer {
            issuer: ISS.into(),
            key_files: vec![],
            jwks: vec![jwk],
        }],
        interactions: vec![
            i("create:Task:1.0:notification", false),
            i("search:Patient:1.0:request", true),
        ],
        contextcodes: vec![ContextCode {
            code: "BGZOPV".into(),
            interactions: vec!["search:Patient:1.0:request".into()],
        }],
        situations: vec!["normaal".into()],
        refusals: vec![Refusal {
            ura: "99999999".into(),
            status: 403,
            error: "access_denied".into(),
            description: "nee".into(),
        }],
    };
    let stop = sim_kit::CancellationToken::new();
    let tls = Tls {
        cert: dir.path().join(files::SIM_SERVER_CERT),
        key: dir.path().join(files::SIM_SERVER_KEY),
        client_ca: Some(dir.path().join(files::TLS_CA)),
    };
    let r = as_za_sim::start(data, "127.0.0.1:0".parse().expect("addr"), tls, stop.clone())
        .await
        .expect("starts");
    Fx {
        url: format!("{}/token", r.url()),
        key,
        pki,
        client: client(dir.path(), true),
        stop,
        dir,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn subject(patch: Value) -> Value {
    let n = now();
    let mut c = json!({"iss": ISS, "aud": AUD, "sub": "22222222", "iat": n, "exp": n + 60,
        "jti": uuid::Uuid::new_v4().to_string(), "client_id": "https://ext.test"});
    for (k, v) in patch.as_object().expect("object") {
        c[k] = v.clone();
    }
    c
}

async fn post(f: &Fx, form: &[(&str, &str)]) -> (u16, Value) {
    let r = f.client.post(&f.url).form(form).send().await.expect("POST");
    (r.status().as_u16(), r.json().await.expect("json"))
}

const TX: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

#[tokio::test]
async fn valid_exchange_gets_a_signed_aorta_token() {
    let f = fx().await;
    let st = sign_es512(&f.key, "gtk-1", &subject(json!({"bsn": "999993653"}))).expect("sign");
    let (s, body) = post(
        &f,
        &[
            ("grant_type", TX),
            ("subject_token", &st),
            ("subject_token_type", JWT),
            ("scope", "create:Task:1.0:notification~~normaal"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let signer = RsaSigner::from_pkcs8_pem("at-1", &f.pki.token_signing_key_pem).expect("key");
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(signer.public_jwk()).expect("jwk");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&["aorta"]);
    let claims = jsonwebtoken::decode::<Value>(
        body["access_token"].as_str().expect("token"),
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("key"),
        &v,
    )
    .expect("verifies")
    .claims;
    assert_eq!(claims["_vrb"]["_vrb_ura"], "22222222");
    assert_eq!(claims["_vrb"]["_vrb_bsn"], "999993653");
    f.stop.cancel();
}

#[tokio::test]
async fn refuses_every_contract_violation() {
    let f = fx().await;
    let ok = |patch: Value| sign_es512(&f.key, "gtk-1", &subject(patch)).expect("sign");
    let (other, _) = p521_test_key("gtk-1").expect("key");
    let forged = sign_es512(&other, "gtk-1", &subject(json!({}))).expect("sign");
    // A correctly signed token of another type (e.g. one of the GtK's grant assertions).
    let grant_typed = sign_es512_with_header(
        &f.key,
        &json!({"alg": "ES512", "typ": "JWT", "kid": "gtk-1"}),
        &subject(json!({})),
    )
    .expect("sign");
    let push = "create:Task:1.0:notification~~normaal";
    let t1 = ok(json!({}));
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("grant_type", "client_credentials".into())],
            "unsupported_grant_type",
        ),
        (
            vec![("grant_type", TX.into()), ("subject_token_type", JWT.into())],
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", TX.into()),
                ("subject_token", t1.clone()),
                ("subject_token_type", "x".into()),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", TX.into()),
                ("subject_token", forged),
                ("subject_token_type", JWT.into()),
                ("scope", push.into()),
            ],
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", TX.into()),
                ("subject_token", grant_typed),
                ("subject_token_type", JWT.into()),
                ("scope", push.into()),
            ],
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", TX.into()),
                ("subject_token", ok(json!({"aud": "x"}))),
                ("subject_token_type", JWT.into()),
                ("scope", push.into()),
            ],
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", TX.into()),
                ("subject_token", ok(json!({"exp": now() - 5}))),
                ("subject_token_type", JWT.into()),
                ("scope", push.into()),
            ],
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", TX.into()),
                ("subject_token", ok(json!({"iss": "https://evil.test"}))),
                ("subject_token_type", JWT.into()),
                ("scope", push.into()),
            ],
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", TX.into()),
                ("subject_token", ok(json!({"sub": "12"}))),
                ("subject_token_type", JWT.into()),
                ("scope", push.into()),
            ],
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", TX.into()),
                ("subject_token", ok(json!({}))),
                ("subject_token_type", JWT.into()),
                ("scope", "read:Unknown:1.0:x~~normaal".into()),
            ],
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", TX.into()),
                ("subject_token", ok(json!({}))),
                ("subject_token_type", JWT.into()),
                (
                    "scope",
                    "search:Patient:1.0:request~aorta.contextcode.BGZOPV~normaal".into(),
                ),
            ],
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", TX.into()),
                ("subject_token", ok(json!({}))),
                ("subject_token_type", JWT.into()),
                ("scope", "create:Task:1.0:notification".into()),
            ],
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", TX.into()),
                ("subject_token", ok(json!({}))),
                ("subject_token_type", JWT.into()),
            ],
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", TX.into()),
                ("subject_token", ok(json!({"sub": "99999999"}))),
                ("subject_token_type", JWT.into()),
                ("scope", push.into()),
            ],
            "access_denied",
        ),
    ];
    for (form, error) in cases {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, body) = post(&f, &form).await;
        assert_eq!(body["error"], error, "{form:?} → {body}");
        assert!(s == 400 || s == 403, "{s}");
        assert!(body.get("access_token").is_none());
    }
    // Replay of a subject token.
    let form = [
        ("grant_type", TX),
        ("subject_token", t1.as_str()),
        ("subject_token_type", JWT),
        ("scope", push),
    ];
    assert_eq!(post(&f, &form).await.0, 200);
    let (s, body) = post(&f, &form).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    // Without a client certificate there is no answer at all.
    assert!(
        client(f.dir.path(), false)
            .post(&f.url)
            .form(&form)
            .send()
            .await
            .is_err()
    );
    f.stop.cancel();
}

#[test]
fn the_shipped_data_file_loads() {
    let d: Data = sim_kit::data::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/as-za.toml"
    )))
    .expect("sim/data/as-za.toml parses");
    assert_eq!(d.signing_kid, "aorta-ts-1");
    assert!(d.contextcodes.iter().all(|c| {
        c.interactions
            .iter()
            .all(|i| d.interactions.iter().any(|x| &x.id == i))
    }));
}
