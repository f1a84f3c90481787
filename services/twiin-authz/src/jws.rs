//! JWS checking for every token this service receives (SPEC.md §3.1 step 3, §3.2 steps 3–4),
//! following RFC 8725: an explicit algorithm allow-list (never `none`, never HMAC for
//! private_key_jwt), the key type and curve must match the algorithm, and the key is chosen by
//! `kid` from keys we obtained ourselves (never from the token's own `jwk`/`jku`/`x5u`).
//!
//! RS*/PS*/ES256/ES384 are verified by `jsonwebtoken` (aws-lc-rs backend); ES512 (P-521), which
//! `jsonwebtoken` lacks, by aws-lc-rs directly. We parse the header ourselves because
//! `jsonwebtoken::decode_header` rejects ES512 outright.

use aws_lc_rs::signature::{ECDSA_P521_SHA512_FIXED, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

pub(crate) use crate::config::Alg;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JwsError {
    #[error("geen geldige compacte JWS ({0})")]
    Malformed(String),
    #[error("algoritme {0} is niet toegestaan")]
    AlgorithmNotAllowed(String),
    #[error("kid ontbreekt in de header")]
    NoKid,
    #[error("kid in de header is geen tekst")]
    KidNotText,
    #[error("header-parameter crit wordt niet ondersteund")]
    Critical,
    #[error("sleutel {0} past niet bij algoritme {1}")]
    KeyMismatch(String, String),
    #[error("handtekening ongeldig")]
    BadSignature,
}

impl Alg {
    pub(crate) fn parse(s: &str) -> Option<Alg> {
        Some(match s {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "ES512" => Alg::ES512,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
        }
    }

    fn jsonwebtoken(self) -> Option<jsonwebtoken::Algorithm> {
        use jsonwebtoken::Algorithm as A;
        Some(match self {
            Alg::RS256 => A::RS256,
            Alg::RS384 => A::RS384,
            Alg::RS512 => A::RS512,
            Alg::PS256 => A::PS256,
            Alg::PS384 => A::PS384,
            Alg::PS512 => A::PS512,
            Alg::ES256 => A::ES256,
            Alg::ES384 => A::ES384,
            Alg::ES512 => return None,
        })
    }

    /// `kty` (and `crv`) a key for this algorithm must have.
    fn key_fits(self, jwk: &Value) -> bool {
        let kty = jwk.get("kty").and_then(Value::as_str);
        let crv = jwk.get("crv").and_then(Value::as_str);
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => kty == Some("RSA"),
            Alg::ES256 => kty == Some("EC") && crv == Some("P-256"),
            Alg::ES384 => kty == Some("EC") && crv == Some("P-384"),
            Alg::ES512 => kty == Some("EC") && crv == Some("P-521"),
        }
    }
}

/// The JOSE header fields we act on. `alg` must be a string (without it there is no JWS); the
/// others are read leniently so that a wrongly typed one (a numeric `kid`) is refused by the
/// step that checks the token, with that step's error, rather than as an unreadable request.
#[derive(Debug, Clone)]
pub(crate) struct RawHeader {
    pub(crate) alg: String,
    pub(crate) typ: Option<String>,
    pub(crate) kid: Option<String>,
    pub(crate) x5c: Option<Vec<String>>,
    /// Members present with another JSON type than JOSE gives them (`kid`, `typ`, `x5c`).
    pub(crate) ill_typed: Vec<&'static str>,
    /// A `crit` member: extensions we do not implement, so the token must be refused
    /// (RFC 7515 §4.1.11).
    pub(crate) critical: bool,
}

#[derive(Deserialize)]
struct HeaderJson {
    alg: String,
    #[serde(default)]
    typ: Option<Value>,
    #[serde(default)]
    kid: Option<Value>,
    #[serde(default)]
    x5c: Option<Value>,
    #[serde(default)]
    crit: Option<Value>,
}

impl From<HeaderJson> for RawHeader {
    fn from(h: HeaderJson) -> Self {
        let mut ill_typed = Vec::new();
        let mut text = |name: &'static str, v: Option<Value>| match v {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                ill_typed.push(name);
                None
            }
        };
        let typ = text("typ", h.typ);
        let kid = text("kid", h.kid);
        let x5c = match h.x5c {
            None => None,
            Some(v) => match serde_json::from_value::<Vec<String>>(v) {
                Ok(list) => Some(list),
                Err(_) => {
                    ill_typed.push("x5c");
                    None
                }
            },
        };
        RawHeader {
            alg: h.alg,
            typ,
            kid,
            x5c,
            ill_typed,
            critical: h.crit.is_some(),
        }
    }
}

