//! Feature GetTokenRequest (SPEC.md §3.2 step 10): an RFC 8693 token exchange at the AORTA
//! Autorisatie Server ZA, whose every outcome is passed on faithfully (step 11).
//!
//! **Decision** — the subject token is a short-lived (60 s) ES512 JWT this service signs with its
//! assertion key after steps 3–9 succeeded: `iss` our issuer, `sub` the URA, `aud` the AS ZA,
//! `client_id` of the external GtK, and the grant's `bsn`, `user_id`, `user_role`,
//! `authorization_base`. The AS ZA trusts it by our published key; the external GtK's own
//! tokens never leave this service.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aorta_id::AortaId;
use crate::error::AuthzError;
use crate::zorg_ab::Exchange;

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// RFC 6749 §5.1 token response (what the AS ZA returns and we return).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    #[serde(default)]
    pub expires_in: i64,
    #[serde(default)]
    pub scope: String,
    #[serde(default = "default_issued")]
    pub issued_token_type: String,
}

fn default_issued() -> String {
    ACCESS_TOKEN_TYPE.into()
}

pub async fn get_token(
    http: &reqwest::Client,
    settings: &crate::config::AsZaSettings,
    subject_token: &str,
    scope: Option<&str>,
    id: &AortaId,
    log: &mut Vec<Exchange>,
) -> Result<TokenResponse, AuthzError> {
    let url = settings.token_url.as_str();
    let out = id.outgoing();
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject_token),
        ("subject_token_type", JWT_TYPE),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    let mut ex = Exchange {
        url: url.to_owned(),
        aorta_id: out.clone(),
        status: None,
        error: None,
    };
    let sent = http
        .post(url)
        .header(crate::aorta_id::HEADER, out.header_value())
        .form(&form)
        .timeout(settings.timeout)
        .headers(service_kit::telemetry::current_trace_headers())
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            let err = if e.is_timeout() {
                AuthzError::Timeout(format!("Autorisatie Server ZA antwoordt niet op tijd ({url})"))
            } else {
                AuthzError::Unavailable(format!("Autorisatie Server ZA niet bereikbaar ({url}): {e}"))
            };
            ex.error = Some(err.to_string());
            log.push(ex);
            return Err(err);
        }
    };
    let status = resp.status().as_u16();
    ex.status = Some(status);
    let body = resp.bytes().await;
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let err = if e.is_timeout() {
                AuthzError::Timeout(format!("Autorisatie Server ZA antwoordt niet op tijd ({url})"))
            } else {
                AuthzError::Unavailable(format!("Autorisatie Server ZA: antwoord afgebroken: {e}"))
            };
            ex.error = Some(err.to_string());
            log.push(ex);
            return Err(err);
        }
    };
    if status == 200 {
        let parsed: Result<TokenResponse, _> = serde_json::from_slice(&body);
        return match parsed {
            Ok(t) if !t.access_token.is_empty() && t.token_type.eq_ignore_ascii_case("bearer") => {
                log.push(ex);
                Ok(t)
            }
            _ => {
                ex.error = Some("onleesbaar tokenantwoord".into());
                log.push(ex);
                Err(AuthzError::Unavailable(
                    "Autorisatie Server ZA gaf een onleesbaar tokenantwoord".into(),
                ))
            }
        };
    }
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let error = json
        .as_ref()
        .and_then(|j| j.get("error"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    ex.error = error.clone().or_else(|| Some(format!("HTTP {status}")));
    log.push(ex);
    match error {
        Some(error) if (400..500).contains(&status) || status >= 500 => Err(AuthzError::Upstream {
            status,
            error,
            description: json
                .as_ref()
                .and_then(|j| j.get("error_description"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }),
        _ => Err(AuthzError::Unavailable(format!(
            "Autorisatie Server ZA antwoordde HTTP {status} zonder OAuth-fout"
        ))),
    }
}
