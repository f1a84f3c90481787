//! `CpsRelayClient`: what the DMP gateway uses to reach a workstation's relay over mutual TLS,
//! passing the trace context on.

use std::path::Path;
use std::time::Duration;

use ehealth_proto::cps::v1::cps_relay_client::CpsRelayClient as Generated;
use ehealth_proto::cps::v1::*;
use platform::telemetry::TraceContextInterceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::scheme::Scheme;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("bad relay endpoint {endpoint}: {reason}")]
    Endpoint { endpoint: String, reason: String },
}

/// The caller's side of the relay's mutual TLS.
#[derive(Debug, Clone)]
pub struct RelayTls {
    /// CA that issued the relay's server certificate.
    pub ca_pem: Vec<u8>,
    /// This client's certificate and key (PEM).
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// Name to verify in the relay's certificate (e.g. `localhost`).
    pub server_name: String,
}

impl RelayTls {
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

#[derive(Clone)]
pub struct CpsRelayClient {
    inner: Generated<InterceptedService<Channel, TraceContextInterceptor>>,
}

impl CpsRelayClient {
    /// A client that connects on first use (and reconnects after a failure). `endpoint` is
    /// `https://host:port`; every call gets `timeout`.
    pub fn connect_lazy(endpoint: &str, tls: &RelayTls, timeout: Duration) -> Result<Self, ClientError> {
        platform::tls::install_crypto_provider();
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

    pub async fn certificate(&mut self) -> Result<GetAuthenticationCertificateResponse, tonic::Status> {
        Ok(self
            .inner
            .get_authentication_certificate(GetAuthenticationCertificateRequest {})
            .await?
            .into_inner())
    }

    pub async fn sign(&mut self, scheme: Scheme, data: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
        let req = SignForAuthenticationRequest {
            scheme: scheme.to_proto() as i32,
            data,
        };
        Ok(self
            .inner
            .sign_for_authentication(req)
            .await?
            .into_inner()
            .signature)
    }

    pub async fn status(&mut self) -> Result<GetStatusResponse, tonic::Status> {
        Ok(self.inner.get_status(GetStatusRequest {}).await?.into_inner())
    }

    pub async fn login(&mut self, pin: String) -> Result<GetStatusResponse, tonic::Status> {
        Ok(self
            .inner
            .login(LoginRequest { pin })
            .await?
            .into_inner()
            .status
            .unwrap_or_default())
    }

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
