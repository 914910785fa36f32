//! Traces reach a real OTLP/HTTP receiver: a route on port 0 that decodes the exporter's
//! protobuf batches with `opentelemetry-proto`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use visage_server::config::TracingConfig;
use visage_server::observability::telemetry::{self, LogFormat, LogOptions, Telemetry};

use super::*;

/// A span as received, with the `service.name` of its batch.
#[derive(Debug, Clone)]
struct Received {
    span: Span,
    service: String,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&AnyValue> {
        self.span.attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Collects log output for inspection.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Inbox = Arc<Mutex<Vec<Received>>>;

async fn export(State(inbox): State<Inbox>, body: Bytes) -> impl axum::response::IntoResponse {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
    let mut inbox = inbox.lock().unwrap();
    for batch in request.resource_spans {
        let service = batch
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                AnyValue::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for span in batch.scope_spans.into_iter().flat_map(|s| s.spans) {
            inbox.push(Received { span, service: service.clone() });
        }
    }
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

/// Starts the receiver; returns its endpoint (as `tracing.otlp_endpoint`) and its inbox.
async fn start_receiver() -> (String, Inbox) {
    let inbox = Inbox::default();
    let router = axum::Router::new().route("/v1/traces", post(export)).with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (endpoint, inbox)
}

/// Exports what has ended so far. Off the runtime's thread: the export blocks until the
/// receiver, served by this same runtime, has answered.
async fn flush(telemetry: &Telemetry) {
    let telemetry = telemetry.clone();
    tokio::task::spawn_blocking(move || telemetry.flush()).await.unwrap();
}

/// Flushes until `done` holds for the spans of `trace_id` (the request span ends just after
/// the response is sent), or fails after a timeout.
async fn wait_for_trace(
    telemetry: &Telemetry,
    inbox: &Inbox,
    trace_id: &str,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        flush(telemetry).await;
        let spans: Vec<Received> =
            inbox.lock().unwrap().iter().filter(|r| hex(&r.span.trace_id) == trace_id).cloned().collect();
        if done(&spans) {
            return spans;
        }
        let names: Vec<&str> = spans.iter().map(|r| r.span.name.as_str()).collect();
        assert!(Instant::now() < deadline, "the trace never completed; received: {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_verify_request_exports_its_span_and_stage_spans_under_the_callers_trace() {
    let (endpoint, inbox) = start_receiver().await;
    let config = TracingConfig {
        otlp_endpoint: Some(endpoint),
        service_name: "visage-test".into(),
        sample_ratio: 1.0,
    };
    let logs = CapturedLogs::default();
    let options = LogOptions { format: LogFormat::Json, filter: "info".into(), ansi: false };
    let (subscriber, telemetry) = {
        let logs = logs.clone();
        telemetry::subscriber(&config, &options, move || logs.clone()).unwrap()
    };
    assert!(telemetry.exports_traces());
    // Scoped to this test's thread, where the server's tasks run too; the inference pool
    // carries it to its threads.
    keep_tracing_callsites_dynamic();
    let _subscriber = tracing::subscriber::set_default(subscriber);
    let mut app = TestApp::spawn_with(|c| c.tracing = config.clone()).await;
    let bob = app.enrol("Robert Graham, passport 9Q7X", "Bob_Graham_0001").await;

    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let form = Form::new().part("image", jpeg(lfw("Bob_Graham_0005"))).text("subject_id", bob.to_string());
    let response = app
        .client
        .post(app.url("/v1/verify"))
        .bearer_auth(&app.admin)
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(expect(response, StatusCode::OK).await["match"], true);

    let stages = ["decode", "detect", "embed", "liveness", "search"];
    let spans = wait_for_trace(&telemetry, &inbox, caller_trace, |spans| {
        let request = spans.iter().find(|r| r.span.kind == SpanKind::Server as i32);
        request.is_some_and(|request| {
            stages.iter().all(|stage| {
                spans.iter().any(|r| r.span.name == *stage && r.span.parent_span_id == request.span.span_id)
            })
        })
    })
    .await;
    let request = spans.iter().find(|r| r.span.kind == SpanKind::Server as i32).unwrap();
    assert_eq!(request.span.name, "POST /v1/verify");
    assert_eq!(hex(&request.span.parent_span_id), caller_span, "the caller's span is the parent");
    assert_eq!(request.service, "visage-test");
    assert_eq!(request.attribute("http.route"), Some(&AnyValue::StringValue("/v1/verify".into())));
    assert_eq!(request.attribute("http.request.method"), Some(&AnyValue::StringValue("POST".into())));
    assert_eq!(request.attribute("http.response.status_code"), Some(&AnyValue::IntValue(200)));
    assert_eq!(request.attribute("request_id"), Some(&AnyValue::StringValue(request_id.clone())));
    for stage in &stages {
        let span = spans.iter().find(|r| r.span.name == *stage).unwrap();
        assert!(span.span.start_time_unix_nano >= request.span.start_time_unix_nano, "{stage}");
        assert!(span.span.end_time_unix_nano <= request.span.end_time_unix_nano, "{stage}");
    }
    // The enrolment before was a trace of its own (no traceparent): a new trace id.
    let all = inbox.lock().unwrap().clone();
    assert!(all.iter().any(|r| r.span.name == "POST /v1/subjects/{id}/faces"
        && r.span.parent_span_id.is_empty()
        && hex(&r.span.trace_id) != caller_trace));

    // Neither spans nor logs hold ids of subjects or what the client called them.
    let exported = format!("{all:?}");
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for private in ["Robert", "9Q7X", &bob.to_string()] {
        assert!(!exported.contains(private), "{private} in an exported span");
        assert!(!logged.contains(private), "{private} in the logs");
    }
    // Every JSON log line of the request carries its request id and trace id (in the request
    // span's fields, listed under `spans`).
    let request_span = |line: &Value| -> Option<Value> {
        line["spans"].as_array()?.iter().find(|span| span["name"] == "request").cloned()
    };
    let lines: Vec<Value> = logged
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|line: &Value| {
            request_span(line).is_some_and(|span| span["request_id"] == request_id.as_str())
        })
        .collect();
    assert!(!lines.is_empty(), "no log line of the request: {logged}");
    for line in &lines {
        assert_eq!(request_span(line).unwrap()["trace_id"], caller_trace, "{line}");
    }
    assert!(lines.iter().any(|line| line["message"] == "request" && line["status"] == 200));

    app.shut_down().await;
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await.unwrap();
}
