"""gateway.consent_api: GET/POST/DELETE /consent through the app, and the consent store
behind them (DESIGN §6): the cookie, the record, CSRF and the per-network write limit."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import GATEWAY, build_app
from gateway.store.base import ConsentRecord, StoreError
from tests.conftest import cookie_for, make_config

Client = TestClient[Any, Any]


@pytest.fixture
async def client(gateway_factory: Callable[..., Any]) -> Client:
    c: Client = await gateway_factory()
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


async def test_post_is_recorded_before_it_is_answered(client: Client) -> None:
    gw = client.app[GATEWAY]
    assert gw.book is not None
    notice = "We and our partners use cookies for analytics."
    resp = await client.post(
        "/consent",
        json={"purposes": {"analytics": True}, "source": "api", "notice": notice},
        headers={"X-Request-ID": "req-123"},
    )
    doc = await resp.json()
    assert resp.status == 200 and doc["record"]["id"] is not None
    [record] = await gw.book.store.history(doc["subject"])
    assert record.purposes == {"analytics": True}
    assert record.source == "api" and record.policy_version == 1
    assert record.notice_hash == hashlib.sha256(notice.encode()).hexdigest()
    assert record.id == doc["record"]["id"] and record.at == doc["record"]["at"]
    # the cookie and the record are the same age: one record, shown as the cookie's
    assert doc["purposes"]["analytics"] == {"state": "granted", "source": "cookie"}
    await client.delete("/consent")
    history = await gw.book.store.history(doc["subject"])
    assert [r.source for r in history] == ["api", "withdrawal"]
    assert history[1].purposes == {
        p: False for p in ("functional", "analytics", "advertising", "personalization")
    }


@pytest.mark.parametrize(
    "body",
    [
        {"purposes": {"analytics": True}, "source": "withdrawal"},  # only DELETE withdraws
        {"purposes": {"analytics": True}, "notice": ""},
        {"purposes": {"analytics": True}, "notice": 5},
        {"purposes": {"analytics": True}, "ip": "1.2.3.4"},  # nothing else is taken
    ],
)
async def test_post_refuses_other_fields(client: Client, body: dict[str, object]) -> None:
    resp = await client.post("/consent", json=body)
    assert resp.status == 400 and "cg_consent" not in resp.cookies


async def test_a_store_that_cannot_record_gets_no_cookie(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = client.app[GATEWAY]
    assert gw.book is not None

    async def fail(rec: object) -> object:
        raise StoreError("sqlite: OperationalError: disk I/O error")

    monkeypatch.setattr(gw.book.store, "record_change", fail)
    resp = await client.post("/consent", json={"purposes": {"analytics": True}})
    assert resp.status == 503
    assert "cg_consent" not in resp.cookies
    resp = await client.delete("/consent")
    assert resp.status == 503 and "cg_consent" not in resp.cookies


async def test_a_withdrawal_recorded_elsewhere_beats_an_older_cookie(client: Client) -> None:
    gw = client.app[GATEWAY]
    assert gw.book is not None
    old = cookie_for({"analytics": "granted"}, subject="visitor-1", issued_at=int(time.time()) - 60)
    headers = {"Cookie": f"cg_consent={old}"}
    state = await (await client.get("/consent", headers=headers)).json()
    assert state["purposes"]["analytics"] == {"state": "granted", "source": "cookie"}
    # withdrawn through another device, a back end, or the admin
    await gw.book.record(
        ConsentRecord("visitor-1", {"analytics": False}, "api", 1, time.time(), None, None)
    )
    state = await (await client.get("/consent", headers=headers)).json()
    assert state["purposes"]["analytics"] == {"state": "denied", "source": "store"}
    # a new choice on this browser merges with the newer (stored) record, not the cookie
    resp = await client.post("/consent", json={"purposes": {"advertising": True}}, headers=headers)
    purposes = (await resp.json())["purposes"]
    assert purposes["analytics"]["state"] == "denied"
    assert purposes["advertising"]["state"] == "granted"


async def test_a_policy_version_bump_asks_everyone_again(
    tmp_path: Path, aiohttp_client: Callable[..., Any]
) -> None:
    before: Client = await aiohttp_client(build_app(make_config(tmp_path)))
    resp = await before.post("/consent", json={"purposes": {"analytics": True}})
    cookie, subject = resp.cookies["cg_consent"].value, (await resp.json())["subject"]
    await before.close()

    bumped = make_config(tmp_path, extra={"consent": {"policy_version": 2}})
    after: Client = await aiohttp_client(build_app(bumped))
    state = await (await after.get("/consent", headers={"Cookie": f"cg_consent={cookie}"})).json()
    assert state["cookie"] == "old-policy"
    assert state["purposes"]["analytics"] == {"state": "denied", "source": "default:opt-in"}
    # the proof is untouched: the record stays, under the version it was given
    gw = after.app[GATEWAY]
    assert gw.book is not None
    [record] = await gw.book.store.history(subject)
    assert record.policy_version == 1 and record.purposes == {"analytics": True}


async def test_an_erased_subjects_old_cookie_no_longer_counts_even_after_a_restart(
    tmp_path: Path, aiohttp_client: Callable[..., Any]
) -> None:
    first: Client = await aiohttp_client(build_app(make_config(tmp_path)))
    resp = await first.post("/consent", json={"purposes": {"analytics": True}})
    cookie, subject = resp.cookies["cg_consent"].value, (await resp.json())["subject"]
    headers = {"Cookie": f"cg_consent={cookie}"}
    gw = first.app[GATEWAY]
    assert gw.book is not None
    await gw.book.erase(subject)
    state = await (await first.get("/consent", headers=headers)).json()
    assert state["purposes"]["analytics"] == {"state": "denied", "source": "default:opt-in"}
    await first.close()

    again: Client = await aiohttp_client(build_app(make_config(tmp_path)))  # a cold cache
    state = await (await again.get("/consent", headers=headers)).json()
    assert state["purposes"]["analytics"] == {"state": "denied", "source": "default:opt-in"}
    # the visitor may choose again: a new record stands
    resp = await again.post("/consent", json={"purposes": {"analytics": True}}, headers=headers)
    assert (await resp.json())["purposes"]["analytics"]["state"] == "granted"


async def test_consent_writes_are_limited_per_network(
    gateway_factory: Callable[..., Any],
) -> None:
    # 300 anonymous 15 KB notices in 0.7 s were all stored before the limit
    extra = {"server": {"consent_rate_limit": 5, "trusted_proxies": ["127.0.0.1/32"]}}
    client = await gateway_factory(extra=extra)
    body = {"purposes": {"analytics": True}}
    net_a = {"X-Forwarded-For": "203.0.113.7"}
    statuses = [(await client.post("/consent", json=body, headers=net_a)).status for _ in range(5)]
    assert statuses == [200] * 5
    refused = await client.post("/consent", json=body, headers=net_a)
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert (await client.delete("/consent", headers=net_a)).status == 429
    # another network is not affected, nor are reads
    assert (
        await client.post("/consent", json=body, headers={"X-Forwarded-For": "198.51.100.4"})
    ).status == 200
    assert (await client.get("/consent", headers=net_a)).status == 200
    metrics = client.app[GATEWAY].metrics.registry
    assert metrics.get_sample_value("consent_gateway_consent_rate_limited_total") == 2


async def test_the_api_can_be_turned_off(gateway_factory: Callable[..., Any]) -> None:
    client: Client = await gateway_factory(extra={"server": {"consent_api": False}})
    for method in ("GET", "POST", "DELETE"):
        resp = await client.request(method, "/consent", json={"purposes": {"analytics": True}})
        assert resp.status == 404 and "cg_consent" not in resp.cookies


# --- the same-origin check behind a reverse proxy ---------------------------------------

SITE = "https://www.example.com"
#: nginx's default `proxy_set_header Host $proxy_host`, plus the site's public host
NGINX = {
    "Host": "127.0.0.1:8080",
    "X-Forwarded-Host": "www.example.com",
    "X-Forwarded-Proto": "https",
}


@pytest.mark.parametrize(
    ("trusted", "allowed", "headers", "status"),
    [
        # behind a trusted nginx, the site's own origin is the gateway's public origin
        (["127.0.0.0/8"], [], {**NGINX, "Origin": SITE}, 200),
        (
            ["127.0.0.0/8"],
            [],
            {
                "Host": "cg.internal",
                "Forwarded": "host=www.example.com;proto=https",
                "Origin": SITE,
            },
            200,
        ),
        # SECURITY: the same headers from a peer that is not a trusted proxy do not help
        ([], [], {**NGINX, "Origin": SITE}, 403),
        (["10.0.0.0/8"], [], {**NGINX, "Origin": SITE}, 403),
        # the scheme counts: http://www.example.com is another origin
        (["127.0.0.0/8"], [], {**NGINX, "Origin": "http://www.example.com"}, 403),
        (["127.0.0.0/8"], [], {**NGINX, "Origin": "https://evil.test"}, 403),
        # an allowed origin, whatever the proxy says
        ([], [SITE], {"Origin": SITE}, 200),
        ([], ["https://*.example.com"], {"Origin": "https://shop.example.com"}, 200),
        ([], ["https://*.example.com"], {"Origin": "https://example.com.evil.test"}, 403),
        ([], [SITE], {"Origin": "null"}, 403),
    ],
)
async def test_same_origin_check_table(
    gateway_factory: Callable[..., Any],
    trusted: list[str],
    allowed: list[str],
    headers: dict[str, str],
    status: int,
) -> None:
    client: Client = await gateway_factory(
        extra={"server": {"trusted_proxies": trusted, "allowed_origins": allowed}}
    )
    for method in ("POST", "DELETE"):
        resp = await client.request(
            method, "/consent", json={"purposes": {"analytics": True}}, headers=headers
        )
        assert resp.status == status, (method, await resp.text())
        assert ("cg_consent" in resp.cookies) is (status == 200)
