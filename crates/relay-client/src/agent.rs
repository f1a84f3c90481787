//! The seed's CPS agent HTTP API (SPEC.md §2, "DevBox-Santé CPS agent"): the two calls the DMP
//! gateway makes during a TLS handshake, `GET /cps/authenticationCertificate` and
//! `POST /cps/sign/for/authentication/SHA256WithRSA`. cps-relay serves it beside its gRPC face;
//! [`CpsAgentClient`] is how the gateway uses a relay (or any agent speaking it) over it.
//!
//! The seed names the two paths and says only "{certificate authentification}" and "body:
//! {handshake data}" → "{signed handshake data}"; no public DevBox-Santé page documents the
//! bodies (doc.devbox-sante.fr, "Authentification Directe via le CPS Agent", shows the sequence
//! alone). **Decision** — the bodies, as both sides implement them:
//!
//! | call | request | answer 200 |
//! |---|---|---|
//! | `GET /cps/authenticationCertificate` | no body | `application/json` `{"certificate": "<base64 DER leaf>", "chain": ["<base64 DER issuer>", …]}` |
//! | `POST /cps/sign/for/authentication/SHA256WithRSA` | `application/octet-stream`: the raw signing input (a TLS 1.2 handshake transcript from the ClientHello to the ClientKeyExchange) | `application/octet-stream`: the raw RSASSA-PKCS1-v1_5 SHA-256 signature (the modulus' length) |
//!
//! Header `cps-session-grant-id` (the same name as the gRPC metadata) names the session grant a
//! signature is made under. Errors are `application/json`
//! `{"error": "<gRPC status code name>", "message": "<what happened>"}` with the HTTP status of
//! `service_kit::error::ServiceErrorCode::http_status`; the client reads the code from `error`
//! (an agent that sends none gets the code of its HTTP status). Answers carry
//! `Cache-Control: no-store`. Being lenient in what it accepts, the client also takes a
//! certificate answered as `application/pkix-cert` (DER) or PEM.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

use crate::{ClientError, GRANT_ID_METADATA, RelayTls};

/// The certificate call's path.
pub const CERTIFICATE_PATH: &str = "/cps/authenticationCertificate";
/// The signature call's path (the seed's SHA256WithRSA: RSASSA-PKCS1-v1_5 with SHA-256).
pub const SIGN_PATH: &str = "/cps/sign/for/authentication/SHA256WithRSA";
/// The header naming the session grant of a signature (as the gRPC metadata).
pub const GRANT_ID_HEADER: &str = GRANT_ID_METADATA;
/// Largest body either side reads: a transcript is bounded by the relay at 256 KiB, a
/// certificate chain is a few KiB.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// The certificate answer's JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateBody {
    /// The leaf certificate, base64 (standard alphabet, padded) of its DER.
    pub certificate: String,
    /// Its issuers, leaf's issuer first, base64 DER.
    #[serde(default)]
    pub chain: Vec<String>,
}

/// An error answer's JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The gRPC status code name (`PERMISSION_DENIED`, `INVALID_ARGUMENT`, …).
    pub error: String,
    /// What happened, for a person.
    pub message: String,
}

/// The leaf and chain of the card, DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCertificate {
    /// The authentication certificate.
    pub leaf: Vec<u8>,
    /// Its issuers.
    pub chain: Vec<Vec<u8>>,
}

/// The gRPC code named `name` (`service_kit::metrics::code_name` spelling).
pub fn code_from_name(name: &str) -> Option<Code> {
    (0..=16)
        .find(|c| service_kit::metrics::code_name(*c) == name)
        .map(Code::from_i32)
}

/// A client of one CPS agent. Every call opens its own connection: a card signs once per
/// professional session, and the certificate is cached by the caller.
#[derive(Clone)]
pub struct CpsAgentClient {
    endpoint: String,
    host: String,
    port: u16,
    /// The base path, without a trailing `/`.
    prefix: String,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    timeout: Duration,
}

