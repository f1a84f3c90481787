//! One trace spans the integrator's backend call → dmp-gateway → cps-relay (certificate and
//! CertificateVerify signature) → the DMP simulator (issue 8). One test per file: the tracing
//! subscriber is global.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use dev_support::devpki::files;
use dmp_gateway::samples;
use e2e_tests::*;
use ehealth_proto::dmp::v1 as pb;
use ehealth_proto::dmp::v1::dmp_gateway_client::DmpGatewayClient;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::trace::{InMemorySpanExporterBuilder, SdkTracerProvider, SpanData};
use service_kit::config::TelemetrySettings;
use tonic::service::Interceptor as _;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_backend_to_the_card_and_the_dmp() {
    let exporter = InMemorySpanExporterBuilder::new().build();
    let provider = SdkTracerProvider::builder()
        .with_resource(service_kit::telemetry::service_resource("dmp-trace-test"))
        .with_simple_exporter(exporter.clone())
        .build();
    let _guard =
        service_kit::telemetry::init_with_provider("dmp-trace-test", &TelemetrySettings::default(), provider)
            .expect("telemetry");

    let (relay, _) = start_card_relay(DOCTOR_TOKENS[0], "127.0.0.1:0".parse().expect("addr")).await;
    let sim = Arc::new(dmp_sim::DmpSimulator::new(dmp_sim::SimConfig::default()));
    let (dmp, _stop) = start_dmp_listener(&pki().path(files::IGC_CA_BUNDLE), dmp_sim::router(sim)).await;
    let gateway = start_dmp_gateway(gateway_transport_config(dmp, &[("ws-1", relay.grpc_addr)])).await;
    let channel = gateway_channel(
        gateway.grpc_addr,
        files::INTEGRATOR_CLIENT_CERT,
        files::INTEGRATOR_CLIENT_KEY,
    )
    .await;
    let (grant, _) = issue_grant(relay.grpc_addr).await;
    let grant: tonic::metadata::AsciiMetadataValue = grant.parse().expect("ascii");
    let mut client = DmpGatewayClient::with_interceptor(channel, move |req| {
        let mut req = service_kit::telemetry::TraceContextInterceptor.call(req)?;
        req.metadata_mut()
            .insert(dmp_gateway::GRANT_METADATA, grant.clone());
        Ok(req)
    });

    let backend = tracing::info_span!("backend.store_document", otel.kind = "client");
    let trace_id = backend.context().span().span_context().trace_id();
    async {
        client
            .test_patient_dmp(pb::TestPatientDmpRequest {
                auth_context: Some(pb::AuthenticationContext {
                    relay_id: "ws-1".into(),
                    ..samples::auth_context("810100000001")
                }),
                patient: Some(samples::patient()),
            })
            .await
            .expect("TestPatientDmp")
    }
    .instrument(backend)
    .await;

    let wanted = [
        "backend.store_document",
        "/dmp.v1.DmpGateway/TestPatientDmp",
        "/cps.v1.CpsRelay/GetAuthenticationCertificate",
        "cps_relay.sign",
        "/cps.v1.CpsRelay/SignForAuthentication",
    ];
    let mut spans: Vec<SpanData> = Vec::new();
    for _ in 0..300 {
        spans = exporter.get_finished_spans().expect("exporter");
        let names: HashSet<&str> = spans
            .iter()
            .filter(|s| s.span_context.trace_id() == trace_id)
            .map(|s| s.name.as_ref())
            .collect();
        if wanted.iter().all(|w| names.contains(w)) && names.iter().any(|n| n.starts_with("POST ")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ours: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace_id)
        .collect();
    let names: Vec<&str> = ours.iter().map(|s| s.name.as_ref()).collect();
    let by_name = |n: &str| -> &SpanData {
        ours.iter()
            .copied()
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("{n} is in the trace: {names:?}"))
    };
    let root = by_name("backend.store_document");
    let gateway_span = by_name("/dmp.v1.DmpGateway/TestPatientDmp");
    assert_eq!(
        gateway_span.parent_span_id,
        root.span_context.span_id(),
        "gateway span is the backend's child"
    );
    // Everything else hangs below the gateway's span, including the DMP simulator's POST.
    let ids: HashSet<_> = ours.iter().map(|s| s.span_context.span_id()).collect();
    for n in wanted.iter().skip(2) {
        assert!(
            ids.contains(&by_name(n).parent_span_id),
            "{n} has a parent in the trace"
        );
    }
    let dmp_post = ours
        .iter()
        .find(|s| s.name.starts_with("POST "))
        .unwrap_or_else(|| panic!("DMP span: {names:?}"));
    assert!(
        ids.contains(&dmp_post.parent_span_id),
        "the DMP simulator continued the trace"
    );
    relay.stop().await;
}
