//! The client side of cps-relay (`cps.v1.CpsRelay`, SPEC.md §1): [`CpsRelayClient`] is what the
//! DMP gateway (and the tests) use to reach a workstation's relay over mutual TLS, passing the
//! trace context on; [`Scheme`] names the signatures a relay makes; [`describe_certificate`]
//! reads a card certificate the way both sides present it; [`agent`] is the seed's CPS agent
//! HTTP API (paths, bodies) and [`CpsAgentClient`], its client.
//!
//! A crate of its own so that the gateway links the relay's protocol, not the relay (its card
//! backends and PKCS#11). Depends on `ehealth-proto` and `service-kit`; dmp-gateway and cps-relay
//! depend on it.

pub mod agent;
mod certificate;
mod scheme;

pub use agent::CpsAgentClient;
pub use certificate::{KeyKind, describe_certificate, key_kind};
pub use scheme::Scheme;

/// gRPC metadata of SignForAuthentication naming the session grant (its `jti`) the signature is
/// made under: the relay signs only inside a live grant of the current card session.
pub const GRANT_ID_METADATA: &str = "cps-session-grant-id";

use std::path::Path;
use std::time::Duration;

use ehealth_proto::cps::v1::cps_relay_client::CpsRelayClient as Generated;
use ehealth_proto::cps::v1::*;
use service_kit::telemetry::TraceContextInterceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A TLS file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The endpoint is not a usable `https://host:port` URL, or the TLS files are unusable.
    #[error("bad relay endpoint {endpoint}: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The caller's side of the relay's mutual TLS.
#[derive(Debug, Clone)]
pub struct RelayTls {
    /// CA that issued the relay's server certificate.
    pub ca_pem: Vec<u8>,
    /// This client's certificate (PEM).
    pub cert_pem: Vec<u8>,
    /// Its private key (PEM).
    pub key_pem: Vec<u8>,
    /// Name to verify in the relay's certificate (e.g. `localhost`).
    pub server_name: String,
}

impl RelayTls {
    /// Reads the three PEM files.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path, server_name: &str) -> Result<Self, ClientError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| ClientError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        Ok(RelayTls {
            ca_pem: read(ca)?,
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            server_name: server_name.into(),
        })
    }
}

/// A relay's `cps.v1.CpsRelay` client. Cheap to clone (one channel).
#[derive(Clone)]
pub struct CpsRelayClient {
    inner: Generated<InterceptedService<Channel, TraceContextInterceptor>>,
}

impl CpsRelayClient {
    /// A client that connects on first use (and reconnects after a failure). `endpoint` is
    /// `https://host:port`; every call gets `timeout`.
    pub fn connect_lazy(endpoint: &str, tls: &RelayTls, timeout: Duration) -> Result<Self, ClientError> {
        service_kit::tls::install_crypto_provider();
        let bad = |reason: String| ClientError::Endpoint {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let tls_config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.ca_pem))
            .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
            .domain_name(tls.server_name.clone());
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| bad(e.to_string()))?
            .tls_config(tls_config)
            .map_err(|e| bad(e.to_string()))?
            .timeout(timeout)
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(CpsRelayClient {
            inner: Generated::with_interceptor(channel, TraceContextInterceptor),
        })
    }

    /// The generated client on the same channel, for requests this type does not build (a
    /// benchmark's deliberately refused call, tests of the relay's input checks).
    pub fn generated(&self) -> Generated<InterceptedService<Channel, TraceContextInterceptor>> {
        self.inner.clone()
    }

    /// The card's authentication certificate and what it can sign.
    pub async fn certificate(&mut self) -> Result<GetAuthenticationCertificateResponse, tonic::Status> {
        Ok(self
            .inner
            .get_authentication_certificate(GetAuthenticationCertificateRequest {})
            .await?
            .into_inner())
    }

    /// A signature with `scheme` over TLS handshake data `data`, without a session grant: only a
    /// relay in development mode with `grants.required = false` makes it.
    pub async fn sign(&mut self, scheme: Scheme, data: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
        self.sign_request(scheme, data, None).await
    }

    /// A signature with `scheme` over TLS handshake data `data`, made under the session grant
    /// `grant_id` (its `jti`, sent as [`GRANT_ID_METADATA`]).
    pub async fn sign_under_grant(
        &mut self,
        scheme: Scheme,
        data: Vec<u8>,
        grant_id: &str,
    ) -> Result<Vec<u8>, tonic::Status> {
        self.sign_request(scheme, data, Some(grant_id)).await
    }

    /// The card's signature certificate (nonRepudiation) and its chain, for a XAdES
    /// signature's SigningCertificate and KeyInfo.
    pub async fn signature_certificate(&mut self) -> Result<GetSignatureCertificateResponse, tonic::Status> {
        Ok(self
            .inner
            .get_signature_certificate(GetSignatureCertificateRequest {})
            .await?
            .into_inner())
    }

    /// The card's signature-key signature (RSA PKCS#1 v1.5 SHA-256) of a canonical XAdES
    /// `SignedInfo`, under the session grant `grant_id` when given. The relay signs nothing
    /// else with that key.
    pub async fn sign_xades_signed_info(
        &mut self,
        signed_info: Vec<u8>,
        grant_id: Option<&str>,
    ) -> Result<SignXadesSignedInfoResponse, tonic::Status> {
        let mut req = tonic::Request::new(SignXadesSignedInfoRequest { signed_info });
        if let Some(id) = grant_id {
            let value = id
                .parse()
                .map_err(|_| tonic::Status::invalid_argument("the session grant id is not valid metadata"))?;
            req.metadata_mut().insert(GRANT_ID_METADATA, value);
        }
        Ok(self.inner.sign_xades_signed_info(req).await?.into_inner())
    }

    async fn sign_request(
        &mut self,
        scheme: Scheme,
        data: Vec<u8>,
        grant_id: Option<&str>,
    ) -> Result<Vec<u8>, tonic::Status> {
        let mut req = tonic::Request::new(SignForAuthenticationRequest {
            scheme: scheme.to_proto() as i32,
            data,
        });
        if let Some(id) = grant_id {
            let value = id
                .parse()
                .map_err(|_| tonic::Status::invalid_argument("the session grant id is not valid metadata"))?;
            req.metadata_mut().insert(GRANT_ID_METADATA, value);
        }
        Ok(self
            .inner
            .sign_for_authentication(req)
            .await?
            .into_inner()
            .signature)
    }

    /// The card session's state: the current one first, then one message per change.
    pub async fn watch_session(&mut self) -> Result<tonic::Streaming<SessionState>, tonic::Status> {
        Ok(self
            .inner
            .watch_session(WatchSessionRequest {})
            .await?
            .into_inner())
    }

    /// The card's status.
    pub async fn status(&mut self) -> Result<GetStatusResponse, tonic::Status> {
        Ok(self.inner.get_status(GetStatusRequest {}).await?.into_inner())
    }

    /// Logs the card holder in with the card PIN.
    pub async fn login(&mut self, pin: String) -> Result<GetStatusResponse, tonic::Status> {
        Ok(self
            .inner
            .login(LoginRequest {
                pin,
                ..Default::default()
            })
            .await?
            .into_inner()
            .status
            .unwrap_or_default())
    }

    /// Logs the card holder out.
    pub async fn logout(&mut self) -> Result<GetStatusResponse, tonic::Status> {
        Ok(self
            .inner
            .logout(LogoutRequest {})
            .await?
            .into_inner()
            .status
            .unwrap_or_default())
    }
}
