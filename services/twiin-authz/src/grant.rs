//! The authorization grant assertion of a token request (RFC 7523 §2.1), SPEC.md §3.2 steps 2
//! and 4, and the AORTA consent token it may carry as authorization base.
//!
//! **Decision** — claims: `iss` = a name of the GtK that authenticated in step 3 (its client id
//! or its registered authorization server URL, as in the AORTA-TWIIN Authorization Grant
//! Assertion), `sub` = URA of the initiating care provider (8 digits), optional
//! `bsn` (9 digits passing the elfproef), `user_id`, `user_role`, `authorization_base` (a SAML
//! AORTA consent token, base64) and `destination` (the ZORG-AB client id of the GBZ
//! application to reach; the configured one when absent).

use base64::Engine;
use serde_json::Value;

use crate::client_auth::CheckedJwt;
use crate::error::AuthzError;
use crate::zorg_ab::Application;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grant {
    pub(crate) jti: String,
    pub(crate) exp: u64,
    pub(crate) ura: String,
    pub(crate) bsn: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) user_role: Option<String>,
    pub(crate) authorization_base: Option<String>,
    pub(crate) destination: Option<String>,
}

/// A BSN: 9 digits passing the elfproef (11-test).
pub(crate) fn valid_bsn(bsn: &str) -> bool {
    if bsn.len() != 9 || !bsn.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let d: Vec<i64> = bsn.bytes().map(|b| (b - b'0') as i64).collect();
    let sum: i64 = (0..8).map(|i| d[i] * (9 - i as i64)).sum::<i64>() - d[8];
    sum % 11 == 0 && bsn != "000000000"
}

pub(crate) fn valid_ura(ura: &str) -> bool {
    ura.len() == 8 && ura.bytes().all(|b| b.is_ascii_digit())
}

/// The context code of a SAML AORTA consent token (base64 of a SAML 2.0 assertion naming an
/// `aorta.contextcode.CODE`), or `None` when it is not one.
///
/// **Decision** — this service does not verify the consent token's signature: the seed leaves
/// its content to the Autorisatie Server ZA ("inhoudelijk later getoetst"); here only its form.
pub(crate) fn consent_contextcode(authz_base: &str) -> Option<String> {
    let xml = base64::engine::general_purpose::STANDARD
        .decode(authz_base.trim())
        .ok()?;
    let xml = String::from_utf8(xml).ok()?;
    let root_ok = xml.trim_start().starts_with('<')
        && xml.contains("urn:oasis:names:tc:SAML:2.0:assertion")
        && xml.contains("Assertion");
    if !root_ok {
        return None;
    }
    let start = xml.find("aorta.contextcode.")? + "aorta.contextcode.".len();
    let code: String = xml[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!code.is_empty()).then_some(code)
}

/// Step 4 (after the signature and common checks): the grant's own claims.
pub(crate) fn grant_from(checked: CheckedJwt, client: &Application) -> Result<Grant, AuthzError> {
    let bad = |m: &str| AuthzError::InvalidGrant(m.to_owned());
    if !client.issues_as(&checked.iss) {
        return Err(bad("iss is niet de geauthenticeerde client"));
    }
    if !valid_ura(&checked.sub) {
        return Err(bad("sub is geen URA (8 cijfers)"));
    }
    let s = |k: &str| {
        checked
            .claims
            .get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let bsn = s("bsn");
    if let Some(b) = &bsn
        && !valid_bsn(b)
    {
        return Err(bad("bsn is geen geldig BSN"));
    }
    Ok(Grant {
        jti: checked.jti,
        exp: checked.exp,
        ura: checked.sub,
        bsn,
        user_id: s("user_id"),
        user_role: s("user_role"),
        authorization_base: s("authorization_base"),
        destination: s("destination"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsn_elfproef() {
        assert!(valid_bsn("999993653"));
        assert!(valid_bsn("111222333"));
        assert!(!valid_bsn("123456789"));
        assert!(!valid_bsn("99999365"));
        assert!(!valid_bsn("00000000a"));
    }

    #[test]
    fn consent_tokens() {
        let saml = r#"<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion"><saml2:AttributeValue>aorta.contextcode.BGZOPV</saml2:AttributeValue></saml2:Assertion>"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(saml);
        assert_eq!(consent_contextcode(&b64).as_deref(), Some("BGZOPV"));
        assert_eq!(consent_contextcode("not base64!"), None);
        let other = base64::engine::general_purpose::STANDARD.encode("<x>aorta.contextcode.A</x>");
        assert_eq!(consent_contextcode(&other), None);
    }
}
