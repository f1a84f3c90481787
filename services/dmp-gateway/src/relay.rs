//! The cps-relays the gateway may use (SPEC.md §2, `CpsAgentClient`). **Decision — no SSRF:** a
//! call names a relay by its id in the gateway's configuration; the gateway dials no address a
//! caller supplies.
//!
//! rustls asks for the CertificateVerify signature synchronously, from inside the handshake.
//! The bridge to the relay's async gRPC API is a dedicated signer thread per professional
//! session that owns its own current-thread runtime and its own gRPC channel; the handshake
//! sends it a job and waits on a std channel with a deadline. This works on current-thread and
//! multi-thread runtimes alike, never blocks the relay call on the caller's runtime, and cannot
//! deadlock (shared/TECH-NOTES.md "rustls client certificates signed elsewhere").
//!
//! A relay speaks gRPC (`cps.v1.CpsRelay`) or the seed's CPS agent HTTP API
//! (`relays.<id>.api = "cps_agent"`, [`CpsAgentClient`]); both give the card's certificate and
//! sign handshake data under the call's session grant, the rest of the gateway does not care
//! which. A CPS agent answers SHA256WithRSA (`rsa_pkcs1_sha256`) only.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use ehealth_proto::cps::v1::GetAuthenticationCertificateResponse;
use relay_client::{CpsAgentClient, CpsRelayClient, KeyKind, RelayTls, Scheme};
use tracing::Instrument;

use crate::config::RelayApi;
use crate::error::TransportError;

/// One configured relay.
#[derive(Debug, Clone)]
pub struct RelayEndpoint {
    /// The id calls name (`auth_context.relay_id`).
    pub id: String,
    /// `https://host:port`
    pub endpoint: String,
    /// The name verified in the relay's server certificate.
    pub server_name: String,
    /// The API it speaks.
    pub api: RelayApi,
}

/// The relay table and the gateway's client identity towards relays.
#[derive(Debug, Clone)]
pub struct RelayDirectory {
    relays: BTreeMap<String, RelayEndpoint>,
    tls: RelayTls,
    call_timeout: Duration,
}

impl RelayDirectory {
    /// The configured relays, the gateway's client identity and the deadline of relay calls.
    pub fn new(relays: BTreeMap<String, RelayEndpoint>, tls: RelayTls, call_timeout: Duration) -> Self {
        RelayDirectory {
            relays,
            tls,
            call_timeout,
        }
    }

