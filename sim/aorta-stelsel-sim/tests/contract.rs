//! The Stelsel metadata simulator serves a signed Stelseltoken and refuses what its contract
//! does not offer.

use aorta_stelsel_sim::{Data, TokenSigningKey};
use sim_kit::pki::{AortaPki, files};

fn data(dir: &std::path::Path) -> Data {
    Data {
        issuer: "https://stelsel.test".into(),
        signer_key: dir.join(files::STELSEL_SIGNER_KEY),
        signer_chain: dir.join(files::STELSEL_SIGNER_CHAIN),
        validity_secs: 600,
        backdate_secs: 0,
        token_signing_keys: vec![TokenSigningKey {
            kid: "k1".into(),
            key: dir.join(files::AORTA_TOKEN_SIGNING_KEY),
        }],
    }
}

#[tokio::test]
async fn serves_a_signed_stelseltoken_with_x5c_and_the_token_signing_keys() {
    let dir = tempfile::tempdir().expect("tmp");
    AortaPki::generate()
        .expect("pki")
        .write(dir.path())
        .expect("write");
    let stop = sim_kit::CancellationToken::new();
    let r = aorta_stelsel_sim::start(
        data(dir.path()),
        "127.0.0.1:0".parse().expect("addr"),
        None,
        stop.clone(),
    )
    .await
    .expect("starts");
    let c = reqwest::Client::new();
    let resp = c
        .get(format!("{}/stelseltoken", r.url()))
        .header("accept", "application/jwt")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/jwt");
    let token = resp.text().await.expect("body");
    let (header, claims) = sim_kit::jose::decode_unverified(&token).expect("JWS");
    assert_eq!(header["typ"], "aorta-st+JWT");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["x5c"].as_array().expect("x5c").len(), 2);
    assert_eq!(claims["jwks"]["keys"][0]["kid"], "k1");
    // The signature verifies with the x5c leaf.
    use base64::Engine;
    let leaf = base64::engine::general_purpose::STANDARD
        .decode(header["x5c"][0].as_str().expect("leaf"))
        .expect("b64");
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).expect("cert");
    let key = jsonwebtoken::DecodingKey::from_rsa_der(cert.public_key().subject_public_key.data.as_ref());
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).expect("signature verifies");
    // Wrong Accept, wrong method.
    let html = c
        .get(format!("{}/stelseltoken", r.url()))
        .header("accept", "text/html")
        .send()
        .await
        .expect("GET");
    assert_eq!(html.status(), 406);
    assert_eq!(
        c.post(format!("{}/stelseltoken", r.url()))
            .send()
            .await
            .expect("POST")
            .status(),
        405
    );
    stop.cancel();
}

#[test]
fn refuses_data_without_keys_or_with_unreadable_files() {
    let dir = tempfile::tempdir().expect("tmp");
    AortaPki::generate()
        .expect("pki")
        .write(dir.path())
        .expect("write");
    let mut d = data(dir.path());
    d.token_signing_keys.clear();
    assert!(aorta_stelsel_sim::router(d).is_err());
    let mut d = data(dir.path());
    d.signer_key = dir.path().join("missing.pem");
    assert!(aorta_stelsel_sim::router(d).is_err());
}

#[test]
fn the_shipped_data_file_loads() {
    let d: Data = sim_kit::data::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/aorta-stelsel.toml"
    )))
    .expect("sim/data/aorta-stelsel.toml parses");
    assert_eq!(d.token_signing_keys[0].kid, "aorta-ts-1");
}

#[tokio::test]
async fn serves_over_https_when_asked() {
    let dir = tempfile::tempdir().expect("tmp");
    AortaPki::generate()
        .expect("pki")
        .write(dir.path())
        .expect("write");
    let stop = sim_kit::CancellationToken::new();
    let tls = sim_kit::serve::Tls {
        cert: dir.path().join(files::SIM_SERVER_CERT),
        key: dir.path().join(files::SIM_SERVER_KEY),
        client_ca: None,
    };
    let r = aorta_stelsel_sim::start(
        data(dir.path()),
        "127.0.0.1:0".parse().expect("addr"),
        Some(tls),
        stop.clone(),
    )
    .await
    .expect("starts");
    assert!(r.url().starts_with("https://127.0.0.1:"));
    let ca = std::fs::read(dir.path().join(files::TLS_CA)).expect("ca");
    let c = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("ca")])
        .build()
        .expect("client");
    let resp = c
        .get(format!("{}/stelseltoken", r.url()))
        .header("accept", "application/jwt")
        .send()
        .await
        .expect("GET over https");
    assert_eq!(resp.status(), 200);
    stop.cancel();
}
