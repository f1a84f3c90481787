//! The TCP + TLS connections of one professional's pool, as hyper's client wants them, and what
//! a failed handshake means for the caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::error::TransportError;

/// Opens TCP + TLS connections for one professional.
#[derive(Clone)]
pub(crate) struct DmpConnector {
    /// Kept for the pool's lifetime: rustls resumes sessions only with the same configuration.
    pub(crate) config: Arc<rustls::ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshakes: Counter,
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
