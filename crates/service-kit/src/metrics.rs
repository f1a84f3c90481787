//! Prometheus metrics (SPEC.md preamble): per-RPC counts by status code and latency histograms
//! recorded by [`GrpcMetricsLayer`], `build_info`, the process's CPU, memory and file
//! descriptors, plus the domain metrics each service registers, served in the OpenMetrics text
//! format at `GET /metrics`.
//!
//! **Decision — bounded labels:** the `grpc_service`/`grpc_method` labels only ever take the
//! names of methods the server serves (from its descriptor sets, plus health and reflection).
//! A call to any other path — a scanner, a typo, a client of another API — is counted in the
//! label-less `grpc_server_unknown_method_total`, so no request can create a series.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Body, Frame};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// Labels of one RPC outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcCodeLabels {
    /// `cps.v1.CpsRelay`.
    pub grpc_service: String,
    /// `SignForAuthentication`.
    pub grpc_method: String,
    /// `OK`, `INVALID_ARGUMENT`, ...
    pub grpc_code: &'static str,
}

/// Labels of one RPC method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `cps.v1.CpsRelay`.
    pub grpc_service: String,
    /// `SignForAuthentication`.
    pub grpc_method: String,
}

/// The metrics of one service process. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    handled: Family<RpcCodeLabels, Counter>,
    duration: Family<RpcLabels, Histogram, fn() -> Histogram>,
    unknown: Counter,
    cert_expiry: Family<CertificateLabels, prometheus_client::metrics::gauge::Gauge>,
}

/// Labels of a certificate the process presents or signs with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// What it is for, a fixed name: `grpc-server`, `dmp-client`, `card-authentication`, ...
    pub certificate: &'static str,
}

/// The gRPC paths (`/package.Service/Method`) a server serves: the only values its call
/// metrics' labels take.
#[derive(Debug, Clone, Default)]
pub struct KnownMethods(HashSet<String>);

impl KnownMethods {
    /// The methods of `services` (full names) found in the encoded `FileDescriptorSet`s.
    /// A set that does not decode adds nothing (its calls then count as unknown).
    pub fn from_descriptor_sets<'a>(
        sets: impl IntoIterator<Item = &'a [u8]>,
        services: &[&str],
    ) -> KnownMethods {
        use prost::Message;
        let mut known = HashSet::new();
        for set in sets {
            let Ok(fds) = prost_types::FileDescriptorSet::decode(set) else {
                tracing::warn!("a descriptor set does not decode: its methods are not labelled in metrics");
                continue;
            };
            for file in &fds.file {
                for service in &file.service {
                    let full = match file.package() {
                        "" => service.name().to_owned(),
                        package => format!("{package}.{}", service.name()),
                    };
                    if services.contains(&full.as_str()) {
                        known.extend(service.method.iter().map(|m| format!("/{full}/{}", m.name())));
                    }
                }
            }
        }
        KnownMethods(known)
    }

    /// Adds one path, `/package.Service/Method`.
    pub fn insert(&mut self, path: &str) {
        self.0.insert(path.to_owned());
    }

    /// Whether `path` is served.
    pub fn contains(&self, path: &str) -> bool {
        self.0.contains(path)
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry holding the gRPC call metrics, ready for the service's own.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let handled = Family::<RpcCodeLabels, Counter>::default();
        let duration =
            Family::<RpcLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "grpc_server_handled",
            "gRPC calls completed, by status code",
            handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "gRPC call latency in seconds",
            duration.clone(),
        );
        let unknown = Counter::default();
        registry.register(
            "grpc_server_unknown_method",
            "Calls to a path this server does not serve (no per-path series)",
            unknown.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector::new()));
        let cert_expiry = Family::<CertificateLabels, prometheus_client::metrics::gauge::Gauge>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When a certificate the process presents or signs with expires (notAfter), seconds since the epoch",
            cert_expiry.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                handled,
                duration,
                unknown,
                cert_expiry,
            }),
        }
    }

    /// Registers a domain metric (remote signatures, pooled connections, tokens issued, ...).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry().register(name, help, metric);
    }

    /// Gives `register` the registry, for a library that registers its metrics itself (the
    /// audit log's writer counters), and returns what it returns.
    pub fn register_with<T>(&self, register: impl FnOnce(&mut Registry) -> T) -> T {
        register(&mut self.registry())
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry());
        out
    }

    /// Count of completed calls with this outcome (for tests and dashboards).
    pub fn handled(&self, service: &str, method: &str, code: &'static str) -> u64 {
        self.inner
            .handled
            .get_or_create(&RpcCodeLabels {
                grpc_service: service.to_owned(),
                grpc_method: method.to_owned(),
                grpc_code: code,
            })
            .get()
    }

    /// Records the end of validity of `cert` (DER) as `certificate_expiry_timestamp_seconds
    /// {certificate}`; a certificate that does not parse is logged and not recorded (the TLS
    /// stack refuses it anyway).
    pub fn record_certificate_expiry(&self, certificate: &'static str, der: &[u8]) {
        match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => {
                self.inner
                    .cert_expiry
                    .get_or_create(&CertificateLabels { certificate })
                    .set(cert.validity().not_after.timestamp());
            }
            Err(e) => {
                tracing::warn!(certificate, error = %e, "certificate does not parse; its expiry is not measured")
            }
        }
    }

    /// `build_info{service, version} 1`: which build runs (the suite's crates share one version).
    pub fn register_build_info(&self, service: &str) {
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct BuildLabels {
            service: String,
            version: &'static str,
        }
        let info = Family::<BuildLabels, prometheus_client::metrics::gauge::Gauge>::default();
        info.get_or_create(&BuildLabels {
            service: service.to_owned(),
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
        self.register(
            "build_info",
            "The running build: always 1, labelled by service and version",
            info,
        );
    }

    /// The tower layer that records every gRPC call to one of `known` into these metrics (and
    /// the others into `grpc_server_unknown_method_total`).
    pub fn grpc_layer(&self, known: KnownMethods) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            metrics: self.clone(),
            known: Arc::new(known),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves the registry usable: recover it.
        self.inner.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Name of a gRPC status code as Prometheus label (`OK`, `INVALID_ARGUMENT`, ...).
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<&'static str> {
    let raw = headers.get("grpc-status")?.to_str().ok()?;
    Some(code_name(raw.parse().ok()?))
}

/// Tower layer recording every gRPC call: its status (from the headers of a trailers-only
/// answer, or from the trailers) and its latency until the response body ends.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
    known: Arc<KnownMethods>,
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
            known: self.known.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around a gRPC router.
#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Metrics,
    known: Arc<KnownMethods>,
}

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>,
{
    type Response = http::Response<MeteredBody<ResB>>;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let path = req.uri().path();
        let labels = self.known.contains(path).then(|| {
            let (service, method) = crate::telemetry::split_grpc_path(path);
            (service.to_owned(), method.to_owned())
        });
        let recorder = Recorder {
            metrics: self.metrics.clone(),
            labels,
            start: Instant::now(),
            code: None,
        };
        MeteredFuture {
            inner: self.inner.call(req),
            recorder: Some(recorder),
        }
    }
}

