//! Connections to the DMP, one pool per professional (SPEC.md §2, **Decision — sign as rarely as
//! possible**): an HTTP/1.1 keep-alive pool keyed by the relay, the SHA-256 of the professional's
//! card certificate and the card session, never shared between professionals, with TLS session
//! resumption, so 1,000 calls by one professional cost one card signature. Idle pools expire
//! after `idle_timeout`, every pool after `max_pool_lifetime`; the next call after a failure
//! opens a new connection (and re-handshakes).
//!
//! **Decision — the pool lives inside the card session (issue 13):** a call gets a pool only
//! with a session grant that verifies ([`crate::grant`]) against the relay's open card session
//! ([`crate::session_watch`]); when the relay reports the session over (Logout, card removed or
//! swapped, PIN locked) or grants revoked, the relay's pools are closed at once, with their
//! `Arc<ClientConfig>` and so their TLS resumption state, and their signer refuses to ask the
//! card for anything more.
//!
//! **Decision — a CPS agent (`relays.<id>.api = "cps_agent"`) reports no card session:** the
//! gateway still verifies the grant (signature, `iss`, `aud`, `sub`, `azp`, times, and `cnf`
//! against the certificate the agent gives) and sends its `jti` with each signature, so the
//! agent (cps-relay's HTTP face) refuses to sign outside the grant's live card session; the
//! pool is the grant's card session's (`sid`), and it closes `dmp.certificate_ttl` after it
//! opened (the next call asks the card again) since no stream says when the session ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ehealth_proto::cps::v1::GetAuthenticationCertificateResponse;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use relay_client::Scheme;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::config::RelayApi;
use crate::connector::DmpConnector;
use crate::dmp_tls::{TlsVersion, client_config};
use crate::error::TransportError;
use crate::grant::{AccessError, Expected, GrantKeys};
use crate::relay::{RelayDirectory, RelayEndpoint, SignFailure, relay_status};
use crate::remote_key::{CardResolver, Consent, RemoteKey, SignatureLedger};
use crate::session_watch::{CardSession, SessionWatch};

/// Where the DMP is and how to talk to it.
#[derive(Debug, Clone)]
pub(crate) struct DmpEndpoint {
    /// `https://host:port` (paths are given per call).
    pub(crate) base_url: http::Uri,
    /// The name the DMP's certificate must carry.
    pub(crate) server_name: ServerName<'static>,
    /// CAs that issue the DMP's certificate.
    pub(crate) roots: Arc<RootCertStore>,
    /// TLS versions offered.
    pub(crate) versions: Vec<TlsVersion>,
    /// Longest wait for TCP + TLS.
    pub(crate) connect_timeout: Duration,
    /// Longest wait for an answer.
    pub(crate) request_timeout: Duration,
    /// Longest wait for the relay's CertificateVerify signature.
    pub(crate) signature_timeout: Duration,
    /// A professional's connections close after this long unused.
    pub(crate) idle_timeout: Duration,
    /// How long a card certificate fetched from a relay is reused.
    pub(crate) certificate_ttl: Duration,
    /// A professional's pool is closed this long after it opened.
    pub(crate) max_pool_lifetime: Duration,
    /// Largest answer read.
    pub(crate) max_response_bytes: usize,
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
    /// `dmp_gateway_pools_closed_by_relay_total`.
    pub pools_closed_by_relay: Counter,
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
        metrics.register(
            "dmp_gateway_pools_closed_by_relay",
            "Connection pools closed because the relay reported the card session ended, changed or its grants revoked",
            m.pools_closed_by_relay.clone(),
        );
        m
    }
}

/// For whom a call acts and under whose consent, as the gateway's RPCs state it.
#[derive(Debug, Clone)]
pub struct Professional<'a> {
    /// The relay holding the card (`auth_context.relay_id`).
    pub relay_id: &'a str,
    /// The professional the card must belong to.
    pub professional_id: &'a str,
    /// The authenticated caller ([`crate::CallerIdentity`]).
    pub caller: &'a str,
    /// The session grant the caller presented (compact JWS), if any.
    pub grant: Option<&'a str>,
}

/// A professional's authenticated path to the DMP.
pub struct ProfessionalSession {
    /// The relay holding the card.
    pub relay_id: String,
    /// The card's certificate chain, as the relay gave it.
    pub certificate: Arc<GetAuthenticationCertificateResponse>,
    /// SHA-256 of the card's certificate.
    pub fingerprint: String,
    /// The card session this pool belongs to.
    pub card_session_id: String,
    client: Client<DmpConnector, Full<Bytes>>,
    ledger: Arc<SignatureLedger>,
    consent: Arc<Consent>,
    opened: Instant,
    /// How long the pool may live: `dmp.max_pool_lifetime`, or less towards a CPS agent.
    lifetime: Duration,
    last_used: Mutex<Instant>,
    /// The card's signature certificate (XAdES), fetched on the first submission.
    signature_certificate: tokio::sync::OnceCell<Vec<u8>>,
}

