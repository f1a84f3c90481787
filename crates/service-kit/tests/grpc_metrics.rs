//! Per-RPC metrics of every [`GrpcServer`] (SPEC.md preamble, issue 8 "Metrics"): calls counted
//! by status code (errors included) and a latency histogram per method, read from the real
//! Prometheus endpoint over HTTP.

use std::time::Duration;

use service_kit::CancellationToken;
use service_kit::config::{MetricsSettings, ServerSettings};
use service_kit::metrics::Metrics;
use service_kit::server::GrpcServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

async fn scrape(addr: std::net::SocketAddr) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .expect("send request");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    (head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn calls_are_counted_by_status_with_latency() {
    let shutdown = CancellationToken::new();
    let metrics = Metrics::new();
    let metrics_addr = service_kit::metrics::start(
        &MetricsSettings {
            listen: Some(([127, 0, 0, 1], 0).into()),
        },
        metrics.clone(),
        shutdown.clone(),
    )
    .await
    .expect("metrics endpoint binds")
    .expect("metrics endpoint configured");
    let mut settings = ServerSettings::loopback(0);
    settings.drain_grace = Duration::from_millis(50);
    let server = GrpcServer::new(settings, metrics.clone())
        .start(shutdown.clone())
        .await
        .expect("server starts");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.local_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);
    for _ in 0..2 {
        client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("overall health answers");
    }
    let err = client
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service is NOT_FOUND");
    assert_eq!(err.code(), tonic::Code::NotFound);

    assert_eq!(metrics.handled("grpc.health.v1.Health", "Check", "OK"), 2);
    assert_eq!(metrics.handled("grpc.health.v1.Health", "Check", "NOT_FOUND"), 1);

    let (head, body) = scrape(metrics_addr).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    for line in [
        r#"grpc_server_handled_total{grpc_service="grpc.health.v1.Health",grpc_method="Check",grpc_code="OK"} 2"#,
        r#"grpc_server_handled_total{grpc_service="grpc.health.v1.Health",grpc_method="Check",grpc_code="NOT_FOUND"} 1"#,
        r#"grpc_server_handling_seconds_count{grpc_service="grpc.health.v1.Health",grpc_method="Check"} 3"#,
        r#"grpc_server_handling_seconds_bucket{le="+Inf",grpc_service="grpc.health.v1.Health",grpc_method="Check"} 3"#,
        "# TYPE grpc_server_handling_seconds histogram",
        "# TYPE grpc_server_handled counter",
    ] {
        assert!(body.lines().any(|l| l == line), "missing `{line}` in:\n{body}");
    }

    shutdown.cancel();
    server.wait().await.expect("server drains");
}

/// Calls to paths the server does not serve (a scanner's guesses, a method of a served service
/// that does not exist) create no series: they are counted in one label-less counter. Served
/// methods keep their labels; the process metrics and `build_info` are exposed.
#[tokio::test]
async fn unknown_paths_create_no_series() {
    let shutdown = CancellationToken::new();
    let metrics = Metrics::new();
    metrics.register_build_info("test-service");
    let mut settings = ServerSettings::loopback(0);
    settings.drain_grace = Duration::from_millis(50);
    let server = GrpcServer::new(settings, metrics.clone())
        .start(shutdown.clone())
        .await
        .expect("server starts");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.local_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let before = metrics.render();
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let mut paths: Vec<String> = (0..40).map(|i| format!("/scanner{i}.Probe/Method{i}")).collect();
    paths.push("/grpc.health.v1.Health/NoSuchMethod".into());
    paths.push("/not-even-grpc".into());
    for path in &paths {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.expect("ready");
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckRequest>::default();
        let path = http::uri::PathAndQuery::try_from(path.as_str()).expect("path");
        let status = grpc
            .unary(tonic::Request::new(HealthCheckRequest::default()), path, codec)
            .await
            .expect_err("not served");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    }
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .expect("health answers");

    let after = metrics.render();
    assert!(
        after
            .lines()
            .any(|l| l == format!("grpc_server_unknown_method_total {}", paths.len())),
        "{after}"
    );
    assert!(
        !after.contains("scanner") && !after.contains("NoSuchMethod") && !after.contains("not-even"),
        "{after}"
    );
    // The served call added its own series (one count, one duration histogram), nothing else.
    let histogram_series = 19 + 1 + 2; // buckets, +Inf, _sum and _count
    assert_eq!(
        series(&after),
        series(&before) + 1 + histogram_series,
        "before:\n{before}\nafter:\n{after}"
    );
    assert_eq!(metrics.handled("grpc.health.v1.Health", "Check", "OK"), 1);
    for line in [
        r#"build_info{service="test-service",version="0.1.0"} 1"#,
        "# TYPE process_cpu_seconds counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_start_time_seconds gauge",
    ] {
        assert!(after.lines().any(|l| l == line), "missing `{line}` in:\n{after}");
    }
    let rss: f64 = after
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.parse().ok())
        .expect("an RSS value");
    assert!(
        rss > 1_000_000.0,
        "a test process has more than 1 MB resident: {rss}"
    );

    shutdown.cancel();
    server.wait().await.expect("server drains");
}

/// The server certificate's end of validity is a gauge (alerts warn before it expires).
#[tokio::test]
async fn the_server_certificate_expiry_is_a_gauge() {
    use dev_support::devpki::{DevPki, files};
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = DevPki::ensure(&dir.path().join("pki")).expect("dev PKI");
    let mut settings = ServerSettings::loopback(0);
    settings.drain_grace = Duration::from_millis(50);
    settings.tls = Some(service_kit::config::ServerTlsSettings {
        cert: pki.path(files::SERVICE_SERVER_CERT),
        key: pki.path(files::SERVICE_SERVER_KEY),
        client_ca: None,
    });
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let server = GrpcServer::new(settings, metrics.clone())
        .start(shutdown.clone())
        .await
        .expect("server starts");
    // The expected value, read independently of the code under test.
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in"])
        .arg(pki.path(files::SERVICE_SERVER_CERT))
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    let end = text.trim().trim_start_matches("notAfter=");
    let expected = time::OffsetDateTime::parse(
        &end.replace(' ', "T"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap_or_else(|e| panic!("`{end}`: {e}"))
    .unix_timestamp();
    let line = format!(r#"certificate_expiry_timestamp_seconds{{certificate="grpc-server"}} {expected}"#);
    let rendered = metrics.render();
    assert!(
        rendered.lines().any(|l| l == line),
        "missing `{line}` in:\n{rendered}"
    );
    shutdown.cancel();
    server.wait().await.expect("drains");
}
