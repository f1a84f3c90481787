//! Feature GetTokenRequest (SPEC.md §3.2 step 10): an RFC 8693 token exchange at the AORTA
//! Autorisatie Server ZA, whose every outcome is passed on faithfully (step 11).
//!
//! **Decision** — the subject token is a short-lived (60 s) ES512 JWT this service signs with its
//! assertion key after steps 3–9 succeeded, explicitly typed `typ: gtk-subject+jwt` (RFC 8725
//! §3.11) so it cannot be mistaken for one of our TWIIN assertions (`typ: JWT`) or be replayed
//! as one: `iss` our issuer, `sub` the URA, `aud` the AS ZA, `client_id` of the external GtK,
//! and the grant's `bsn`, `user_id`, `user_role`, `authorization_base`. The AS ZA trusts it by
//! our published key; the external GtK's own tokens never leave this service.
//!
//! The call is made over mutual TLS (see `outbound`), its answer read with a size cap. Failures
//! of the call itself are answered with a generic text; the details go into the audit trail.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aorta_id::AortaId;
use crate::error::AuthzError;
use crate::outbound::{self, Exchange, MAX_TOKEN_RESPONSE_BYTES};

pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(crate) const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// JOSE `typ` of the subject token.
pub(crate) const SUBJECT_TOKEN_TYP: &str = "gtk-subject+jwt";

const UNREACHABLE: &str = "Autorisatie Server ZA niet bereikbaar";
const TOO_SLOW: &str = "Autorisatie Server ZA antwoordt niet op tijd";

/// RFC 6749 §5.1 token response (what the AS ZA returns and we return).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) token_type: String,
    #[serde(default)]
    pub(crate) expires_in: i64,
    #[serde(default)]
    pub(crate) scope: String,
    #[serde(default = "default_issued")]
    pub(crate) issued_token_type: String,
}

fn default_issued() -> String {
    ACCESS_TOKEN_TYPE.into()
}

/// The `jti` of a token, read without checking it (for the audit trail only).
pub(crate) fn unverified_jti(token: &str) -> Option<String> {
    let p = crate::jws::parse(token).ok()?;
    p.unverified_claims
        .get("jti")
        .and_then(Value::as_str)
        .map(|j| j.chars().take(crate::client_auth::MAX_JTI_LEN).collect())
}

/// What a GetTokenRequest sends besides the fixed parameters.
pub(crate) struct GetTokenRequest<'a> {
    pub(crate) subject_token: &'a str,
    pub(crate) subject_token_jti: &'a str,
    pub(crate) scope: Option<&'a str>,
}

pub(crate) async fn get_token(
    http: &reqwest::Client,
    settings: &crate::config::AsZaSettings,
    req: GetTokenRequest<'_>,
    id: &AortaId,
    log: &mut Vec<Exchange>,
) -> Result<TokenResponse, AuthzError> {
    let url = settings.token_url.as_str();
    // In the trail before it is sent: a request abandoned while waiting is still recorded.
    log.push(Exchange::start("POST", url, id.outgoing()));
    let Some(ex) = log.last_mut() else {
        return Err(AuthzError::Internal("exchange log".into()));
    };
    ex.aorta_scope = req.scope.map(str::to_owned);
    ex.subject_token_jti = Some(req.subject_token_jti.to_owned());
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", req.subject_token),
        ("subject_token_type", JWT_TYPE),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
    ];
    if let Some(s) = req.scope {
        form.push(("scope", s));
    }
    let fail = |ex: &mut Exchange, kind: &str, detail: String| {
        tracing::warn!(url = %ex.url, error = %detail, "GetTokenRequest failed");
        ex.failed(kind, detail);
        if kind == "timeout" {
            AuthzError::Timeout(TOO_SLOW.into())
        } else {
            AuthzError::Unavailable(UNREACHABLE.into())
        }
    };
    let sent = http
        .post(url)
        .header(crate::aorta_id::HEADER, ex.aorta_id.header_value())
        .form(&form)
        .timeout(settings.timeout)
        .headers(service_kit::telemetry::current_trace_headers())
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return Err(fail(ex, outbound::failure_kind(&e), e.to_string())),
    };
    let status = resp.status().as_u16();
    ex.status = Some(status);
    let body = match outbound::read_capped(resp, MAX_TOKEN_RESPONSE_BYTES).await {
        Ok(b) => b,
        Err(outbound::ReadError::Timeout) => {
            return Err(fail(ex, "timeout", "antwoord niet op tijd".into()));
        }
        Err(e) => return Err(fail(ex, "unreadable", e.to_string())),
    };
    ex.done();
    if status == 200 {
        let parsed: Result<TokenResponse, _> = serde_json::from_slice(&body);
        return match parsed {
            Ok(t) if !t.access_token.is_empty() && t.token_type.eq_ignore_ascii_case("bearer") => {
                ex.expires_in = Some(t.expires_in);
                ex.granted_scope = Some(t.scope.clone());
                ex.token_jti = unverified_jti(&t.access_token);
                Ok(t)
            }
            _ => {
                ex.error = Some("unreadable".into());
                ex.error_description = Some("geen RFC 6749-tokenantwoord".into());
                Err(AuthzError::Unavailable(
                    "Autorisatie Server ZA gaf een onleesbaar tokenantwoord".into(),
                ))
            }
        };
    }
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let field = |k: &str| {
        json.as_ref()
            .and_then(|j| j.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let error = field("error");
    let description = field("error_description");
    ex.error = error.clone().or_else(|| Some(format!("HTTP {status}")));
    ex.error_description = description.clone();
    match error {
        Some(error) if status >= 400 => Err(AuthzError::Upstream {
            status,
            error,
            description: description.unwrap_or_default(),
        }),
        _ => Err(AuthzError::Unavailable(format!(
            "Autorisatie Server ZA antwoordde HTTP {status} zonder OAuth-fout"
        ))),
    }
}