impl ProfessionalSession {
    /// Remote signatures made for this session so far.
    pub fn signatures(&self) -> u64 {
        self.ledger.made.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A call allowed to act for the professional: the pool, and the grant it acts under.
pub struct Authorized {
    /// The professional's pool.
    pub session: Arc<ProfessionalSession>,
    /// The session grant's `jti`.
    pub grant_id: String,
}

/// A pool is the relay's, the card's and the card session's.
type PoolKey = (String, String, String);

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
    fingerprint: String,
    certificate: Arc<GetAuthenticationCertificateResponse>,
}

/// The transport: one keep-alive pool per professional, authenticated with the card through
/// its relay, inside the card session the relay reports.
pub struct DmpConnections {
    endpoint: DmpEndpoint,
    relays: RelayDirectory,
    grants: GrantKeys,
    watches: BTreeMap<String, Arc<SessionWatch>>,
    sessions: Mutex<HashMap<PoolKey, Arc<ProfessionalSession>>>,
    certificates: tokio::sync::Mutex<HashMap<String, CachedCertificate>>,
    metrics: TransportMetrics,
    /// Ends the relay watchers (shutdown, or this transport dropped).
    stop: service_kit::CancellationToken,
}

impl Drop for DmpConnections {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl DmpConnections {
    /// The transport, without any connection yet; grants verify with `grants`.
    pub(crate) fn new(
        endpoint: DmpEndpoint,
        relays: RelayDirectory,
        grants: GrantKeys,
        metrics: TransportMetrics,
    ) -> Arc<Self> {
        let stop = service_kit::CancellationToken::new();
        Arc::new_cyclic(|me: &Weak<DmpConnections>| {
            // A CPS agent has no WatchSession: only gRPC relays are watched.
            let watches = relays
                .endpoints()
                .filter(|relay| relay.api == RelayApi::Grpc)
                .map(|relay| {
                    let me = me.clone();
                    let id = relay.id.clone();
                    let on_change =
                        Arc::new(move |before: Option<&CardSession>, after: Option<&CardSession>| {
                            if let Some(c) = me.upgrade() {
                                c.session_changed(&id, before, after);
                            }
                        });
                    let watch = SessionWatch::new(relay.clone(), relays.clone(), stop.clone(), on_change);
                    (relay.id.clone(), watch)
                })
                .collect();
            DmpConnections {
                endpoint,
                relays,
                grants,
                watches,
                sessions: Mutex::new(HashMap::new()),
                certificates: tokio::sync::Mutex::new(HashMap::new()),
                metrics,
                stop,
            }
        })
    }

    /// Drops pools idle for longer than `idle_timeout` or open for longer than
    /// `max_pool_lifetime` (their signer threads end with them).
    pub fn expire_idle(&self) {
        let idle = self.endpoint.idle_timeout;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| {
            let keep = s.last_used.lock().unwrap_or_else(|e| e.into_inner()).elapsed() < idle
                && s.opened.elapsed() < s.lifetime;
            if !keep {
                s.consent.close();
            }
            keep
        });
        self.metrics.professional_sessions.set(sessions.len() as i64);
    }

