//! The plain OAuth2 HTTP face (SPEC.md §3.2): `POST /oauth2/token` (form in, RFC 6749 JSON out,
//! `Cache-Control: no-store`), RFC 8414 metadata at `/.well-known/oauth-authorization-server`
//! and the JWKS of the assertion-signing keys at `/.well-known/jwks.json`.
//!
//! Request size: the body is read up to `http.max_body_bytes`; a larger one is answered 413 with
//! an OAuth `invalid_request` before it is parsed. Every token request gets its audit trail from
//! the moment it arrives, so refusals before the use case (malformed AORTA-ID, 413, wrong
//! Content-Type, a repeated parameter) and time-outs (`http.request_timeout`) are recorded too.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::Authz;
use crate::aorta_id::{AortaId, HEADER};
use crate::error::AuthzError;
use crate::issue_token::TokenRequest;
use crate::trail::{Outcome, Trail, UC_TOKEN};

pub(crate) const TOKEN_PATH: &str = "/oauth2/token";
pub(crate) const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";

pub(crate) fn router(authz: Arc<Authz>) -> axum::Router {
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

/// A refusal before the use case starts, written to the audit trail first.
async fn refuse(trail: Trail, status: StatusCode, e: AuthzError) -> Response {
    let outcome = Outcome {
        status: status.as_u16(),
        ..Outcome::of::<()>(&Err(e.clone()))
    };
    if let Err(audit) = trail.finish(&outcome).await {
        return audit.into_response();
    }
    let mut r = e.into_response();
    *r.status_mut() = status;
    r
}

async fn token(
    State(authz): State<Arc<Authz>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    let (parts, body) = req.into_parts();
    let traceparent = parts.headers.get("traceparent").and_then(|v| v.to_str().ok());
    let mut trail = authz
        .trail(
            UC_TOKEN,
            AortaId::new(),
            Some(peer.to_string()),
            "http",
            traceparent,
        )
        .with_deadline(authz.limits.request_timeout);
    trail.note("method", parts.method.as_str());
    trail.note("path", parts.uri.path());
    let content_type = parts.headers.get(header::CONTENT_TYPE).map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .chars()
            .take(200)
            .collect::<String>()
    });
    if let Some(ct) = &content_type {
        trail.note("content_type", ct.as_str());
    }
    let id = match aorta_id(&parts.headers) {
        Ok(id) => id,
        Err(e) => {
            if let Some(raw) = parts.headers.get(HEADER) {
                let raw: String = String::from_utf8_lossy(raw.as_bytes())
                    .chars()
                    .take(200)
                    .collect();
                trail.note("aorta_id_received", raw);
            }
            return refuse(trail, StatusCode::BAD_REQUEST, e).await;
        }
    };
    trail.set_aorta_id(id.clone());
    let deadline = authz.limits.request_timeout;
    let work = async move {
        let limit = authz.limits.max_body_bytes;
        let bytes = match axum::body::to_bytes(body, limit).await {
            Ok(b) => b,
            Err(_) => {
                let e = AuthzError::InvalidRequest(format!("Ongeldig verzoek: groter dan {limit} bytes"));
                return refuse(trail, StatusCode::PAYLOAD_TOO_LARGE, e).await;
            }
        };
        trail.note("body_bytes", bytes.len());
        let form_ok = content_type.as_deref().is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
        });
        if !form_ok {
            let e = AuthzError::InvalidRequest(
                "Ongeldig verzoek: Content-Type moet application/x-www-form-urlencoded zijn".into(),
            );
            return refuse(trail, StatusCode::BAD_REQUEST, e).await;
        }
        let req = match TokenRequest::from_pairs(url::form_urlencoded::parse(&bytes).into_owned()) {
            Ok(r) => r,
            Err(e) => return refuse(trail, StatusCode::BAD_REQUEST, e).await,
        };
        match authz.issue_token(req, trail).await {
            Ok(t) => {
                let mut r = no_store(axum::Json(t).into_response());
                if let Ok(v) = id.header_value().parse() {
                    r.headers_mut().insert(HEADER, v);
                }
                r
            }
            Err(e) => e.into_response(),
        }
    };
    // On time-out the work (and its trail) is dropped: the trail's drop guard records it.
    match tokio::time::timeout(deadline, work).await {
        Ok(r) => r,
        Err(_) => {
            AuthzError::Timeout("time-out: de verwerking duurde te lang; er is niets uitgegeven".into())
                .into_response()
        }
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

/// `Cache-Control` and `Pragma` as the AORTA "Interfaces Autorisatie Server GTK" page gives them
/// for the metadata and the JWKS: `must-revalidate, max-age=<configured>`, `Pragma: no-cache`.
fn cacheable(max_age: std::time::Duration, body: serde_json::Value) -> Response {
    let mut r = axum::Json(body).into_response();
    if let Ok(v) = format!("must-revalidate, max-age={}", max_age.as_secs()).parse() {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

async fn metadata(State(authz): State<Arc<Authz>>) -> Response {
    cacheable(authz.limits.metadata_max_age, authz.metadata())
}

async fn jwks(State(authz): State<Arc<Authz>>) -> Response {
    cacheable(
        authz.limits.jwks_max_age,
        authz.keys.jwks(crate::assertion::unix_now()),
    )
}

/// Answers a request the concurrency limit sheds: 429 at once, before anything is read or
/// checked, with an OAuth error body and `Retry-After` (**Decision**: not audited — writing two
/// events for every shed request would load the store exactly when the service is overloaded;
/// the shed requests are counted in `twiin_authz_http_shed_total` and logged).
pub(crate) async fn overloaded(authz: Arc<Authz>, err: tower::BoxError) -> Response {
    let (status, error, description) = if err.is::<tower::load_shed::error::Overloaded>() {
        authz.metrics.shed();
        tracing::debug!("token endpoint at its concurrency limit: request shed (429)");
        (
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "te veel gelijktijdige verzoeken; probeer het later opnieuw",
        )
    } else {
        tracing::warn!(error = %err, "OAuth2 HTTP layer failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "interne fout")
    };
    let mut r = no_store(
        (
            status,
            axum::Json(serde_json::json!({"error": error, "error_description": description})),
        )
            .into_response(),
    );
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// Serves `router` until `shutdown` is cancelled, then lets the connections finish their
/// requests (at most `drain`): over TLS when `tls` is set (rustls on aws-lc-rs, HTTP/1.1 and
/// HTTP/2 by ALPN), else plaintext HTTP/1.1 and h2c. Each connection carries its peer address
/// for the audit log. **Slow clients are cut off:** the TLS handshake and every request head
/// must arrive within `header_read_timeout` (hyper's header read timeout, which also closes a
/// connection idle that long between requests); a body is bounded by `http.request_timeout`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<&service_kit::config::ServerTlsSettings>,
    header_read_timeout: std::time::Duration,
    drain: std::time::Duration,
    shutdown: service_kit::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let acceptor = match tls {
        Some(tls) => Some(tls_acceptor(tls)?),
        None => None,
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(hyper_util::rt::TokioTimer::new());
    let builder = Arc::new(builder);
    Ok(tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
            // Small JSON answers: without TCP_NODELAY, Nagle + delayed ACK stall them ~40 ms.
            let _ = tcp.set_nodelay(true);
            let svc = hyper_util::service::TowerToHyperService::new(
                router.clone().layer(axum::Extension(ConnectInfo(peer))),
            );
            let (builder, acceptor) = (builder.clone(), acceptor.clone());
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let served = match acceptor {
                    Some(acceptor) => {
                        let stream = match tokio::time::timeout(header_read_timeout, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, %peer, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake not finished in time: connection closed");
                                return;
                            }
                        };
                        let conn =
                            builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc);
                        watcher.watch(conn.into_owned()).await
                    }
                    None => {
                        let conn =
                            builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tcp), svc);
                        watcher.watch(conn.into_owned()).await
                    }
                };
                if let Err(e) = served {
                    tracing::debug!(error = %e, %peer, "connection ended");
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
            tracing::warn!(timeout = ?drain, "OAuth2 HTTP connections still open after the drain: closed");
        }
    }))
}

fn tls_acceptor(tls: &service_kit::config::ServerTlsSettings) -> Result<tokio_rustls::TlsAcceptor, String> {
    let chain = service_kit::tls::load_certs(&tls.cert).map_err(|e| format!("http.tls.cert: {e}"))?;
    let key = service_kit::tls::load_private_key(&tls.key).map_err(|e| format!("http.tls.key: {e}"))?;
    let roots = match &tls.client_ca {
        Some(ca) => Some(service_kit::tls::load_roots(ca).map_err(|e| format!("http.tls.client_ca: {e}"))?),
        None => None,
    };
    let mut cfg = service_kit::tls::server_config(chain, key, roots, rustls::DEFAULT_VERSIONS)
        .map_err(|e| format!("http.tls: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}
