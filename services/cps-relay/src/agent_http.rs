//! The seed's CPS agent HTTP API (SPEC.md §1, §2 "DevBox-Santé CPS agent"), served beside the
//! gRPC face for gateways that speak it: `GET /cps/authenticationCertificate` and
//! `POST /cps/sign/for/authentication/SHA256WithRSA`. The bodies are `relay_client::agent`'s
//! (the module documents them and the sources read). Transport only: the listener has the same
//! mutual TLS as the gRPC face (`server.tls`, client certificates of `server.tls.client_ca`), and
//! both calls go through the very use cases the gRPC face calls, so callers, roles, purpose
//! limits, grants, rate and audit are the same whichever face is asked.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use relay_client::agent::{
    CERTIFICATE_PATH, CertificateBody, ErrorBody, GRANT_ID_HEADER, MAX_BODY_BYTES, SIGN_PATH,
};
use service_kit::error::{ServiceError, ServiceErrorCode};
use service_kit::https::PeerCertificates;

use crate::access::{Caller, caller_of};
use crate::error::RelayError;
use crate::rpc::{Face, RelayService, grant_id_of};
use crate::scheme::Scheme;

/// The routes of the CPS agent API on `relay`.
pub(crate) fn router(relay: Arc<RelayService>) -> Router {
    Router::new()
        .route(CERTIFICATE_PATH, get(certificate))
        .route(SIGN_PATH, post(sign))
        .fallback(not_found)
        .with_state(relay)
}

/// An error answer: the status of the error's code, and its gRPC code name and message.
fn error(code: ServiceErrorCode, message: String) -> Response {
    let body = ErrorBody {
        error: service_kit::metrics::code_name(code.grpc_code() as i32).to_owned(),
        message,
    };
    (
        code.http_status(),
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

fn relay_error(e: &RelayError) -> Response {
    error(e.error_code(), e.to_string())
}

fn caller(peer: Option<axum::Extension<PeerCertificates>>) -> Result<Caller, RelayError> {
    match peer {
        Some(axum::Extension(certs)) => caller_of(&certs.0),
        None => caller_of(&[]),
    }
}

async fn certificate(
    State(relay): State<Arc<RelayService>>,
    peer: Option<axum::Extension<PeerCertificates>>,
) -> Response {
    let described = match caller(peer) {
        Ok(c) => relay.authentication_certificate(&c).await,
        Err(e) => Err(e),
    };
    match described {
        Ok(d) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(CertificateBody {
                certificate: B64.encode(&d.leaf_der),
                chain: d.chain_der.iter().map(|c| B64.encode(c)).collect(),
            }),
        )
            .into_response(),
        Err(e) => relay_error(&e),
    }
}

async fn sign(
    State(relay): State<Arc<RelayService>>,
    peer: Option<axum::Extension<PeerCertificates>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = match caller(peer) {
        Ok(c) => c,
        Err(e) => return relay_error(&e),
    };
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default();
        let essence = ct.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/octet-stream") {
            return error(
                ServiceErrorCode::BadRequest,
                format!("the handshake data must be sent as application/octet-stream, not `{ct}`"),
            );
        }
    }
    let data = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(d) => d.to_vec(),
        Err(_) => {
            return error(
                ServiceErrorCode::BadRequest,
                format!("the handshake data is unreadable or larger than {MAX_BODY_BYTES} bytes"),
            );
        }
    };
    let grant_id = headers
        .get(GRANT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(grant_id_of);
    let scheme = Scheme::RsaPkcs1Sha256.to_proto() as i32;
    match relay
        .sign_for_authentication(&caller, Face::AgentHttp, grant_id, scheme, data)
        .await
    {
        Ok(signature) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            signature,
        )
            .into_response(),
        Err(e) => relay_error(&e),
    }
}

async fn not_found() -> Response {
    error(
        ServiceErrorCode::NotFound,
        format!("the CPS agent API has {CERTIFICATE_PATH} (GET) and {SIGN_PATH} (POST) only"),
    )
}