/// A token split into its parts, header parsed, nothing verified yet.
#[derive(Debug, Clone)]
pub(crate) struct Parsed<'a> {
    pub(crate) token: &'a str,
    pub(crate) header: RawHeader,
    /// The unverified claims: only for routing (finding the issuer's keys) before verification.
    pub(crate) unverified_claims: Value,
    signing_input: &'a str,
    signature: &'a str,
}

pub(crate) fn b64d(s: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwsError::Malformed("base64url".into()))
}

pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, JwsError> {
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| JwsError::Malformed("geen drie delen".into()))?;
    let (h, c) = signing_input
        .split_once('.')
        .ok_or_else(|| JwsError::Malformed("geen drie delen".into()))?;
    if c.contains('.') {
        return Err(JwsError::Malformed("geen drie delen".into()));
    }
    let header: HeaderJson = serde_json::from_slice(&b64d(h)?)
        .map_err(|_| JwsError::Malformed("header is geen geldige JSON".into()))?;
    let header = RawHeader::from(header);
    let unverified_claims: Value = serde_json::from_slice(&b64d(c)?)
        .map_err(|_| JwsError::Malformed("claims zijn geen geldige JSON".into()))?;
    if !unverified_claims.is_object() {
        return Err(JwsError::Malformed("claims zijn geen JSON-object".into()));
    }
    Ok(Parsed {
        token,
        header,
        unverified_claims,
        signing_input,
        signature,
    })
}

impl Parsed<'_> {
    /// The header's algorithm if it is on `allowed` (and no `crit` extension is asked for).
    pub(crate) fn alg(&self, allowed: &[Alg]) -> Result<Alg, JwsError> {
        if self.header.critical {
            return Err(JwsError::Critical);
        }
        match Alg::parse(&self.header.alg) {
            Some(a) if allowed.contains(&a) => Ok(a),
            _ => Err(JwsError::AlgorithmNotAllowed(self.header.alg.clone())),
        }
    }

    pub(crate) fn kid(&self) -> Result<&str, JwsError> {
        if self.header.ill_typed.contains(&"kid") {
            return Err(JwsError::KidNotText);
        }
        self.header.kid.as_deref().ok_or(JwsError::NoKid)
    }

    /// Verifies the signature with `jwk`; returns the claims.
    pub(crate) fn verify(&self, alg: Alg, jwk: &Value) -> Result<Value, JwsError> {
        let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("?").to_owned();
        if !alg.key_fits(jwk) {
            return Err(JwsError::KeyMismatch(kid, alg.name().into()));
        }
        match alg.jsonwebtoken() {
            Some(a) => {
                let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone())
                    .map_err(|_| JwsError::KeyMismatch(kid.clone(), alg.name().into()))?;
                let key = jsonwebtoken::DecodingKey::from_jwk(&parsed)
                    .map_err(|_| JwsError::KeyMismatch(kid, alg.name().into()))?;
                let mut v = jsonwebtoken::Validation::new(a);
                // Claims are checked by the callers, with the spec's own messages.
                v.required_spec_claims.clear();
                v.validate_exp = false;
                v.validate_nbf = false;
                v.validate_aud = false;
                jsonwebtoken::decode::<Value>(self.token, &key, &v)
                    .map(|d| d.claims)
                    .map_err(|_| JwsError::BadSignature)
            }
            None => {
                let point = p521_point(jwk).ok_or_else(|| JwsError::KeyMismatch(kid, alg.name().into()))?;
                let sig = b64d(self.signature)?;
                UnparsedPublicKey::new(&ECDSA_P521_SHA512_FIXED, point)
                    .verify(self.signing_input.as_bytes(), &sig)
                    .map_err(|_| JwsError::BadSignature)?;
                Ok(self.unverified_claims.clone())
            }
        }
    }
}

