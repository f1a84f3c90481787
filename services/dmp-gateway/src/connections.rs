//! Connections to the DMP, one pool per professional (SPEC.md §2, **Decision — sign as rarely as
//! possible**): an HTTP/1.1 keep-alive pool keyed by the SHA-256 of the professional's card
//! certificate, never shared between professionals, with TLS session resumption, so 1,000 calls
//! by one professional cost one card signature. Idle sessions expire after `idle_timeout`; the
//! next call after a failure opens a new connection (and re-handshakes).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ehealth_proto::cps::v1::GetAuthenticationCertificateResponse;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use relay_client::Scheme;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::dmp_tls::{TlsVersion, client_config};
use crate::error::TransportError;
use crate::relay::{RelayDirectory, SignFailure};
use crate::remote_key::{CardResolver, RemoteKey, SignatureLedger};

/// Where the DMP is and how to talk to it.
#[derive(Debug, Clone)]
pub struct DmpEndpoint {
    /// `https://host:port` (paths are given per call).
    pub base_url: http::Uri,
    /// The name the DMP's certificate must carry.
    pub server_name: ServerName<'static>,
    /// CAs that issue the DMP's certificate.
    pub roots: Arc<RootCertStore>,
    /// TLS versions offered.
    pub versions: Vec<TlsVersion>,
    /// Longest wait for TCP + TLS.
    pub connect_timeout: Duration,
    /// Longest wait for an answer.
    pub request_timeout: Duration,
    /// Longest wait for the relay's CertificateVerify signature.
    pub signature_timeout: Duration,
    /// A professional's connections close after this long unused.
    pub idle_timeout: Duration,
    /// How long a card certificate fetched from a relay is reused.
    pub certificate_ttl: Duration,
    /// Largest answer read.
    pub max_response_bytes: usize,
}

/// Domain metrics of the transport.
#[derive(Clone, Default)]
pub struct TransportMetrics {
    /// `dmp_gateway_remote_signatures_total`.
    pub remote_signatures: Counter,
    /// `dmp_gateway_tls_handshakes_total`.
    pub handshakes: Counter,
    /// `dmp_gateway_professional_sessions`.
    pub professional_sessions: Gauge,
}

impl TransportMetrics {
    /// The metrics, registered.
    pub fn register(metrics: &service_kit::metrics::Metrics) -> Self {
        let m = TransportMetrics::default();
        metrics.register(
            "dmp_gateway_remote_signatures",
            "Card signatures asked of cps-relays",
            m.remote_signatures.clone(),
        );
        metrics.register(
            "dmp_gateway_tls_handshakes",
            "TLS connections opened to the DMP",
            m.handshakes.clone(),
        );
        metrics.register(
            "dmp_gateway_professional_sessions",
            "Professionals with a live connection pool to the DMP",
            m.professional_sessions.clone(),
        );
        m
    }
}

/// Who is calling, as the gateway's RPCs state it.
#[derive(Debug, Clone)]
pub struct Professional<'a> {
    /// The relay holding the card (`auth_context.relay_id`).
    pub relay_id: &'a str,
    /// The professional the card must belong to.
    pub professional_id: &'a str,
}

/// A professional's authenticated path to the DMP.
pub struct ProfessionalSession {
    /// The relay holding the card.
    pub relay_id: String,
    /// The card's certificate chain, as the relay gave it.
    pub certificate: Arc<GetAuthenticationCertificateResponse>,
    /// SHA-256 of the card's certificate (the pool's key).
    pub fingerprint: String,
    client: Client<DmpConnector, Full<Bytes>>,
    ledger: Arc<SignatureLedger>,
    last_used: Mutex<Instant>,
}

impl ProfessionalSession {
    /// Remote signatures made for this session so far.
    pub fn signatures(&self) -> u64 {
        self.ledger.made.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// An answer of the DMP.
#[derive(Debug)]
pub struct DmpResponse {
    /// HTTP status.
    pub status: http::StatusCode,
    /// HTTP headers.
    pub headers: http::HeaderMap,
    /// The body, read whole (up to `max_response_bytes`).
    pub body: Bytes,
}

struct CachedCertificate {
    fetched: Instant,
    certificate: Arc<GetAuthenticationCertificateResponse>,
}

/// The transport: one keep-alive pool per professional, authenticated with the card through
/// its relay.
pub struct DmpConnections {
    endpoint: DmpEndpoint,
    relays: RelayDirectory,
    sessions: Mutex<HashMap<String, Arc<ProfessionalSession>>>,
    certificates: tokio::sync::Mutex<HashMap<String, CachedCertificate>>,
    metrics: TransportMetrics,
}

impl DmpConnections {
    /// The transport, without any connection yet.
    pub fn new(endpoint: DmpEndpoint, relays: RelayDirectory, metrics: TransportMetrics) -> Arc<Self> {
        Arc::new(DmpConnections {
            endpoint,
            relays,
            sessions: Mutex::new(HashMap::new()),
            certificates: tokio::sync::Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// Drops sessions idle for longer than `idle_timeout` (their signer threads end with them).
    pub fn expire_idle(&self) {
        let idle = self.endpoint.idle_timeout;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.last_used.lock().unwrap_or_else(|e| e.into_inner()).elapsed() < idle);
        self.metrics.professional_sessions.set(sessions.len() as i64);
    }

    /// Runs [`expire_idle`](Self::expire_idle) periodically until `shutdown`.
    pub fn spawn_expiry(self: &Arc<Self>, shutdown: service_kit::CancellationToken) {
        let me = Arc::downgrade(self);
        let every = (self.endpoint.idle_timeout / 4).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = shutdown.cancelled() => return,
                }
                match me.upgrade() {
                    Some(c) => c.expire_idle(),
                    None => return,
                }
            }
        });
    }

