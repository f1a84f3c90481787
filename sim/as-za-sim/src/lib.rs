//! Autorisatie Server ZA simulator: the AORTA authorization server a GtK calls with
//! **GetTokenRequest** (SPEC.md §3.2 step 10), an RFC 8693 token exchange.
//!
//! Contract of `POST /token` (`application/x-www-form-urlencoded`):
//! - `grant_type` = `urn:ietf:params:oauth:grant-type:token-exchange` (else
//!   `unsupported_grant_type`);
//! - `subject_token` (required) with `subject_token_type` =
//!   `urn:ietf:params:oauth:token-type:jwt`; `requested_token_type`, when given, =
//!   `urn:ietf:params:oauth:token-type:access_token` (else `invalid_request`);
//! - only over mutual TLS: a GtK presents its (UZI server) client certificate, or gets no answer;
//! - the subject token is explicitly typed `typ: gtk-subject+jwt` (RFC 8725 §3.11: a GtK's
//!   client or grant assertion, `typ: JWT`, cannot be passed off as one), and is an ES512 JWS of
//!   a trusted GtK (`trusted_issuers`): signature, `iss`,
//!   `aud` = this server's `issuer`, `exp` in the future, `iat` not in the future, `sub` an
//!   8-digit URA, `jti` not seen before (else `invalid_grant`);
//! - `scope`: space-separated AORTA scope items `interaction~aorta.contextcode.CODE~situation`;
//!   push interactions may leave the context code empty (`interaction~~normaal`); every
//!   interaction must be in the interaction table, a context code must allow it, the situation
//!   must be known, and a pull interaction needs an `authorization_base` in the subject token
//!   (else `invalid_scope`). Without `scope` the subject token must carry an
//!   `authorization_base` (a SAML AORTA consent token); the scope is then every interaction its
//!   context code allows;
//! - a URA listed under `refusals` gets the configured error (e.g. 403 `access_denied`).
//!
//! On success: `200` with `{access_token, token_type: Bearer, expires_in, scope,
//! issued_token_type}`, `Cache-Control: no-store`. The access token is RS256, signed with the
//! AORTA token-signing key (published by the Stelseltoken), with claims `iss`, `aud`, `sub`
//! (URA), `iat`, `exp`, `jti`, `scope`, `client_id` and the `_vrb` object (`_vrb_ura`,
//! `_vrb_user_id`, `_vrb_user_role`, `_vrb_bsn`, `_vrb_authz_base`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Form, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sim_kit::CancellationToken;
use sim_kit::jose::{RsaSigner, verify_es512};
use sim_kit::serve::{Running, Tls};

/// The grant type of the token request (RFC 8693).
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The subject token type: a JWT.
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The issued token type: an access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The JOSE `typ` of the subject token a GtK sends.
pub const SUBJECT_TOKEN_TYP: &str = "gtk-subject+jwt";

/// The simulator's data file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// `iss` of the access tokens; also the `aud` subject tokens must carry.
    pub issuer: String,
    /// `aud` of the access tokens (what resource servers and GtKs check).
    pub audience: String,
    /// Lifetime of the access tokens, in seconds.
    #[serde(default = "default_ttl")]
    pub access_token_ttl_secs: u64,
    /// The AORTA token-signing key's `kid` (as in the Stelseltoken).
    pub signing_kid: String,
    /// The AORTA token-signing key (PKCS#8 PEM).
    pub signing_key: PathBuf,
    /// The GtKs allowed to exchange subject tokens.
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// The AORTA interactions scopes may name.
    pub interactions: Vec<Interaction>,
    /// Context codes and the interactions they cover.
    #[serde(default)]
    pub contextcodes: Vec<ContextCode>,
    /// Accepted `situation` values.
    #[serde(default = "default_situations")]
    pub situations: Vec<String>,
    /// Error answers to give for some URAs.
    #[serde(default)]
    pub refusals: Vec<Refusal>,
}

fn default_ttl() -> u64 {
    900
}

