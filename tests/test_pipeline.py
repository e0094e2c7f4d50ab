"""gateway.pipeline end to end: route, decide, strip or drop, forward, log.

The issue's acceptance points, each against a recording fake vendor.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
import yaml
import yarl
from aiohttp.test_utils import TestClient

from gateway.app import GATEWAY, build_app
from gateway.cli.logs import run_logs
from gateway.config import parse_config
from gateway.decision_log.query import LogQuery, LogReader
from gateway.edges import TRANSPARENT_GIF
from gateway.store import cache as cache_module
from gateway.store.base import ConsentRecord
from gateway.store.migrations import migrate
from gateway.store.sqlite import SqliteStore
from tests.conftest import ROOT, TEST_KEY, FakeVendor, cookie_for, overrides_for, settled
from tests.stores import sqlite_sql

GA4 = "www.google-analytics.com"
ADS = "www.googleadservices.com"
GA4_QUERY = (
    "v=2&tid=G-TEST1&cid=1180732581.1712345600&en=page_view&dl=https%3A%2F%2Fshop.example%2F"
)
GA4_HIT = f"/t/{GA4}/g/collect?{GA4_QUERY}"


def example_config(tmp_path: Path, fake: FakeVendor) -> Path:
    """config.example.yaml as shipped, with only data paths and vendor origins redirected."""
    doc = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    doc["data_dir"] = str(tmp_path / "data")
    doc["rules"]["paths"] = [str(ROOT / "rules")]
    doc["decision_log"]["sqlite_path"] = str(tmp_path / "data" / "decisions.db")
    doc["decision_log"]["flush_interval"] = "10ms"
    doc["cookie"]["secure"] = False  # the test client speaks plain HTTP
    doc["upstream"]["overrides"] = overrides_for(fake, [GA4, ADS, "www.google.com"])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
async def example_gateway(
    tmp_path: Path, fake_vendor: FakeVendor, aiohttp_client: Callable[..., Any]
) -> TestClient[Any, Any]:
    path = example_config(tmp_path, fake_vendor)
    cfg = parse_config(path.read_text(), str(path), env={"CONSENT_GATEWAY_COOKIE_KEY": TEST_KEY})
    client: TestClient[Any, Any] = await aiohttp_client(build_app(cfg))
    return client


async def raw_get(
    client: TestClient[Any, Any], target: str, headers: dict[str, str] | None = None
) -> Any:
    """GET `target` exactly as written (the test client would re-quote the query)."""
    url = yarl.URL(str(client.make_url("")).rstrip("/") + target, encoded=True)
    return await client.session.get(url, headers=headers or {}, allow_redirects=False)


async def _drain_log(client: TestClient[Any, Any]) -> None:
    """Wait until the decision log has written what it was given."""
    await client.app[GATEWAY].decision_log.drain()


async def test_no_consent_ga4_hit_is_answered_locally_and_logged_without_values(
    example_gateway: TestClient[Any, Any], fake_vendor: FakeVendor, tmp_path: Path
) -> None:
    resp = await example_gateway.get(GA4_HIT)
    assert resp.status == 204
    assert resp.headers["Cache-Control"] == "no-store"
    await _drain_log(example_gateway)
    await settled(example_gateway)
    assert fake_vendor.seen == []

    out = io.StringIO()
    code = run_logs(
        tmp_path / "data" / "decisions.db",
        since="1h",
        vendor=None,
        action=None,
        purpose=None,
        as_json=False,
        follow=False,
        limit=100,
        out=out,
    )
    text = out.getvalue()
    assert code == 0
    assert "google-analytics-4" in text and "drop" in text and "analytics" in text
    for value in ("G-TEST1", "1180732581", "shop.example", "page_view", "tid=", "cid="):
        assert value not in text, value


async def test_consent_granted_forwards_query_intact_except_always_strips(
    example_gateway: TestClient[Any, Any], fake_vendor: FakeVendor
) -> None:
    # The GA4 collect endpoint needs analytics and advertising (it strips ad identifiers
    # when only advertising is missing; see the next test).
    grant = {"purposes": {"analytics": True, "advertising": True}}
    resp = await example_gateway.post("/consent", json=grant)
    assert resp.status == 200
    state = await resp.json()
    assert state["purposes"]["analytics"] == {"state": "granted", "source": "cookie"}

    resp = await raw_get(example_gateway, GA4_HIT + "&_uip=203.0.113.7", _cookies(example_gateway))
    assert resp.status == 204
    [seen] = await fake_vendor.wait_for(1)
    assert seen.path == "/g/collect"
    assert seen.query == GA4_QUERY  # byte for byte; only the always-strip `_uip` is gone
    assert "cookie" not in seen.headers  # the rule strips every cookie, ours included
    assert seen.headers["x-forwarded-for"].endswith(".0")  # IP truncated, never the visitor's


async def test_a_background_forward_is_queued_after_the_answer_is_written(
    example_gateway: TestClient[Any, Any], fake_vendor: FakeVendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp's way (the test client has no front): a beacon's visitor does not wait for
    its forward to be built and written."""
    from gateway import pipeline

    written_before: list[int] = []
    real = pipeline._send_in_background

    def spy(gw: Any, request: Any, ev: Any) -> None:
        # the bytes aiohttp's writer has sent for this request's answer so far
        written_before.append(request._payload_writer.output_size)
        real(gw, request, ev)

    monkeypatch.setattr(pipeline, "_send_in_background", spy)
    grant = {"purposes": {"analytics": True, "advertising": True}}
    assert (await example_gateway.post("/consent", json=grant)).status == 200
    resp = await raw_get(example_gateway, GA4_HIT, _cookies(example_gateway))
    assert resp.status == 204
    [seen] = await fake_vendor.wait_for(1)
    assert seen.path == "/g/collect"
    assert len(written_before) == 1 and written_before[0] > 0


