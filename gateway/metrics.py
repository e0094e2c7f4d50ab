"""The gateway's counters, in one registry per app (tests run many apps per process).

Label values are bounded: vendors and endpoints come from the rule set, purposes
from config, actions, consent states and error kinds from closed sets. Unknown
hosts are never a label (any visitor could mint unbounded label values); they are
counted by `decision_log` instead.
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway import __version__
from gateway.memo import Memo

if TYPE_CHECKING:
    from gateway.core import Evaluation
    from gateway.model import ConsentState

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _Tally(Collector):
    """What every tag request counts, kept as plain integers and turned into metric
    families only when scraped.

    A labelled prometheus_client child costs a lock and a label lookup per increment;
    a tag request counts its action, each purpose's consent and its time: here that is
    three dict updates on the event loop's thread (the only writer), and the families
    are built at scrape time from these tallies.
    """

    def __init__(self) -> None:
        #: (vendor, endpoint, action) -> requests
        self.requests: dict[tuple[str, str, str], int] = {}
        #: ((purpose, state), ...) of one request -> requests with exactly those states
        self.states: dict[tuple[tuple[str, str], ...], int] = {}
        #: observations per latency bucket (the last: above every bound), and their sum
        self.buckets = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.seconds = 0.0

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "consent_gateway_requests",
            "Requests handled, by vendor, endpoint and action",
            labels=["vendor", "endpoint", "action"],
        )
        for labels, n in list(self.requests.items()):
            requests.add_metric(labels, n)
        purposes = CounterMetricFamily(
            "consent_gateway_consent_purpose",
            "Tag requests by purpose and the visitor's resolved consent for it "
            "(granted, denied, unknown): one per configured purpose per request",
            labels=["purpose", "state"],
        )
        per_purpose: dict[tuple[str, str], int] = {}
        for states, n in list(self.states.items()):
            for pair in states:
                per_purpose[pair] = per_purpose.get(pair, 0) + n
        for (purpose, state), n in per_purpose.items():
            purposes.add_metric([purpose, state], n)
        cumulative, running = [], 0
        for bound, n in zip((*_LATENCY_BUCKETS, float("inf")), self.buckets, strict=True):
            running += n
            cumulative.append((_bound(bound), running))
        seconds = HistogramMetricFamily(
            "consent_gateway_decision_seconds",
            "Time spent in the gateway's own work (facts to transformed request)",
            buckets=cumulative,
            sum_value=self.seconds,
        )
        return iter((requests, purposes, seconds))


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Metrics:
    """Every metric the gateway exports, registered in its own `registry`."""

    def __init__(self) -> None:
        # A `_created` series per counter and histogram child doubles what is scraped and
        # stored for a timestamp no alert reads (Prometheus knows resets from the values).
        # The switch is prometheus_client's, process-wide: every registry loses them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        r = self.registry = CollectorRegistry()
        self._tally = _Tally()
        r.register(self._tally)
        #: id(consent) -> (consent, its states per purpose): resolved states are cached
        #: objects, so a repeated hit counts its purposes with one lookup
        self._states: Memo[int, tuple[ConsentState, tuple[tuple[str, str], ...]]] = Memo(4096)
        self.upstream_seconds = Histogram(
            "consent_gateway_upstream_seconds",
            "Time until the vendor answered",
            ["vendor"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "consent_gateway_upstream_errors",
            "Forwarding failures by kind (connect, timeout, status, refused, other)",
            ["kind"],
            registry=r,
        )
        self.client_disconnects = Counter(
            "consent_gateway_client_disconnects",
            "Visitors that went away mid-request (while sending the body, or receiving the answer)",
            ["stage"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "consent_gateway_forward_queue_depth",
            "Requests waiting in the background queue",
            registry=r,
        )
        self.queue_dropped = Counter(
            "consent_gateway_forward_queue_dropped",
            "Requests not forwarded because the background queue was full",
            registry=r,
        )
        self.log_written = Counter(
            "consent_gateway_decision_log_written", "Decision-log records written", registry=r
        )
        self.log_lost = Counter(
            "consent_gateway_decision_log_lost",
            "Decision-log records lost (queue full or sink failure)",
            ["reason"],
            registry=r,
        )
        self.log_pruned = Counter(
            "consent_gateway_decision_log_pruned",
            "Decision-log rows deleted by retention (what: records, rollups, partitions; "
            "compacted: minute rollups summed into their hour)",
            ["what"],
            registry=r,
        )
        self.log_retention_runs = Counter(
            "consent_gateway_decision_log_retention_runs",
            "Retention runs by result: done, skipped (another instance held the lease), failed",
            ["result"],
            registry=r,
        )
        self.rollups_lost = Counter(
            "consent_gateway_decision_log_rollups_lost",
            "Requests not counted in the per-minute rollups (the backend was away too long)",
            registry=r,
        )
        self.consent_rate_limited = Counter(
            "consent_gateway_consent_rate_limited",
            "POST/DELETE /consent answered 429: the client network's writes used up",
            registry=r,
        )
        self.consent_cookie_invalid = Counter(
            "consent_gateway_consent_cookie_invalid",
            "Consent cookies treated as absent, by reason",
            ["reason"],
            registry=r,
        )
        self.signal_invalid = Counter(
            "consent_gateway_consent_signal_invalid",
            "Consent signals present but undecodable (treated as absent), by signal",
            ["signal"],
            registry=r,
        )
        self.rule_reloads = Counter(
            "consent_gateway_rule_reloads", "Rule reloads by result", ["result"], registry=r
        )
        self.store_cache = Counter(
            "consent_gateway_consent_cache",
            "Consent-store cache lookups on the request path: hit or miss",
            ["result"],
            registry=r,
        )
        self.store_errors = Counter(
            "consent_gateway_consent_store_errors",
            "Consent-store operations that failed, by operation",
            ["operation"],
            registry=r,
        )
        self.store_seconds = Histogram(
            "consent_gateway_consent_store_seconds",
            "Time of consent-store operations, by operation",
            ["operation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.store_changes = Counter(
            "consent_gateway_consent_changes_applied",
            "Changes from the store's feed applied to this instance's cache, by how they "
            "arrived (own write, notify, poll, resync)",
            ["via"],
            registry=r,
        )
        self.store_feed_reconnects = Counter(
            "consent_gateway_consent_feed_reconnects",
            "Times the change-feed listener reconnected after losing its connection",
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "consent_gateway_webhook_deliveries",
            "Webhook delivery attempts by endpoint and outcome (delivered, failed)",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.bypass_reports = Counter(
            "consent_gateway_bypass_reports",
            "Reports of a page reaching around the gateway, by source (csp, router) and the "
            "vendor whose rule lists the host ('-' for a host no rule lists)",
            ["source", "vendor"],
            registry=r,
        )
        self.webhook_backlog = Gauge(
            "consent_gateway_webhook_backlog",
            "Changes not yet delivered to the webhook endpoint",
            ["endpoint"],
            registry=r,
        )

        # What operators alert on. The state gauges are read when scraped: the app binds
        # each to its source (`Gauge.set_function`), nothing on the request path sets them.
        build = Gauge(
            "consent_gateway_build_info",
            "Always 1: the gateway's version and the Python running it, as labels",
            ["version", "python"],
            registry=r,
        )
        build.labels(__version__, platform.python_version()).set(1)
        self.rules_loaded = Gauge(
            "consent_gateway_rules_loaded", "Vendor rules in force", registry=r
        )
        self.rules_loaded_at = Gauge(
            "consent_gateway_rules_loaded_timestamp_seconds",
            "When the rules in force were loaded (unix time): at start, then each good reload",
            registry=r,
        )
        self.rules_reload_ok = Gauge(
            "consent_gateway_rules_last_reload_ok",
            "1 when the last rule reload succeeded (or none was tried), 0 when it failed and "
            "older rules stay in force",
            registry=r,
        )
        self.log_depth = Gauge(
            "consent_gateway_decision_log_queue_depth",
            "Decision-log records waiting to be written",
            registry=r,
        )
        self.store_feed_lag = Gauge(
            "consent_gateway_consent_feed_lag_seconds",
            "Seconds this instance may be behind the consent store's change feed: 0 while "
            "PostgreSQL LISTEN is up, else since the feed was last read to its end",
            registry=r,
        )

    def count_request(self, vendor: str, endpoint: str, action: str) -> None:
        """One tag request handled: `consent_gateway_requests_total{vendor, endpoint, action}`."""
        tally = self._tally.requests
        key = (vendor, endpoint, action)
        n = tally.get(key)
        if n is not None:
            tally[key] = n + 1
        else:  # an `Action` is its value: kept as a plain string, found by either
            tally[(vendor, endpoint, str(action))] = 1

    def observe(self, ev: Evaluation, purposes: Iterable[str], seconds: float) -> None:
        """Everything one tag request's evaluation counts, in one call: its action, the
        consent per purpose, an unreadable cookie or signal, and the time it took."""
        decision = ev.decision
        self.count_request(decision.vendor or "-", decision.endpoint or "-", decision.action)
        tally = self._tally
        consent = ev.consent
        if consent is not None:
            # one count per distinct consent, expanded per purpose when scraped
            kept = self._states.get(id(consent))
            if kept is None or kept[0] is not consent:
                states = tuple((p, consent.state(p).value) for p in purposes)
                kept = self._states.put(id(consent), (consent, states))
            counts = tally.states
            counts[kept[1]] = counts.get(kept[1], 0) + 1
        if ev.cookie_problem is not None:
            self.consent_cookie_invalid.labels(ev.cookie_problem).inc()
        if ev.signals is not None and ev.signals.problems:
            for signal in ev.signal_problems:
                self.signal_invalid.labels(signal).inc()
        tally.buckets[bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        tally.seconds += seconds

    def render(self) -> bytes:
        return generate_latest(self.registry)
