//! W3C trace context across a real gRPC call (SPEC.md preamble, issue 8 "Traces"): a tonic client
//! with [`TraceContextInterceptor`] calls a server started by [`GrpcServer`] over loopback HTTP/2;
//! the spans land in the SDK's in-memory exporter and the server span must be the client span's
//! child: same trace id, parent span id = client span id, parent marked remote.
//!
//! One test per file: the tracing subscriber is process-global and only the first one installed
//! is kept.

use std::time::Duration;

use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, InMemorySpanExporterBuilder, SdkTracerProvider, SpanData,
};
use service_kit::CancellationToken;
use service_kit::config::{ServerSettings, TelemetrySettings};
use service_kit::metrics::Metrics;
use service_kit::server::GrpcServer;
use service_kit::telemetry::TraceContextInterceptor;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tracing::Instrument;

fn ephemeral() -> ServerSettings {
    let mut s = ServerSettings::loopback(0);
    s.drain_grace = Duration::from_millis(50);
    s.drain_timeout = Duration::from_secs(2);
    s
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// Waits until the exporter holds a span named `name` (spans end when the response body ends,
/// which the server side sees a moment after the client returns).
async fn wait_for_span(exporter: &InMemorySpanExporter, name: &str) -> Vec<SpanData> {
    for _ in 0..200 {
        let spans = exporter.get_finished_spans().expect("in-memory exporter");
        if spans.iter().any(|s| s.name == name) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let names: Vec<String> = exporter
        .get_finished_spans()
        .expect("in-memory exporter")
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    panic!("no span named {name} was exported; got {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_span_is_child_of_client_span() {
    let exporter = InMemorySpanExporterBuilder::new().build();
    let provider = SdkTracerProvider::builder()
        .with_resource(service_kit::telemetry::service_resource("trace-test"))
        .with_simple_exporter(exporter.clone())
        .build();
    let guard =
        service_kit::telemetry::init_with_provider("trace-test", &TelemetrySettings::default(), provider)
            .expect("telemetry with the in-memory provider");
    assert!(guard.exporting());

    let shutdown = CancellationToken::new();
    let server = GrpcServer::new(ephemeral(), Metrics::new())
        .start(shutdown.clone())
        .await
        .expect("server starts");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.local_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::with_interceptor(channel, TraceContextInterceptor);

    let client_span = tracing::info_span!("backend.call", otel.kind = "client");
    let reply = async {
        client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
    }
    .instrument(client_span)
    .await
    .expect("health check answers");
    assert_eq!(reply.into_inner().status, 1, "SERVING");

    let spans = wait_for_span(&exporter, "/grpc.health.v1.Health/Check").await;
    let client = spans
        .iter()
        .find(|s| s.name == "backend.call")
        .expect("the client span is exported");
    let server_span = spans
        .iter()
        .find(|s| s.name == "/grpc.health.v1.Health/Check")
        .expect("the server span is exported");

    assert_ne!(client.span_context.trace_id(), TraceId::INVALID);
    assert_eq!(
        server_span.span_context.trace_id(),
        client.span_context.trace_id(),
        "server and client spans share one trace"
    );
    assert_eq!(
        server_span.parent_span_id,
        client.span_context.span_id(),
        "the server span's parent is the client span"
    );
    assert!(
        server_span.parent_span_is_remote,
        "the parent came over the wire (traceparent), not from the server's own context"
    );
    assert_eq!(client.span_kind, SpanKind::Client);
    assert_eq!(server_span.span_kind, SpanKind::Server);
    assert_eq!(attr(server_span, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attr(server_span, "rpc.service").as_deref(),
        Some("grpc.health.v1.Health")
    );
    assert_eq!(attr(server_span, "rpc.method").as_deref(), Some("Check"));
    let request_id = attr(server_span, "request_id").unwrap_or_default();
    assert_eq!(request_id.len(), 36, "a UUID request id, got {request_id:?}");

    // A call made outside any span starts a new trace: the server span then has no parent.
    exporter.reset();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.local_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    HealthClient::with_interceptor(channel, TraceContextInterceptor)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check answers");
    let spans = wait_for_span(&exporter, "/grpc.health.v1.Health/Check").await;
    let root = spans
        .iter()
        .find(|s| s.name == "/grpc.health.v1.Health/Check")
        .expect("server span");
    assert_eq!(root.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    assert_ne!(root.span_context.trace_id(), server_span.span_context.trace_id());

    shutdown.cancel();
    server.wait().await.expect("server drains");
    drop(guard);
    assert!(
        exporter.is_shutdown_called(),
        "dropping the guard shuts the provider down"
    );
}
