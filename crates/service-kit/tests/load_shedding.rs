//! Overload is shed early and cheaply (issue 19): past `server.concurrency_limit` calls in
//! flight, a call is answered `RESOURCE_EXHAUSTED` at once, without reaching the service and
//! without waiting for a slot; once a slot is free calls are served again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use service_kit::CancellationToken;
use service_kit::config::ServerSettings;
use service_kit::metrics::Metrics;
use service_kit::server::GrpcServer;

/// Holds each call until released; counts the calls that reached it.
#[derive(Clone)]
struct Slow {
    reached: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Notify>,
}

#[tonic::async_trait]
impl TraceService for Slow {
    async fn export(
        &self,
        _: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.reached.fetch_add(1, Ordering::SeqCst);
        self.release.notified().await;
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_limit_calls_are_resource_exhausted_at_once() {
    let slow = Slow {
        reached: Arc::default(),
        release: Arc::default(),
    };
    let mut settings = ServerSettings::loopback(0);
    settings.concurrency_limit = 1;
    settings.drain_grace = Duration::from_millis(50);
    let shutdown = CancellationToken::new();
    let server = GrpcServer::new(settings, Metrics::new())
        .add_service(TraceServiceServer::new(slow.clone()))
        .start(shutdown.clone())
        .await
        .expect("server starts");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.local_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let client = TraceServiceClient::new(channel);

    let mut first = client.clone();
    let held = tokio::spawn(async move { first.export(ExportTraceServiceRequest::default()).await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while slow.reached.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the first call never reached the service"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let started = Instant::now();
    let err = client
        .clone()
        .export(ExportTraceServiceRequest::default())
        .await
        .expect_err("the only slot is taken");
    let took = started.elapsed();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert_eq!(slow.reached.load(Ordering::SeqCst), 1, "shed before the service");
    eprintln!("RESOURCE_EXHAUSTED in {took:?} while the only slot was held");

    slow.release.notify_one();
    held.await.expect("task").expect("the held call completes");
    let mut again = client.clone();
    let next = tokio::spawn(async move { again.export(ExportTraceServiceRequest::default()).await });
    while slow.reached.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "a call after the slot came free was refused"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    slow.release.notify_one();
    next.await.expect("task").expect("served once a slot is free");
    shutdown.cancel();
    server.wait().await.expect("drains");
}