async def test_every_request_is_counted_in_the_rollups_forwarded_ones_too(
    example_gateway: TestClient[Any, Any], fake_vendor: FakeVendor, tmp_path: Path
) -> None:
    await example_gateway.get(GA4_HIT)  # dropped: logged and counted
    await example_gateway.post(
        "/consent", json={"purposes": {"analytics": True, "advertising": True}}
    )
    await raw_get(example_gateway, GA4_HIT, _cookies(example_gateway))  # forwarded: counted only
    await fake_vendor.wait_for(1)
    await example_gateway.get("/t/unknown.example/px")  # rejected: no vendor
    await _drain_log(example_gateway)  # records written, rollups flushed
    rows = sqlite_sql(
        tmp_path / "data" / "decisions.db",
        "SELECT vendor, action, missing, regime, sum(n) FROM rollups "
        "GROUP BY vendor, action, missing, regime ORDER BY 1, 2",
    )
    assert rows == [
        ("", "reject", "", "opt-in", 1),
        ("google-analytics-4", "drop", "advertising,analytics", "opt-in", 1),
        ("google-analytics-4", "forward", "", "opt-in", 1),
    ]
    logged = sqlite_sql(tmp_path / "data" / "decisions.db", "SELECT action FROM decisions")
    assert sorted(r[0] for r in logged) == ["drop", "reject"]


async def test_analytics_only_keeps_the_hit_but_tells_google_so(
    example_gateway: TestClient[Any, Any], fake_vendor: FakeVendor
) -> None:
    await example_gateway.post("/consent", json={"purposes": {"analytics": True}})
    await raw_get(example_gateway, GA4_HIT + "&_uip=203.0.113.7", _cookies(example_gateway))
    [seen] = await fake_vendor.wait_for(1)
    # Intact but for the always-strip and the consent parameters the rule sets.
    assert seen.query == GA4_QUERY + "&gcd=11q1r1q1q5&gcs=G101&npa=1"


async def test_analytics_granted_advertising_denied_drops_google_ads(
    example_gateway: TestClient[Any, Any], fake_vendor: FakeVendor
) -> None:
    await example_gateway.post(
        "/consent", json={"purposes": {"analytics": True, "advertising": False}}
    )
    resp = await example_gateway.get(
        f"/t/{ADS}/pagead/conversion/987654321/?label=AbC-D_efG&value=59.9&gclid=Cj0KCQjw8"
    )
    assert resp.status == 200 and await resp.read() == TRANSPARENT_GIF
    # A GA4 hit with a click id is stripped of it (the GA4 rule's when_denied).
    await example_gateway.get(GA4_HIT + "&gclid=Cj0KCQjw8")
    [seen] = await fake_vendor.wait_for(1)
    assert seen.path == "/g/collect" and "gclid" not in seen.query and "cid=" in seen.query
    await settled(example_gateway)
    assert len(fake_vendor.seen) == 1  # nothing reached Google Ads


