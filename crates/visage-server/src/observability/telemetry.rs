//! Logs and traces through one `tracing` subscriber: a log layer (plain or JSON) and, only when
//! an OTLP endpoint is configured, an OpenTelemetry layer that exports spans over OTLP/HTTP.
//! Without an endpoint there is no exporter, no layer and no background thread.

use std::time::Duration;

use axum::http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{Status, TraceContextExt as _, TracerProvider as _};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use tracing::{Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::TracingConfig;

/// How long one export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    /// One JSON object per line; span fields (`request_id`, `trace_id`) under `span`.
    Json,
}

#[derive(Debug, Clone)]
pub struct LogOptions {
    pub format: LogFormat,
    /// `EnvFilter` directives, e.g. `info` or `visage_server=debug,info`.
    pub filter: String,
    pub ansi: bool,
}

impl LogOptions {
    /// `VISAGE_LOG` (directives, default `info`) and `VISAGE_LOG_FORMAT=json`; colour only on a
    /// terminal.
    pub fn from_env() -> Self {
        let format = if std::env::var("VISAGE_LOG_FORMAT").as_deref() == Ok("json") {
            LogFormat::Json
        } else {
            LogFormat::Plain
        };
        Self {
            format,
            filter: std::env::var("VISAGE_LOG").unwrap_or_else(|_| "info".into()),
            ansi: format == LogFormat::Plain && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        }
    }
}

/// Owns the span exporter, if there is one: flush or shut it down before the process ends, or
/// the last batch of spans is lost.
#[derive(Clone, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans ended so far; blocks until the collector answered or the export timed out.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(err) = provider.force_flush()
        {
            tracing::warn!(error = %err, "could not export spans");
        }
    }

    /// Exports what is left and stops the exporter's thread.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "could not export the last spans");
        }
    }
}

/// The subscriber for `tracing` config and log options, writing logs to `writer`; not installed
/// (see [`init`]), so tests can scope it to themselves.
pub fn subscriber<W>(
    tracing: &TracingConfig,
    logs: &LogOptions,
    writer: W,
) -> anyhow::Result<(impl Subscriber + Send + Sync + 'static, Telemetry)>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let log_filter = EnvFilter::try_new(&logs.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let log_layer = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(logs.ansi);
    let log_layer = match logs.format {
        LogFormat::Plain => log_layer.with_filter(log_filter).boxed(),
        LogFormat::Json => log_layer.json().flatten_event(true).with_filter(log_filter).boxed(),
    };
    let mut layers = vec![log_layer];
    let provider = tracer_provider(tracing)?;
    if let Some(provider) = &provider {
        // Spans follow the tracing config, not VISAGE_LOG: quieter logs keep their traces. Only
        // the service's own spans; dependencies' would mostly be noise.
        let spans = Targets::new()
            .with_target("visage_server", Level::INFO)
            .with_target("visage_store", Level::INFO)
            .with_target("visage_face", Level::INFO)
            .with_default(Level::WARN);
        let tracer = provider.tracer("visage");
        layers.push(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(spans).boxed());
    }
    Ok((tracing_subscriber::registry().with(layers), Telemetry { provider }))
}

/// Installs the subscriber for the whole process (logs to stderr) and bridges `log` records.
pub fn init(tracing: &TracingConfig, logs: &LogOptions) -> anyhow::Result<Telemetry> {
    let (subscriber, telemetry) = subscriber(tracing, logs, std::io::stderr)?;
    subscriber.try_init()?;
    if let Some(url) = tracing.traces_url() {
        tracing::info!(url, sample_ratio = tracing.sample_ratio, "exporting traces over OTLP/HTTP");
    }
    Ok(telemetry)
}

fn tracer_provider(config: &TracingConfig) -> anyhow::Result<Option<SdkTracerProvider>> {
    let Some(url) = config.traces_url() else { return Ok(None) };
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    // Batches are sent from the processor's own thread, never from a request.
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
        .with_resource(Resource::builder().with_service_name(config.service_name.clone()).build())
        .build();
    Ok(Some(provider))
}

/// Makes `span` (a server request span, not yet entered) a child of the caller's W3C
/// `traceparent`, names it `METHOD /route/{template}` and records its trace id as the span's
/// `trace_id` field, so every log line of the request carries it. The span must declare
/// `trace_id`, `otel.name` and `otel.kind`.
pub fn trace_request(span: &tracing::Span, headers: &HeaderMap, method: &str, route: &str) {
    span.record("otel.name", tracing::field::display(format_args!("{method} {route}")));
    span.record("otel.kind", "server");
    let caller = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if caller.span().span_context().is_valid() {
        // Fails only without the OpenTelemetry layer, and then there is nothing to join.
        let _ = span.set_parent(caller);
    }
    span.set_attribute("http.request.method", method.to_owned());
    span.set_attribute("http.route", route.to_owned());
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// Records the answer's status on a request span; a 5xx marks the span as failed.
pub fn trace_response(span: &tracing::Span, status: u16) {
    span.set_attribute("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.set_status(Status::error(""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Profile};

    fn log_options() -> LogOptions {
        LogOptions { format: LogFormat::Json, filter: "info".into(), ansi: false }
    }

    #[test]
    fn without_an_endpoint_no_exporter_is_created() {
        let config = Config::defaults(Profile::Development).tracing;
        assert!(!config.enabled());
        let (_subscriber, telemetry) = subscriber(&config, &log_options(), std::io::sink).unwrap();
        assert!(!telemetry.exports_traces());
        // An empty variable (VISAGE_TRACING__OTLP_ENDPOINT=) is no endpoint either.
        let empty = TracingConfig { otlp_endpoint: Some(String::new()), ..config };
        let (_subscriber, telemetry) = subscriber(&empty, &log_options(), std::io::sink).unwrap();
        assert!(!telemetry.exports_traces());
    }

    #[test]
    fn an_endpoint_creates_an_exporter_to_its_traces_path() {
        let mut config = Config::defaults(Profile::Development).tracing;
        config.otlp_endpoint = Some("http://127.0.0.1:4318/".into());
        assert_eq!(config.traces_url().as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
        config.otlp_endpoint = Some("http://collector:4318/v1/traces".into());
        assert_eq!(config.traces_url().as_deref(), Some("http://collector:4318/v1/traces"));
        let (_subscriber, telemetry) = subscriber(&config, &log_options(), std::io::sink).unwrap();
        assert!(telemetry.exports_traces());
        telemetry.shutdown();
    }
}
