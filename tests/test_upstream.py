"""gateway.upstream: URLs, overrides, the background queue, error mapping."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import MappingProxyType

import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import UpstreamConfig
from gateway.errors import UpstreamError, UpstreamRefused, UpstreamTimeout
from gateway.metrics import Metrics
from gateway.model import Outgoing
from gateway.upstream import Upstream
from tests.conftest import ROOT, FakeVendor

#: the hosts "loaded rules" list in these tests
_LISTED_HOSTS = frozenset({"www.google-analytics.com", "www.googletagmanager.com"})


def _LISTED(host: str) -> bool:
    return host in _LISTED_HOSTS


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
    up = Upstream(UpstreamConfig(), Metrics(), listed=_LISTED)
    built = up.url_for(o)
    assert str(built) == url
    assert built.host == "www.google-analytics.com"


async def test_url_for_override() -> None:
    cfg = UpstreamConfig(
        overrides=MappingProxyType(
            {"https://www.google-analytics.com": yarl.URL("http://127.0.0.1:9/ga/")}
        )
    )
    up = Upstream(cfg, Metrics(), listed=_LISTED)
    assert str(up.url_for(out())) == "http://127.0.0.1:9/ga/g/collect?v=2"
    assert str(up.url_for(out(host="www.googletagmanager.com"))).startswith("https://www.google")
    # a host no rule lists has no URL at all, override or not
    with pytest.raises(UpstreamRefused):
        up.url_for(out(host="other.example"))


def _cfg(fake: FakeVendor, **kw: object) -> UpstreamConfig:
    overrides = {"https://www.google-analytics.com": yarl.URL(fake.base_for("ga"))}
    return UpstreamConfig(overrides=MappingProxyType(overrides), **kw)  # type: ignore[arg-type]


async def test_open_streams_and_sends_no_cookie_jar(fake_vendor: FakeVendor) -> None:
    metrics = Metrics()
    up = Upstream(_cfg(fake_vendor), metrics, listed=_LISTED)
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
    up = Upstream(_cfg(fake_vendor), Metrics(), listed=_LISTED)
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
    up = Upstream(
        _cfg(fake_vendor, total_timeout=0.2, connect_timeout=0.1), metrics, listed=_LISTED
    )
    await up.start()
    try:
        with pytest.raises(UpstreamTimeout):
            async with up.open(out(), "ga4") as resp:
                await resp.read()
    finally:
        await up.close()
    assert (
        metrics.registry.get_sample_value(
            "consent_gateway_upstream_errors_total", {"kind": "timeout"}
        )
        == 1
    )


async def test_connect_error_is_mapped() -> None:
    cfg = UpstreamConfig(
        overrides=MappingProxyType(
            {"https://www.google-analytics.com": yarl.URL("http://127.0.0.1:1")}
        )
    )
    metrics = Metrics()
    up = Upstream(cfg, metrics, listed=_LISTED)
    await up.start()
    try:
        with pytest.raises(UpstreamError) as info:
            async with up.open(out(), "ga4"):
                pass
    finally:
        await up.close()
    assert info.value.kind == "connect"
    assert (
        metrics.registry.get_sample_value(
            "consent_gateway_upstream_errors_total", {"kind": "connect"}
        )
        == 1
    )


async def test_background_queue_forwards_and_full_queue_never_blocks(
    fake_vendor: FakeVendor,
) -> None:
    fake_vendor.delay = 0.3
    metrics = Metrics()
    up = Upstream(_cfg(fake_vendor, queue_size=2, queue_workers=1), metrics, listed=_LISTED)
    await up.start()
    try:
        accepted = [up.enqueue(out(query=f"n={i}"), "ga4") for i in range(10)]
        # One is being sent (or about to be), two wait; the rest are refused at once.
        assert accepted[:2] == [True, True] and not all(accepted)
        dropped = metrics.registry.get_sample_value("consent_gateway_forward_queue_dropped_total")
        assert dropped == accepted.count(False)
    finally:
        await up.close(drain_timeout=5)
    assert len(fake_vendor.seen) == accepted.count(True)


async def test_close_drains_queue(fake_vendor: FakeVendor) -> None:
    up = Upstream(_cfg(fake_vendor, queue_workers=2), Metrics(), listed=_LISTED)
    await up.start()
    for i in range(20):
        assert up.enqueue(out(query=f"n={i}"), "ga4")
    await up.close()
    assert sorted(s.query for s in fake_vendor.seen) == sorted(f"n={i}" for i in range(20))
    assert not up.enqueue(out(), "ga4")  # closed: refused, counted, never blocks
    await asyncio.sleep(0)


# -- the gate ---------------------------------------------------------------------


@pytest.fixture
async def canary(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> list[str]:
    """A listener on loopback standing for the internal network: it records every hit."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="internal")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = await aiohttp_server(app)
    hits.append(f"http://127.0.0.1:{server.port}")  # [0]: where it listens
    return hits


@pytest.fixture
async def redirecting_vendor(
    aiohttp_server: Callable[..., Awaitable[TestServer]], canary: list[str]
) -> str:
    """A vendor that answers everything, WebSocket upgrades included, with a redirect
    into the canary."""

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(canary[0] + "/internal")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}/ga"


