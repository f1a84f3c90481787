//! Serving a simulator's axum router on loopback until cancelled.

use std::net::SocketAddr;

use service_kit::CancellationToken;

/// A running simulator.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The serving task; it ends once the shutdown token is cancelled and connections closed.
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Binds `listen` and serves `router` there until `shutdown`, continuing callers' traces.
pub async fn serve(
    listen: SocketAddr,
    router: axum::Router,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    // Continue the caller's trace (W3C traceparent), as the real services would appear in it.
    let router = router.layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| {
            use tracing::Instrument;
            let span = service_kit::telemetry::http_server_span(&req);
            next.run(req).instrument(span)
        },
    ));
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
    Ok(Running { addr, task })
}

/// The `main` of a simulator binary: `--config FILE` (TOML data) and `--listen ADDR`, runs until
/// Ctrl-C/SIGTERM.
pub fn main<C, F, Fut>(name: &str, default_listen: &str, start: F) -> std::process::ExitCode
where
    C: serde::de::DeserializeOwned,
    F: FnOnce(C, SocketAddr, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<Running, String>>,
{
    let mut config: Option<String> = None;
    let mut listen = default_listen.to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => config = args.next(),
            "--listen" => listen = args.next().unwrap_or_default(),
            other => {
                eprintln!("{name}: unknown argument {other}; usage: {name} --config FILE [--listen ADDR]");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let Some(config) = config else {
        eprintln!("{name}: --config FILE is required (see sim/README.md)");
        return std::process::ExitCode::from(2);
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
        match start(cfg, listen, shutdown).await {
            Ok(r) => {
                eprintln!("{name} listening on http://{}", r.addr);
                let _ = r.task.await;
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
