//! Serving a simulator's axum router on loopback until cancelled: plain HTTP, or HTTPS with
//! (optionally required) client certificates, as the real ZORG-AB and Autorisatie Server ZA
//! accept only callers that present their UZI server certificate.
//!
//! Every server counts the requests it answered by `path?query`, so tests can prove how often
//! a client really called (single-flight, caching).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use service_kit::CancellationToken;

/// TLS of a simulator's listener. With `client_ca`, every client must present a certificate
/// issued by it; the TLS handshake fails otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The server certificate chain, PEM.
    pub cert: PathBuf,
    /// Its key, PEM.
    pub key: PathBuf,
    /// The CA that client certificates must chain to; none: no client certificate asked.
    pub client_ca: Option<PathBuf>,
}

/// Requests answered, by `path?query`.
#[derive(Debug, Clone, Default)]
pub struct Hits(Arc<Mutex<HashMap<String, usize>>>);

impl Hits {
    fn count(&self, target: String) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(target)
            .or_default() += 1;
    }

    /// How many requests for exactly `target` (`/path` or `/path?query`, as sent) arrived.
    pub fn get(&self, target: &str) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(target)
            .copied()
            .unwrap_or(0)
    }

    /// All requests so far.
    pub fn total(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }
}

/// A running simulator.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The serving task; it ends once the shutdown token is cancelled and connections closed.
    pub task: tokio::task::JoinHandle<()>,
    /// The requests it answered so far.
    pub hits: Hits,
    tls: bool,
}

impl Running {
    /// `http://ADDR`, or `https://ADDR` with TLS (the test PKI's server certificate names
    /// 127.0.0.1 and localhost).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

/// Counts each request; on plain HTTP also continues the caller's trace (W3C traceparent), as
/// the real services would appear in it (the HTTPS server makes that span itself).
fn instrument(router: axum::Router, hits: Hits, span: bool) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            use tracing::Instrument;
            hits.count(
                req.uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
            );
            let span = if span {
                service_kit::telemetry::http_server_span(&req)
            } else {
                tracing::Span::none()
            };
            next.run(req).instrument(span)
        },
    ))
}

/// Serves `router` over plain HTTP.
pub async fn serve(
    listen: SocketAddr,
    router: axum::Router,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let hits = Hits::default();
    let router = instrument(router, hits.clone(), true);
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let done = shutdown.clone();
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(async move { done.cancelled().await })
            .await
        {
            tracing::error!(error = %e, "simulator stopped");
        }
    });
    Ok(Running {
        addr,
        task,
        hits,
        tls: false,
    })
}

/// Serves `router` over HTTPS (HTTP/1.1), with client certificates required when
/// `tls.client_ca` is set.
pub async fn serve_tls(
    listen: SocketAddr,
    router: axum::Router,
    tls: &Tls,
    shutdown: CancellationToken,
) -> Result<Running, String> {
    let chain = service_kit::tls::load_certs(&tls.cert).map_err(|e| e.to_string())?;
    let key = service_kit::tls::load_private_key(&tls.key).map_err(|e| e.to_string())?;
    let roots = match &tls.client_ca {
        Some(ca) => Some(service_kit::tls::load_roots(ca).map_err(|e| e.to_string())?),
        None => None,
    };
    let config = service_kit::tls::server_config(chain, key, roots, rustls::DEFAULT_VERSIONS)
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listen {listen}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listen {listen}: {e}"))?;
    let hits = Hits::default();
    let router = instrument(router, hits.clone(), false);
    let task = tokio::spawn(service_kit::https::serve(
        listener,
        Arc::new(config),
        router,
        shutdown,
    ));
    Ok(Running {
        addr,
        task,
        hits,
        tls: true,
    })
}

/// What the simulator binaries' `--tls-*` flags ask for, passed to their `start`.
fn tls_from_flags(
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
) -> Result<Option<Tls>, String> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(Tls {
            cert: cert.into(),
            key: key.into(),
            client_ca: client_ca.map(PathBuf::from),
        })),
        (None, None) if client_ca.is_none() => Ok(None),
        _ => Err("--tls-cert and --tls-key go together (and --client-ca needs both)".into()),
    }
}

/// The `main` of a simulator binary: `--config FILE` (TOML data), `--listen ADDR`, and TLS with
/// `--tls-cert FILE --tls-key FILE [--client-ca FILE]`; runs until Ctrl-C/SIGTERM.
pub fn main<C, F, Fut>(name: &str, default_listen: &str, start: F) -> std::process::ExitCode
where
    C: serde::de::DeserializeOwned,
    F: FnOnce(C, SocketAddr, Option<Tls>, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<Running, String>>,
{
    let usage = format!(
        "usage: {name} --config FILE [--listen ADDR] [--tls-cert FILE --tls-key FILE [--client-ca FILE]]"
    );
    let mut config: Option<String> = None;
    let mut listen = default_listen.to_owned();
    let (mut cert, mut key, mut client_ca) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => config = args.next(),
            "--listen" => listen = args.next().unwrap_or_default(),
            "--tls-cert" => cert = args.next(),
            "--tls-key" => key = args.next(),
            "--client-ca" => client_ca = args.next(),
            other => {
                eprintln!("{name}: unknown argument {other}; {usage}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let Some(config) = config else {
        eprintln!("{name}: --config FILE is required (see sim/README.md); {usage}");
        return std::process::ExitCode::from(2);
    };
    let tls = match tls_from_flags(cert, key, client_ca) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: {e}; {usage}");
            return std::process::ExitCode::from(2);
        }
    };
    let cfg: C = match crate::data::load(std::path::Path::new(&config)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let listen: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{name}: --listen {listen}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(service_kit::server::cancel_on_signal(shutdown.clone()));
        match start(cfg, listen, tls, shutdown).await {
            Ok(r) => {
                eprintln!("{name} listening on {}", r.url());
                let _ = r.task.await;
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::ExitCode::from(2)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_flags_go_together() {
        assert_eq!(tls_from_flags(None, None, None), Ok(None));
        assert!(tls_from_flags(Some("c".into()), None, None).is_err());
        assert!(tls_from_flags(None, None, Some("ca".into())).is_err());
        let t = tls_from_flags(Some("c".into()), Some("k".into()), Some("ca".into()))
            .expect("ok")
            .expect("tls");
        assert_eq!(t.client_ca, Some(PathBuf::from("ca")));
    }
}
