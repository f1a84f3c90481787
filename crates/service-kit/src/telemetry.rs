//! Logs and traces (SPEC.md preamble): `tracing` logs, human by default or JSON by switch;
//! OpenTelemetry traces exported over OTLP/gRPC only when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set; W3C trace context carried in gRPC metadata, injected by
//! clients ([`TraceContextInterceptor`]) and extracted by servers ([`grpc_server_span`]).

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetrySettings};

/// Keeps the trace exporter alive; flushes pending spans when dropped.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("trace export shutdown: {e}");
        }
    }
}

/// Why telemetry could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `telemetry.log_filter` (or `RUST_LOG`) is not a valid filter.
    #[error("configuration error: key `telemetry.log_filter`: {0}")]
    Filter(String),
    /// The OTLP exporter cannot be built for the configured endpoint.
    #[error("OTLP exporter for OTEL_EXPORTER_OTLP_ENDPOINT: {0}")]
    Exporter(String),
}

/// Installs the global subscriber. Must be called inside the Tokio runtime (the OTLP exporter's
/// channel lives on it). Spans are exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is
/// set, not at all otherwise. A second call in one process (tests) keeps the first subscriber.
pub fn init(service: &'static str, settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(otlp_provider(service, &endpoint)?),
        _ => None,
    };
    install(service, settings, provider)
}

/// Like [`init`], but spans go to `provider` instead of the OTLP exporter the environment
/// selects: an in-memory exporter in tests that assert parent/child links, or an exporter built
/// by hand (another protocol, a sampler, extra resource attributes). `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is ignored. The guard shuts the provider down (flushing it) when dropped.
///
/// Only the first subscriber installed in a process is kept, so a test that inspects spans must
/// call this before anything else calls [`init`] — in practice: one such test per test binary
/// (integration-test file).
pub fn init_with_provider(
    service: &'static str,
    settings: &TelemetrySettings,
    provider: SdkTracerProvider,
) -> Result<TelemetryGuard, TelemetryError> {
    install(service, settings, Some(provider))
}

fn install(
    service: &'static str,
    settings: &TelemetrySettings,
    provider: Option<SdkTracerProvider>,
) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => EnvFilter::try_new(f),
        _ => EnvFilter::try_new(&settings.log_filter),
    }
    .map_err(|e| TelemetryError::Filter(e.to_string()))?;

    let fmt = match settings.log_format {
        LogFormat::Human => tracing_subscriber::fmt::layer().with_target(true).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed(),
    };

    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
    if let Some(p) = &provider {
        opentelemetry::global::set_tracer_provider(p.clone());
    }

    // Err only when a subscriber is already installed (several services in one test process).
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(TelemetryGuard { provider })
}

fn otlp_provider(service: &'static str, endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    Ok(SdkTracerProvider::builder()
        .with_resource(service_resource(service))
        .with_batch_exporter(exporter)
        .build())
}

/// The OpenTelemetry resource every span of `service` carries (`service.name`); use it when
/// building a provider for [`init_with_provider`].
pub fn service_resource(service: &'static str) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build()
}

/// The server span of one gRPC call, child of the caller's span when the request carries W3C
/// trace context (`traceparent`). Made by the server's trace layer, after the request id is set.
pub fn grpc_server_span<B>(req: &http::Request<B>) -> tracing::Span {
    let path = req.uri().path();
    let (service, method) = split_grpc_path(path);
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %path,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        request_id = %request_id,
        trace_id = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&opentelemetry_http::HeaderExtractor(req.headers()))
    });
    // Fails only when no OpenTelemetry layer is installed: nothing to link then.
    let _ = span.set_parent(parent.clone());
    // The trace id in every log line of the call (JSON: the span's fields): the span's own
    // when traces are on, else the caller's from `traceparent`.
    {
        use opentelemetry::trace::TraceContextExt;
        let own = span.context().span().span_context().clone();
        let caller = parent.span().span_context().clone();
        if let Some(sc) = [own, caller].into_iter().find(|sc| sc.is_valid()) {
            span.record("trace_id", tracing::field::display(sc.trace_id()));
        }
    }
    span
}

/// Whether a gRPC status code names the caller's mistake or choice (bad input, no permission,
/// a missing record, the caller cancelling, the load limit) rather than a fault of the service
/// or of its peers. Client-caused codes are logged at INFO, the others at ERROR.
pub fn client_caused(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Cancelled
            | InvalidArgument
            | NotFound
            | AlreadyExists
            | PermissionDenied
            | ResourceExhausted
            | FailedPrecondition
            | Aborted
            | OutOfRange
            | Unauthenticated
    )
}

/// `on_failure` of the servers' trace layer: logs a failed call with its code, at INFO when the
/// caller caused it (so ERROR lines mean something to fix on this side), and marks the span with
/// the RPC semantic conventions (`rpc.grpc.status_code`; `otel.status_code = ERROR` for server
/// faults only, as the conventions ask of servers).
pub fn log_grpc_failure(
    class: tower_http::classify::GrpcFailureClass,
    latency: std::time::Duration,
    span: &tracing::Span,
) {
    let latency_ms = latency.as_millis() as u64;
    match class {
        tower_http::classify::GrpcFailureClass::Code(code) => {
            let code = tonic::Code::from_i32(code.get());
            span.record("rpc.grpc.status_code", code as i32);
            if client_caused(code) {
                tracing::info!(parent: span, grpc.code = ?code, latency_ms, "call refused");
            } else {
                span.record("otel.status_code", "ERROR");
                tracing::error!(parent: span, grpc.code = ?code, latency_ms, "call failed");
            }
        }
        tower_http::classify::GrpcFailureClass::Error(error) => {
            span.record("otel.status_code", "ERROR");
            tracing::error!(parent: span, %error, latency_ms, "call failed");
        }
    }
}

/// Splits `/pkg.Service/Method` into its two parts.
pub fn split_grpc_path(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

/// Injects the current span's trace context into outgoing gRPC metadata.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        inject_current_context(req.metadata_mut());
        Ok(req)
    }
}

/// Writes the current span's W3C trace context into `metadata`.
pub fn inject_current_context(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MetadataInjector(metadata))
    });
}

/// Writes the current span's W3C trace context into outgoing HTTP headers (calls to the DMP,
/// ZORG-AB, AORTA).
pub fn inject_into_headers(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers))
    });
}

/// The current span's OpenTelemetry trace id (hex), for audit events; None when not traced.
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let cx = tracing::Span::current().context();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Headers carrying the current span's W3C trace context, for HTTP clients that take a map
/// (`reqwest::RequestBuilder::headers`).
pub fn current_trace_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    inject_into_headers(&mut headers);
    headers
}

/// The server span of one HTTP request, child of the caller's span when the request carries
/// W3C trace context. For axum/tower-http `TraceLayer::make_span_with`.
pub fn http_server_span<B>(req: &http::Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "http.server",
        otel.name = %format!("{} {}", req.method(), req.uri().path()),
        otel.kind = "server",
        http.method = %req.method(),
        http.target = %req.uri().path(),
    );
    set_parent_from_headers(&span, req.headers());
    span
}

/// Reads a W3C trace context from HTTP headers (the OAuth HTTP endpoint) into `span`.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Reads trace context from tonic metadata (for services that create spans by hand).
pub struct MetadataExtractor<'a>(pub &'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_paths() {
        assert_eq!(
            split_grpc_path("/cps.v1.CpsRelay/GetStatus"),
            ("cps.v1.CpsRelay", "GetStatus")
        );
        assert_eq!(split_grpc_path("/weird"), ("weird", ""));
    }
}
