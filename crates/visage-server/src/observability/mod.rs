//! What the service tells its operators: Prometheus metrics ([`metrics`]), logs and traces
//! ([`telemetry`]).

pub mod metrics;
pub mod telemetry;

pub use metrics::Metrics;
