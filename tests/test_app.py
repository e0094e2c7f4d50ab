"""gateway.app: the consent API, health, metrics, and what the visitor gets back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import GATEWAY
from tests.conftest import cookie_for

Client = TestClient[Any, Any]


@pytest.fixture
async def client(gateway_factory: Callable[..., Any]) -> Client:
    c: Client = await gateway_factory(hosts=["www.google-analytics.com"])
    return c


async def test_get_consent_without_cookie_is_the_regime_default(client: Client) -> None:
    state = await (await client.get("/consent")).json()
    assert state["regime"] == "opt-in" and state["cookie"] == "absent"
    assert state["purposes"]["analytics"] == {"state": "denied", "source": "default:opt-in"}
    assert state["purposes"]["necessary"]["state"] == "granted"


async def test_post_sets_a_signed_cookie_and_merges(client: Client) -> None:
    resp = await client.post("/consent", json={"purposes": {"analytics": True}})
    assert resp.status == 200
    morsel = resp.cookies["cg_consent"]
    assert morsel["httponly"] and morsel["samesite"] == "Lax" and morsel["path"] == "/"
    first = await resp.json()
    await client.post("/consent", json={"purposes": {"advertising": True}})
    state = await (await client.get("/consent")).json()
    assert state["subject"] == first["subject"]  # the same visitor keeps one subject id
    assert state["purposes"]["analytics"]["state"] == "granted"
    assert state["purposes"]["advertising"] == {"state": "granted", "source": "cookie"}
    assert state["cookie"] == "valid"


async def test_delete_withdraws_everything_but_necessary(client: Client) -> None:
    await client.post("/consent", json={"purposes": {"analytics": True, "advertising": True}})
    state = await (await client.delete("/consent")).json()
    assert {p: v["state"] for p, v in state["purposes"].items()} == {
        "necessary": "granted",
        "functional": "denied",
        "analytics": "denied",
        "advertising": "denied",
        "personalization": "denied",
    }
    assert state["purposes"]["analytics"]["source"] == "cookie"


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b'{"purposes": {"analytics": "yes"}}', {"Content-Type": "application/json"}, 400),
        (b'{"purposes": {"<script>x": true}}', {"Content-Type": "application/json"}, 400),
        (b"[1]", {"Content-Type": "application/json"}, 400),
        (b"not json", {"Content-Type": "application/json"}, 400),
        (b"purposes=analytics", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
        (
            b'{"purposes": {"analytics": true}}',
            {"Content-Type": "application/json", "Origin": "https://evil.example"},
            403,
        ),
    ],
)
async def test_post_refuses_bad_input_and_cross_origin(
    client: Client, body: bytes, headers: dict[str, str], status: int
) -> None:
    resp = await client.post("/consent", data=body, headers=headers)
    assert resp.status == status
    text = await resp.text()
    assert "<script>" not in text and "evil.example" not in text
    assert "cg_consent" not in resp.cookies


async def test_same_origin_post_is_allowed(client: Client) -> None:
    origin = str(client.make_url("")).rstrip("/")
    resp = await client.post(
        "/consent", json={"purposes": {"analytics": True}}, headers={"Origin": origin}
    )
    assert resp.status == 200


async def test_tampered_cookie_is_reported_and_ignored(client: Client) -> None:
    value = cookie_for({"analytics": "granted"})
    resp = await client.get("/consent", headers={"Cookie": f"cg_consent={value[:-2]}xx"})
    state = await resp.json()
    assert state["cookie"] == "bad-signature"
    assert state["purposes"]["analytics"]["state"] == "denied"
    assert value not in await resp.text()  # never echoed back


async def test_health_ready_and_metrics(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["checks"]["rules"] is True
    await client.get("/t/www.google-analytics.com/g/collect?v=2&tid=G-1&en=x")
    text = await (await client.get("/metrics")).text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    drops = [
        s
        for s in families["gateway_requests"].samples
        if s.name == "gateway_requests_total" and s.labels["action"] == "drop"
    ]
    assert drops and drops[0].labels["vendor"] == "google-analytics-4" and drops[0].value == 1


async def test_injected_markup_is_never_reflected(client: Client) -> None:
    for target in (
        "/t/%3Cscript%3Ealert(1)%3C%2Fscript%3E/x",
        "/t/www.google-analytics.com/<script>alert(1)</script>",
        "/<script>alert(1)</script>",
        "/t/evil.example/x?q=<script>alert(1)</script>",
    ):
        resp = await client.get(target)
        text = await resp.text()
        assert 400 <= resp.status < 500
        assert "script" not in text.lower() and resp.content_type == "application/json"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


async def test_metrics_counters_move_with_traffic(
    gateway_factory: Callable[..., Any], fake_vendor: Any
) -> None:
    client: Client = await gateway_factory(hosts=["www.google-analytics.com"])
    before = _samples(await (await client.get("/metrics")).text())
    granted = cookie_for({"analytics": "granted", "advertising": "granted"})
    hit = "/t/www.google-analytics.com/g/collect?v=2&tid=G-1&en=x"
    await client.get(hit)  # dropped
    await client.get(hit, headers={"Cookie": f"cg_consent={granted}"})  # forwarded
    await client.get("/t/evil.example/x")  # rejected
    await client.get(hit, headers={"Cookie": "cg_consent=k1.forged.sig"})  # bad cookie
    await fake_vendor.wait_for(1)
    log = client.app[GATEWAY].decision_log
    for _ in range(100):
        if log.depth == 0:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    after = _samples(await (await client.get("/metrics")).text())

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    ga = {"vendor": "google-analytics-4", "endpoint": "collect"}
    assert moved("gateway_requests_total", action="drop", **ga) == 2
    assert moved("gateway_requests_total", action="forward", **ga) == 1
    assert moved("gateway_requests_total", vendor="-", endpoint="-", action="reject") == 1
    assert (
        moved("gateway_consent_cookie_invalid_total", reason="unknown-key")
        + moved("gateway_consent_cookie_invalid_total", reason="malformed")
        + moved("gateway_consent_cookie_invalid_total", reason="bad-signature")
        == 1
    )
    assert moved("gateway_decision_log_written_total") == 3  # drop, drop, reject
    assert moved("gateway_decision_seconds_count") == 4
    assert moved("gateway_upstream_seconds_count", vendor="google-analytics-4") == 1