def _via(base: str) -> UpstreamConfig:
    return UpstreamConfig(
        overrides=MappingProxyType({"https://www.google-analytics.com": yarl.URL(base)})
    )


async def test_websocket_handshake_redirect_is_not_followed(
    redirecting_vendor: str, canary: list[str]
) -> None:
    metrics = Metrics()
    up = Upstream(_via(redirecting_vendor), metrics, listed=_LISTED)
    await up.start()
    try:
        with pytest.raises(UpstreamRefused):
            await up.ws_connect(out(path="/ws", query=""), "ga4")
    finally:
        await up.close()
    assert canary[1:] == []  # the internal listener was never reached
    assert (
        metrics.registry.get_sample_value(
            "consent_gateway_upstream_errors_total", {"kind": "refused"}
        )
        == 1
    )


async def test_http_redirect_is_answered_not_followed(
    redirecting_vendor: str, canary: list[str]
) -> None:
    up = Upstream(_via(redirecting_vendor), Metrics(), listed=_LISTED)
    await up.start()
    try:
        async with up.open(out(), "ga4") as resp:
            assert resp.status == 302
        assert up.enqueue(out(), "ga4")
        await up.drain()
    finally:
        await up.close()
    assert canary[1:] == []


async def test_a_request_outside_the_gate_is_refused(canary: list[str]) -> None:
    up = Upstream(UpstreamConfig(), Metrics(), listed=_LISTED)
    await up.start()
    try:
        session = up._session  # what a new call site would reach for
        assert session is not None
        with pytest.raises(UpstreamRefused):
            await session.get(canary[0] + "/x")
    finally:
        await up.close()
    assert canary[1:] == []


async def test_an_unlisted_host_is_refused_before_connecting() -> None:
    up = Upstream(UpstreamConfig(), Metrics(), listed=_LISTED)
    await up.start()
    try:
        with pytest.raises(UpstreamRefused):
            async with up.open(out(host="internal.example"), "x"):
                pass
        with pytest.raises(UpstreamRefused):
            await up.ws_connect(out(host="internal.example"), "x")
    finally:
        await up.close()


#: every place in gateway/ that calls an HTTP client session: (module, function, method).
#: Vendor traffic goes only through `Upstream.open` and `Upstream.ws_connect` (the gate);
#: webhooks post to the operator's own configured URLs, never following a redirect.
CALL_SITES = {
    ("upstream.py", "open", "request"),
    ("upstream.py", "ws_connect", "ws_connect"),
    ("dispatch.py", "_post", "post"),
}
_CLIENT_METHODS = {"request", "get", "post", "put", "patch", "delete", "head", "options"}


def _method_calls() -> Iterator[tuple[Path, str, ast.Call, ast.Attribute]]:
    """(file, function, call, its `receiver.method`) for every method call in gateway/."""
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    yield path, fn.name, node, node.func


def _session_calls() -> tuple[set[tuple[str, str, str]], list[ast.Call]]:
    found: set[tuple[str, str, str]] = set()
    calls: list[ast.Call] = []
    for path, fn_name, node, func in _method_calls():
        method, receiver = func.attr, ast.unparse(func.value)
        if method in _CLIENT_METHODS | {"ws_connect"} and "session" in receiver.lower():
            found.add((path.name, fn_name, method))
            calls.append(node)
    return found, calls


def test_every_upstream_call_site_goes_through_the_gate() -> None:
    found, calls = _session_calls()
    assert found == CALL_SITES
    for call in calls:
        if call.func.attr in _CLIENT_METHODS:  # type: ignore[attr-defined]
            redirects = [k for k in call.keywords if k.arg == "allow_redirects"]
            assert redirects and ast.unparse(redirects[0].value) == "False"


def test_sessions_are_made_in_two_places_only() -> None:
    makers = {
        path.name
        for path in (ROOT / "gateway").rglob("*.py")
        if "ClientSession(" in path.read_text()
    }
    assert makers == {"upstream.py", "dispatch.py"}
    # the vendor session carries the gate as its middleware
    assert "middlewares=(_gate,)" in (ROOT / "gateway" / "upstream.py").read_text()


def test_beacon_connections_are_opened_in_one_place_to_the_gate_s_url() -> None:
    """The beacon pool's sockets: one `create_connection`, in `BeaconPool._connect`, and
    the pool sends only to the URL `url_for` built (the gate's destination) for the job.
    The one other stream is the decision log's writer process, on a socket pair it made
    itself: no address at all."""
    opened: set[tuple[str, str]] = set()
    sends: list[str] = []
    for path, fn_name, node, func in _method_calls():
        if func.attr in {"create_connection", "open_connection", "connect_accepted_socket"}:
            if path.name == "hosts.py":
                assert [k.arg for k in node.keywords] == ["sock"] and not node.args
                assert "socket.socketpair()" in path.read_text()
            opened.add((path.name, fn_name))
        if func.attr == "submit" and ast.unparse(func.value) == "pool":
            sends.append(f"{path.name}:{fn_name}:{ast.unparse(node.args[1])}")
    assert opened == {("beacons.py", "_connect"), ("hosts.py", "_spawn")}
    assert sends == ["upstream.py:enqueue:self.url_for(out)"]