def _cookies(client: TestClient[Any, Any]) -> dict[str, str]:
    """The cookie the client's jar holds for the gateway, as a header."""
    jar = client.session.cookie_jar.filter_cookies(client.make_url("/"))
    return {"Cookie": "; ".join(f"{k}={m.value}" for k, m in jar.items())}


def _tamper(value: str) -> str:
    kid, payload, sig = value.split(".")
    flipped = "A" if sig[5] != "A" else "B"
    return f"{kid}.{payload}.{sig[:5]}{flipped}{sig[6:]}"


@pytest.mark.parametrize(
    "make_cookie",
    [
        pytest.param(lambda v: _tamper(v), id="tampered-signature"),
        pytest.param(lambda v: v[: len(v) // 2], id="truncated"),
        pytest.param(lambda v: v.split(".", 1)[1], id="no-key-id"),
        pytest.param(lambda v: "k9." + v.split(".", 1)[1], id="unknown-key"),
        pytest.param(
            lambda v: cookie_for(
                {"analytics": "granted"}, issued_at=int(time.time()) - 400 * 86400
            ),
            id="expired",
        ),
        pytest.param(lambda v: "", id="empty"),
        pytest.param(lambda v: "garbage<script>", id="garbage"),
    ],
)
async def test_bad_cookie_counts_as_no_consent(
    make_cookie: Callable[[str], str],
    example_gateway: TestClient[Any, Any],
    fake_vendor: FakeVendor,
) -> None:
    good = cookie_for({"analytics": "granted", "advertising": "granted"})
    resp = await example_gateway.get(GA4_HIT, headers={"Cookie": f"cg_consent={make_cookie(good)}"})
    assert resp.status == 204
    await settled(example_gateway)
    assert fake_vendor.seen == []
    # ...whereas the untouched cookie forwards.
    await example_gateway.get(GA4_HIT, headers={"Cookie": f"cg_consent={good}"})
    await fake_vendor.wait_for(1)


EVIL_TARGETS = [
    "/t/evil.example/x",
    "/t/EVIL.example/x",
    "/t/evil.example./x",
    "/t/evil.example:443/x",
    "/t/www.google-analytics.com@evil.example/x",
    "/t/user:pw@evil.example/x",
    "/t/evil.example%2F@www.google-analytics.com/g/collect",
    "/t/www.google-analytics.com%2F@evil.example/x",
    "/t/www.google-analytics.com%2Fevil.example/x",
    "/t/evil.example%2Fwww.google-analytics.com/g/collect",
    "/t/127.0.0.1/x",
    "/t/2130706433/x",
    "/t/0x7f000001/x",
    "/t/[::1]/x",
    "/t/%65vil.example/x",
    "/t/evil.example\\@www.google-analytics.com/x",
    "/t//evil.example/x",
    "/t/www.google-analytics.com.evil.example/g/collect",
    "/t/google-analytics.com/g/collect",
    "/t/www.google-analytics.com/../../evil.example/x",
    "/t/www.google-analytics.com/g/../../evil",
    "/t/www.google-analytics.com/g/collect/%2e%2e/%2e%2e/x",
    "/t/",
    "/t",
]


@pytest.mark.parametrize("target", EVIL_TARGETS)
async def test_unknown_destinations_are_rejected_and_nothing_is_sent(
    target: str, example_gateway: TestClient[Any, Any], fake_vendor: FakeVendor
) -> None:
    cookie = cookie_for({p: "granted" for p in ("analytics", "advertising", "functional")})
    upstream = example_gateway.app[GATEWAY].upstream
    with (
        mock.patch.object(upstream, "open") as opened,
        mock.patch.object(upstream, "enqueue") as queued,
    ):
        resp = await raw_get(example_gateway, target, {"Cookie": f"cg_consent={cookie}"})
        body = await resp.json()
        await settled(example_gateway)
    assert 400 <= resp.status < 500
    assert set(body) == {"error"} and "evil" not in body["error"]
    assert not opened.called and not queued.called and fake_vendor.seen == []


async def test_reject_is_logged_with_a_sanitised_host(
    example_gateway: TestClient[Any, Any], tmp_path: Path
) -> None:
    await example_gateway.get("/t/evil.example/collect?email=a@b.example")
    await _drain_log(example_gateway)
    [record] = LogReader(tmp_path / "data" / "decisions.db").records(LogQuery(action="reject"))
    assert record.host == "evil.example" and record.vendor is None
    assert "a@b.example" not in repr(record)


async def test_a_listed_host_with_no_matching_endpoint_names_its_vendor(
    example_gateway: TestClient[Any, Any], tmp_path: Path
) -> None:
    # Defect 9 of issue 10: this was "(unknown destination) - no rule lists this
    # destination" and counted on the Unknown destinations page.
    resp = await example_gateway.delete(f"/t/{GA4}/g/alice%40example.com/collect?x=1")
    assert resp.status == 404
    assert await resp.json() == {"error": "no endpoint of this vendor matches this request"}
    await _drain_log(example_gateway)
    db = tmp_path / "data" / "decisions.db"
    [record] = LogReader(db).records(LogQuery(action="reject"))
    assert record.vendor == "google-analytics-4"
    assert record.reason == "no endpoint of google-analytics-4 matches DELETE /g/{…}/collect"
    assert LogReader(db).unknown_hosts() == []


async def test_stripped_names_what_was_removed_from_this_request(
    example_gateway: TestClient[Any, Any], tmp_path: Path
) -> None:
    # analytics granted, advertising denied: GA4's strip lists gclid, dclid, gbraid...;
    # this hit carries only gclid and an unlisted click id (the identifier scrub's).
    cookie = cookie_for({"analytics": "granted", "advertising": "denied"})
    hit = f"{GA4_HIT}&gclid=Cj0K&ttclid=T1"
    resp = await raw_get(example_gateway, hit, {"Cookie": f"cg_consent={cookie}"})
    assert resp.status == 204
    await _drain_log(example_gateway)
    [record] = LogReader(tmp_path / "data" / "decisions.db").records(LogQuery(action="strip"))
    assert "query:gclid" in record.stripped and "query:ttclid" in record.stripped
    assert "query:dclid" not in record.stripped and "query:gbraid" not in record.stripped
    assert "cookie:cg_consent" in record.stripped


async def test_body_over_the_limit_is_413(
    tmp_path: Path, fake_vendor: FakeVendor, aiohttp_client: Callable[..., Any]
) -> None:
    from tests.conftest import make_config

    cfg = make_config(
        tmp_path, overrides_for(fake_vendor, [GA4]), {"server": {"max_body_bytes": 100}}
    )
    client = await aiohttp_client(build_app(cfg))
    cookie = cookie_for({"analytics": "granted", "advertising": "granted"})
    resp = await client.post(
        f"/t/{GA4}/g/collect?v=2", data=b"en=x&" * 100, headers={"Cookie": f"cg_consent={cookie}"}
    )
    assert resp.status == 413
    await settled(client)
    assert fake_vendor.seen == []


async def test_first_party_route_prefix(
    example_gateway: TestClient[Any, Any], fake_vendor: FakeVendor
) -> None:
    cookie = cookie_for({"analytics": "granted", "advertising": "granted"})
    resp = await raw_get(
        example_gateway, f"/ga4/g/collect?{GA4_QUERY}", {"Cookie": f"cg_consent={cookie}"}
    )
    assert resp.status == 204
    [seen] = await fake_vendor.wait_for(1)
    assert seen.host == GA4 and seen.path == "/g/collect" and seen.query == GA4_QUERY
    assert (await example_gateway.get("/nothing-here")).status == 404


async def test_sec_gpc_denies_advertising_even_when_the_cookie_granted_it(
    example_gateway: TestClient[Any, Any], fake_vendor: FakeVendor
) -> None:
    cookie = cookie_for({"analytics": "granted", "advertising": "granted"})
    resp = await example_gateway.get(
        f"/t/{ADS}/pagead/conversion/987654321/?label=x",
        headers={"Cookie": f"cg_consent={cookie}", "Sec-GPC": "1"},
    )
    assert await resp.read() == TRANSPARENT_GIF
    await settled(example_gateway)
    assert fake_vendor.seen == []


async def test_script_is_streamed_and_vendor_cookies_never_reach_the_visitor(
    example_gateway: TestClient[Any, Any], fake_vendor: FakeVendor, tmp_path: Path
) -> None:
    fake_vendor.answers["/gtag/js"] = (
        200,
        {"Content-Type": "text/javascript", "Set-Cookie": "NID=1; Domain=.google.com"},
        b"/* gtag */" * 1000,
    )
    # The gtag loader is the google-tag-manager rule; route its host to the fake too.
    path = example_config(tmp_path, fake_vendor)
    doc = yaml.safe_load(path.read_text())
    doc["upstream"]["overrides"].update(overrides_for(fake_vendor, ["www.googletagmanager.com"]))
    path.write_text(yaml.safe_dump(doc))
    cfg = parse_config(path.read_text(), str(path), env={"CONSENT_GATEWAY_COOKIE_KEY": TEST_KEY})
    async with TestClient(
        __import__("aiohttp.test_utils").test_utils.TestServer(build_app(cfg))
    ) as c:
        resp = await c.get("/t/www.googletagmanager.com/gtag/js?id=G-TEST1")
        assert resp.status == 200
        assert await resp.read() == b"/* gtag */" * 1000
        assert "Set-Cookie" not in resp.headers


async def test_upstream_failure_never_hangs_the_visitor(
    tmp_path: Path, aiohttp_client: Callable[..., Any]
) -> None:
    from tests.conftest import make_config

    dead = {"https://www.googletagmanager.com": "http://127.0.0.1:1"}
    client = await aiohttp_client(build_app(make_config(tmp_path, dead)))
    resp = await client.get("/t/www.googletagmanager.com/gtag/js?id=G-TEST1")
    assert resp.status == 502 and (await resp.json()) == {"error": "vendor unavailable"}
    metrics = client.app[GATEWAY].metrics.registry
    assert (
        metrics.get_sample_value("consent_gateway_upstream_errors_total", {"kind": "connect"}) == 1
    )


async def test_exception_in_the_core_drops_never_forwards(
    example_gateway: TestClient[Any, Any], fake_vendor: FakeVendor
) -> None:
    cookie = cookie_for({"analytics": "granted", "advertising": "granted"})
    with mock.patch("gateway.core.transform", side_effect=RuntimeError("bug")):
        resp = await example_gateway.get(GA4_HIT, headers={"Cookie": f"cg_consent={cookie}"})
    assert resp.status == 204
    await settled(example_gateway)
    assert fake_vendor.seen == []


async def test_report_only_forwards_and_logs(
    tmp_path: Path, fake_vendor: FakeVendor, aiohttp_client: Callable[..., Any]
) -> None:
    from tests.conftest import make_config

    cfg = make_config(tmp_path, overrides_for(fake_vendor, [GA4]), {"rules": {"report_only": True}})
    client = await aiohttp_client(build_app(cfg))
    await raw_get(client, GA4_HIT + "&_uip=1.2.3.4")
    [seen] = await fake_vendor.wait_for(1)
    assert seen.query == GA4_QUERY  # forwarded, always-strips still applied
    await _drain_log(client)
    [record] = LogReader(cfg.decision_log.sqlite_path or Path()).records(LogQuery())
    assert record.action == "drop" and record.report_only


# -- server-to-server events, judged by the stored consent (DESIGN §6) --------------------------

MP = "/t/www.google-analytics.com/mp/collect?measurement_id=G-1&api_secret=s"
MP_BODY = {"client_id": "1.2", "user_data": {"sha256_email_address": "ab" * 32}, "events": []}


@pytest.fixture
async def s2s(gateway_factory: Callable[..., Any]) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await gateway_factory(
        hosts=["www.google-analytics.com"],
        extra={"store": {"subject_header": "X-Consent-Subject"}},
    )
    gw = client.app[GATEWAY]
    assert gw.book is not None
    now = time.time()
    for subject, purposes in (
        ("all-in", {"analytics": True, "advertising": True}),
        ("no-ads", {"analytics": True, "advertising": False}),
    ):
        await gw.book.record(ConsentRecord(subject, purposes, "banner", 1, now, None, None))
    return client


@pytest.mark.parametrize(
    ("subject", "arrives", "user_data"),
    [
        ("all-in", True, True),  # forwarded whole
        ("no-ads", True, False),  # advertising denied: user_data stripped
        ("stranger", False, False),  # an unknown subject has no consent: dropped
        ("", False, False),  # an empty subject names nobody
    ],
)
async def test_server_events_are_judged_by_the_stored_consent(
    s2s: TestClient[Any, Any],
    fake_vendor: FakeVendor,
    subject: str,
    arrives: bool,
    user_data: bool,
) -> None:
    # A cookie granting everything rides along: a server event is not judged by it.
    everything = cookie_for({"analytics": "granted", "advertising": "granted"}, subject="x")
    resp = await s2s.post(
        MP,
        json=MP_BODY,
        headers={"X-Consent-Subject": subject, "Cookie": f"cg_consent={everything}"},
    )
    assert resp.status in (200, 204)
    if arrives:
        [seen] = await fake_vendor.wait_for(1)
        assert ("user_data" in orjson.loads(seen.body)) is user_data
        # SECURITY: the subject id never reaches the vendor
        assert "x-consent-subject" not in {k.lower() for k in seen.headers}
        assert subject not in seen.body.decode()
    else:
        await settled(s2s)
        assert fake_vendor.seen == []


async def test_a_withdrawal_reaches_the_next_server_event(
    s2s: TestClient[Any, Any], fake_vendor: FakeVendor
) -> None:
    gw = s2s.app[GATEWAY]
    assert gw.book is not None
    headers = {"X-Consent-Subject": "all-in"}
    await s2s.post(MP, json=MP_BODY, headers=headers)
    await fake_vendor.wait_for(1)
    await gw.book.record(
        ConsentRecord("all-in", {"analytics": False}, "withdrawal", 1, time.time() + 1, None, None)
    )
    await s2s.post(MP, json=MP_BODY, headers=headers)
    await settled(s2s)
    assert len(fake_vendor.seen) == 1


@pytest.mark.parametrize(
    ("networks", "arrives"),
    [
        (["127.0.0.0/8"], False),  # the test client is a back end: stranger has no consent
        (["10.0.0.0/8"], True),  # not a back end: the header is ignored, the cookie counts
    ],
)
async def test_the_subject_header_is_believed_only_from_server_networks(
    gateway_factory: Callable[..., Any],
    fake_vendor: FakeVendor,
    networks: list[str],
    arrives: bool,
) -> None:
    client: TestClient[Any, Any] = await gateway_factory(
        hosts=["www.google-analytics.com"],
        extra={"store": {"subject_header": "X-Consent-Subject", "server_networks": networks}},
    )
    everything = cookie_for({"analytics": "granted", "advertising": "granted"}, subject="x")
    resp = await client.post(
        MP,
        json=MP_BODY,
        headers={"X-Consent-Subject": "stranger", "Cookie": f"cg_consent={everything}"},
    )
    assert resp.status in (200, 204)
    if arrives:
        [seen] = await fake_vendor.wait_for(1)
        assert "stranger" not in seen.body.decode()
        assert "x-consent-subject" not in {k.lower() for k in seen.headers}
    else:
        await settled(client)
        assert fake_vendor.seen == []


# -- a withdrawal made before this instance started, or long ago, still wins ------------------


@pytest.mark.parametrize(
    ("extra", "later"),
    [
        ({}, 0.0),  # made before the gateway started: preloaded from the change feed
        ({"store": {"cache_ttl": "100ms"}}, 3600.0),  # outlives the lookup TTL by far
    ],
)
async def test_a_withdrawal_recorded_elsewhere_wins_on_the_first_request(
    tmp_path: Path,
    gateway_factory: Callable[..., Any],
    fake_vendor: FakeVendor,
    monkeypatch: pytest.MonkeyPatch,
    extra: dict[str, object],
    later: float,
) -> None:
    issued = int(time.time()) - 60
    store = SqliteStore(tmp_path / "data" / "consent.db")
    (tmp_path / "data").mkdir(exist_ok=True)
    await store.open()
    await migrate(store)
    for subject in ("withdrawn", "kept"):
        purposes = {"analytics": True, "advertising": True}
        await store.record(ConsentRecord(subject, purposes, "banner", 1, issued, None, None))
    withdrawal = {"analytics": False, "advertising": False}
    await store.record(ConsentRecord("withdrawn", withdrawal, "api", 1, issued + 30, None, None))
    await store.close()

    # The cache's time is the subject: move it forward instead of sleeping through it.
    skew = [0.0]
    monkeypatch.setattr(cache_module, "CLOCK", lambda: time.monotonic() + skew[0])
    client: TestClient[Any, Any] = await gateway_factory(hosts=[GA4], extra=extra)
    skew[0] = later
    everything = {"analytics": "granted", "advertising": "granted"}
    for subject in ("withdrawn", "kept"):
        cookie = cookie_for(everything, subject=subject, issued_at=issued)
        resp = await raw_get(client, GA4_HIT + f"&dl={subject}", {"Cookie": f"cg_consent={cookie}"})
        assert resp.status == 204
    [seen] = await fake_vendor.wait_for(1)
    await settled(client)
    assert len(fake_vendor.seen) == 1 and "dl=kept" in seen.query


# -- the decision header ---------------------------------------------------------------

POSTHOG = "us.i.posthog.com"
_RID = r"id=[0-9a-f]{16}$"


@pytest.mark.parametrize(
    ("target", "consent", "pattern"),
    [
        (GA4_HIT, {}, r"drop; vendor=google-analytics-4; missing=advertising,analytics; "),
        (
            GA4_HIT,
            {"analytics": "granted", "advertising": "denied"},
            r"strip; vendor=google-analytics-4; missing=advertising; ",
        ),
        (
            GA4_HIT,
            {"analytics": "granted", "advertising": "granted"},
            r"forward; vendor=google-analytics-4; ",
        ),
        ("/t/unlisted.example/collect", {}, r"reject; "),  # no vendor: no vendor=
        ("/t/127.0.0.1/collect", {}, r"reject; "),  # refused before it had facts
        (f"/t/{GA4}/nothing", {}, r"reject; vendor=google-analytics-4; "),
        (f"/t/{POSTHOG}/e/", {"analytics": "granted"}, r"forward; vendor=posthog; "),
        (f"/t/{POSTHOG}/e/", {}, r"drop; vendor=posthog; missing=analytics; "),
    ],
)
async def test_every_tag_answer_names_its_decision(
    gateway_factory: Callable[..., Any],
    fake_vendor: FakeVendor,
    target: str,
    consent: dict[str, str],
    pattern: str,
) -> None:
    # SECURITY: a vendor's answer cannot speak for the gateway
    fake_vendor.answers["/e/"] = (200, {"Consent-Gateway-Decision": "forward; id=spoof"}, b"{}")
    client: TestClient[Any, Any] = await gateway_factory(hosts=[GA4, POSTHOG])
    cookie = {"Cookie": f"cg_consent={cookie_for(consent)}"} if consent else {}
    # a request id the visitor sends is never the one named
    resp = await raw_get(client, target, {**cookie, "X-Request-Id": "visitor-chosen"})
    [value] = resp.headers.getall("Consent-Gateway-Decision")
    assert re.fullmatch(pattern + _RID, value), value
    await settled(client)


async def test_the_decision_header_names_the_logged_request(
    gateway_factory: Callable[..., Any], tmp_path: Path
) -> None:
    client: TestClient[Any, Any] = await gateway_factory(hosts=[GA4])
    resp = await raw_get(client, GA4_HIT)
    await _drain_log(client)
    [record] = LogReader(tmp_path / "data" / "decisions.db").records(LogQuery())
    assert resp.headers["Consent-Gateway-Decision"].endswith(f"; id={record.request_id}")


async def test_report_only_names_what_was_done_and_what_would_have_been(
    gateway_factory: Callable[..., Any], fake_vendor: FakeVendor
) -> None:
    client: TestClient[Any, Any] = await gateway_factory(
        hosts=[GA4], extra={"rules": {"report_only": True}}
    )
    resp = await raw_get(client, GA4_HIT)
    value = resp.headers["Consent-Gateway-Decision"]
    assert re.fullmatch(
        r"forward; vendor=google-analytics-4; missing=advertising,analytics; "
        r"report-only=drop; " + _RID,
        value,
    ), value
    await fake_vendor.wait_for(1)


async def test_the_decision_header_can_be_turned_off(
    gateway_factory: Callable[..., Any], fake_vendor: FakeVendor
) -> None:
    fake_vendor.answers["/e/"] = (200, {"Consent-Gateway-Decision": "forward; id=spoof"}, b"{}")
    client: TestClient[Any, Any] = await gateway_factory(
        hosts=[GA4, POSTHOG], extra={"server": {"decision_header": False}}
    )
    cookie = {"Cookie": f"cg_consent={cookie_for({'analytics': 'granted'})}"}
    for target in (GA4_HIT, "/t/unlisted.example/x", f"/t/{POSTHOG}/e/"):
        resp = await raw_get(client, target, cookie)
        assert "Consent-Gateway-Decision" not in resp.headers, target
    await settled(client)