impl std::fmt::Debug for CpsAgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpsAgentClient")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl CpsAgentClient {
    /// A client of the agent at `endpoint` (`https://host:port[/base]`, or `http://` when `tls`
    /// is `None`), presenting `tls`'s client certificate and verifying `tls.server_name`; every
    /// call (connection included) gets `timeout`.
    pub fn new(endpoint: &str, tls: Option<&RelayTls>, timeout: Duration) -> Result<Self, ClientError> {
        let bad = |reason: String| ClientError::Endpoint {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let uri: http::Uri = endpoint.parse().map_err(|e| bad(format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be https (or http without TLS)".into())),
        };
        if https != tls.is_some() {
            return Err(bad(if https {
                "https needs the client's TLS identity".into()
            } else {
                "http cannot carry a TLS identity: use https".into()
            }));
        }
        let host = uri
            .host()
            .ok_or_else(|| bad("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = match tls {
            Some(t) => Some(rustls_config(t).map_err(bad)?),
            None => None,
        };
        Ok(CpsAgentClient {
            endpoint: endpoint.to_owned(),
            host,
            port,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            tls,
            timeout,
        })
    }

    /// The card's authentication certificate and its issuers.
    pub async fn certificate(&self) -> Result<AgentCertificate, Status> {
        let req = self.request(http::Method::GET, CERTIFICATE_PATH, None, Bytes::new())?;
        let (head, body) = self.send(req).await?;
        let content_type = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let malformed = |why: String| {
            Status::internal(format!(
                "CPS agent {}: the certificate answer is unusable: {why}",
                self.endpoint
            ))
        };
        if content_type.starts_with("application/pkix-cert") {
            return Ok(AgentCertificate {
                leaf: body.to_vec(),
                chain: Vec::new(),
            });
        }
        if body.trim_ascii_start().starts_with(b"-----BEGIN") {
            let mut certs = CertificateDer::pem_slice_iter(&body)
                .map(|c| c.map(|c| c.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| malformed(format!("PEM: {e}")))?
                .into_iter();
            let leaf = certs
                .next()
                .ok_or_else(|| malformed("no certificate in the PEM".into()))?;
            return Ok(AgentCertificate {
                leaf,
                chain: certs.collect(),
            });
        }
        let parsed: CertificateBody =
            serde_json::from_slice(&body).map_err(|e| malformed(format!("JSON: {e}")))?;
        let decode = |what: &str, s: &str| {
            B64.decode(s.trim())
                .map_err(|e| malformed(format!("{what} is not base64: {e}")))
        };
        Ok(AgentCertificate {
            leaf: decode("certificate", &parsed.certificate)?,
            chain: parsed
                .chain
                .iter()
                .enumerate()
                .map(|(i, c)| decode(&format!("chain[{i}]"), c))
                .collect::<Result<_, _>>()?,
        })
    }

    /// An RSASSA-PKCS1-v1_5 SHA-256 signature over TLS handshake data `data`, under the session
    /// grant `grant_id` when given.
    pub async fn sign(&self, data: Vec<u8>, grant_id: Option<&str>) -> Result<Vec<u8>, Status> {
        let req = self.request(http::Method::POST, SIGN_PATH, grant_id, Bytes::from(data))?;
        let (_, body) = self.send(req).await?;
        Ok(body.to_vec())
    }

    fn request(
        &self,
        method: http::Method,
        path: &str,
        grant_id: Option<&str>,
        body: Bytes,
    ) -> Result<http::Request<Full<Bytes>>, Status> {
        let authority = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.prefix))
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, "application/json, application/octet-stream");
        if method == http::Method::POST {
            req = req.header(http::header::CONTENT_TYPE, "application/octet-stream");
        }
        if let Some(id) = grant_id {
            req = req.header(GRANT_ID_HEADER, id);
        }
        let mut req = req
            .body(Full::new(body))
            .map_err(|e| Status::invalid_argument(format!("cannot build the CPS agent request: {e}")))?;
        service_kit::telemetry::inject_into_headers(req.headers_mut());
        Ok(req)
    }

    async fn send(&self, req: http::Request<Full<Bytes>>) -> Result<(http::response::Parts, Bytes), Status> {
        let timeout = self.timeout;
        let (head, body) = tokio::time::timeout(timeout, self.exchange(req))
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "CPS agent {} did not answer within {timeout:?}",
                    self.endpoint
                ))
            })??;
        if head.status.is_success() {
            return Ok((head, body));
        }
        let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
        let code = parsed
            .as_ref()
            .and_then(|e| code_from_name(&e.error))
            .filter(|c| *c != Code::Ok)
            .unwrap_or_else(|| {
                service_kit::error::ServiceErrorCode::from_peer_http_status(head.status.as_u16()).grpc_code()
            });
        let message = match parsed {
            Some(e) => e.message,
            None => format!(
                "CPS agent {} answered HTTP {}",
                self.endpoint,
                head.status.as_u16()
            ),
        };
        Err(Status::new(code, message))
    }

    async fn exchange(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<(http::response::Parts, Bytes), Status> {
        let unreachable = |what: &str, e: &dyn std::fmt::Display| {
            Status::unavailable(format!("CPS agent {}: {what}: {e}", self.endpoint))
        };
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable("cannot connect", &e))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some((config, name)) => {
                let stream = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| unreachable("TLS handshake", &e))?;
                self.over(stream, req).await
            }
            None => self.over(tcp, req).await,
        }
    }

    async fn over<S>(
        &self,
        io: S,
        req: http::Request<Full<Bytes>>,
    ) -> Result<(http::response::Parts, Bytes), Status>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let lost =
            |e: &dyn std::fmt::Display| Status::unavailable(format!("CPS agent {}: {e}", self.endpoint));
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| lost(&e))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let resp = sender.send_request(req).await.map_err(|e| lost(&e));
        let result = match resp {
            Ok(resp) => {
                let (head, body) = resp.into_parts();
                Limited::new(body, MAX_BODY_BYTES)
                    .collect()
                    .await
                    .map(|b| (head, b.to_bytes()))
                    .map_err(|e| lost(&format!("reading the answer: {e}")))
            }
            Err(e) => Err(e),
        };
        driver.abort();
        result
    }
}