fn p521_point(jwk: &Value) -> Option<Vec<u8>> {
    let x = b64d(jwk.get("x")?.as_str()?).ok()?;
    let y = b64d(jwk.get("y")?.as_str()?).ok()?;
    if x.len() != 66 || y.len() != 66 {
        return None;
    }
    let mut p = Vec::with_capacity(133);
    p.push(4);
    p.extend_from_slice(&x);
    p.extend_from_slice(&y);
    Some(p)
}

/// A JWK by `kid` from a JWKS document (`{"keys": [...]}`). Symmetric (`oct`) keys never
/// match: a public JWKS has no business carrying them.
pub(crate) fn find_key<'a>(jwks: &'a Value, kid: &str) -> Option<&'a Value> {
    jwks.get("keys")?.as_array()?.iter().find(|k| {
        k.get("kid").and_then(Value::as_str) == Some(kid)
            && k.get("kty").and_then(Value::as_str) != Some("oct")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(header: &str, claims: &str, sig: &str) -> String {
        format!(
            "{}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn none_and_hmac_are_never_allowed() {
        let t = tok(r#"{"alg":"none","typ":"JWT"}"#, "{}", "");
        let p = parse(&t).expect("parses");
        assert_eq!(
            p.alg(&[Alg::RS256, Alg::ES512]),
            Err(JwsError::AlgorithmNotAllowed("none".into()))
        );
        let t = tok(r#"{"alg":"HS256","typ":"JWT","kid":"k"}"#, "{}", "abc");
        assert!(matches!(
            parse(&t).expect("parses").alg(&[Alg::RS256]),
            Err(JwsError::AlgorithmNotAllowed(_))
        ));
        assert!(Alg::parse("HS256").is_none());
    }

    #[test]
    fn malformed_tokens_are_errors_not_panics() {
        for t in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "!!!.e30.x",
            "e30.!!!.x",
            "bnVsbA.bnVsbA.x",
        ] {
            assert!(parse(t).is_err(), "{t}");
        }
    }

    #[test]
    fn ill_typed_header_members_are_kept_for_the_checking_step() {
        let t = tok(r#"{"alg":"ES512","typ":"JWT","kid":17}"#, "{}", "AAAA");
        let p = parse(&t).expect("still a JWS");
        assert_eq!(p.kid(), Err(JwsError::KidNotText));
        let t = tok(r#"{"alg":"ES512","typ":["JWT"],"kid":"k"}"#, "{}", "AAAA");
        assert_eq!(parse(&t).expect("JWS").header.ill_typed, vec!["typ"]);
        let t = tok(r#"{"alg":"ES512","kid":"k","crit":["exp"]}"#, "{}", "AAAA");
        assert_eq!(
            parse(&t).expect("JWS").alg(&[Alg::ES512]),
            Err(JwsError::Critical)
        );
    }

    #[test]
    fn key_type_must_fit_the_algorithm() {
        let rsa = serde_json::json!({"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"});
        let t = tok(r#"{"alg":"ES512","kid":"r"}"#, "{}", "AAAA");
        let p = parse(&t).expect("parses");
        assert!(matches!(
            p.verify(Alg::ES512, &rsa),
            Err(JwsError::KeyMismatch(..))
        ));
        let oct = serde_json::json!({"keys": [{"kty": "oct", "kid": "r", "k": "c2VjcmV0"}]});
        assert!(find_key(&oct, "r").is_none());
    }
}