fn default_situations() -> Vec<String> {
    vec!["normaal".into(), "spoed".into()]
}

/// A GtK allowed to exchange subject tokens, with its ES512 keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// The GtK's `iss`.
    pub issuer: String,
    /// P-521 keys: PKCS#8 PEM files (only the public part is used) ...
    #[serde(default)]
    pub key_files: Vec<TrustedKeyFile>,
    /// ... and/or public JWKs.
    #[serde(default)]
    pub jwks: Vec<Value>,
}

/// A GtK key in a PEM file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyFile {
    /// Its `kid`.
    pub kid: String,
    /// The PKCS#8 PEM file.
    pub path: PathBuf,
}

/// An AORTA interaction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    /// E.g. `create:Task:1.0:notification`.
    pub id: String,
    /// Pull interactions (reading data) need an authorization base.
    #[serde(default)]
    pub pull: bool,
}

/// A context code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContextCode {
    /// E.g. `BGZOPV` (written `aorta.contextcode.BGZOPV` in scopes and consent tokens).
    pub code: String,
    /// The interactions it covers.
    pub interactions: Vec<String>,
}

/// An OAuth error answer given to token requests for `ura`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// The URA refused.
    pub ura: String,
    /// The HTTP status.
    #[serde(default = "default_refusal_status")]
    pub status: u16,
    /// The OAuth `error`.
    pub error: String,
    /// The `error_description`.
    pub description: String,
}

fn default_refusal_status() -> u16 {
    403
}

struct Server {
    data: Data,
    signer: RsaSigner,
    keys: HashMap<String, Vec<Value>>,
    pull: HashMap<String, bool>,
    seen: Mutex<HashMap<String, u64>>,
}

fn p521_jwk_from_pkcs8(kid: &str, pem_text: &str) -> Result<Value, String> {
    use aws_lc_rs::signature::{ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let p = pem::parse(pem_text).map_err(|e| e.to_string())?;
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P521_SHA512_FIXED_SIGNING, p.contents())
        .map_err(|e| e.to_string())?;
    let pt = kp.public_key().as_ref();
    Ok(json!({"kty": "EC", "crv": "P-521", "kid": kid,
        "x": sim_kit::jose::b64(&pt[1..67]), "y": sim_kit::jose::b64(&pt[67..133])}))
}

