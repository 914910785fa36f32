//! Prometheus metrics under the names the dashboards and alerts use. Labels take fixed values
//! (or route templates and collection names), never ids, names or other unbounded values.
//! Error-rate gauges come from ground truth only and are absent while too little is known.

use std::sync::Mutex;
use std::time::Instant;

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use visage_stats::ScoreSet;
use visage_store::{DestructionGround, LabelledVerification, RetainedRecord};

/// The grounds on which the retention job erases subjects.
pub const RETENTION_GROUNDS: [DestructionGround; 3] = [
    DestructionGround::ConsentExpired,
    DestructionGround::ConsentWithdrawn,
    DestructionGround::InactiveSubject,
];

/// 5 ms to 5 s, as the latency alert (p95 < 1 s, < 2 s) needs resolution around a second.
const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 2.5, 5.0];

/// Severity of a false decision by how far the score was on the wrong side of the threshold.
/// A false accept far above the threshold (or a false reject far below it) is not a borderline
/// case: it points to a look-alike, an attack or a broken template.
pub fn severity(similarity: Option<f32>, threshold: f32) -> &'static str {
    let Some(similarity) = similarity else { return "high" };
    match (similarity - threshold).abs() {
        m if m >= 0.10 => "high",
        m if m >= 0.03 => "medium",
        _ => "low",
    }
}

pub struct Metrics {
    registry: Registry,
    pub verification_requests: IntCounterVec,
    pub verification_duration: HistogramVec,
    pub confidence: HistogramVec,
    pub liveness_checks: IntCounterVec,
    pub spoofing_attacks: IntCounterVec,
    pub false_accepts: IntCounterVec,
    pub false_rejects: IntCounterVec,
    false_accept_rate: GaugeVec,
    false_reject_rate: GaugeVec,
    equal_error_rate: GaugeVec,
    labelled: IntGaugeVec,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_in_flight: IntGauge,
    pub inference_queue_depth: IntGauge,
    pub inference_workers: IntGauge,
    pub inference_workers_busy: IntGauge,
    pub db_connections_in_use: IntGauge,
    pub db_connections_max: IntGauge,
    pub enrolled_subjects: IntGaugeVec,
    pub enrolled_templates: IntGaugeVec,
    pub index_templates: IntGaugeVec,
    pub gallery_changes_applied: IntCounter,
    pub gallery_sync_errors: IntCounter,
    pub index_reloads: IntCounter,
    pub gallery_changes_pruned: IntCounter,
    pub index_version: IntGauge,
    pub index_memory: IntGauge,
    index_sync_age: Gauge,
    /// When the index last caught up with the database.
    gallery_synced: Mutex<Instant>,
    /// No labels: absent while Redis is not configured, 1 or 0 once it is.
    redis_up: IntGaugeVec,
    pub redis_errors: IntCounterVec,
    /// Subjects the retention job erased, by ground.
    pub retention_erasures: IntCounterVec,
    /// Records the retention job deleted past their retention period, by kind.
    pub retention_pruned: IntCounterVec,
    pub redis_fallbacks: IntCounterVec,
    pub cache_requests: IntCounterVec,
    pub image_deletions_failed: IntCounter,
    pub probe_images_expired: IntCounter,
    pub spooled_events: IntGauge,
    pub spool_replayed: IntCounter,
    build_info: IntGaugeVec,
    calibration_info: IntGaugeVec,
    /// The `calibration_info` label sets of the collections' own calibrations, to drop when
    /// they are replaced.
    collection_calibration_series: Mutex<Vec<[String; 3]>>,
}

/// Redis operations, as `redis_errors_total{operation}` counts their failures.
pub const REDIS_OPERATIONS: [&str; 4] = ["connect", "ping", "rate_limit", "idempotency"];
/// What falls back to this replica's memory while Redis is unavailable.
pub const REDIS_FEATURES: [&str; 2] = ["rate_limit", "idempotency"];

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    registry.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn int_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("valid counter");
    registry.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let metric = GaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    registry.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn int_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    registry.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid gauge");
    registry.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let metric =
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid histogram");
    registry.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

