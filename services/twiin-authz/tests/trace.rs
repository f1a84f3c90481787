//! One trace spans the external GtK's token request → twiin-authz → ZORG-AB and the Autorisatie
//! Server ZA simulators (issue 8): the caller's W3C `traceparent` is continued by our OAuth
//! endpoint and passed on to every outgoing call. One test per file: the subscriber is global.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporterBuilder, SdkTracerProvider};
use service_kit::config::TelemetrySettings;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_external_gtk_through_the_simulators() {
    let exporter = InMemorySpanExporterBuilder::new().build();
    let provider = SdkTracerProvider::builder()
        .with_resource(service_kit::telemetry::service_resource("twiin-trace-test"))
        .with_simple_exporter(exporter.clone())
        .build();
    let _guard = service_kit::telemetry::init_with_provider(
        "twiin-trace-test",
        &TelemetrySettings::default(),
        provider,
    )
    .expect("telemetry");

    let w = World::start().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = w
        .client
        .post(w.token_url())
        .header("traceparent", format!("00-{trace}-{caller_span}-01"))
        .form(&w.form("system/Task.c"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 200);

    let trace_id = TraceId::from_hex(trace).expect("trace id");
    let named = |spans: &[opentelemetry_sdk::trace::SpanData], name: &str| {
        spans
            .iter()
            .any(|s| s.span_context.trace_id() == trace_id && s.name == name)
    };
    let mut spans = Vec::new();
    for _ in 0..200 {
        spans = exporter.get_finished_spans().expect("exporter");
        if ["POST /oauth2/token", "GET /applications", "POST /token"]
            .iter()
            .all(|n| named(&spans, n))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ours: Vec<_> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace_id)
        .collect();
    let names: Vec<&str> = ours.iter().map(|s| s.name.as_ref()).collect();
    let token = ours
        .iter()
        .find(|s| s.name == "POST /oauth2/token")
        .unwrap_or_else(|| panic!("twiin-authz's token endpoint is in the caller's trace: {names:?}"));
    assert_eq!(
        token.parent_span_id,
        SpanId::from_hex(caller_span).expect("span id"),
        "child of the caller"
    );
    // ZORG-AB (capabilities) and the Autorisatie Server ZA (token exchange) continued the trace,
    // below our endpoint's span.
    let ids: std::collections::HashSet<SpanId> = ours.iter().map(|s| s.span_context.span_id()).collect();
    for downstream in ["GET /applications", "POST /token"] {
        let span = ours
            .iter()
            .find(|s| s.name == downstream)
            .unwrap_or_else(|| panic!("{downstream} continued the trace: {names:?}"));
        assert!(
            ids.contains(&span.parent_span_id),
            "{downstream}'s parent is one of our spans"
        );
        assert_ne!(
            span.parent_span_id,
            SpanId::from_hex(caller_span).expect("span id")
        );
    }
}