impl Server {
    fn new(data: Data) -> Result<Self, String> {
        let key = std::fs::read_to_string(&data.signing_key)
            .map_err(|e| format!("signing_key {}: {e}", data.signing_key.display()))?;
        let signer =
            RsaSigner::from_pkcs8_pem(&data.signing_kid, &key).map_err(|e| format!("signing_key: {e}"))?;
        let mut keys = HashMap::new();
        for t in &data.trusted_issuers {
            let mut ks = t.jwks.clone();
            for f in &t.key_files {
                let text = std::fs::read_to_string(&f.path)
                    .map_err(|e| format!("trusted_issuers.{}: {}: {e}", t.issuer, f.path.display()))?;
                ks.push(
                    p521_jwk_from_pkcs8(&f.kid, &text)
                        .map_err(|e| format!("trusted_issuers.{}: {e}", t.issuer))?,
                );
            }
            if ks.is_empty() {
                return Err(format!("trusted_issuers.{}: no keys", t.issuer));
            }
            keys.insert(t.issuer.clone(), ks);
        }
        let pull = data
            .interactions
            .iter()
            .map(|i| (i.id.clone(), i.pull))
            .collect::<HashMap<_, _>>();
        for c in &data.contextcodes {
            if let Some(i) = c.interactions.iter().find(|i| !pull.contains_key(*i)) {
                return Err(format!("contextcodes.{}: unknown interaction {i}", c.code));
            }
        }
        Ok(Server {
            data,
            signer,
            keys,
            pull,
            seen: Mutex::new(HashMap::new()),
        })
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn bad(error: &str, description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, error, description)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The context code a SAML AORTA consent token (base64) names, if any.
fn consent_contextcode(authz_base: &str) -> Option<String> {
    let xml = base64::engine::general_purpose::STANDARD
        .decode(authz_base.trim())
        .ok()?;
    let xml = String::from_utf8(xml).ok()?;
    if !xml.contains("urn:oasis:names:tc:SAML:2.0:assertion") {
        return None;
    }
    let start = xml.find("aorta.contextcode.")? + "aorta.contextcode.".len();
    let code: String = xml[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!code.is_empty()).then_some(code)
}

async fn token(State(s): State<Arc<Server>>, Form(form): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    match get("grant_type") {
        None => return bad("invalid_request", "grant_type ontbreekt"),
        Some(TOKEN_EXCHANGE) => {}
        Some(_) => {
            return bad(
                "unsupported_grant_type",
                "alleen token-exchange (RFC 8693) wordt ondersteund",
            );
        }
    }
    let Some(subject) = get("subject_token") else {
        return bad("invalid_request", "subject_token ontbreekt");
    };
    if get("subject_token_type") != Some(JWT_TYPE) {
        return bad(
            "invalid_request",
            "subject_token_type moet urn:ietf:params:oauth:token-type:jwt zijn",
        );
    }
    if let Some(t) = get("requested_token_type")
        && t != ACCESS_TOKEN_TYPE
    {
        return bad("invalid_request", "requested_token_type wordt niet ondersteund");
    }
    // Subject token: find the issuer's keys, then check everything.
    let iss = match sim_kit::jose::decode_unverified(subject) {
        Ok((_, c)) => c
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        Err(_) => return bad("invalid_grant", "subject_token is geen geldige JWS"),
    };
    let Some(keys) = s.keys.get(&iss) else {
        return bad("invalid_grant", "subject_token van onbekende uitgever");
    };
    let (header, claims) = match verify_es512(subject, keys) {
        Ok(hc) => hc,
        Err(_) => return bad("invalid_grant", "handtekening van subject_token ongeldig"),
    };
    if header.get("typ").and_then(Value::as_str) != Some(SUBJECT_TOKEN_TYP) {
        return bad("invalid_grant", "typ van subject_token moet gtk-subject+jwt zijn");
    }
    let n = now();
    let num = |k: &str| claims.get(k).and_then(Value::as_u64);
    let str_claim = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    if claims.get("aud").and_then(Value::as_str) != Some(s.data.issuer.as_str()) {
        return bad(
            "invalid_grant",
            "aud van subject_token is niet deze autorisatieserver",
        );
    }
    let (Some(exp), Some(iat)) = (num("exp"), num("iat")) else {
        return bad("invalid_grant", "subject_token mist exp of iat");
    };
    if exp <= n || iat > n + 60 {
        return bad("invalid_grant", "subject_token verlopen of nog niet geldig");
    }
    let Some(ura) = str_claim("sub").filter(|u| u.len() == 8 && u.bytes().all(|b| b.is_ascii_digit())) else {
        return bad("invalid_grant", "sub van subject_token is geen URA");
    };
    let Some(jti) = str_claim("jti") else {
        return bad("invalid_grant", "subject_token mist jti");
    };
    {
        let mut seen = s.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, e| *e > n);
        if seen.insert(format!("{iss}\u{0}{jti}"), exp).is_some() {
            return bad("invalid_grant", "subject_token is al eerder gebruikt");
        }
    }
    if let Some(r) = s.data.refusals.iter().find(|r| r.ura == ura) {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
        return oauth_error(status, &r.error, &r.description);
    }
    let authz_base = str_claim("authorization_base");
    // Scope.
    let scope = match get("scope") {
        Some(scope) => {
            let mut items = Vec::new();
            for item in scope.split(' ').filter(|i| !i.is_empty()) {
                let parts: Vec<&str> = item.split('~').collect();
                let [interaction, context, situation] = parts[..] else {
                    return bad(
                        "invalid_scope",
                        &format!("scope-item {item} is niet interactie~contextcode~situatie"),
                    );
                };
                let Some(&pull) = s.pull.get(interaction) else {
                    return bad("invalid_scope", &format!("onbekende interactie {interaction}"));
                };
                if !s.data.situations.iter().any(|x| x == situation) {
                    return bad("invalid_scope", &format!("onbekende situatie {situation}"));
                }
                if context.is_empty() {
                    if pull {
                        return bad(
                            "invalid_scope",
                            &format!("pull-interactie {interaction} vereist een contextcode"),
                        );
                    }
                } else {
                    let Some(code) = context.strip_prefix("aorta.contextcode.") else {
                        return bad(
                            "invalid_scope",
                            &format!("contextcode {context} heeft niet de vorm aorta.contextcode.CODE"),
                        );
                    };
                    let allowed = s
                        .data
                        .contextcodes
                        .iter()
                        .any(|c| c.code == code && c.interactions.iter().any(|i| i == interaction));
                    if !allowed {
                        return bad(
                            "invalid_scope",
                            &format!("interactie {interaction} niet toegestaan binnen contextcode {code}"),
                        );
                    }
                }
                if pull && authz_base.is_none() {
                    return bad(
                        "invalid_scope",
                        &format!("pull-interactie {interaction} vereist een authorization_base"),
                    );
                }
                items.push(item.to_owned());
            }
            if items.is_empty() {
                return bad("invalid_scope", "lege scope");
            }
            items.join(" ")
        }
        None => {
            let Some(base) = authz_base.as_deref() else {
                return bad(
                    "invalid_scope",
                    "scope ontbreekt en er is geen authorization_base",
                );
            };
            let Some(code) = consent_contextcode(base) else {
                return bad(
                    "invalid_grant",
                    "authorization_base is geen AORTA consent_token met contextcode",
                );
            };
            let Some(c) = s.data.contextcodes.iter().find(|c| c.code == code) else {
                return bad("invalid_scope", &format!("onbekende contextcode {code}"));
            };
            c.interactions
                .iter()
                .map(|i| format!("{i}~aorta.contextcode.{code}~normaal"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let ttl = s.data.access_token_ttl_secs;
    let mut vrb = serde_json::Map::new();
    vrb.insert("_vrb_ura".into(), json!(ura));
    for (claim, v) in [
        ("user_id", "_vrb_user_id"),
        ("user_role", "_vrb_user_role"),
        ("bsn", "_vrb_bsn"),
    ] {
        if let Some(x) = str_claim(claim) {
            vrb.insert(v.into(), json!(x));
        }
    }
    if let Some(b) = &authz_base {
        vrb.insert("_vrb_authz_base".into(), json!(b));
    }
    let at = json!({
        "iss": s.data.issuer,
        "aud": s.data.audience,
        "sub": ura,
        "iat": n,
        "exp": n + ttl,
        "jti": uuid::Uuid::new_v4().to_string(),
        "scope": scope,
        "client_id": str_claim("client_id"),
        "_vrb": vrb,
    });
    let mut h = serde_json::Map::new();
    h.insert("typ".into(), json!("JWT"));
    let token = match s.signer.sign(h, &at) {
        Ok(t) => t,
        Err(e) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e.to_string()),
    };
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": scope,
            "issued_token_type": ACCESS_TOKEN_TYPE,
        })),
    )
        .into_response()
}

/// The token endpoint over `data` (refused when inconsistent).
pub fn router(data: Data) -> Result<axum::Router, String> {
    let s = Server::new(data)?;
    Ok(axum::Router::new()
        .route("/token", post(token))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(Arc::new(s)))
}

/// Serves `POST /token` over mutual TLS: `tls.client_ca` is required.
pub async fn start(
    data: Data,
    listen: SocketAddr,
    tls: Tls,
    shutdown: CancellationToken,
) -> Result<Running, String> {
    if tls.client_ca.is_none() {
        return Err(
            "the Autorisatie Server ZA answers only callers with a client certificate: --client-ca is required"
                .into(),
        );
    }
    let router = router(data)?;
    sim_kit::serve::serve_tls(listen, router, &tls, shutdown).await
}
