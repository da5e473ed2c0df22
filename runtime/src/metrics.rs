//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Labels of per-function request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Function name.
    pub function: String,
    /// HTTP status class or code sent to the client.
    pub status: u16,
}

/// Labels of per-function metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    /// Function name.
    pub function: String,
}

/// Labels of error counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Stable error code, as sent in the JSON error body.
    pub kind: &'static str,
}

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    /// Requests handled by functions, by status.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to the response head, per function.
    pub latency: Family<FunctionLabels, Histogram>,
    /// Time to create an instance from its pre-instantiated component.
    pub instantiation: Histogram,
    /// Errors by kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Instances alive now.
    pub live_instances: Gauge,
    /// Components compiled (cache misses).
    pub compilations: Counter,
    /// Deploys accepted.
    pub deploys: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wafer");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Function requests by status", requests.clone());
        let latency = Family::<FunctionLabels, Histogram>::new_with_constructor(|| {
            // 100 µs to ~105 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 21))
        });
        registry.register("request_duration_seconds", "Time to the response head", latency.clone());
        // 1 µs to ~16 ms: instantiation from the pool is microseconds.
        let instantiation = Histogram::new(exponential_buckets(0.000_001, 2.0, 15));
        registry.register(
            "instantiation_seconds",
            "Time to instantiate a component for one request",
            instantiation.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("errors", "Failed invocations by kind", errors.clone());
        let live_instances = Gauge::default();
        registry.register(
            "live_instances",
            "Component instances alive now",
            live_instances.clone(),
        );
        let compilations = Counter::default();
        registry.register(
            "compilations",
            "Components compiled to machine code",
            compilations.clone(),
        );
        let deploys = Counter::default();
        registry.register("deploys", "Deploys accepted", deploys.clone());
        Self {
            registry,
            requests,
            latency,
            instantiation,
            errors,
            live_instances,
            compilations,
            deploys,
        }
    }

    /// Records one finished request.
    pub fn observe_request(&self, function: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                function: function.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&FunctionLabels {
                function: function.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts an error of `kind`.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&ErrorLabels { kind }).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "cannot encode metrics");
        }
        text
    }
}
