//! Log lines of failed calls (issue 17 "Observability"): a caller's mistake is logged at INFO,
//! a server fault at ERROR, and each JSON line of a call carries the call's trace id (from the
//! caller's `traceparent` when traces are not exported). One test per file: the subscriber is
//! process-global.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use service_kit::CancellationToken;
use service_kit::config::ServerSettings;
use service_kit::metrics::Metrics;
use service_kit::server::GrpcServer;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_mistakes_log_below_error_and_lines_carry_the_trace_id() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    // The JSON format of `telemetry.log_format = "json"` (telemetry::init), into a buffer.
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone()),
    );
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );

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

    // A caller's mistake: health of a service that does not exist (NOT_FOUND), with a traceparent.
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: "no.such.Service".into(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-00f067aa0ba902b7-01")
            .parse()
            .expect("ascii"),
    );
    let err = HealthClient::new(channel.clone())
        .check(request)
        .await
        .expect_err("NOT_FOUND");
    assert_eq!(err.code(), tonic::Code::NotFound);

    // A fault on this side as the RPC conventions see it: a method the server does not have.
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckRequest>::default();
    let status = grpc
        .unary(
            tonic::Request::new(HealthCheckRequest::default()),
            http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Missing"),
            codec,
        )
        .await
        .expect_err("UNIMPLEMENTED");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    shutdown.cancel();
    server.wait().await.expect("drains");

    let text = String::from_utf8(buffer.0.lock().unwrap_or_else(|e| e.into_inner()).clone()).expect("utf-8");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |code: &str| {
        lines
            .iter()
            .find(|l| l["grpc.code"].as_str() == Some(code))
            .unwrap_or_else(|| panic!("no line for {code}:\n{text}"))
    };
    let refused = find("NotFound");
    assert_eq!(refused["level"], "INFO", "{refused}");
    assert_eq!(
        refused["span"]["trace_id"], TRACE_ID,
        "the caller's trace id: {refused}"
    );
    let failed = find("Unimplemented");
    assert_eq!(failed["level"], "ERROR", "{failed}");
    assert!(
        !lines
            .iter()
            .any(|l| l["level"] == "ERROR" && l["grpc.code"] == "NotFound"),
        "{text}"
    );
}
