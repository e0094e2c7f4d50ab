"""The router script's HTTP side: what /cg.js and /cg-sw.js carry, their caching, their
size, and their rebuild when the rules reload (what the script does in a page:
tests/router/test_browser.py)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import GATEWAY
from gateway.config import VendorHost
from gateway.config.consent import DEFAULT_PURPOSES
from gateway.model import NECESSARY
from gateway.router import CACHE_CONTROL, build_script, compact_line, prelude
from gateway.ruleset.load import load_rules
from gateway.ruleset.match import RuleSet
from tests.conftest import RULES_DIR

RULES = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))
GCM = {"analytics": ("analytics_storage",), "advertising": ("ad_storage", "ad_user_data")}
#: the router issue's budget, minified and gzipped: for a page's script, which carries its
#: site's vendors (rules.router_vendors), not the whole catalogue (see below)
GZIP_BUDGET = 5 * 1024
#: a site with this many vendors, whichever they are, gets a script within the budget
SITE_VENDORS = 15

Client = TestClient[Any, Any]
Factory = Callable[..., Awaitable[Client]]


def _config_of(body: bytes) -> dict[str, Any]:
    """The prelude's JSON, read back from a served script."""
    head, _, rest = body.partition(b"const C=")
    assert head.startswith(b"/*!"), body[:80]
    doc: dict[str, Any] = orjson.loads(rest.partition(b";\n")[0])
    return doc


def _vendor_purposes(doc: dict[str, Any], host: str) -> list[str] | None:
    index = doc["h"].get(host)
    if index is None:
        parts = host.split(".")
        index = next(
            (
                doc["w"][".".join(parts[i:])]
                for i in range(1, len(parts))
                if ".".join(parts[i:]) in doc["w"]
            ),
            None,
        )
    return None if index is None else list(doc["v"][index])


# -- the prelude -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "purposes"),
    [
        ("us.i.posthog.com", ["analytics"]),
        ("api-js.mixpanel.com", ["analytics"]),
        ("api2.amplitude.com", ["analytics"]),
        ("www.facebook.com", ["advertising"]),
        # GA4's endpoints need advertising too where Google signals are on
        ("www.google-analytics.com", ["advertising", "analytics"]),
        ("shop.example", None),
        ("posthog.com", None),
    ],
)
def test_prelude_maps_every_listed_host_to_its_endpoints_purposes(
    host: str, purposes: list[str] | None
) -> None:
    doc: dict[str, Any] = prelude(RULES, GCM, "")
    assert _vendor_purposes(doc, host) == purposes


def test_prelude_lists_every_host_of_every_rule_and_never_necessary() -> None:
    doc: dict[str, Any] = prelude(RULES, GCM, "/cg")
    for rule in RULES.rules:
        for pattern in rule.hosts:
            table, key = (
                (doc["w"], pattern[2:]) if pattern.startswith("*.") else (doc["h"], pattern)
            )
            assert key in table, pattern
            needed = set(rule.purposes).union(*(e.purposes for e in rule.endpoints))
            assert doc["v"][table[key]] == sorted(needed - {NECESSARY})
    assert doc["b"] == "/cg"
    assert doc["g"] == {
        "advertising": ["ad_storage", "ad_user_data"],
        "analytics": ["analytics_storage"],
    }


def test_prelude_routes_a_mounted_host_under_its_prefix_only() -> None:
    added = [VendorHost("matomo", "www.shop.example", "/stats", "gw.yaml", 3, "w")]
    doc: dict[str, Any] = prelude(
        load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES), added), GCM, ""
    )
    assert "www.shop.example" in doc["h"]
    assert doc["m"] == {"www.shop.example": "/stats"}
    assert prelude(RULES, GCM, "")["m"] == {}


@pytest.mark.parametrize(
    ("line", "served"),
    [
        ("const a = f(x, y) || {b: 1}", "const a=f(x,y)||{b:1}"),
        ("if (x === 'a = b, c') return 'it\\'s { }'", "if(x==='a = b, c')return 'it\\'s { }'"),
        ("u = 'a' + n + 'b'", "u='a' + n + 'b'"),
        ("const r = /^https?:$/.test(p)", "const r=/^https?:$/.test(p)"),
    ],
)
def test_spaces_go_around_punctuation_never_inside_strings(line: str, served: str) -> None:
    assert compact_line(line) == served


