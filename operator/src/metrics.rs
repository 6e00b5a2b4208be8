//! Metrics for `/metrics`: reconciles, their durations, failures by reason, and every write the
//! operator sends to the apiserver, counted by a tower layer on its client (so "a reconcile with
//! nothing to change writes nothing" is measurable).

use std::sync::Arc;
use std::task::{Context, Poll};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Reconciles of the script kinds (PxlScript, CronScript, DataExport, Plugin), by kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindReasonLabels {
    pub kind: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub method: String,
    pub resource: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<ReasonLabels, Counter>,
    pub duration: Histogram,
    pub api_writes: Family<WriteLabels, Counter>,
    api_writes_total: Counter,
    pub leader: Gauge,
    pub script_reconciles: Family<KindLabels, Counter>,
    pub script_failures: Family<KindReasonLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("pixie_operator");
        let reconciles = Counter::default();
        let failures = Family::<ReasonLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let api_writes = Family::<WriteLabels, Counter>::default();
        let api_writes_total = Counter::default();
        let leader = Gauge::default();
        let script_reconciles = Family::<KindLabels, Counter>::default();
        let script_failures = Family::<KindReasonLabels, Counter>::default();
        registry.register("reconciles", "Vizier reconciles started", reconciles.clone());
        registry.register("reconcile_failures", "Vizier reconciles that failed, by reason", failures.clone());
        registry.register("reconcile_duration_seconds", "How long a Vizier reconcile took", duration.clone());
        registry.register("api_writes", "Requests that change state sent to the apiserver", api_writes.clone());
        registry.register("leader", "1 while this instance holds the leader lease", leader.clone());
        registry.register(
            "script_reconciles",
            "PxlScript, CronScript, DataExport and Plugin reconciles started, by kind",
            script_reconciles.clone(),
        );
        registry.register(
            "script_reconcile_failures",
            "PxlScript, CronScript, DataExport and Plugin reconciles that failed, by kind and reason",
            script_failures.clone(),
        );
        Arc::new(Metrics {
            registry,
            reconciles,
            failures,
            duration,
            api_writes,
            api_writes_total,
            leader,
            script_reconciles,
            script_failures,
        })
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    pub fn api_writes_total(&self) -> u64 {
        self.api_writes_total.get()
    }

    pub fn reconciles_total(&self) -> u64 {
        self.reconciles.get()
    }

    fn record_write(&self, method: &str, path: &str) {
        self.api_writes_total.inc();
        self.api_writes.get_or_create(&WriteLabels { method: method.to_owned(), resource: resource_of(path) }).inc();
    }
}

/// The resource a request path names: `/apis/apps/v1/namespaces/pl/deployments/kelvin` →
/// `deployments`, `.../viziers/pixie/status` → `viziers/status`.
pub fn resource_of(path: &str) -> String {
    let segments: Vec<&str> = path.split('?').next().unwrap_or("").split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    };
    let Some(mut rest) = rest else { return "other".to_owned() };
    if rest.first() == Some(&"namespaces") && rest.len() > 2 {
        rest = &rest[2..];
    }
    match rest {
        [resource, _name, sub, ..] => format!("{resource}/{sub}"),
        [resource, ..] => (*resource).to_owned(),
        [] => "other".to_owned(),
    }
}

/// Counts every request that is not a read (GET, HEAD, OPTIONS) into [`Metrics::api_writes`].
#[derive(Clone)]
pub struct ApiWriteLayer {
    metrics: Arc<Metrics>,
}

impl ApiWriteLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ApiWriteLayer { metrics }
    }
}

impl<S> tower::Layer<S> for ApiWriteLayer {
    type Service = ApiWriteCount<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiWriteCount { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct ApiWriteCount<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> tower::Service<http::Request<B>> for ApiWriteCount<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.method();
        if !matches!(*method, http::Method::GET | http::Method::HEAD | http::Method::OPTIONS) {
            self.metrics.record_write(method.as_str(), request.uri().path());
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_read_from_request_paths() {
        assert_eq!(resource_of("/apis/apps/v1/namespaces/pl/deployments/kelvin"), "deployments");
        assert_eq!(resource_of("/apis/px.dev/v1alpha1/namespaces/pl/viziers/pixie/status"), "viziers/status");
        assert_eq!(resource_of("/api/v1/namespaces/pl/secrets"), "secrets");
        assert_eq!(resource_of("/api/v1/namespaces/pl"), "namespaces");
        assert_eq!(resource_of("/apis/rbac.authorization.k8s.io/v1/clusterroles?labelSelector=x"), "clusterroles");
        assert_eq!(resource_of("/version"), "other");
    }

    #[test]
    fn the_layer_counts_writes_and_not_reads() {
        use tower::{Layer, Service, ServiceExt};
        let metrics = Metrics::new();
        let inner = tower::service_fn(|_: http::Request<()>| async { Ok::<_, std::convert::Infallible>(()) });
        let mut service = ApiWriteLayer::new(metrics.clone()).layer(inner);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            for method in [http::Method::GET, http::Method::PATCH, http::Method::POST, http::Method::HEAD] {
                let request = http::Request::builder().method(method).uri("/api/v1/namespaces/pl/pods").body(()).unwrap();
                service.ready().await.unwrap().call(request).await.unwrap();
            }
        });
        assert_eq!(metrics.api_writes_total(), 2);
        let text = metrics.encode();
        assert!(text.contains(r#"pixie_operator_api_writes_total{method="PATCH",resource="pods"} 1"#), "{text}");
    }
}
