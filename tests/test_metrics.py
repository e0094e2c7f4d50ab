"""gateway.metrics: one registry per app, in a format Prometheus' own parser reads."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.consent.signals import Signals
from gateway.core import Evaluation
from gateway.metrics import Metrics
from gateway.model import (
    Action,
    ConsentState,
    ConsentValue,
    Decision,
    PurposeConsent,
    StripSpec,
)


def test_registries_are_independent_and_parse() -> None:
    a, b = Metrics(), Metrics()
    for _ in range(3):
        a.count_request("v", "e", "drop")
    families = {f.name: f for f in text_string_to_metric_families(a.render().decode())}
    [sample] = [
        s for s in families["consent_gateway_requests"].samples if s.name.endswith("_total")
    ]
    assert sample.value == 3 and sample.labels == {"vendor": "v", "endpoint": "e", "action": "drop"}
    assert (
        b.registry.get_sample_value(
            "consent_gateway_requests_total", {"vendor": "v", "endpoint": "e", "action": "drop"}
        )
        is None
    )


def _evaluation(
    action: Action, consent: ConsentState | None, cookie: str | None, signals: tuple[str, ...]
) -> Evaluation:
    decision = Decision(
        action=action,
        vendor="ga4",
        endpoint="collect",
        required=frozenset(),
        missing=frozenset(),
        strips=StripSpec(),
        reason="why",
    )
    problems = Signals(problems=tuple((name, "bad") for name in signals))
    return Evaluation(consent, None, None, decision, problems, cookie)


OPT_IN = ConsentState(
    {
        "analytics": PurposeConsent(ConsentValue.GRANTED, "cookie"),
        "advertising": PurposeConsent(ConsentValue.DENIED, "gpc"),
    },
    "opt-in",
)


REQUESTS = ("vendor", "endpoint", "action")
PURPOSE = ("purpose", "state")


@pytest.mark.parametrize(
    ("ev", "samples"),
    [
        (
            _evaluation(Action.FORWARD, OPT_IN, None, ()),
            [
                ("consent_gateway_requests_total", REQUESTS, ("ga4", "collect", "forward"), 1),
                ("consent_gateway_consent_purpose_total", PURPOSE, ("analytics", "granted"), 1),
                ("consent_gateway_consent_purpose_total", PURPOSE, ("advertising", "denied"), 1),
                ("consent_gateway_consent_purpose_total", PURPOSE, ("functional", "unknown"), 1),
                ("consent_gateway_consent_purpose_total", PURPOSE, ("functional", "granted"), None),
            ],
        ),
        (
            _evaluation(Action.DROP, None, "bad_signature", ("tcf", "gpp")),
            [
                ("consent_gateway_requests_total", REQUESTS, ("ga4", "collect", "drop"), 1),
                (
                    "consent_gateway_consent_cookie_invalid_total",
                    ("reason",),
                    ("bad_signature",),
                    1,
                ),
                ("consent_gateway_consent_signal_invalid_total", ("signal",), ("tcf",), 1),
                ("consent_gateway_consent_signal_invalid_total", ("signal",), ("gpp",), 1),
                ("consent_gateway_consent_purpose_total", PURPOSE, ("analytics", "granted"), None),
            ],
        ),
    ],
    ids=["forward-with-consent", "drop-with-problems"],
)
def test_observe_counts_an_evaluation_in_one_call(
    ev: Evaluation, samples: list[tuple[str, tuple[str, ...], tuple[str, ...], float | None]]
) -> None:
    m = Metrics()
    m.observe(ev, ["analytics", "advertising", "functional"], 0.002)
    seen = [
        (
            name,
            keys,
            values,
            m.registry.get_sample_value(name, dict(zip(keys, values, strict=True))),
        )
        for name, keys, values, _ in samples
    ]
    assert seen == samples
    assert m.registry.get_sample_value("consent_gateway_decision_seconds_count") == 1
