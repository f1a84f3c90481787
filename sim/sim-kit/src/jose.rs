//! Compact JWS (RFC 7515) as the simulators need it: RS256 signing (Stelseltoken, AORTA access
//! tokens), ES512 checking (the subject tokens a GtK sends to the Autorisatie Server ZA), JWKs.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

/// Why a token or a key was refused.
#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    /// Not a compact JWS, or a part is not base64url JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The signature does not verify with the key.
    #[error("signature does not verify")]
    Signature,
    /// The key cannot be read or used.
    #[error("key: {0}")]
    Key(String),
}

/// base64url without padding (JWS parts).
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Reads base64url without padding.
pub fn unb64(s: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| JoseError::Malformed(format!("base64url: {e}")))
}

/// Standard base64 (the `x5c` encoding).
pub fn b64_std(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn part(s: &str) -> Result<Value, JoseError> {
    serde_json::from_slice(&unb64(s)?).map_err(|e| JoseError::Malformed(format!("JSON: {e}")))
}

/// Header and claims without checking anything: only to route a token to its checks.
pub fn decode_unverified(token: &str) -> Result<(Value, Value), JoseError> {
    let mut it = token.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(c), Some(_), None) => Ok((part(h)?, part(c)?)),
        _ => Err(JoseError::Malformed("expected three dot-separated parts".into())),
    }
}

/// An RS256 signer. The key has no Debug and never leaves this type.
pub struct RsaSigner {
    kid: String,
    key: aws_lc_rs::rsa::KeyPair,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaSigner").field("kid", &self.kid).finish()
    }
}

impl RsaSigner {
    /// A signer identified by `kid`, from a PKCS#8 PEM RSA key.
    pub fn from_pkcs8_pem(kid: &str, pem_text: &str) -> Result<Self, JoseError> {
        let p = pem::parse(pem_text).map_err(|e| JoseError::Key(format!("PEM: {e}")))?;
        Self::from_pkcs8_der(kid, p.contents())
    }

    /// A signer identified by `kid`, from a PKCS#8 DER RSA key.
    pub fn from_pkcs8_der(kid: &str, der: &[u8]) -> Result<Self, JoseError> {
        let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(der).map_err(|e| JoseError::Key(e.to_string()))?;
        Ok(RsaSigner {
            kid: kid.to_owned(),
            key,
        })
    }

    /// The key id written in every header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` with a header of `alg: RS256`, this key's `kid`, and `extra` fields.
    pub fn sign(&self, extra: Map<String, Value>, claims: &Value) -> Result<String, JoseError> {
        let mut header = extra;
        header.insert("alg".into(), json!("RS256"));
        header.insert("kid".into(), json!(self.kid));
        let input = format!(
            "{}.{}",
            b64(&serde_json::to_vec(&header).map_err(|e| JoseError::Malformed(e.to_string()))?),
            b64(&serde_json::to_vec(claims).map_err(|e| JoseError::Malformed(e.to_string()))?)
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| JoseError::Key("RSA signing failed".into()))?;
        Ok(format!("{input}.{}", b64(&sig)))
    }

    /// The public key as a JWK (`kty RSA`, `use sig`, `alg RS256`).
    pub fn public_jwk(&self) -> Value {
        let pk = self.key.public_key();
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": b64(pk.modulus().big_endian_without_leading_zero()),
            "e": b64(pk.exponent().big_endian_without_leading_zero()),
        })
    }
}

/// An ES512 (P-521) public key from a JWK.
fn p521_point(jwk: &Value) -> Option<Vec<u8>> {
    if jwk.get("kty")?.as_str()? != "EC" || jwk.get("crv")?.as_str()? != "P-521" {
        return None;
    }
    let x = unb64(jwk.get("x")?.as_str()?).ok()?;
    let y = unb64(jwk.get("y")?.as_str()?).ok()?;
    if x.len() != 66 || y.len() != 66 {
        return None;
    }
    let mut point = Vec::with_capacity(133);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Some(point)
}

/// Checks an ES512 compact JWS against the keys of a JWKS (selected by `kid`); returns header
/// and claims. Only `alg: ES512` is accepted.
pub fn verify_es512(token: &str, jwks: &[Value]) -> Result<(Value, Value), JoseError> {
    let (header, claims) = decode_unverified(token)?;
    if header.get("alg").and_then(Value::as_str) != Some("ES512") {
        return Err(JoseError::Malformed("alg must be ES512".into()));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| JoseError::Malformed("no kid".into()))?;
    let jwk = jwks
        .iter()
        .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        .ok_or_else(|| JoseError::Key(format!("unknown kid {kid}")))?;
    let point = p521_point(jwk).ok_or_else(|| JoseError::Key(format!("key {kid} is not a P-521 JWK")))?;
    let (input, sig) = token
        .rsplit_once('.')
        .ok_or_else(|| JoseError::Malformed("no signature".into()))?;
    let sig = unb64(sig)?;
    UnparsedPublicKey::new(&signature::ECDSA_P521_SHA512_FIXED, point)
        .verify(input.as_bytes(), &sig)
        .map_err(|_| JoseError::Signature)?;
    Ok((header, claims))
}

/// A P-521 key pair for tests (e.g. a GtK in a simulator test): PKCS#8 DER and its public JWK.
pub fn p521_test_key(kid: &str) -> Result<(Vec<u8>, Value), JoseError> {
    let rng = SystemRandom::new();
    let doc = signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P521_SHA512_FIXED_SIGNING, &rng)
        .map_err(|_| JoseError::Key("P-521 generation failed".into()))?;
    let kp = signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P521_SHA512_FIXED_SIGNING, doc.as_ref())
        .map_err(|e| JoseError::Key(e.to_string()))?;
    let p = kp.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-521", "kid": kid, "use": "sig", "alg": "ES512",
        "x": b64(&p[1..67]), "y": b64(&p[67..133])});
    Ok((doc.as_ref().to_vec(), jwk))
}

/// Signs ES512 with a PKCS#8 P-521 key (tests of the simulators).
pub fn sign_es512(pkcs8: &[u8], kid: &str, claims: &Value) -> Result<String, JoseError> {
    sign_es512_with_header(pkcs8, &json!({"alg": "ES512", "typ": "JWT", "kid": kid}), claims)
}

/// Signs ES512 under any header (tests that forge headers).
pub fn sign_es512_with_header(pkcs8: &[u8], header: &Value, claims: &Value) -> Result<String, JoseError> {
    let kp = signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P521_SHA512_FIXED_SIGNING, pkcs8)
        .map_err(|e| JoseError::Key(e.to_string()))?;
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = kp
        .sign(&SystemRandom::new(), input.as_bytes())
        .map_err(|_| JoseError::Key("signing failed".into()))?;
    Ok(format!("{input}.{}", b64(sig.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es512_round_trip_and_tamper() {
        let (der, jwk) = p521_test_key("k1").expect("key");
        let t = sign_es512(&der, "k1", &json!({"a": 1})).expect("sign");
        let (_, c) = verify_es512(&t, std::slice::from_ref(&jwk)).expect("verifies");
        assert_eq!(c["a"], 1);
        let mut bad = t.clone();
        bad.replace_range(bad.len() - 4.., "AAAA");
        assert!(verify_es512(&bad, std::slice::from_ref(&jwk)).is_err());
        let (_, other) = p521_test_key("k1").expect("key");
        assert!(matches!(verify_es512(&t, &[other]), Err(JoseError::Signature)));
    }
}
