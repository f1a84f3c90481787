//! AORTA Stelsel Metadata simulator (SPEC.md §3.1 precondition): serves the signed
//! **Stelseltoken** that carries the public keys AORTA access tokens are signed with.
//!
//! Contract:
//! - `GET /stelseltoken` answers `200 application/jwt`: a JWS with header `{alg: RS256, typ:
//!   aorta-st+JWT, kid, x5c: [signer, CA]}` and claims `{iss, iat, exp, jti, jwks: {keys: [...]}}`
//!   where `jwks` holds the AORTA token-signing keys (RSA JWKs with `kid`).
//! - The client must accept `application/jwt` (or `*/*`): otherwise 406.
//! - Only `GET` (405 otherwise).
//!
//! `backdate_secs` in the data makes the simulator hand out an old token, to test that a GtK
//! refuses to rely on a stale Stelseltoken.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sim_kit::CancellationToken;
use sim_kit::jose::{RsaSigner, b64_std};
use sim_kit::serve::{Running, Tls};

/// The simulator's data file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// `iss` of the Stelseltoken.
    pub issuer: String,
    /// PKCS#8 PEM key of the Stelsel signer.
    pub signer_key: PathBuf,
    /// Its chain (leaf then CA) for `x5c`.
    pub signer_chain: PathBuf,
    /// Lifetime of a served token.
    #[serde(default = "default_validity")]
    pub validity_secs: u64,
    /// Serve tokens issued this long ago (0: now).
    #[serde(default)]
    pub backdate_secs: u64,
    /// The AORTA token-signing keys published in the token.
    pub token_signing_keys: Vec<TokenSigningKey>,
}

fn default_validity() -> u64 {
    3600
}

/// An AORTA token-signing key the Stelseltoken publishes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenSigningKey {
    /// Its `kid`.
    pub kid: String,
    /// PKCS#8 PEM of the key (only its public part is published).
    pub key: PathBuf,
}

struct Stelsel {
    issuer: String,
    signer: RsaSigner,
    x5c: Vec<String>,
    validity: u64,
    backdate: u64,
    jwks: Value,
}

fn read(p: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

impl Stelsel {
    fn new(d: Data) -> Result<Self, String> {
        let signer = RsaSigner::from_pkcs8_pem("stelsel-signer", &read(&d.signer_key)?)
            .map_err(|e| format!("signer_key: {e}"))?;
        let x5c = sim_kit::pki::certs_der(&read(&d.signer_chain)?)
            .map_err(|e| format!("signer_chain: {e}"))?
            .iter()
            .map(|c| b64_std(c))
            .collect();
        if d.token_signing_keys.is_empty() {
            return Err("token_signing_keys: at least one key is needed".into());
        }
        let mut keys = Vec::new();
        for k in &d.token_signing_keys {
            let s = RsaSigner::from_pkcs8_pem(&k.kid, &read(&k.key)?)
                .map_err(|e| format!("token_signing_keys.{}: {e}", k.kid))?;
            keys.push(s.public_jwk());
        }
        Ok(Stelsel {
            issuer: d.issuer,
            signer,
            x5c,
            validity: d.validity_secs,
            backdate: d.backdate_secs,
            jwks: json!({ "keys": keys }),
        })
    }

    fn token(&self) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let iat = now.saturating_sub(self.backdate);
        let claims = json!({
            "iss": self.issuer,
            "iat": iat,
            "exp": iat + self.validity,
            "jti": uuid::Uuid::new_v4().to_string(),
            "jwks": self.jwks,
        });
        let mut header = serde_json::Map::new();
        header.insert("typ".into(), json!("aorta-st+JWT"));
        header.insert("x5c".into(), json!(self.x5c));
        self.signer.sign(header, &claims).map_err(|e| e.to_string())
    }
}

async fn stelseltoken(State(s): State<Arc<Stelsel>>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("*/*");
    if !accept.contains("application/jwt") && !accept.contains("*/*") {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "the Stelseltoken is served as application/jwt",
        )
            .into_response();
    }
    match s.token() {
        Ok(t) => ([(header::CONTENT_TYPE, "application/jwt")], t).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

/// The Stelseltoken endpoint over `data` (refused when the keys cannot be read).
pub fn router(data: Data) -> Result<axum::Router, String> {
    let s = Stelsel::new(data)?;
    Ok(axum::Router::new()
        .route("/stelseltoken", get(stelseltoken))
        .with_state(Arc::new(s)))
}

/// Serves the Stelseltoken over HTTPS with `tls` (client certificates only when it names a
/// `client_ca`: the metadata is public), else over plain HTTP (development).
pub async fn start(
    data: Data,
    listen: SocketAddr,
    tls: Option<Tls>,
    shutdown: CancellationToken,
) -> Result<Running, String> {
    let router = router(data)?;
    match tls {
        Some(tls) => sim_kit::serve::serve_tls(listen, router, &tls, shutdown).await,
        None => sim_kit::serve::serve(listen, router, shutdown)
            .await
            .map_err(|e| format!("listen {listen}: {e}")),
    }
}