    async fn certificate(
        &self,
        who: &Professional<'_>,
    ) -> Result<Arc<GetAuthenticationCertificateResponse>, TransportError> {
        let relay = self.relays.get(who.relay_id)?;
        let mut cache = self.certificates.lock().await;
        if let Some(c) = cache.get(who.relay_id)
            && c.fetched.elapsed() < self.endpoint.certificate_ttl
        {
            return Ok(c.certificate.clone());
        }
        let mut client = self.relays.client(relay)?;
        let certificate = Arc::new(
            client
                .certificate()
                .await
                .map_err(|s| relay_status(who.relay_id, s))?,
        );
        cache.insert(
            who.relay_id.to_owned(),
            CachedCertificate {
                fetched: Instant::now(),
                certificate: certificate.clone(),
            },
        );
        Ok(certificate)
    }

    /// The professional's session, opened on first use.
    pub async fn session(&self, who: &Professional<'_>) -> Result<Arc<ProfessionalSession>, TransportError> {
        let certificate = self.certificate(who).await?;
        if certificate.professional_id != who.professional_id {
            return Err(TransportError::WrongProfessional {
                relay_id: who.relay_id.to_owned(),
                expected: who.professional_id.to_owned(),
                card: certificate.professional_id.clone(),
            });
        }
        let fingerprint = service_kit::tls::sha256_fingerprint(&certificate.leaf_der);
        if let Some(s) = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fingerprint)
        {
            *s.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            return Ok(s.clone());
        }
        let relay = self.relays.get(who.relay_id)?;
        let signer = Arc::new(self.relays.signer_thread(relay)?);
        let schemes: Vec<Scheme> = certificate
            .supported_schemes
            .iter()
            .filter_map(|s| Scheme::from_proto(*s))
            .collect();
        let ledger = Arc::new(SignatureLedger::default());
        let key = RemoteKey::new(
            signer,
            &schemes,
            self.endpoint.signature_timeout,
            ledger.clone(),
            self.metrics.remote_signatures.clone(),
        )
        .ok_or_else(|| TransportError::RelayRefused {
            code: tonic::Code::FailedPrecondition,
            message: "the card offers no signature scheme the DMP accepts".into(),
        })?;
        let chain: Vec<CertificateDer<'static>> = std::iter::once(certificate.leaf_der.clone())
            .chain(certificate.chain_der.iter().cloned())
            .map(CertificateDer::from)
            .collect();
        let config = client_config(
            self.endpoint.roots.clone(),
            &self.endpoint.versions,
            Arc::new(CardResolver::new(chain, key)),
        )?;
        let connector = DmpConnector {
            config,
            server_name: self.endpoint.server_name.clone(),
            connect_timeout: self.endpoint.connect_timeout,
            handshakes: self.metrics.handshakes.clone(),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.endpoint.idle_timeout)
            .pool_max_idle_per_host(8)
            .build(connector);
        let session = Arc::new(ProfessionalSession {
            relay_id: who.relay_id.to_owned(),
            certificate,
            fingerprint: fingerprint.clone(),
            client,
            ledger,
            last_used: Mutex::new(Instant::now()),
        });
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        // Two first calls may race: keep the one stored first.
        let session = sessions.entry(fingerprint).or_insert(session).clone();
        self.metrics.professional_sessions.set(sessions.len() as i64);
        Ok(session)
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}{path}",
            self.endpoint.base_url.to_string().trim_end_matches('/')
        )
    }

    /// POSTs `body` to `path` of the DMP on the professional's connection.
    pub async fn post(
        &self,
        session: &ProfessionalSession,
        path: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<DmpResponse, TransportError> {
        let uri = self.url(path);
        let mut req = http::Request::post(uri).header(http::header::CONTENT_TYPE, content_type);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| TransportError::Request(e.to_string()))?;
        self.send(session, req).await
    }

    /// A GET (status pages, tests against generic TLS servers).
    pub async fn get(
        &self,
        session: &ProfessionalSession,
        path: &str,
    ) -> Result<DmpResponse, TransportError> {
        let uri = self.url(path);
        let req = http::Request::get(uri)
            .body(Full::new(Bytes::new()))
            .map_err(|e| TransportError::Request(e.to_string()))?;
        self.send(session, req).await
    }

    async fn send(
        &self,
        session: &ProfessionalSession,
        mut req: http::Request<Full<Bytes>>,
    ) -> Result<DmpResponse, TransportError> {
        service_kit::telemetry::inject_into_headers(req.headers_mut());
        *session.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let timeout = self.endpoint.request_timeout;
        let resp = tokio::time::timeout(timeout, session.client.request(req))
            .await
            .map_err(|_| TransportError::DmpTimeout(timeout))?
            .map_err(|e| classify_client_error(&e, session))?;
        let (parts, body) = resp.into_parts();
        let limit = self.endpoint.max_response_bytes;
        let body = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
            .await
            .map_err(|_| TransportError::DmpTimeout(timeout))?
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    TransportError::ResponseTooLarge(limit)
                } else {
                    TransportError::ConnectionLost(e.to_string())
                }
            })?
            .to_bytes();
        Ok(DmpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

fn relay_status(relay_id: &str, s: tonic::Status) -> TransportError {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown => TransportError::RelayUnreachable {
            relay_id: relay_id.to_owned(),
            reason: s.message().to_owned(),
        },
        tonic::Code::DeadlineExceeded => TransportError::RelayUnreachable {
            relay_id: relay_id.to_owned(),
            reason: format!("no answer in time ({})", s.message()),
        },
        code => TransportError::RelayRefused {
            code,
            message: s.message().to_owned(),
        },
    }
}