impl Metrics {
    /// `backend` and `precision`: the inference runtime that runs (after any fallback).
    pub fn new(version: &str, recognizer: &str, liveness: &str, backend: &str, precision: &str) -> Self {
        let r = Registry::new();
        let metrics = Self {
            verification_requests: counter(
                &r,
                "verification_requests_total",
                "Verifications (1:1) and identifications (1:N) by outcome",
                &["mode", "result"],
            ),
            verification_duration: histogram(
                &r,
                "verification_duration_seconds",
                "Time of verifications and identifications, in total and per stage",
                &["mode", "stage"],
                LATENCY_BUCKETS.to_vec(),
            ),
            confidence: histogram(
                &r,
                "verification_confidence_score",
                "Cosine similarity of decided verifications (best candidate for identifications)",
                &["mode"],
                (0..=20).map(|i| f64::from(i) * 0.05).collect(),
            ),
            liveness_checks: counter(&r, "liveness_checks_total", "Liveness checks by result", &["result"]),
            spoofing_attacks: counter(
                &r,
                "spoofing_attacks_detected",
                "Faces judged a presentation attack, by attack type",
                &["type"],
            ),
            false_accepts: counter(
                &r,
                "false_accept_total",
                "Accepted impostors, by ground-truth feedback, by severity",
                &["severity"],
            ),
            false_rejects: counter(
                &r,
                "false_reject_total",
                "Rejected genuine users, by ground-truth feedback, by severity",
                &["severity"],
            ),
            false_accept_rate: gauge_vec(
                &r,
                "false_accept_rate",
                "False accept rate in percent (feedback window, or the calibration run)",
                &["source"],
            ),
            false_reject_rate: gauge_vec(
                &r,
                "false_reject_rate",
                "False reject rate in percent (feedback window, or the calibration run)",
                &["source"],
            ),
            equal_error_rate: gauge_vec(
                &r,
                "equal_error_rate",
                "Equal error rate in percent (feedback window, or the calibration run)",
                &["source"],
            ),
            labelled: int_gauge_vec(
                &r,
                "biometric_labelled_verifications",
                "Verifications with ground truth in the feedback window",
                &["truth"],
            ),
            http_requests: counter(
                &r,
                "http_requests_total",
                "HTTP requests by route template and status class",
                &["method", "route", "status"],
            ),
            http_duration: histogram(
                &r,
                "http_request_duration_seconds",
                "HTTP request latency by route template",
                &["method", "route"],
                LATENCY_BUCKETS.to_vec(),
            ),
            http_in_flight: int_gauge(&r, "http_requests_in_flight", "HTTP requests being served"),
            inference_queue_depth: int_gauge(
                &r,
                "inference_queue_depth",
                "Inference jobs waiting for a worker",
            ),
            inference_workers: int_gauge(&r, "inference_workers", "Inference threads"),
            inference_workers_busy: int_gauge(
                &r,
                "inference_workers_busy",
                "Inference threads running a job",
            ),
            db_connections_in_use: int_gauge(&r, "db_pool_connections_in_use", "Database connections in use"),
            db_connections_max: int_gauge(
                &r,
                "db_pool_connections_max",
                "Database connection pool size limit",
            ),
            enrolled_subjects: int_gauge_vec(
                &r,
                "enrolled_subjects",
                "Subjects per collection",
                &["collection"],
            ),
            enrolled_templates: int_gauge_vec(
                &r,
                "enrolled_templates",
                "Templates per collection",
                &["collection"],
            ),
            index_templates: int_gauge_vec(
                &r,
                "index_templates",
                "Templates in this replica's in-memory 1:N index, per collection",
                &["collection"],
            ),
            gallery_changes_applied: int_counter(
                &r,
                "index_changes_applied_total",
                "Gallery changes read from the database's change log and applied to the 1:N index",
            ),
            index_reloads: int_counter(
                &r,
                "index_reloads_total",
                "Full reloads of the 1:N index because the change log was pruned past its last change",
            ),
            gallery_changes_pruned: int_counter(
                &r,
                "index_changes_pruned_total",
                "Gallery change log entries this replica deleted as older than index.change_log_retention_hours",
            ),
            gallery_sync_errors: int_counter(
                &r,
                "index_sync_errors_total",
                "Failed reads of the database's gallery change log (the index may be stale)",
            ),
            index_version: int_gauge(
                &r,
                "index_change_version",
                "Newest gallery change applied to this replica's index (equal on replicas in step)",
            ),
            index_memory: int_gauge(&r, "index_memory_bytes", "Memory held by this replica's 1:N index"),
            index_sync_age: {
                let metric = Gauge::new(
                    "index_sync_age_seconds",
                    "Seconds since this replica's index last caught up with the database",
                )
                .expect("valid gauge");
                r.register(Box::new(metric.clone())).expect("unique metric");
                metric
            },
            gallery_synced: Mutex::new(Instant::now()),
            redis_up: int_gauge_vec(
                &r,
                "redis_up",
                "1 while Redis answers, 0 while it does not (absent when no Redis is configured)",
                &[],
            ),
            retention_erasures: counter(
                &r,
                "visage_retention_erasures_total",
                "Subjects the retention job erased, by ground (consent_expired, consent_withdrawn, inactive_subject)",
                &["ground"],
            ),
            retention_pruned: counter(
                &r,
                "visage_retention_pruned_total",
                "Records the retention job deleted past their retention period, by kind (decisions, audit_events, destruction_records)",
                &["record"],
            ),
            redis_errors: counter(
                &r,
                "redis_errors_total",
                "Failed or timed-out Redis commands and connection attempts, by operation",
                &["operation"],
            ),
            redis_fallbacks: counter(
                &r,
                "redis_fallback_total",
                "Requests served by this replica's in-process state because Redis was unavailable",
                &["feature"],
            ),
            cache_requests: counter(
                &r,
                "cache_requests_total",
                "Cache lookups by result; idempotency: hit = a stored response replayed, miss = a new key",
                &["cache", "result"],
            ),
            image_deletions_failed: int_counter(
                &r,
                "image_deletions_failed_total",
                "Stored images that could not be deleted after retries (each also an image.delete audit event)",
            ),
            spooled_events: int_gauge(
                &r,
                "spooled_events",
                "Decisions and audit events made while the database was unreachable, waiting on this replica's disk",
            ),
            spool_replayed: int_counter(
                &r,
                "spool_replayed_total",
                "Spooled decisions and audit events written to the database once it answered again",
            ),
            probe_images_expired: int_counter(
                &r,
                "probe_images_expired_total",
                "Probe images kept for review deleted when their retention ended",
            ),
            build_info: int_gauge_vec(
                &r,
                "visage_build_info",
                "Version, models and inference runtime of this process (always 1)",
                &["version", "recognizer", "detector", "liveness", "backend", "precision"],
            ),
            calibration_info: int_gauge_vec(
                &r,
                "visage_calibration_info",
                "The calibration the thresholds come from, and each calibrated FAR target's threshold (always 1)",
                &["calibration", "far_target", "threshold"],
            ),
            collection_calibration_series: Mutex::new(Vec::new()),
            registry: r,
        };
        metrics
            .build_info
            .with_label_values(&[version, recognizer, "yunet_2023mar", liveness, backend, precision])
            .set(1);
        // Every fixed label value exists from the start, so rates and alerts see zeros, not gaps.
        for mode in ["verify", "identify"] {
            for result in ["match", "no_match", "spoof", "error"] {
                metrics.verification_requests.with_label_values(&[mode, result]);
            }
        }
        for result in ["pass", "fail", "inconclusive"] {
            metrics.liveness_checks.with_label_values(&[result]);
        }
        for attack in ["print", "unknown"] {
            metrics.spoofing_attacks.with_label_values(&[attack]);
        }
        for severity in ["low", "medium", "high"] {
            metrics.false_accepts.with_label_values(&[severity]);
            metrics.false_rejects.with_label_values(&[severity]);
        }
        for ground in RETENTION_GROUNDS {
            metrics.retention_erasures.with_label_values(&[ground.as_str()]);
        }
        for record in RetainedRecord::ALL {
            metrics.retention_pruned.with_label_values(&[record.as_str()]);
        }
        for operation in REDIS_OPERATIONS {
            metrics.redis_errors.with_label_values(&[operation]);
        }
        for feature in REDIS_FEATURES {
            metrics.redis_fallbacks.with_label_values(&[feature]);
        }
        for result in ["hit", "miss"] {
            metrics.cache_requests.with_label_values(&["idempotency", result]);
        }
        metrics
    }

