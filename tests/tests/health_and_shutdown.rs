//! Health reports real serving status: SERVING while up, NOT_SERVING as soon as shutdown starts
//! (during the drain grace, while calls are still answered), then the server stops.

use std::time::Duration;

use e2e_tests::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

async fn status(
    client: &mut tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>,
    service: &str,
) -> ServingStatus {
    let resp = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check");
    ServingStatus::try_from(resp.into_inner().status).expect("known status")
}

async fn flips_on_shutdown(mut svc: Service, name: &str) {
    let mut client = health_client(svc.grpc_addr).await;
    assert_eq!(status(&mut client, "").await, ServingStatus::Serving);
    assert_eq!(status(&mut client, name).await, ServingStatus::Serving);
    // A streaming watcher is a call in flight across the shutdown.
    let mut watch = client
        .watch(HealthCheckRequest { service: name.into() })
        .await
        .expect("watch")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("watch message")
        .expect("first status");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let server = svc.take_server();
    svc.shutdown.cancel();
    let flipped = tokio::time::timeout(Duration::from_secs(2), watch.message())
        .await
        .expect("watcher told within the grace period")
        .expect("stream still open")
        .expect("status update");
    assert_eq!(flipped.status, ServingStatus::NotServing as i32);
    // During the grace the server still answers, with NOT_SERVING.
    assert_eq!(status(&mut client, "").await, ServingStatus::NotServing);
    assert_eq!(status(&mut client, name).await, ServingStatus::NotServing);

    // The open watch stream cannot hold the process: drain_timeout closes it.
    tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("server stops after grace + drain timeout")
        .expect("clean stop");
}

#[tokio::test]
async fn dmp_gateway_health_flips_during_shutdown() {
    flips_on_shutdown(
        start_dmp_gateway(dmp_gateway_plaintext_config()).await,
        "dmp.v1.DmpGateway",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twiin_authz_health_flips_during_shutdown() {
    flips_on_shutdown(
        start_twiin_authz(twiin_authz_config()).await,
        "twiin.v1.TwiinAuthz",
    )
    .await;
}

#[tokio::test]
async fn unknown_service_is_not_found() {
    let svc = start_dmp_gateway(dmp_gateway_plaintext_config()).await;
    let mut client = health_client(svc.grpc_addr).await;
    let err = client
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(err.code(), tonic::Code::NotFound);
    svc.stop().await;
}

#[tokio::test]
async fn metrics_count_calls_by_status() {
    let svc = start_dmp_gateway(dmp_gateway_config()).await;
    // The integrator's backend over mutual TLS, for health and the gateway alike.
    let channel = gateway_channel(
        svc.grpc_addr,
        dev_support::devpki::files::INTEGRATOR_CLIENT_CERT,
        dev_support::devpki::files::INTEGRATOR_CLIENT_KEY,
    )
    .await;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for _ in 0..3 {
        status(&mut client, "").await;
    }
    let mut dmp = with_grant(channel, None);
    let err = dmp
        .test_patient_dmp(ehealth_proto::dmp::v1::TestPatientDmpRequest::default())
        .await
        .expect_err("an empty request");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let metrics_addr = svc.metrics_addr.expect("metrics endpoint");
    let body = http_get(metrics_addr, "/metrics").await;
    assert!(
        body.contains(r#"grpc_server_handled_total{grpc_service="grpc.health.v1.Health",grpc_method="Check",grpc_code="OK"} 3"#),
        "{body}"
    );
    assert!(
        body.contains(r#"grpc_server_handled_total{grpc_service="dmp.v1.DmpGateway",grpc_method="TestPatientDmp",grpc_code="INVALID_ARGUMENT"} 1"#),
        "{body}"
    );
    assert!(body.contains("grpc_server_handling_seconds_bucket"), "{body}");
    svc.stop().await;
}

/// A minimal HTTP/1.1 GET, enough for the metrics endpoint.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect metrics");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}
