"""Prometheus metrics of one server (its own CollectorRegistry, so several apps in one process,
as in the tests, do not collide)."""

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Latency buckets in seconds around the 10 ms target, with headroom for cold loads.
_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "metasig_requests", "HTTP requests by model and status", ["model", "status"], registry=r
        )
        self.latency = Histogram(
            "metasig_request_latency_seconds", "Request latency by model", ["model"], buckets=_BUCKETS, registry=r
        )
        self.loads = Counter("metasig_model_loads", "Models loaded into memory", registry=r)
        self.load_failures = Counter(
            "metasig_model_load_failures", "Model loads that failed (checksum, format)", registry=r
        )
        self.evictions = Counter("metasig_model_evictions", "Models evicted to stay within the budget", registry=r)
        self.cache_models = Gauge("metasig_cache_models", "Models currently loaded", registry=r)
        self.cache_bytes = Gauge("metasig_cache_bytes", "Estimated bytes of the loaded models", registry=r)
        self.registered = Gauge("metasig_registered_models", "Model versions listed in index.json", registry=r)

    def observe(self, model, status, seconds):
        self.requests.labels(model, str(status)).inc()
        self.latency.labels(model).observe(seconds)

    def render(self):
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
