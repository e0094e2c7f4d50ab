"""The catalogue corpus: every example request of every shipped rule, twice.

- every purpose denied: no identifier the endpoint's strips name reaches the fake
  vendor (and nothing at all when a required purpose has no strip);
- every purpose granted: the request reaches the vendor unchanged except the
  `always` strips (and, for vendors that read their own consent parameters, those
  parameters set to agree with the resolved consent).

Runs against one real gateway (tests/harness.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest

from gateway.config import DEFAULT_PURPOSES
from gateway.model import NECESSARY
from gateway.ruleset.load import load_rules
from gateway.ruleset.schema import EndpointSpec, ExampleSpec, VendorRule
from tests.conftest import RULES_DIR, cookie_for, field_present
from tests.harness import PROBE, LiveGateway, catalogue_gateway, probed

RULES = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))
PURPOSES = [p for p in DEFAULT_PURPOSES if p != NECESSARY]

CASES = [(rule, ex) for rule in RULES.rules for ex in rule.examples if ex.expect.value != "reject"]
_marker = itertools.count(10_000_000)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    gw = catalogue_gateway(tmp_path_factory.mktemp("corpus"), RULES, hosts_from_examples=True)
    gw.start()
    yield gw
    gw.stop()


def _send(live: LiveGateway, rule: VendorRule, ex: ExampleSpec, state: str) -> tuple[str, int]:
    marker = str(next(_marker))
    query = f"{ex.query}&{PROBE}={marker}" if ex.query else f"{PROBE}={marker}"
    headers = dict(ex.headers)
    headers["Cookie"] = f"cg_consent={cookie_for(dict.fromkeys(PURPOSES, state))}"
    if ex.content_type:
        headers["Content-Type"] = ex.content_type
    status, _ = live.request(ex.method, f"/t/{ex.host}{ex.path}?{query}", ex.body or b"", headers)
    return marker, status


def _endpoint(ex: ExampleSpec) -> EndpointSpec:
    match = RULES.match(ex.host, ex.path, ex.method)
    assert match is not None
    return match.endpoint


def _id(case: tuple[VendorRule, ExampleSpec]) -> str:
    return f"{case[0].vendor}:{case[1].line}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_all_denied_no_named_identifier_leaves(
    live: LiveGateway, case: tuple[VendorRule, ExampleSpec]
) -> None:
    rule, ex = case
    ep = _endpoint(ex)
    marker, status = _send(live, rule, ex, "denied")
    assert status < 500
    required = ep.purposes - {NECESSARY}
    unstrippable = [p for p in required if p not in ep.when_denied]
    seen = live.arrived(probed(marker))  # after every forward settled: exact either way
    if unstrippable or ep.retired:
        assert seen is None, f"{rule.vendor}/{ep.id} forwarded with every purpose denied"
        return
    assert seen is not None
    named = set(ep.always.query) | set(ep.always.path_params)
    named |= {"json:" + j for j in ep.always.json}
    for spec in ep.when_denied.values():
        named |= set(spec.query) | set(spec.path_params) | {"json:" + j for j in spec.json}
    for name in named:
        assert not field_present(seen, name), f"{name} reached {rule.vendor}/{ep.id}"
    assert "cookie" not in seen.headers or "cg_consent" not in seen.headers["cookie"]


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_all_granted_reaches_unchanged_but_always_strips(
    live: LiveGateway, case: tuple[VendorRule, ExampleSpec]
) -> None:
    rule, ex = case
    ep = _endpoint(ex)
    marker, _ = _send(live, rule, ex, "granted")
    seen = live.arrived(probed(marker))
    if ep.retired:
        assert seen is None
        return
    assert seen is not None, f"{rule.vendor}/{ep.id} not forwarded with everything granted"
    always = ep.always
    consent_params = {"gcs", "gcd", "npa"} if rule.consent_params else set()
    sent = parse_qsl(ex.query, keep_blank_values=True)
    got = dict(parse_qsl(seen.query, keep_blank_values=True))
    for name, value in sent:
        stripped = name in always.query or any(
            n.endswith("*") and name.startswith(n[:-1]) for n in always.query
        )
        if stripped:
            assert name not in got, f"always-strip {name} reached {rule.vendor}"
        elif name in consent_params:
            continue
        elif name in always.url_fields:
            assert name in got  # the URL stays; identifiers inside it may go
        else:
            assert got.get(name) == value, f"{name} changed on its way to {rule.vendor}"
    # The path reaches the vendor as sent, less always-stripped `;` parameters.
    sent_params = [p for p in ex.path.split(";")[1:]]
    got_params = {p.partition("=")[0] for p in seen.path.split(";")[1:]}
    for p in sent_params:
        name = p.partition("=")[0]
        assert (name in got_params) is (name not in always.path_params), name
    if ex.body and not (always.query or always.json or always.url_fields):
        assert seen.body == ex.body
