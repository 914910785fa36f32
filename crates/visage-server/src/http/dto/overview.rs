//! The overview: the service's health on one page, for the console.

use serde::Serialize;
use utoipa::ToSchema;

use crate::service::monitoring::Overview;

#[derive(Serialize, ToSchema)]
pub struct CollectionCountsDto {
    pub collection: String,
    pub subjects: u64,
    pub templates: u64,
    /// The calibration its decisions use: its own, from its labelled decisions
    /// (`feedback:<collection>:<date>`, for the FAR targets it resolves), else the deployment's.
    pub calibration: String,
}

/// API requests since this replica started (Prometheus keeps the history).
#[derive(Serialize, ToSchema)]
pub struct TrafficDto {
    pub requests: u64,
    pub server_errors: u64,
    /// Median and 95th percentile latency, interpolated in the histogram's buckets.
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
}

/// Liveness checks since this replica started.
#[derive(Serialize, ToSchema)]
pub struct LivenessCountsDto {
    pub pass: u64,
    pub fail: u64,
    pub inconclusive: u64,
    /// pass / (pass + fail); absent before the first decided check.
    pub pass_rate: Option<f64>,
}

/// Error rates from labelled decisions of the feedback window, as the gauges have them.
#[derive(Serialize, ToSchema)]
pub struct ErrorRatesDto {
    /// Absent until `min_labelled` impostor attempts are labelled.
    pub far_percent: Option<f64>,
    /// Absent until `min_labelled` genuine attempts are labelled.
    pub frr_percent: Option<f64>,
    pub eer_percent: Option<f64>,
    pub genuine_labelled: usize,
    pub impostor_labelled: usize,
    pub min_labelled: usize,
    pub window_hours: u64,
}

#[derive(Serialize, ToSchema)]
pub struct OverviewDto {
    pub ready: bool,
    #[schema(value_type = Object)]
    pub checks: serde_json::Map<String, serde_json::Value>,
    pub collections: Vec<CollectionCountsDto>,
    pub traffic: TrafficDto,
    pub liveness: LivenessCountsDto,
    pub error_rates: ErrorRatesDto,
    /// The Grafana dashboard, when `monitoring.grafana_url` is set.
    pub grafana_url: Option<String>,
}

impl From<Overview> for OverviewDto {
    fn from(o: Overview) -> Self {
        let count =
            |result: &str| o.traffic.liveness.iter().find(|(name, _)| name == result).map_or(0, |(_, n)| *n);
        let (pass, fail) = (count("pass"), count("fail"));
        let rates = o.error_rates;
        Self {
            ready: o.ready,
            checks: o.checks,
            collections: o
                .collections
                .into_iter()
                .map(|(c, calibration)| CollectionCountsDto {
                    collection: c.collection,
                    subjects: c.subjects,
                    templates: c.templates,
                    calibration,
                })
                .collect(),
            traffic: TrafficDto {
                requests: o.traffic.requests,
                server_errors: o.traffic.server_errors,
                p50_seconds: o.traffic.p50_seconds,
                p95_seconds: o.traffic.p95_seconds,
            },
            liveness: LivenessCountsDto {
                pass,
                fail,
                inconclusive: count("inconclusive"),
                pass_rate: (pass + fail > 0).then(|| pass as f64 / (pass + fail) as f64),
            },
            error_rates: ErrorRatesDto {
                far_percent: rates.far_percent,
                frr_percent: rates.frr_percent,
                eer_percent: rates.eer_percent,
                genuine_labelled: rates.genuine,
                impostor_labelled: rates.impostor,
                min_labelled: o.min_labelled,
                window_hours: o.feedback_window_hours,
            },
            grafana_url: o.grafana_url,
        }
    }
}