    /// The relay `id`, or [`TransportError::UnknownRelay`].
    pub fn get(&self, id: &str) -> Result<&RelayEndpoint, TransportError> {
        self.relays.get(id).ok_or_else(|| TransportError::UnknownRelay {
            relay_id: id.to_owned(),
            known: self.relays.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// Every configured relay.
    pub(crate) fn endpoints(&self) -> impl Iterator<Item = &RelayEndpoint> {
        self.relays.values()
    }

    /// The deadline of relay calls.
    pub(crate) fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// The gateway's client identity, verifying `relay`'s own server name.
    fn tls_for(&self, relay: &RelayEndpoint) -> RelayTls {
        RelayTls {
            server_name: relay.server_name.clone(),
            ..self.tls.clone()
        }
    }

    /// A gRPC client on the caller's runtime (certificate and status calls).
    pub(crate) fn client(&self, relay: &RelayEndpoint) -> Result<CpsRelayClient, TransportError> {
        CpsRelayClient::connect_lazy(&relay.endpoint, &self.tls_for(relay), self.call_timeout).map_err(|e| {
            TransportError::RelayUnreachable {
                relay_id: relay.id.clone(),
                reason: e.to_string(),
            }
        })
    }

    /// A CPS agent client of `relay` (mutual TLS, or none on a development `http://` agent).
    fn agent(&self, relay: &RelayEndpoint) -> Result<CpsAgentClient, TransportError> {
        agent_client(relay, &self.tls_for(relay), self.call_timeout)
    }

    /// The card's certificate as `relay` gives it now, described.
    pub(crate) async fn certificate(
        &self,
        relay: &RelayEndpoint,
    ) -> Result<GetAuthenticationCertificateResponse, TransportError> {
        match relay.api {
            RelayApi::Grpc => self
                .client(relay)?
                .certificate()
                .await
                .map_err(|s| relay_status(&relay.id, s)),
            RelayApi::CpsAgent => {
                let got = self
                    .agent(relay)?
                    .certificate()
                    .await
                    .map_err(|s| relay_status(&relay.id, s))?;
                let refused = |message: String| TransportError::RelayRefused {
                    code: tonic::Code::FailedPrecondition,
                    message: format!("CPS agent `{}`: {message}", relay.id),
                };
                match relay_client::key_kind(&got.leaf).map_err(refused)? {
                    KeyKind::Rsa { .. } => {}
                    KeyKind::EcP256 => {
                        return Err(refused(
                            "the card's key is ECDSA, and the CPS agent API signs SHA256WithRSA only".into(),
                        ));
                    }
                }
                relay_client::describe_certificate(got.leaf, got.chain, &[Scheme::RsaPkcs1Sha256])
                    .map_err(refused)
            }
        }
    }

    /// A signer thread towards `relay` (its own runtime and channel).
    pub fn signer_thread(&self, relay: &RelayEndpoint) -> Result<SignerThread, TransportError> {
        SignerThread::spawn(relay, &self.tls_for(relay), self.call_timeout)
    }
}

fn agent_client(
    relay: &RelayEndpoint,
    tls: &RelayTls,
    timeout: Duration,
) -> Result<CpsAgentClient, TransportError> {
    // Configuration allows http:// only for a development agent.
    let tls = relay.endpoint.starts_with("https://").then_some(tls);
    CpsAgentClient::new(&relay.endpoint, tls, timeout).map_err(|e| TransportError::RelayUnreachable {
        relay_id: relay.id.clone(),
        reason: e.to_string(),
    })
}

/// A relay's error status as the gateway reports it: unreachable, or refused with its code.
pub(crate) fn relay_status(relay_id: &str, s: tonic::Status) -> TransportError {
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

/// One relay's signing client, whichever API it speaks.
#[derive(Clone)]
enum SigningClient {
    Grpc(CpsRelayClient),
    CpsAgent(CpsAgentClient),
}

impl SigningClient {
    async fn sign(&self, scheme: Scheme, data: Vec<u8>, grant_id: &str) -> Result<Vec<u8>, tonic::Status> {
        match self {
            SigningClient::Grpc(c) => c.clone().sign_under_grant(scheme, data, grant_id).await,
            SigningClient::CpsAgent(c) => {
                if scheme != Scheme::RsaPkcs1Sha256 {
                    return Err(tonic::Status::invalid_argument(format!(
                        "a CPS agent signs SHA256WithRSA (rsa_pkcs1_sha256) only, not {}",
                        scheme.name()
                    )));
                }
                c.sign(data, Some(grant_id).filter(|g| !g.is_empty())).await
            }
        }
    }
}

/// Why a remote signature failed, kept for the error the caller gets.
#[derive(Debug, Clone)]
pub enum SignFailure {
    /// The relay answered with an error status: its code and reason are passed on.
    Refused {
        /// The relay's gRPC code.
        code: tonic::Code,
        /// The relay's message.
        message: String,
    },
    /// The relay could not be reached.
    Unreachable(String),
    /// No answer within the signature deadline.
    Deadline(Duration),
}

struct SignJob {
    scheme: Scheme,
    data: Vec<u8>,
    grant_id: String,
    parent: tracing::Span,
    reply: mpsc::SyncSender<Result<Vec<u8>, SignFailure>>,
}

/// The thread that performs remote signatures for one professional session. Dropping it ends
/// the thread.
pub struct SignerThread {
    jobs: tokio::sync::mpsc::UnboundedSender<SignJob>,
    relay_id: String,
}

impl std::fmt::Debug for SignerThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerThread")
            .field("relay_id", &self.relay_id)
            .finish()
    }
}

impl SignerThread {
    fn spawn(relay: &RelayEndpoint, tls: &RelayTls, timeout: Duration) -> Result<Self, TransportError> {
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<SignJob>();
        let endpoint = relay.clone();
        let tls = tls.clone();
        let relay_id = relay.id.clone();
        let unreachable = |reason: String| TransportError::RelayUnreachable {
            relay_id: relay.id.clone(),
            reason,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unreachable(format!("signer runtime: {e}")))?;
        std::thread::Builder::new()
            .name(format!("relay-signer-{relay_id}"))
            .spawn(move || {
                runtime.block_on(async move {
                    // Created inside this runtime, so its connection tasks live here.
                    let client = match endpoint.api {
                        RelayApi::Grpc => CpsRelayClient::connect_lazy(&endpoint.endpoint, &tls, timeout)
                            .map(SigningClient::Grpc)
                            .map_err(|e| e.to_string()),
                        RelayApi::CpsAgent => agent_client(&endpoint, &tls, timeout)
                            .map(SigningClient::CpsAgent)
                            .map_err(|e| e.to_string()),
                    };
                    let client = match client {
                        Ok(c) => c,
                        Err(e) => {
                            while let Some(job) = rx.recv().await {
                                let _ = job.reply.send(Err(SignFailure::Unreachable(e.clone())));
                            }
                            return;
                        }
                    };
                    while let Some(job) = rx.recv().await {
                        let c = client.clone();
                        let span = tracing::info_span!(parent: &job.parent, "cps_relay.sign", scheme = job.scheme.name());
                        tokio::spawn(
                            async move {
                                let result = c.sign(job.scheme, job.data, &job.grant_id).await.map_err(|s| match s.code() {
                                    tonic::Code::Unavailable | tonic::Code::Unknown => {
                                        SignFailure::Unreachable(s.message().to_owned())
                                    }
                                    code => SignFailure::Refused { code, message: s.message().to_owned() },
                                });
                                let _ = job.reply.send(result);
                            }
                            .instrument(span),
                        );
                    }
                });
            })
            .map_err(|e| unreachable(format!("signer thread: {e}")))?;
        Ok(SignerThread {
            jobs,
            relay_id: relay.id.clone(),
        })
    }

    /// Blocks the calling thread (a rustls handshake) until the relay signed under the session
    /// grant `grant_id`, at most `deadline`.
    pub fn sign_blocking(
        &self,
        scheme: Scheme,
        data: Vec<u8>,
        grant_id: String,
        deadline: Duration,
    ) -> Result<Vec<u8>, SignFailure> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job = SignJob {
            scheme,
            data,
            grant_id,
            parent: tracing::Span::current(),
            reply,
        };
        self.jobs
            .send(job)
            .map_err(|_| SignFailure::Unreachable("signer thread stopped".into()))?;
        // The handshake runs inside a task: on a multi-thread runtime, hand this worker's queue
        // to another thread while waiting, or the tasks parked on it (its LIFO slot cannot be
        // stolen) would stall for the whole signature, up to the deadline. A current-thread
        // runtime has no other thread to hand over to (and `block_in_place` would panic there).
        let wait = || answer.recv_timeout(deadline);
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let outcome = if multi_thread {
            tokio::task::block_in_place(wait)
        } else {
            wait()
        };
        match outcome {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(SignFailure::Deadline(deadline)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(SignFailure::Unreachable("signer thread stopped".into()))
            }
        }
    }
}
