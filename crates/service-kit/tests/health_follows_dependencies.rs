//! Readiness follows the dependencies (issue 19): while a dependency registered with
//! `GrpcServer::serving_while` is down, health reports NOT_SERVING overall and for the
//! service, SERVING again once it is back; `liveness` stays SERVING throughout, and a dependency
//! coming back during shutdown does not undo its NOT_SERVING.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use service_kit::CancellationToken;
use service_kit::config::ServerSettings;
use service_kit::metrics::Metrics;
use service_kit::server::{GrpcServer, LIVENESS};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

type Client = HealthClient<tonic::transport::Channel>;

async fn status(client: &mut Client, service: &str) -> ServingStatus {
    let s = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status;
    ServingStatus::try_from(s).expect("a known status")
}

/// Polls until `service` reports `want`; the bound for the state to show is 1 s.
async fn until(client: &mut Client, service: &str, want: ServingStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let got = status(client, service).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "`{service}` still {got:?}, expected {want:?} within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A service of the server's own (any generated one will do), whose status health reports.
#[derive(Clone)]
struct Collector;

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        _: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not under test"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_a_dependency_is_down() {
    let (store, available) = tokio::sync::watch::channel(true);
    let mut settings = ServerSettings::loopback(0);
    settings.drain_grace = Duration::from_millis(500);
    settings.drain_timeout = Duration::from_secs(2);
    let shutdown = CancellationToken::new();
    let server = GrpcServer::new(settings, Metrics::new())
        .add_service(TraceServiceServer::new(Collector))
        .serving_while(available)
        .start(shutdown.clone())
        .await
        .expect("server starts");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.local_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);
    let service = "opentelemetry.proto.collector.trace.v1.TraceService";

    assert_eq!(status(&mut client, "").await, ServingStatus::Serving);
    assert_eq!(status(&mut client, service).await, ServingStatus::Serving);

    store.send_replace(false);
    until(&mut client, "", ServingStatus::NotServing).await;
    until(&mut client, service, ServingStatus::NotServing).await;
    assert_eq!(status(&mut client, LIVENESS).await, ServingStatus::Serving);

    store.send_replace(true);
    until(&mut client, "", ServingStatus::Serving).await;
    until(&mut client, service, ServingStatus::Serving).await;

    shutdown.cancel();
    until(&mut client, "", ServingStatus::NotServing).await;
    store.send_replace(false);
    store.send_replace(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        status(&mut client, "").await,
        ServingStatus::NotServing,
        "a dependency coming back does not undo a shutdown"
    );
    assert_eq!(status(&mut client, LIVENESS).await, ServingStatus::NotServing);
    server.wait().await.expect("drains");
}
