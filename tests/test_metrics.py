"""gateway.metrics: one registry per app, in a format Prometheus' own parser reads."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Metrics


def test_registries_are_independent_and_parse() -> None:
    a, b = Metrics(), Metrics()
    a.requests.labels("v", "e", "drop").inc(3)
    families = {f.name: f for f in text_string_to_metric_families(a.render().decode())}
    [sample] = [s for s in families["gateway_requests"].samples if s.name.endswith("_total")]
    assert sample.value == 3 and sample.labels == {"vendor": "v", "endpoint": "e", "action": "drop"}
    assert (
        b.registry.get_sample_value(
            "gateway_requests_total", {"vendor": "v", "endpoint": "e", "action": "drop"}
        )
        is None
    )