    /// Runs [`expire_idle`](Self::expire_idle) periodically until `shutdown`, which also ends
    /// the relay watchers.
    pub fn spawn_expiry(self: &Arc<Self>, shutdown: service_kit::CancellationToken) {
        let me = Arc::downgrade(self);
        let every = (self
            .endpoint
            .idle_timeout
            .min(self.endpoint.max_pool_lifetime)
            .min(self.endpoint.certificate_ttl)
            / 4)
        .max(Duration::from_millis(100));
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = shutdown.cancelled() => return stop.cancel(),
                    () = stop.cancelled() => return,
                }
                match me.upgrade() {
                    Some(c) => c.expire_idle(),
                    None => return,
                }
            }
        });
    }

    /// Live pools of `relay_id`'s professionals.
    pub fn open_pools(&self, relay_id: &str) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|(relay, _, _)| relay == relay_id)
            .count()
    }

    /// Closes `relay_id`'s pools but those of the card session `keep`; returns how many.
    fn close_pools(&self, relay_id: &str, keep: Option<&str>) -> usize {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let before = sessions.len();
        sessions.retain(|(relay, _, sid), s| {
            let keep = relay != relay_id || keep == Some(sid.as_str());
            if !keep {
                s.consent.close();
            }
            keep
        });
        self.metrics.professional_sessions.set(sessions.len() as i64);
        before - sessions.len()
    }

    /// The relay reported a new state (`None`: unknown).
    fn session_changed(&self, relay_id: &str, before: Option<&CardSession>, after: Option<&CardSession>) {
        let revoked = match (before, after) {
            (Some(b), Some(a)) => a.revoked.iter().any(|id| !b.revoked.contains(id)),
            _ => false,
        };
        let keep = after
            .filter(|s| !s.id.is_empty() && !revoked)
            .map(|s| s.id.as_str());
        let closed = self.close_pools(relay_id, keep);
        if closed > 0 {
            self.metrics.pools_closed_by_relay.inc_by(closed as u64);
            tracing::info!(
                relay = relay_id,
                pools = closed,
                reason = ?after.map(|s| s.reason),
                "card session ended, changed or grants revoked: connection pools closed"
            );
        }
    }

    /// The card's certificate from `relay_id`, from the cache while it is younger than
    /// `certificate_ttl` and, when the relay reports a card session, still that session's.
    async fn certificate(
        &self,
        relay_id: &str,
        session_certificate: Option<&str>,
    ) -> Result<Arc<GetAuthenticationCertificateResponse>, TransportError> {
        let relay = self.relays.get(relay_id)?;
        let mut cache = self.certificates.lock().await;
        if let Some(c) = cache.get(relay_id)
            && c.fetched.elapsed() < self.endpoint.certificate_ttl
            && session_certificate.is_none_or(|f| c.fingerprint.eq_ignore_ascii_case(f))
        {
            return Ok(c.certificate.clone());
        }
        let certificate = Arc::new(self.relays.certificate(relay).await?);
        cache.insert(
            relay_id.to_owned(),
            CachedCertificate {
                fetched: Instant::now(),
                fingerprint: service_kit::tls::sha256_fingerprint(&certificate.leaf_der),
                certificate: certificate.clone(),
            },
        );
        Ok(certificate)
    }

    /// Checks that the call may act for the professional (grant, card session, card) and
    /// returns the professional's pool, opened on first use.
    pub async fn authorize(&self, who: &Professional<'_>) -> Result<Authorized, TransportError> {
        let relay = self.relays.get(who.relay_id)?;
        let grant = who
            .grant
            .filter(|g| !g.is_empty())
            .ok_or_else(|| AccessError::NoGrant {
                caller: who.caller.to_owned(),
                relay_id: who.relay_id.to_owned(),
            })?;
        let expected = Expected {
            relay_id: who.relay_id,
            professional_id: who.professional_id,
            caller: who.caller,
        };
        let (grant, certificate, card_session_id, session_certificate, lifetime) = match relay.api {
            RelayApi::Grpc => {
                // The relay's state first: a relay that cannot say whether the card session is
                // on answers UNAVAILABLE whatever the grant.
                let watch = self.watches.get(who.relay_id).ok_or_else(|| {
                    TransportError::Request(format!("relay {} is not watched", who.relay_id))
                })?;
                let card_session = watch.current(self.relays.call_timeout()).await?;
                let grant = self.grants.verify(grant, &expected, unix_now())?;
                grant.check_session(&card_session)?;
                let certificate = self
                    .certificate(who.relay_id, Some(&card_session.certificate_sha256))
                    .await?;
                let lifetime = self.endpoint.max_pool_lifetime;
                (
                    grant,
                    certificate,
                    card_session.id,
                    Some(card_session.certificate_sha256),
                    lifetime,
                )
            }
            RelayApi::CpsAgent => {
                let grant = self.grants.verify(grant, &expected, unix_now())?;
                let certificate = self.certificate(who.relay_id, None).await?;
                let sid = grant.sid.clone();
                let lifetime = self.endpoint.max_pool_lifetime.min(self.endpoint.certificate_ttl);
                (grant, certificate, sid, None, lifetime)
            }
        };
        if certificate.professional_id != who.professional_id {
            return Err(TransportError::WrongProfessional {
                relay_id: who.relay_id.to_owned(),
                expected: who.professional_id.to_owned(),
                card: certificate.professional_id.clone(),
            });
        }
        let fingerprint = service_kit::tls::sha256_fingerprint(&certificate.leaf_der);
        if session_certificate.is_some_and(|f| !fingerprint.eq_ignore_ascii_case(&f)) {
            return Err(AccessError::SessionEnded {
                reason: "another card is in the reader".into(),
            }
            .into());
        }
        grant.check_certificate(&certificate.leaf_der)?;
        let session = self.pool(
            relay.id.clone(),
            certificate,
            fingerprint,
            card_session_id,
            lifetime,
        )?;
        session.consent.act_under(&grant.jti);
        Ok(Authorized {
            session,
            grant_id: grant.jti,
        })
    }

    /// The professional's pool, after [`authorize`](Self::authorize).
    pub async fn session(&self, who: &Professional<'_>) -> Result<Arc<ProfessionalSession>, TransportError> {
        Ok(self.authorize(who).await?.session)
    }

    fn pool(
        &self,
        relay_id: String,
        certificate: Arc<GetAuthenticationCertificateResponse>,
        fingerprint: String,
        card_session_id: String,
        lifetime: Duration,
    ) -> Result<Arc<ProfessionalSession>, TransportError> {
        let key: PoolKey = (relay_id.clone(), fingerprint.clone(), card_session_id.clone());
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = sessions.get(&key) {
                if s.opened.elapsed() < s.lifetime {
                    *s.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                    return Ok(s.clone());
                }
                s.consent.close();
                sessions.remove(&key);
            }
        }
        let relay = self.relays.get(&relay_id)?;
        let signer = Arc::new(self.relays.signer_thread(relay)?);
        let schemes: Vec<Scheme> = certificate
            .supported_schemes
            .iter()
            .filter_map(|s| Scheme::from_proto(*s))
            .collect();
        let ledger = Arc::new(SignatureLedger::default());
        let consent = Arc::new(Consent::default());
        let remote_key = RemoteKey::new(
            signer,
            consent.clone(),
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
            Arc::new(CardResolver::new(chain, remote_key)),
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
            relay_id,
            certificate,
            fingerprint,
            card_session_id,
            client,
            ledger,
            consent,
            opened: Instant::now(),
            lifetime,
            last_used: Mutex::new(Instant::now()),
            signature_certificate: tokio::sync::OnceCell::new(),
        });
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        // Two first calls may race: keep the one stored first.
        let session = sessions.entry(key).or_insert(session).clone();
        self.metrics.professional_sessions.set(sessions.len() as i64);
        Ok(session)
    }

    /// The card's signature certificate (DER), from the professional's relay: it must name
    /// the professional of the authentication certificate.
    pub async fn signature_certificate(
        &self,
        session: &ProfessionalSession,
    ) -> Result<Vec<u8>, TransportError> {
        let relay = self.relays.get(&session.relay_id)?;
        xades_capable(relay)?;
        let certificate = session
            .signature_certificate
            .get_or_try_init(|| async {
                let mut client = self.relays.client(relay)?;
                let answer = client
                    .signature_certificate()
                    .await
                    .map_err(|s| relay_status(&relay.id, s))?;
                let owner = dmp_protocol::vihf::ProfessionalIdentity::from_certificate(&answer.leaf_der)
                    .map_err(|e| TransportError::RelayRefused {
                        code: tonic::Code::FailedPrecondition,
                        message: format!("the card's signature certificate: {e}"),
                    })?;
                if owner.id != session.certificate.professional_id {
                    return Err(TransportError::WrongProfessional {
                        relay_id: relay.id.clone(),
                        expected: session.certificate.professional_id.clone(),
                        card: owner.id,
                    });
                }
                Ok::<_, TransportError>(answer.leaf_der)
            })
            .await?;
        Ok(certificate.clone())
    }

    /// The card's signature-key signature of a canonical XAdES SignedInfo, made by the
    /// professional's relay under the session grant `grant_id`; the relay must have signed with
    /// `certificate_der`, the certificate the SignedInfo names.
    pub async fn sign_xades(
        &self,
        session: &ProfessionalSession,
        grant_id: &str,
        signed_info: Vec<u8>,
        certificate_der: &[u8],
    ) -> Result<Vec<u8>, TransportError> {
        let relay = self.relays.get(&session.relay_id)?;
        xades_capable(relay)?;
        let mut client = self.relays.client(relay)?;
        let answer = client
            .sign_xades_signed_info(signed_info, Some(grant_id).filter(|g| !g.is_empty()))
            .await
            .map_err(|s| relay_status(&relay.id, s))?;
        self.metrics.remote_signatures.inc();
        if answer.certificate_der != certificate_der {
            return Err(AccessError::SessionEnded {
                reason: "the card's signature certificate changed while signing".into(),
            }
            .into());
        }
        Ok(answer.signature)
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
        if session.consent.is_closed() {
            return Err(AccessError::SessionEnded {
                reason: "the relay ended it while the call was under way".into(),
            }
            .into());
        }
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

/// The card's signature key is reached through cps-relay's gRPC API only: the seed's CPS agent
/// API signs TLS handshakes (SHA256WithRSA for authentication) and nothing else.
fn xades_capable(relay: &RelayEndpoint) -> Result<(), TransportError> {
    match relay.api {
        RelayApi::Grpc => Ok(()),
        RelayApi::CpsAgent => Err(TransportError::RelayRefused {
            code: tonic::Code::FailedPrecondition,
            message: format!(
                "relay `{}` speaks the CPS agent API, which has no document signature: a submission's \
                 XAdES needs the card's signature key through a cps-relay gRPC relay (relays.{}.api = \"grpc\")",
                relay.id, relay.id
            ),
        }),
    }
}