/// Maps a hyper client error to what happened: the relay's failure during the handshake (kept in
/// the ledger), a TLS refusal by either side, or a lost connection.
fn classify_client_error(
    e: &hyper_util::client::legacy::Error,
    session: &ProfessionalSession,
) -> TransportError {
    let ledger = &session.ledger;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(t) = err.downcast_ref::<TransportError>() {
            return match t {
                TransportError::Tls(_) => {
                    match ledger
                        .last_failure
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                    {
                        Some(SignFailure::Refused { code, message }) => {
                            TransportError::RelayRefused { code, message }
                        }
                        Some(SignFailure::Unreachable(reason)) => TransportError::RelayUnreachable {
                            relay_id: session.relay_id.clone(),
                            reason,
                        },
                        Some(SignFailure::Deadline(d)) => TransportError::SignatureDeadline(d),
                        None => t.clone(),
                    }
                }
                other => other.clone(),
            };
        }
        source = err.source();
    }
    if e.is_connect() {
        TransportError::DmpUnreachable {
            address: "the DMP".into(),
            reason: e.to_string(),
        }
    } else {
        TransportError::ConnectionLost(format!("{e}"))
    }
}

/// Opens TCP + TLS connections for one professional.
#[derive(Clone)]
pub(crate) struct DmpConnector {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
    connect_timeout: Duration,
    handshakes: Counter,
}

impl tower::Service<http::Uri> for DmpConnector {
    type Response = TokioIo<DmpStream>;
    type Error = TransportError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, TransportError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let address = format!("{host}:{}", uri.port_u16().unwrap_or(443));
            let tcp = tokio::time::timeout(me.connect_timeout, TcpStream::connect(&address))
                .await
                .map_err(|_| TransportError::DmpUnreachable {
                    address: address.clone(),
                    reason: "connect timeout".into(),
                })?
                .map_err(|e| TransportError::DmpUnreachable {
                    address: address.clone(),
                    reason: e.to_string(),
                })?;
            let _ = tcp.set_nodelay(true);
            me.handshakes.inc();
            let tls = tokio_rustls::TlsConnector::from(me.config.clone())
                .connect(me.server_name.clone(), tcp)
                .await
                .map_err(classify_tls_error)?;
            Ok(TokioIo::new(DmpStream(tls)))
        })
    }
}

fn classify_tls_error(e: std::io::Error) -> TransportError {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return TransportError::ConnectionLost(format!("during the TLS handshake: {e}"));
    };
    use rustls::AlertDescription as A;
    match tls {
        rustls::Error::InvalidCertificate(reason) => TransportError::DmpCertificateInvalid(format!("{reason:?}")),
        rustls::Error::AlertReceived(
            alert @ (A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateRequired
            // A chain that names a trusted CA but was not signed by it, or a CertificateVerify
            // that does not verify with the card's public key.
            | A::DecryptError),
        ) => TransportError::CardRefusedByDmp(format!("{alert:?}")),
        other => TransportError::Tls(other.to_string()),
    }
}

/// A TLS connection to the DMP, as hyper's client wants it.
pub(crate) struct DmpStream(tokio_rustls::client::TlsStream<TcpStream>);

impl Connection for DmpStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for DmpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for DmpStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
