//! Metrics a plugin reports. The gateway asks each policy instance for its samples when
//! `/metrics` is scraped ([`Plugin::metrics`](crate::Plugin::metrics)) and renders them in
//! the Prometheus text format with the gateway's own; a plugin keeps plain atomics and
//! never formats text.

/// Whether a sample only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
}

/// One sample: a metric name, its help line, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// `ficus_...`, snake case.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    /// Label names and values; values are escaped by the gateway.
    pub labels: Vec<(&'static str, String)>,
    pub value: u64,
}

impl MetricSample {
    pub fn counter(
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        value: u64,
    ) -> MetricSample {
        MetricSample {
            name,
            help,
            kind: MetricType::Counter,
            labels,
            value,
        }
    }

    pub fn gauge(
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        value: u64,
    ) -> MetricSample {
        MetricSample {
            kind: MetricType::Gauge,
            ..MetricSample::counter(name, help, labels, value)
        }
    }
}
