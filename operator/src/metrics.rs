//! Prometheus metrics of the reconcilers (`/metrics` of the operator): reconciles, errors
//! and durations per kind.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub error: String,
}

fn duration_histogram() -> Histogram {
    // 5 ms … about 40 s: a reconcile polls every server's admin API.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

pub struct Metrics {
    pub reconciles: Family<KindLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Family<KindLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
        }
    }
}

impl Metrics {
    /// Registers the metrics under the prefix `kube_transport_reconcile`.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("kube_transport_reconcile");
        sub.register("runs", "Reconciles started, per kind", self.reconciles.clone());
        sub.register("errors", "Reconciles that failed, per kind and error", self.errors.clone());
        sub.register("duration_seconds", "Time a reconcile took, per kind", self.duration.clone());
    }

    /// Counts a reconcile; the returned guard records its duration when dropped.
    pub fn start(&self, kind: &str) -> ReconcileTimer<'_> {
        self.reconciles.get_or_create(&KindLabels { kind: kind.to_string() }).inc();
        ReconcileTimer { metrics: self, kind: kind.to_string(), started: Instant::now() }
    }

    pub fn error(&self, kind: &str, error: &crate::Error) {
        self.errors.get_or_create(&ErrorLabels { kind: kind.to_string(), error: error.metric_label().into() }).inc();
    }
}

pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    kind: String,
    started: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        let labels = KindLabels { kind: std::mem::take(&mut self.kind) };
        self.metrics.duration.get_or_create(&labels).observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_exposes_runs_errors_and_durations() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        drop(metrics.start("TransportService"));
        metrics.error("TransportService", &crate::Error::NoNamespace { kind: "TransportService", name: "x".into() });
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("kube_transport_reconcile_runs_total{kind=\"TransportService\"} 1"), "{text}");
        assert!(
            text.contains("kube_transport_reconcile_errors_total{kind=\"TransportService\",error=\"no_namespace\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kube_transport_reconcile_duration_seconds_count{kind=\"TransportService\"} 1"),
            "{text}"
        );
    }
}
