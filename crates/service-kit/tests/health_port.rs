//! The plaintext health-only listener (`server.health_listen`) that Kubernetes' native gRPC
//! probes use when the main listener requires mutual TLS: it answers `grpc.health.v1.Health` with
//! the main listener's status, serves nothing else, and reports NOT_SERVING during the drain.

use std::time::Duration;

use dev_support::devpki::{DevPki, files};
use service_kit::CancellationToken;
use service_kit::config::{ServerSettings, ServerTlsSettings};
use service_kit::metrics::Metrics;
use service_kit::server::GrpcServer;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn plaintext(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_reach_health_on_a_plaintext_port_while_the_main_port_requires_mtls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = DevPki::ensure(&dir.path().join("pki")).expect("dev PKI");
    let mut settings = ServerSettings::loopback(0);
    settings.tls = Some(ServerTlsSettings {
        cert: pki.path(files::RELAY_SERVER_CERT),
        key: pki.path(files::RELAY_SERVER_KEY),
        client_ca: Some(pki.path(files::SUITE_CA)),
    });
    settings.health_listen = Some(([127, 0, 0, 1], 0).into());
    settings.drain_grace = Duration::from_millis(500);
    settings.drain_timeout = Duration::from_secs(2);

    let shutdown = CancellationToken::new();
    let server = GrpcServer::new(settings, Metrics::new())
        .start(shutdown.clone())
        .await
        .expect("server starts");
    let health_addr = server.health_addr.expect("health listener bound");
    assert_ne!(health_addr, server.local_addr);

    let mut probe = HealthClient::new(plaintext(health_addr).await);
    let status = probe
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers in plaintext")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    // Only health is served there: reflection (served on the main port) is not.
    let mut reflection = tonic_reflection_probe(health_addr).await;
    assert_eq!(reflection, tonic::Code::Unimplemented);

    // The main port still requires TLS: plaintext HTTP/2 gets nowhere.
    let main_plain = tonic::transport::Endpoint::from_shared(format!("http://{}", server.local_addr))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2));
    let main_result = match main_plain.connect().await {
        Ok(ch) => HealthClient::new(ch)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|_| ()),
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    assert!(main_result.is_err(), "plaintext must not reach the mTLS port");

    // Shutdown: the probe port reports NOT_SERVING during the grace period.
    shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = probe
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health still answers during the grace period")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::NotServing as i32);
    server.wait().await.expect("server drains");
    reflection = tonic_reflection_probe(health_addr).await;
    assert_eq!(
        reflection,
        tonic::Code::Unavailable,
        "the probe port is closed after shutdown"
    );
}

/// Calls a method the health-only port must not serve; returns the status code (Unavailable when
/// nothing listens).
async fn tonic_reflection_probe(addr: std::net::SocketAddr) -> tonic::Code {
    let channel = match tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
    {
        Ok(c) => c,
        Err(_) => return tonic::Code::Unavailable,
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    if grpc.ready().await.is_err() {
        return tonic::Code::Unavailable;
    }
    let path =
        http::uri::PathAndQuery::from_static("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckRequest>::default();
    match grpc
        .unary(tonic::Request::new(HealthCheckRequest::default()), path, codec)
        .await
    {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}