fn rustls_config(tls: &RelayTls) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>), String> {
    let certs = |pem: &[u8], what: &str| {
        CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{what}: {e}"))
    };
    let roots = service_kit::tls::roots(certs(&tls.ca_pem, "CA")?).map_err(|e| e.to_string())?;
    let chain = certs(&tls.cert_pem, "client certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem).map_err(|e| format!("client key: {e}"))?;
    let mut config = service_kit::tls::client_config(roots, Some((chain, key))).map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| format!("server name `{}`: {e}", tls.server_name))?;
    Ok((Arc::new(config), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_round_trip() {
        assert_eq!(code_from_name("PERMISSION_DENIED"), Some(Code::PermissionDenied));
        assert_eq!(code_from_name("INVALID_ARGUMENT"), Some(Code::InvalidArgument));
        assert_eq!(code_from_name("UNAUTHENTICATED"), Some(Code::Unauthenticated));
        assert_eq!(code_from_name("nope"), None);
    }

    #[test]
    fn endpoints_match_their_tls() {
        let tls = RelayTls {
            ca_pem: Vec::new(),
            cert_pem: Vec::new(),
            key_pem: Vec::new(),
            server_name: "localhost".into(),
        };
        assert!(CpsAgentClient::new("http://127.0.0.1:1", None, Duration::from_secs(1)).is_ok());
        assert!(CpsAgentClient::new("http://127.0.0.1:1", Some(&tls), Duration::from_secs(1)).is_err());
        assert!(CpsAgentClient::new("https://127.0.0.1:1", None, Duration::from_secs(1)).is_err());
        assert!(CpsAgentClient::new("ftp://127.0.0.1:1", None, Duration::from_secs(1)).is_err());
    }
}
