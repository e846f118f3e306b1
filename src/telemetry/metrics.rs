//! Prometheus metrics, recorded into a recorder owned by the application (no global), with
//! go-grpc-prometheus names so existing dashboards work.

use std::sync::Arc;

use metrics::{Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Latency buckets in seconds, from a cache hit to a slow password hash under load.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The application's metrics.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
}

impl Metrics {
    /// An empty registry.
    ///
    /// # Errors
    /// When the histogram buckets are rejected.
    pub fn new() -> anyhow::Result<Self> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)?
            .build_recorder();
        Ok(Self {
            recorder: Arc::new(recorder),
        })
    }

    /// The Prometheus text exposition of every metric.
    #[must_use]
    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }

    /// A unary call began (`grpc_server_started_total`).
    pub fn grpc_started(&self, service: &str, method: &str) {
        self.counter(
            "grpc_server_started_total",
            grpc_labels(service, method, None),
        )
        .increment(1);
    }

    /// A unary call ended (`grpc_server_handled_total`, `grpc_server_handling_seconds`).
    pub fn grpc_handled(&self, service: &str, method: &str, code: &str, seconds: f64) {
        self.counter(
            "grpc_server_handled_total",
            grpc_labels(service, method, Some(code)),
        )
        .increment(1);
        self.histogram(
            "grpc_server_handling_seconds",
            grpc_labels(service, method, None),
        )
        .record(seconds);
    }

    /// A bridge request ended (`http_requests_total`, `http_request_duration_seconds`).
    pub fn http_handled(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = vec![
            Label::new("method", method.to_owned()),
            Label::new("route", route.to_owned()),
        ];
        let mut with_status = labels.clone();
        with_status.push(Label::new("status", status.to_string()));
        self.counter("http_requests_total", with_status)
            .increment(1);
        self.histogram("http_request_duration_seconds", labels)
            .record(seconds);
    }

    /// An email delivery attempt ended: `sent`, `retrying` or `abandoned`.
    pub fn email_delivery(&self, outcome: &'static str) {
        self.counter(
            "identity_email_deliveries_total",
            vec![Label::new("outcome", outcome)],
        )
        .increment(1);
    }

    /// Time a password hash waited for a free slot on the hashing pool.
    pub fn password_hash_wait(&self, seconds: f64) {
        self.histogram("identity_password_hash_queue_wait_seconds", Vec::new())
            .record(seconds);
    }

    /// A password-hash job ended without hashing: `busy` (the queue was full) or `abandoned`
    /// (its caller had gone before a thread was free).
    pub fn password_hash_skipped(&self, reason: &'static str) {
        self.counter(
            "identity_password_hash_skipped_total",
            vec![Label::new("reason", reason)],
        )
        .increment(1);
    }

    /// Sets a gauge with no labels.
    pub fn gauge(&self, name: &'static str, value: f64) {
        self.recorder
            .register_gauge(&Key::from_name(name), &METADATA)
            .set(value);
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> metrics::Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> metrics::Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &METADATA)
    }
}

fn grpc_labels(service: &str, method: &str, code: Option<&str>) -> Vec<Label> {
    let mut labels = vec![
        Label::new("grpc_type", "unary"),
        Label::new("grpc_service", service.to_owned()),
        Label::new("grpc_method", method.to_owned()),
    ];
    if let Some(code) = code {
        labels.push(Label::new("grpc_code", code.to_owned()));
    }
    labels
}
