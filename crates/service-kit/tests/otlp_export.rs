//! The OTLP export path of [`service_kit::telemetry::init`]: with `OTEL_EXPORTER_OTLP_ENDPOINT` set,
//! spans of a real gRPC call reach an OTLP/gRPC collector. The collector is an in-process tonic
//! server built from opentelemetry-proto's `TraceService` types, on a loopback ephemeral port; it
//! records every `ExportTraceServiceRequest` it receives.
//!
//! One test per file: it sets a process-wide environment variable and installs the global
//! subscriber.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use service_kit::CancellationToken;
use service_kit::config::{ServerSettings, TelemetrySettings};
use service_kit::metrics::Metrics;
use service_kit::server::GrpcServer;
use service_kit::telemetry::TraceContextInterceptor;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tracing::Instrument;

#[derive(Clone, Default)]
struct Collector {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.requests
            .lock()
            .expect("collector lock")
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Every exported span with the `service.name` of its resource.
    fn spans(&self) -> Vec<(String, Span)> {
        let requests = self.requests.lock().expect("collector lock");
        let mut out = Vec::new();
        for req in requests.iter() {
            for rs in &req.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                    .and_then(|kv| kv.value.as_ref())
                    .and_then(|v| match &v.value {
                        Some(Value::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("collector listens");
    let collector_addr = listener.local_addr().expect("collector address");
    let stop_collector = CancellationToken::new();
    let collector_task = {
        let svc = TraceServiceServer::new(collector.clone());
        let stop = stop_collector.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    stop.cancelled_owned(),
                )
                .await
        })
    };

    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector_addr}"));
    }
    let guard = service_kit::telemetry::init("otlp-test", &TelemetrySettings::default())
        .expect("telemetry with OTLP export");
    assert!(guard.exporting(), "OTEL_EXPORTER_OTLP_ENDPOINT turns export on");

    let shutdown = CancellationToken::new();
    let mut settings = ServerSettings::loopback(0);
    settings.drain_grace = Duration::from_millis(50);
    let server = GrpcServer::new(settings, Metrics::new())
        .start(shutdown.clone())
        .await
        .expect("server starts");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.local_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::with_interceptor(channel, TraceContextInterceptor);
    async {
        client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
    }
    .instrument(tracing::info_span!("otlp.client", otel.kind = "client"))
    .await
    .expect("health check answers");

    shutdown.cancel();
    server.wait().await.expect("server drains");
    // The batch exporter sends on shutdown: dropping the guard flushes (blocking; off the
    // runtime's worker so the exporter's own tasks can run).
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .expect("guard dropped");

    let spans = collector.spans();
    let client = spans
        .iter()
        .find(|(_, s)| s.name == "otlp.client")
        .unwrap_or_else(|| panic!("client span not exported; collector got {spans:?}"));
    let server_span = spans
        .iter()
        .find(|(_, s)| s.name == "/grpc.health.v1.Health/Check")
        .unwrap_or_else(|| panic!("server span not exported; collector got {spans:?}"));
    assert_eq!(client.0, "otlp-test", "resource carries service.name");
    assert_eq!(server_span.1.trace_id, client.1.trace_id);
    assert_eq!(server_span.1.parent_span_id, client.1.span_id);
    assert_eq!(server_span.1.trace_id.len(), 16);

    stop_collector.cancel();
    collector_task
        .await
        .expect("collector task")
        .expect("collector serves");
}
