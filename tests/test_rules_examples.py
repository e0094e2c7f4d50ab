"""Every shipped rule's `examples:` run end to end: gateway -> recording fake vendor.

Each example is sent through `/t/{host}/…` with a consent cookie expressing its
consent table. The gateway's action (read back from its metrics) must be the
expected one; for drop and reject nothing may reach the vendor; for forward and
strip the vendor must get the request without every `removed` field and with
every `kept` field. `consent-gateway check` runs the same examples in process
(`gateway.examples`, tests/test_examples.py); this is the end-to-end proof.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yarl

from gateway.app import GATEWAY
from gateway.config import DEFAULT_PURPOSES
from gateway.model import Action
from gateway.ruleset.load import load_rules
from gateway.ruleset.schema import ExampleSpec, VendorRule
from tests.conftest import RULES_DIR, FakeVendor, cookie_for, field_present, settled

RULES = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))
CASES = [(rule, ex) for rule in RULES.rules for ex in rule.examples]


def _id(case: tuple[VendorRule, ExampleSpec]) -> str:
    rule, ex = case
    return f"{rule.vendor}:{ex.line}:{ex.expect}"


def test_every_rule_has_at_least_three_examples() -> None:
    assert len(RULES.rules) >= 8
    for rule in RULES.rules:
        assert len(rule.examples) >= 3, rule.vendor


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
async def test_example(
    case: tuple[VendorRule, ExampleSpec],
    gateway_factory: Callable[..., Any],
    fake_vendor: FakeVendor,
) -> None:
    rule, ex = case
    client = await gateway_factory(hosts=[ex.host], rules=RULES)  # one compiled rule set
    consent = {p: v.value for p, v in ex.consent.items()}
    headers = dict(ex.headers)
    headers["Cookie"] = f"cg_consent={cookie_for(consent)}"
    if ex.content_type:
        headers["Content-Type"] = ex.content_type
    target = f"/t/{ex.host}{ex.path}" + (f"?{ex.query}" if ex.query else "")
    # Sent exactly as written: the test client would re-quote the path and query.
    url = yarl.URL(str(client.make_url("")).rstrip("/") + target, encoded=True)
    resp = await client.session.request(ex.method, url, data=ex.body, headers=headers)
    await resp.read()

    gw_metrics = client.app[GATEWAY].metrics.registry
    if ex.expect is Action.REJECT:
        assert resp.status in (400, 404)
    else:
        taken = {
            a.value
            for a in Action
            for e in rule.endpoints
            if gw_metrics.get_sample_value(
                "consent_gateway_requests_total",
                {"vendor": rule.vendor, "endpoint": e.id, "action": a.value},
            )
        }
        assert taken == {ex.expect.value}, taken

    if ex.expect in (Action.DROP, Action.REJECT):
        await settled(client)  # a wrongly queued background forward has landed by now
        assert fake_vendor.seen == []
        return
    [seen] = await fake_vendor.wait_for(1)
    # The path up to its `;` parameters is the vendor's endpoint; the parameters may be stripped.
    assert seen.host == ex.host and seen.method == ex.method
    assert seen.path.split(";")[0] == ex.path.split(";")[0]
    for name in ex.removed:
        assert not field_present(seen, name), f"{name} reached the vendor"
    for name in ex.kept:
        assert field_present(seen, name), f"{name} did not reach the vendor"
    # The gateway's own consent cookie never reaches a vendor.
    assert "cg_consent" not in seen.headers.get("cookie", "")
