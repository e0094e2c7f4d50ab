"""gateway.upstream: URLs, overrides, the background queue, error mapping."""

from __future__ import annotations

import asyncio
from types import MappingProxyType

import pytest
import yarl

from gateway.config import UpstreamConfig
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.metrics import Metrics
from gateway.model import Outgoing
from gateway.upstream import Upstream
from tests.conftest import FakeVendor


def out(
    host: str = "www.google-analytics.com", path: str = "/g/collect", query: str = "v=2"
) -> Outgoing:
    return Outgoing("GET", host, path, query, (("Accept", "*/*"),), b"")


@pytest.mark.parametrize(
    ("o", "url"),
    [
        (out(), "https://www.google-analytics.com/g/collect?v=2"),
        (out(query=""), "https://www.google-analytics.com/g/collect"),
        (out(path="/a%2Fb", query="x=%20y"), "https://www.google-analytics.com/a%2Fb?x=%20y"),
        # A path can never become an authority: the host comes from the rule.
        (out(path="//evil.example/x"), "https://www.google-analytics.com//evil.example/x?v=2"),
        (out(path="/@evil.example"), "https://www.google-analytics.com/@evil.example?v=2"),
    ],
)
async def test_url_for(o: Outgoing, url: str) -> None:
    up = Upstream(UpstreamConfig(), Metrics())
    built = up.url_for(o)
    assert str(built) == url
    assert built.host == "www.google-analytics.com"


async def test_url_for_override() -> None:
    cfg = UpstreamConfig(
        overrides=MappingProxyType(
            {"https://www.google-analytics.com": yarl.URL("http://127.0.0.1:9/ga/")}
        )
    )
    up = Upstream(cfg, Metrics())
    assert str(up.url_for(out())) == "http://127.0.0.1:9/ga/g/collect?v=2"
    assert str(up.url_for(out(host="other.example"))) == "https://other.example/g/collect?v=2"


def _cfg(fake: FakeVendor, **kw: object) -> UpstreamConfig:
    overrides = {"https://www.google-analytics.com": yarl.URL(fake.base_for("ga"))}
    return UpstreamConfig(overrides=MappingProxyType(overrides), **kw)  # type: ignore[arg-type]


async def test_open_streams_and_sends_no_cookie_jar(fake_vendor: FakeVendor) -> None:
    metrics = Metrics()
    up = Upstream(_cfg(fake_vendor), metrics)
    await up.start()
    try:
        for _ in range(2):
            async with up.open(out(), "ga4") as resp:
                assert resp.status == 200 and await resp.read() == b"vendor-ok"
    finally:
        await up.close()
    # The vendor's Set-Cookie of the first answer must not come back on the second request.
    assert all("cookie" not in s.headers for s in fake_vendor.seen)
    assert "python" not in fake_vendor.seen[0].headers.get("user-agent", "").lower()
    assert fake_vendor.seen[0].path == "/g/collect" and fake_vendor.seen[0].query == "v=2"


async def test_redirects_are_not_followed(fake_vendor: FakeVendor) -> None:
    fake_vendor.answers["/g/collect"] = (302, {"Location": "https://elsewhere.example/"}, b"")
    up = Upstream(_cfg(fake_vendor), Metrics())
    await up.start()
    try:
        async with up.open(out(), "ga4") as resp:
            assert resp.status == 302
    finally:
        await up.close()
    assert len(fake_vendor.seen) == 1


async def test_timeout_is_mapped_and_counted(fake_vendor: FakeVendor) -> None:
    fake_vendor.delay = 2.0
    metrics = Metrics()
    up = Upstream(_cfg(fake_vendor, total_timeout=0.2, connect_timeout=0.1), metrics)
    await up.start()
    try:
        with pytest.raises(UpstreamTimeout):
            async with up.open(out(), "ga4") as resp:
                await resp.read()
    finally:
        await up.close()
    assert (
        metrics.registry.get_sample_value("gateway_upstream_errors_total", {"kind": "timeout"}) == 1
    )


async def test_connect_error_is_mapped() -> None:
    cfg = UpstreamConfig(
        overrides=MappingProxyType(
            {"https://www.google-analytics.com": yarl.URL("http://127.0.0.1:1")}
        )
    )
    metrics = Metrics()
    up = Upstream(cfg, metrics)
    await up.start()
    try:
        with pytest.raises(UpstreamError) as info:
            async with up.open(out(), "ga4"):
                pass
    finally:
        await up.close()
    assert info.value.kind == "connect"
    assert (
        metrics.registry.get_sample_value("gateway_upstream_errors_total", {"kind": "connect"}) == 1
    )


async def test_background_queue_forwards_and_full_queue_never_blocks(
    fake_vendor: FakeVendor,
) -> None:
    fake_vendor.delay = 0.3
    metrics = Metrics()
    up = Upstream(_cfg(fake_vendor, queue_size=2, queue_workers=1), metrics)
    await up.start()
    try:
        accepted = [up.enqueue(out(query=f"n={i}"), "ga4") for i in range(10)]
        # One is being sent (or about to be), two wait; the rest are refused at once.
        assert accepted[:2] == [True, True] and not all(accepted)
        dropped = metrics.registry.get_sample_value("gateway_forward_queue_dropped_total")
        assert dropped == accepted.count(False)
    finally:
        await up.close(drain_timeout=5)
    assert len(fake_vendor.seen) == accepted.count(True)


async def test_close_drains_queue(fake_vendor: FakeVendor) -> None:
    up = Upstream(_cfg(fake_vendor, queue_workers=2), Metrics())
    await up.start()
    for i in range(20):
        assert up.enqueue(out(query=f"n={i}"), "ga4")
    await up.close()
    assert sorted(s.query for s in fake_vendor.seen) == sorted(f"n={i}" for i in range(20))
    assert not up.enqueue(out(), "ga4")  # closed: refused, counted, never blocks
    await asyncio.sleep(0)