/// Records one call when dropped: with the status seen, or CANCELLED when the body was dropped
/// before its end (the caller went away).
struct Recorder {
    metrics: Metrics,
    /// `(service, method)` of a served method; `None` for any other path.
    labels: Option<(String, String)>,
    start: Instant,
    code: Option<&'static str>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let code = self.code.unwrap_or("CANCELLED");
        let m = &self.metrics.inner;
        let Some((service, method)) = self.labels.take() else {
            m.unknown.inc();
            return;
        };
        m.duration
            .get_or_create(&RpcLabels {
                grpc_service: service.clone(),
                grpc_method: method.clone(),
            })
            .observe(self.start.elapsed().as_secs_f64());
        m.handled
            .get_or_create(&RpcCodeLabels {
                grpc_service: service,
                grpc_method: method,
                grpc_code: code,
            })
            .inc();
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`GrpcMetricsService`].
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        recorder: Option<Recorder>,
    }
}

impl<F, B, E> Future for MeteredFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<MeteredBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut recorder = this.recorder.take();
        Poll::Ready(match result {
            Ok(resp) => {
                if let (Some(r), Some(code)) = (recorder.as_mut(), grpc_status(resp.headers())) {
                    r.code = Some(code);
                }
                Ok(resp.map(|inner| MeteredBody { inner, recorder }))
            }
            Err(e) => {
                if let Some(r) = recorder.as_mut() {
                    r.code = Some("UNAVAILABLE");
                }
                Err(e)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call when it ends (or is dropped).
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        recorder: Option<Recorder>,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(trailers), Some(r)) = (f.trailers_ref(), this.recorder.as_mut())
                    && let Some(code) = grpc_status(trailers)
                {
                    r.code = Some(code);
                }
            }
            Some(Err(_)) => {
                if let Some(r) = this.recorder.as_mut() {
                    r.code.get_or_insert("INTERNAL");
                }
                this.recorder.take();
            }
            None => {
                if let Some(r) = this.recorder.as_mut() {
                    // A body that ends with no status at all is a broken response.
                    r.code.get_or_insert("UNKNOWN");
                }
                this.recorder.take();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let body = metrics.render();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Binds the metrics endpoint when configured and serves it in the background. Returns the
/// bound address.
pub async fn start(
    settings: &crate::config::MetricsSettings,
    metrics: Metrics,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<Option<std::net::SocketAddr>> {
    let Some(addr) = settings.listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("metrics endpoint {addr}: {e}")))?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = serve(listener, metrics, shutdown).await {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    });
    Ok(Some(local))
}

/// `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
/// `process_max_fds` and `process_start_time_seconds`, read from `/proc/self` at each scrape
/// (Linux; elsewhere only the start time). CPU ticks are Linux's fixed `USER_HZ` of 100; the start
/// time is when the metrics were created, at start-up.
#[derive(Debug)]
struct ProcessCollector {
    started: f64,
}

impl ProcessCollector {
    fn new() -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        ProcessCollector { started }
    }
}

/// Fields 14 and 15 (user and system CPU ticks) of `/proc/self/stat`, and 24 (resident pages).
fn proc_stat() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count from the closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3)?.parse::<f64>().ok();
    let cpu = (ticks(14)? + ticks(15)?) / 100.0;
    let rss_pages = ticks(24)?;
    Some((cpu, rss_pages * 4096.0))
}

fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let gauge = |encoder: &mut prometheus_client::encoding::DescriptorEncoder, name, help, value: f64| {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process, seconds since the epoch",
            self.started,
        )?;
        if let Some((cpu, rss)) = proc_stat() {
            let c = ConstCounter::new(cpu);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time of the process, in seconds",
                None,
                c.metric_type(),
            )?)?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory of the process, in bytes",
                rss,
            )?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors",
                fds.count() as f64,
            )?;
        }
        if let Some(max) = max_fds() {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Most file descriptors the process may open",
                max,
            )?;
        }
        Ok(())
    }
}