def test_served_scripts_are_valid_javascript(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    for name in ("cg.js", "cg-sw.js"):
        path = tmp_path / name
        path.write_bytes(build_script(name, prelude(RULES, GCM, "")).body)
        done = subprocess.run([node, "--check", str(path)], capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr.decode()


def _gzipped(vendors: set[str] | None = None) -> int:
    body = build_script("cg.js", prelude(RULES, GCM, "", vendors or ())).body
    return len(gzip.compress(body, 9))


def test_any_sites_vendors_fit_the_size_budget() -> None:
    # The catalogue's hosts outgrew the budget at 70 vendors (about 6 KB in all, and no
    # minifier or brotli brings it under 5 KB); a page needs its own site's. The heaviest
    # vendors stand for any site's: Google Ads alone lists 191 hosts.
    alone = {r.vendor: _gzipped({r.vendor}) for r in RULES.rules}
    heaviest = set(sorted(alone, key=alone.__getitem__, reverse=True)[:SITE_VENDORS])
    assert "google-ads" in heaviest
    size = _gzipped(heaviest)
    assert size < GZIP_BUDGET, f"/cg.js for {sorted(heaviest)} is {size} bytes gzipped"


def test_the_script_leaves_most_of_the_budget_to_the_hosts() -> None:
    code = _gzipped({"no-such-vendor"})
    assert code < GZIP_BUDGET * 0.7, f"/cg.js without hosts is {code} bytes gzipped"
    # the whole catalogue is a choice a site makes, not a budget it must fit
    assert _gzipped() > GZIP_BUDGET


def test_router_vendors_carry_only_their_hosts() -> None:
    doc: dict[str, Any] = prelude(RULES, GCM, "", {"posthog", "google-analytics-4"})
    wanted = [h for v in ("posthog", "google-analytics-4") for h in _hosts(v)]
    assert sorted([*doc["h"], *("*." + w for w in doc["w"])]) == sorted(wanted)
    # the purpose sets are those two vendors' (GA4's Google signals hits ask advertising)
    assert sorted(doc["v"]) == [["advertising", "analytics"], ["analytics"]]


def _hosts(vendor: str) -> tuple[str, ...]:
    rule = RULES.vendor(vendor)
    assert rule is not None
    return rule.hosts


# -- the routes ----------------------------------------------------------------------------


async def test_cg_js_is_served_cacheable_with_a_strong_etag(gateway_factory: Factory) -> None:
    client = await gateway_factory(rules=RULES, extra={"server": {"base_path": ""}})
    resp = await client.get("/cg.js")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["Cache-Control"] == CACHE_CONTROL
    etag = resp.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    body = await resp.read()
    assert _config_of(body)["h"]["us.i.posthog.com"] >= 0
    # The gateway's Consent Mode mapping (consent.signals.gcm's default) rides along.
    assert _config_of(body)["g"]["advertising"] == [
        "ad_storage",
        "ad_user_data",
        "ad_personalization",
    ]
    for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get("/cg.js", headers={"If-None-Match": sent})
        assert again.status == 304, sent
        assert again.headers["ETag"] == etag
        assert await again.read() == b""
    other = await client.get("/cg.js", headers={"If-None-Match": '"other"'})
    assert other.status == 200
    assert await other.read() == body


async def test_the_service_worker_may_control_the_whole_site(gateway_factory: Factory) -> None:
    client = await gateway_factory(rules=RULES)
    resp = await client.get("/cg-sw.js")
    assert resp.status == 200
    assert resp.headers["Service-Worker-Allowed"] == "/"
    assert resp.headers["Content-Type"].startswith("text/javascript")
    assert _config_of(await resp.read())["h"]["api-js.mixpanel.com"] >= 0


async def test_a_site_routes_its_own_vendors(gateway_factory: Factory) -> None:
    """rules.router_vendors: the script carries those vendors' hosts only; the gateway
    still enforces every loaded rule on /t/."""
    client = await gateway_factory(
        rules=RULES, extra={"rules": {"router_vendors": ["posthog", "mixpanel"]}}
    )
    doc = _config_of(await (await client.get("/cg.js")).read())
    assert set(doc["h"]) == {*_hosts("posthog"), *_hosts("mixpanel")}
    assert doc["w"] == {}
    sw = _config_of(await (await client.get("/cg-sw.js")).read())
    assert sw["h"] == doc["h"]
    ga4 = await client.get("/t/www.google-analytics.com/g/collect?v=2&tid=G-1&cid=1.2")
    assert ga4.headers["Consent-Gateway-Decision"].startswith("drop")


async def test_the_script_follows_the_rules_in_force(gateway_factory: Factory) -> None:
    """A reload swaps the RuleSet: the next request gets the new hosts and a new ETag;
    while the rules stay, the bytes stay the same."""
    client = await gateway_factory(rules=RULES)
    first = await client.get("/cg.js")
    body, etag = await first.read(), first.headers["ETag"]
    same = await client.get("/cg.js")
    assert await same.read() == body and same.headers["ETag"] == etag

    fewer = RuleSet(r for r in RULES.rules if r.vendor != "posthog")
    client.app[GATEWAY].rules.swap(fewer)
    after = await client.get("/cg.js", headers={"If-None-Match": etag})
    assert after.status == 200
    assert after.headers["ETag"] != etag
    doc = _config_of(await after.read())
    assert "us.i.posthog.com" not in doc["h"]
    assert "api-js.mixpanel.com" in doc["h"]