    pub fn mark_gallery_synced(&self) {
        *self.gallery_synced.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Updates the index gauges (at scrape time).
    pub fn observe_gallery(&self, version: i64, memory_bytes: usize) {
        let synced = *self.gallery_synced.lock().unwrap_or_else(|p| p.into_inner());
        self.index_sync_age.set(synced.elapsed().as_secs_f64());
        self.index_version.set(version);
        self.index_memory.set(memory_bytes as i64);
    }

    /// The `redis_up` gauge, for the Redis connection to keep up to date: it is exported (at 0)
    /// from the first call on.
    pub fn redis_up(&self) -> IntGauge {
        self.redis_up.with_label_values::<&str>(&[])
    }

    /// Sets (or removes, when too little is known) the error-rate gauges of one source.
    pub fn set_error_rates(&self, source: &str, rates: &ObservedRates) {
        let set = |gauge: &GaugeVec, value: Option<f64>| match value {
            Some(v) => gauge.with_label_values(&[source]).set(v),
            None => {
                let _ = gauge.remove_label_values(&[source]);
            }
        };
        set(&self.false_accept_rate, rates.far_percent);
        set(&self.false_reject_rate, rates.frr_percent);
        set(&self.equal_error_rate, rates.eer_percent);
    }

    /// Names the calibration in use, one series per calibrated FAR target.
    pub fn set_calibration(&self, calibration: &str, points: &[(f64, f32)]) {
        for (far, threshold) in points {
            let (far, threshold) = (far.to_string(), format!("{threshold:.4}"));
            self.calibration_info.with_label_values(&[calibration, &far, &threshold]).set(1);
        }
    }

    /// Names the collections' own calibrations (`feedback:<collection>:<date>`) beside the
    /// global one, replacing those named before.
    pub fn set_collection_calibrations(&self, calibrations: &[(String, Vec<(f64, f32)>)]) {
        let mut held =
            self.collection_calibration_series.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for labels in held.drain(..) {
            let _ = self.calibration_info.remove_label_values(&[&labels[0], &labels[1], &labels[2]]);
        }
        for (name, points) in calibrations {
            for (far, threshold) in points {
                let labels = [name.clone(), far.to_string(), format!("{threshold:.4}")];
                self.calibration_info.with_label_values(&[&labels[0], &labels[1], &labels[2]]).set(1);
                held.push(labels);
            }
        }
    }

    pub fn set_labelled(&self, genuine: usize, impostor: usize) {
        self.labelled.with_label_values(&["genuine"]).set(genuine as i64);
        self.labelled.with_label_values(&["impostor"]).set(impostor as i64);
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// API traffic since start, for the console's overview (Prometheus has the history).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrafficSummary {
    /// Requests to `/v1/` routes...
    pub requests: u64,
    /// ...of which answered 5xx.
    pub server_errors: u64,
    /// Latency quantiles of those requests, interpolated in the histogram's buckets as
    /// Prometheus' `histogram_quantile` does; `None` before the first request.
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    /// Liveness checks by result (pass, fail, inconclusive).
    pub liveness: Vec<(String, u64)>,
}

impl Metrics {
    pub fn traffic(&self) -> TrafficSummary {
        use prometheus::core::Collector;
        let label = |m: &prometheus::proto::Metric, name: &str| -> String {
            m.get_label().iter().find(|l| l.name() == name).map(|l| l.value().to_owned()).unwrap_or_default()
        };
        let api = |m: &prometheus::proto::Metric| label(m, "route").starts_with("/v1/");
        let mut summary = TrafficSummary::default();
        for m in self.http_requests.collect().iter().flat_map(|f| f.get_metric()).filter(|m| api(m)) {
            let count = m.get_counter().get_value() as u64;
            summary.requests += count;
            if label(m, "status") == "5xx" {
                summary.server_errors += count;
            }
        }
        // Every series shares the buckets, so cumulative counts add up bound by bound.
        let mut buckets = vec![0u64; LATENCY_BUCKETS.len()];
        let mut total = 0u64;
        for m in self.http_duration.collect().iter().flat_map(|f| f.get_metric()).filter(|m| api(m)) {
            let h = m.get_histogram();
            total += h.get_sample_count();
            for (sum, b) in buckets.iter_mut().zip(h.get_bucket()) {
                *sum += b.cumulative_count();
            }
        }
        summary.p50_seconds = bucket_quantile(0.5, &LATENCY_BUCKETS, &buckets, total);
        summary.p95_seconds = bucket_quantile(0.95, &LATENCY_BUCKETS, &buckets, total);
        for m in self.liveness_checks.collect().iter().flat_map(|f| f.get_metric()) {
            summary.liveness.push((label(m, "result"), m.get_counter().get_value() as u64));
        }
        summary.liveness.sort();
        summary
    }
}

/// The `q` quantile from cumulative bucket counts (linear within a bucket; the last finite
/// bound when it falls in the +Inf bucket).
fn bucket_quantile(q: f64, bounds: &[f64], cumulative: &[u64], total: u64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = (0.0, 0u64);
    for (&bound, &count) in bounds.iter().zip(cumulative) {
        if count as f64 >= rank {
            let (lower, seen) = below;
            let within = (count - seen) as f64;
            let fraction = if within > 0.0 { (rank - seen as f64) / within } else { 1.0 };
            return Some(lower + (bound - lower) * fraction);
        }
        below = (bound, count);
    }
    bounds.last().copied()
}

/// Error rates from labelled decisions; `None` where there are too few labels.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ObservedRates {
    pub far_percent: Option<f64>,
    pub frr_percent: Option<f64>,
    pub eer_percent: Option<f64>,
    pub genuine: usize,
    pub impostor: usize,
}

/// FAR and FRR count the service's own decisions (each at the threshold it used); EER comes
/// from the similarity scores. Each needs `min_labelled` attempts of the classes it divides by.
pub fn observed_rates(labelled: &[LabelledVerification], min_labelled: usize) -> ObservedRates {
    let genuine: Vec<&LabelledVerification> = labelled.iter().filter(|v| v.genuine).collect();
    let impostor: Vec<&LabelledVerification> = labelled.iter().filter(|v| !v.genuine).collect();
    let percent = |errors: usize, trials: usize| 100.0 * errors as f64 / trials as f64;
    let far_percent = (impostor.len() >= min_labelled.max(1))
        .then(|| percent(impostor.iter().filter(|v| v.accepted).count(), impostor.len()));
    let frr_percent = (genuine.len() >= min_labelled.max(1))
        .then(|| percent(genuine.iter().filter(|v| !v.accepted).count(), genuine.len()));
    let scores = |set: &[&LabelledVerification]| -> Vec<f64> {
        set.iter().filter_map(|v| v.similarity.map(f64::from)).collect()
    };
    let (genuine_scores, impostor_scores) = (scores(&genuine), scores(&impostor));
    let eer_percent = (genuine_scores.len() >= min_labelled.max(1)
        && impostor_scores.len() >= min_labelled.max(1))
    .then(|| ScoreSet::new(genuine_scores, impostor_scores).ok())
    .flatten()
    .map(|set| set.eer().rate * 100.0);
    ObservedRates { far_percent, frr_percent, eer_percent, genuine: genuine.len(), impostor: impostor.len() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(genuine: bool, similarity: f32, accepted: bool) -> LabelledVerification {
        LabelledVerification { genuine, similarity: Some(similarity), accepted }
    }

    #[test]
    fn rates_count_decisions_and_need_enough_labels() {
        let mut set =
            vec![labelled(true, 0.8, true), labelled(true, 0.3, false), labelled(false, 0.1, false)];
        let rates = observed_rates(&set, 2);
        assert_eq!(rates.frr_percent, Some(50.0));
        assert_eq!(rates.far_percent, None, "one impostor is not enough");
        assert_eq!(rates.eer_percent, None);
        set.push(labelled(false, 0.5, true));
        let rates = observed_rates(&set, 2);
        assert_eq!(rates.far_percent, Some(50.0));
        assert!(rates.eer_percent.is_some());
    }

    #[test]
    fn quantiles_interpolate_within_buckets_like_prometheus() {
        let bounds = [0.1, 0.2, 0.4];
        // 10 requests: 4 under 0.1 s, 4 in (0.1, 0.2], 2 in (0.2, 0.4].
        assert_eq!(bucket_quantile(0.5, &bounds, &[4, 8, 10], 10), Some(0.125));
        assert!((bucket_quantile(0.95, &bounds, &[4, 8, 10], 10).unwrap() - 0.35).abs() < 1e-9);
        assert_eq!(bucket_quantile(0.2, &bounds, &[4, 8, 10], 10), Some(0.05));
        assert_eq!(bucket_quantile(0.99, &bounds, &[4, 8, 9], 10), Some(0.4), "+Inf bucket");
        assert_eq!(bucket_quantile(0.5, &bounds, &[0, 0, 0], 0), None);
    }

    #[test]
    fn traffic_counts_api_requests_only() {
        let m = Metrics::new("test", "sface", "ensemble", "onnxruntime", "f32");
        m.http_requests.with_label_values(&["POST", "/v1/verify", "2xx"]).inc_by(3);
        m.http_requests.with_label_values(&["POST", "/v1/verify", "5xx"]).inc();
        m.http_requests.with_label_values(&["GET", "/metrics", "2xx"]).inc_by(100);
        m.http_duration.with_label_values(&["POST", "/v1/verify"]).observe(0.02);
        m.http_duration.with_label_values(&["GET", "/metrics"]).observe(4.0);
        m.liveness_checks.with_label_values(&["pass"]).inc();
        let t = m.traffic();
        assert_eq!((t.requests, t.server_errors), (4, 1));
        assert!(t.p95_seconds.unwrap() <= 0.025, "the /metrics scrape is not API latency");
        assert!(t.liveness.contains(&("pass".to_owned(), 1)));
        assert!(t.liveness.contains(&("fail".to_owned(), 0)));
    }

    #[test]
    fn severity_grows_with_the_distance_from_the_threshold() {
        assert_eq!(severity(Some(0.36), 0.35), "low");
        assert_eq!(severity(Some(0.40), 0.35), "medium");
        assert_eq!(severity(Some(0.60), 0.35), "high");
        assert_eq!(severity(Some(0.10), 0.35), "high");
    }

    #[test]
    fn redis_up_is_absent_until_set() {
        let metrics = Metrics::new("0", "sface", "ensemble", "onnxruntime", "f32");
        assert!(!metrics.render().contains("redis_up"));
        let up = metrics.redis_up();
        assert!(metrics.render().contains("\nredis_up 0\n"), "{}", metrics.render());
        up.set(1);
        assert!(metrics.render().contains("\nredis_up 1\n"));
    }

    #[test]
    fn absent_gauges_are_not_rendered() {
        let metrics = Metrics::new("0", "sface", "ensemble", "onnxruntime", "f32");
        metrics.set_error_rates("feedback", &ObservedRates { far_percent: Some(1.0), ..Default::default() });
        assert!(metrics.render().contains("false_accept_rate{source=\"feedback\"} 1"));
        metrics.set_error_rates("feedback", &ObservedRates::default());
        assert!(!metrics.render().contains("false_accept_rate{"));
    }
}
