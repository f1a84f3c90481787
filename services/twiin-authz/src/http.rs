//! The plain OAuth2 HTTP face (SPEC.md §3.2): `POST /oauth2/token` (form in, RFC 6749 JSON out,
//! `Cache-Control: no-store`), RFC 8414 metadata at `/.well-known/oauth-authorization-server`
//! and the JWKS of the assertion-signing keys at `/.well-known/jwks.json`.
//!
//! Request size: the body is read up to `http.max_body_bytes`; a larger one is answered 413 with
//! an OAuth `invalid_request` before it is parsed.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::aorta_id::{AortaId, HEADER};
use crate::error::AuthzError;
use crate::issue_token::TokenRequest;
use crate::{Authz, CallContext};

pub const TOKEN_PATH: &str = "/oauth2/token";
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

pub fn router(authz: Arc<Authz>) -> axum::Router {
    axum::Router::new()
        .route(TOKEN_PATH, post(token))
        .route(METADATA_PATH, get(metadata))
        .route(JWKS_PATH, get(jwks))
        .with_state(authz)
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

async fn token(
    State(authz): State<Arc<Authz>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    let (parts, body) = req.into_parts();
    let result = async {
        let id = aorta_id(&parts.headers)?;
        let form_ok = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
            });
        let limit = authz.limits.max_body_bytes;
        let bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| TooLarge(limit))?;
        if !form_ok {
            return Err(AuthzError::InvalidRequest(
                "Ongeldig verzoek: Content-Type moet application/x-www-form-urlencoded zijn".into(),
            )
            .into());
        }
        let req = TokenRequest::from_pairs(url::form_urlencoded::parse(&bytes).into_owned())?;
        let ctx = CallContext {
            aorta_id: id.clone(),
            peer: Some(peer.to_string()),
            transport: "http",
        };
        let t = authz.issue_token(req, ctx).await?;
        Ok::<_, Failure>((id, t))
    }
    .await;
    match result {
        Ok((id, t)) => {
            let mut r = no_store(axum::Json(t).into_response());
            if let Ok(v) = id.header_value().parse() {
                r.headers_mut().insert(HEADER, v);
            }
            r
        }
        Err(Failure::Authz(e)) => e.into_response(),
        Err(Failure::TooLarge(limit)) => no_store(
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(json!({
                    "error": "invalid_request",
                    "error_description": format!("Ongeldig verzoek: groter dan {limit} bytes"),
                })),
            )
                .into_response(),
        ),
    }
}

struct TooLarge(usize);

enum Failure {
    Authz(AuthzError),
    TooLarge(usize),
}

impl From<AuthzError> for Failure {
    fn from(e: AuthzError) -> Self {
        Failure::Authz(e)
    }
}

impl From<TooLarge> for Failure {
    fn from(e: TooLarge) -> Self {
        Failure::TooLarge(e.0)
    }
}

fn aorta_id(headers: &HeaderMap) -> Result<AortaId, AuthzError> {
    let v = match headers.get(HEADER) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| AuthzError::InvalidRequest("Ongeldig verzoek: AORTA-ID is ongeldig".into()))?,
        ),
    };
    AortaId::accept(v).map_err(|e| AuthzError::InvalidRequest(format!("Ongeldig verzoek: {e}")))
}

fn cacheable(authz: &Authz, body: serde_json::Value) -> Response {
    let mut r = axum::Json(body).into_response();
    if let Ok(v) = format!("public, max-age={}", authz.limits.metadata_max_age.as_secs()).parse() {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r
}

async fn metadata(State(authz): State<Arc<Authz>>) -> Response {
    cacheable(&authz, authz.metadata())
}

async fn jwks(State(authz): State<Arc<Authz>>) -> Response {
    cacheable(&authz, authz.keys.jwks(crate::assertion::unix_now()))
}

/// Serves `router` over TLS: rustls (aws-lc-rs), HTTP/1.1 and HTTP/2 by ALPN, each connection
/// with its peer address for the audit log. Stops accepting when `shutdown` is cancelled.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: &service_kit::config::ServerTlsSettings,
    shutdown: service_kit::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let chain = service_kit::tls::load_certs(&tls.cert).map_err(|e| format!("http.tls.cert: {e}"))?;
    let key = service_kit::tls::load_private_key(&tls.key).map_err(|e| format!("http.tls.key: {e}"))?;
    let roots = match &tls.client_ca {
        Some(ca) => Some(service_kit::tls::load_roots(ca).map_err(|e| format!("http.tls.client_ca: {e}"))?),
        None => None,
    };
    let mut cfg = service_kit::tls::server_config(chain, key, roots, rustls::DEFAULT_VERSIONS)
        .map_err(|e| format!("http.tls: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    Ok(tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept");
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let svc = router.clone().layer(axum::Extension(ConnectInfo(peer)));
            tokio::spawn(async move {
                let stream = match acceptor.accept(tcp).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, %peer, "TLS handshake failed");
                        return;
                    }
                };
                let svc = hyper_util::service::TowerToHyperService::new(svc);
                let builder =
                    hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                if let Err(e) = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!(error = %e, %peer, "connection ended");
                }
            });
        }
    }))
}
