//! The bodies of the twiin-authz fuzz targets (`fuzz/`, issue 19), compiled only with the
//! `fuzzing` feature: the service's modules stay private, and the fuzz targets and the
//! regression test (`tests/fuzz_corpus.rs`) reach the parsers of hostile bytes through this one
//! door — the compact JWS/JWT reader (header, claims, algorithm allow-list, `kid`, signature
//! check), the OAuth token form, and the `AORTA-ID` header. Each panics only when a parser
//! breaks its own promises.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::aorta_id::AortaId;
use crate::issue_token::TokenRequest;
use crate::jws::{self, Alg};

const ALL: [Alg; 9] = [
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
    Alg::ES256,
    Alg::ES384,
    Alg::ES512,
];

/// Keys of every type the verifier handles, well-formed but matching no real signature.
fn jwks() -> Value {
    let b = |n: usize, v: u8| URL_SAFE_NO_PAD.encode(vec![v; n]);
    json!({"keys": [
        {"kty": "EC", "crv": "P-521", "kid": "es512", "x": b(66, 1), "y": b(66, 2)},
        {"kty": "EC", "crv": "P-256", "kid": "es256", "x": b(32, 1), "y": b(32, 2)},
        {"kty": "RSA", "kid": "rsa", "n": b(256, 0xC5), "e": "AQAB"},
        {"kty": "oct", "kid": "oct", "k": b(32, 7)},
    ]})
}

/// How far a token got through [`jws`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsStage {
    /// Not UTF-8.
    NotText,
    /// Not a compact JWS with JSON header and object claims.
    Malformed,
    /// Its algorithm is not allowed (or it asks for a `crit` extension).
    AlgorithmRefused,
    /// No usable key for its `kid`.
    NoKey,
    /// Its signature was checked and failed.
    BadSignature,
    /// Its signature verified.
    Verified,
}

/// A compact JWS as a peer sends it (UTF-8 text; other bytes cannot come through a form).
/// Returns how far it got (never `Verified`: no input carries a signature by these keys).
pub fn jws(data: &[u8]) -> JwsStage {
    let Ok(token) = std::str::from_utf8(data) else {
        return JwsStage::NotText;
    };
    let Ok(parsed) = jws::parse(token) else {
        return JwsStage::Malformed;
    };
    assert!(
        parsed.unverified_claims.is_object(),
        "claims accepted that are not a JSON object"
    );
    let Ok(alg) = parsed.alg(&ALL) else {
        return JwsStage::AlgorithmRefused;
    };
    assert!(ALL.contains(&alg), "an algorithm off the allow-list");
    let keys = jwks();
    let kid = parsed.kid().unwrap_or("es512");
    let Some(key) = jws::find_key(&keys, kid) else {
        return JwsStage::NoKey;
    };
    assert_ne!(
        key.get("kty").and_then(Value::as_str),
        Some("oct"),
        "a symmetric key was chosen"
    );
    match parsed.verify(alg, key) {
        Ok(_) => JwsStage::Verified,
        Err(_) => JwsStage::BadSignature,
    }
}

/// An `application/x-www-form-urlencoded` token request body.
pub fn token_form(data: &[u8]) -> bool {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(data).into_owned().collect();
    let known = [
        "grant_type",
        "assertion",
        "client_assertion_type",
        "client_assertion",
        "scope",
        "client_id",
    ];
    let repeated = known
        .iter()
        .any(|k| pairs.iter().filter(|(name, _)| name == k).count() > 1);
    let accepted = TokenRequest::from_pairs(pairs).is_ok();
    assert!(!(accepted && repeated), "a repeated parameter was accepted");
    accepted
}

/// An `AORTA-ID` header value; an accepted one reads back the same from its own rendering.
pub fn aorta_id(data: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(id) = AortaId::accept(Some(value)) else {
        return false;
    };
    let again = AortaId::accept(Some(&id.header_value()));
    assert_eq!(again.as_ref(), Ok(&id), "an accepted AORTA-ID does not read back");
    true
}
