"""Open-proxy and SSRF probes: whatever a visitor sends, a canary on loopback hears nothing.

The gateway connects to exactly two kinds of place: `https://{host}` for a host a loaded
rule lists, or the origin `upstream.overrides` names for it (gateway/upstream.py, `url_for`
and the `_gate` client middleware). Everything else must be refused, and no redirect may
ever be followed, over HTTP or WebSocket. Each probe below tries to make the gateway reach
a canary, standing for the internal network:

- an aiohttp server on 127.0.0.1 recording every HTTP request it gets (WebSocket
  handshakes included) and counting every connection it accepts (a TLS handshake is
  never a request), and
- a raw asyncio TCP server on 127.0.0.1 counting every connection, so an attempt that is
  not HTTP at all (TLS, a tunnel) is seen too.

A probe passes when, after the gateway answered and its background queue was drained
(`Upstream.drain()`: an explicit wait, never a sleep), both listeners heard nothing, the
gateway answered with a 4xx or the answer a vendor may legitimately give (a relayed 3xx,
a harmless 2xx), never a 500, and the gateway logged no ERROR (a traceback).

One live gateway serves the whole module. Consent is granted for every purpose first
(`POST /consent`, as any attacker may), so refusals come from routing and the gate, never
from consent. Every vendor host the rules list (and every example host) is overridden to
one fake vendor, so no probe can reach the real internet; that vendor answers every request
with a redirect into the canary (status and target chosen by the `cg_bounce` / `cg_to`
query parameters), except requests marked `cg_control=1`, which it answers normally: a
probe that slips past routing is therefore also bounced at the canary, and must still not
reach it. Control tests prove the canary counts, the redirects really point at it, and
legitimate traffic flows (so every "heard nothing" assertion can fail).

Requests are written byte for byte on raw sockets (no client library normalises the
target), except WebSocket handshakes, which use aiohttp's client.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_protocol import RequestHandler

from gateway.app import GATEWAY, build_app
from gateway.config import DEFAULT_PURPOSES
from gateway.model import EndpointKind
from gateway.ruleset.load import load_rules
from gateway.ruleset.schema import ExampleSpec, ForwardMode
from gateway.state import Gateway
from tests.conftest import RULES_DIR, make_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

RULES = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))

#: what a refused probe may be answered with: the gateway's own 4xx, never a 5xx
REFUSED = range(400, 500)
#: placeholders in probe targets: the canary's HTTP and raw TCP ports
P, R = "{P}", "{R}"


# -- the canary, the fake vendor, the live gateway -----------------------------------------


@dataclass
class Canary:
    """The internal network: two loopback listeners that count everything they get."""

    http_port: int = 0
    raw_port: int = 0
    #: "METHOD path" of every HTTP request the HTTP listener got
    requests: list[str] = field(default_factory=list)
    #: connections the HTTP listener accepted (TLS or garbage never becomes a request)
    http_connections: int = 0
    #: connections the raw TCP listener accepted
    connections: int = 0

    @property
    def heard(self) -> list[str]:
        return (
            self.requests
            + ["<http listener connection>"] * self.http_connections
            + ["<raw tcp connection>"] * self.connections
        )

    def location(self, to: str) -> str:
        """A redirect target into the canary, spelled as `to` says."""
        return {
            "http": f"http://127.0.0.1:{self.http_port}/internal",
            "raw": f"http://127.0.0.1:{self.raw_port}/internal",
            "https": f"https://127.0.0.1:{self.raw_port}/internal",
            "localhost": f"http://localhost:{self.http_port}/internal",
            "scheme-relative": f"//127.0.0.1:{self.http_port}/internal",
            "ws": f"ws://127.0.0.1:{self.http_port}/internal",
        }[to]

    def reset(self) -> None:
        self.requests.clear()
        self.http_connections = self.connections = 0


@dataclass(frozen=True)
class VendorHit:
    method: str
    path: str  # /{vendor host}/{path}, as the override base makes it
    query: str
    upgrade: str | None


@dataclass
class Vendor:
    """The fake vendor behind every override: it bounces everything into the canary."""

    url: str = ""
    seen: list[VendorHit] = field(default_factory=list)


@dataclass
class Live:
    client: TestClient[web.Request, web.Application]
    gw: Gateway
    canary: Canary
    vendor: Vendor
    #: `Cookie:` value granting every purpose (set by POST /consent)
    cookie: str

    @property
    def port(self) -> int:
        port = self.client.port
        assert port is not None
        return port

    def fill(self, text: str) -> str:
        return text.replace(P, str(self.canary.http_port)).replace(R, str(self.canary.raw_port))

    async def raw(self, data: bytes, timeout: float = 5.0) -> list[int]:
        """Write `data` to the gateway as it is; the status of every answer, in order.

        The last request must say `Connection: close`: the answers are read until the
        gateway closes, so every handler of this connection has finished. A gateway that
        keeps the connection open (waiting for body bytes it will never get) is cut off
        after `timeout` seconds: a bound on a hang, not a wait for background work.
        """
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(data)
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(-1), timeout)
            except TimeoutError:
                answer = b""
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
        return [int(s) for s in re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)]

    async def send(
        self,
        target: str,
        method: str = "GET",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        *,
        host: str = "shop.example",
    ) -> list[int]:
        """One request with `target` exactly as given (placeholders filled), consent granted."""
        lines = [f"{method} {self.fill(target)} HTTP/1.1", f"Host: {self.fill(host)}"]
        lines += [f"{k}: {self.fill(v)}" for k, v in headers or []]
        lines += [f"Cookie: {self.cookie}", "Connection: close"]
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        return await self.raw(head + body)

    async def assert_quiet(self) -> None:
        """Nothing reached the canary, once every queued forward has been sent or failed."""
        # SECURITY: the negative check waits on the queue itself, never on a clock.
        await self.gw.upstream.drain()
        assert self.canary.heard == [], f"the canary was reached: {self.canary.heard}"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def canary() -> AsyncIterator[Canary]:
    found = Canary()

    async def record(request: web.Request) -> web.Response:
        found.requests.append(f"{request.method} {request.raw_path}")
        return web.Response(text="internal")

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        found.connections += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\ninternal")
        try:
            await writer.drain()
            # read what the client sent before closing (unread bytes would reset the connection)
            await asyncio.wait_for(reader.read(65536), 1.0)
        except (ConnectionError, TimeoutError):
            pass
        writer.close()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    http = TestServer(app, host="127.0.0.1")
    await http.start_server()
    # Every connection, not only those that became requests: a TLS handshake or a tunnel
    # attempt never reaches the handler. aiohttp's Server is told of each one.
    assert http.runner is not None and http.runner.server is not None
    server = http.runner.server
    made = server.connection_made

    def counted(handler: RequestHandler, transport: asyncio.Transport) -> None:
        found.http_connections += 1
        made(handler, transport)

    server.connection_made = counted  # type: ignore[method-assign]
    raw = await asyncio.start_server(count, "127.0.0.1", 0)
    assert http.port is not None
    found.http_port = http.port
    found.raw_port = int(raw.sockets[0].getsockname()[1])
    yield found
    raw.close()
    await raw.wait_closed()
    await http.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def bouncer(canary: Canary) -> AsyncIterator[Vendor]:
    fake = Vendor()

    async def answer(request: web.Request) -> web.StreamResponse:
        path, _, query = request.raw_path.partition("?")
        fake.seen.append(VendorHit(request.method, path, query, request.headers.get("Upgrade")))
        params = dict(p.partition("=")[::2] for p in query.split("&"))
        if params.get("cg_control") == "1":
            if request.headers.get("Upgrade", "").lower() == "websocket":
                ws = web.WebSocketResponse()
                await ws.prepare(request)
                async for msg in ws:
                    if msg.type is WSMsgType.TEXT:
                        await ws.send_str("echo:" + msg.data)
                return ws
            await request.read()
            return web.Response(text="vendor-ok")
        await request.read()
        status = int(params.get("cg_bounce") or 302)
        to = canary.location(params.get("cg_to") or "http")
        return web.Response(status=status, headers={"Location": to}, text="bounced")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await server.close()


def _every_vendor_host() -> set[str]:
    """Every host a probe could make the gateway forward to: each rule's exact hosts, one
    name under each wildcard, and every example's host."""
    hosts = {h for rule in RULES.rules for h in rule.hosts if not h.startswith("*.")}
    hosts |= {"probe" + h[1:] for rule in RULES.rules for h in rule.hosts if h.startswith("*.")}
    hosts |= {ex.host for rule in RULES.rules for ex in rule.examples}
    hosts.add("ws.hotjar.com")
    return hosts


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def live(
    tmp_path_factory: pytest.TempPathFactory, canary: Canary, bouncer: Vendor
) -> AsyncIterator[Live]:
    tmp: Path = tmp_path_factory.mktemp("open-proxy")
    overrides = {f"https://{h}": f"{bouncer.url}/{h}" for h in sorted(_every_vendor_host())}
    app = build_app(make_config(tmp, overrides))
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        # Anyone may grant themselves every purpose: refusals must not depend on consent.
        everything = {p: True for p in DEFAULT_PURPOSES if p != "necessary"}
        resp = await client.post("/consent", json={"purposes": everything})
        assert resp.status == 200, await resp.text()
        morsel = resp.cookies.get("cg_consent")
        assert morsel is not None
        doc = orjson.loads(await resp.read())
        assert {p for p, v in doc["purposes"].items() if v["state"] == "granted"} >= set(everything)
        yield Live(client, app[GATEWAY], canary, bouncer, f"cg_consent={morsel.value}")
    finally:
        await client.close()


@pytest.fixture(autouse=True)
def fresh(live: Live, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Each probe starts with a silent canary and an empty vendor record, and ends without
    the gateway having logged an ERROR (a traceback: bad input must get a clear answer)."""
    live.canary.reset()
    live.vendor.seen.clear()
    caplog.set_level(logging.WARNING, logger="gateway")
    yield
    errors = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("gateway") and r.levelno >= logging.ERROR
    ]
    assert errors == [], "the gateway logged an error"


def _assert_refused(statuses: list[int]) -> None:
    assert statuses, "the gateway gave no answer"
    assert all(s in REFUSED for s in statuses), f"expected a 4xx refusal, got {statuses}"


def _assert_no_5xx(statuses: list[int]) -> None:
    assert statuses, "the gateway gave no answer"
    assert all(s < 500 for s in statuses), f"the gateway answered {statuses}"


# -- controls: the canary counts, the bounce points at it, legitimate traffic flows --------


async def test_control_the_canary_counts_http_requests_and_raw_connections(live: Live) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(live.canary.location("http")) as resp:
            assert resp.status == 200
    for port in (live.canary.raw_port, live.canary.http_port):
        # a TLS ClientHello's first bytes: never a request, still a connection
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
        await reader.read(-1)
        writer.close()
        await writer.wait_closed()
    assert sorted(live.canary.heard) == [
        "<http listener connection>",
        "<http listener connection>",
        "<raw tcp connection>",
        "GET /internal",
    ]
    live.canary.reset()


@pytest.mark.parametrize("to", ["http", "raw", "localhost"])
async def test_control_a_client_that_follows_the_vendors_redirect_reaches_the_canary(
    live: Live, to: str
) -> None:
    """The bounce is real: whoever follows it lands in the canary."""
    async with aiohttp.ClientSession() as session:
        url = f"{live.vendor.url}/www.google-analytics.com/g/collect?cg_bounce=307&cg_to={to}"
        async with session.get(url) as resp:
            assert resp.status == 200
    assert live.canary.heard != []
    live.canary.reset()


async def test_control_a_legitimate_script_request_reaches_the_vendor(live: Live) -> None:
    statuses = await live.send("/t/www.googletagmanager.com/gtm.js?id=GTM-K7T9ZQ3&cg_control=1")
    assert statuses == [200]
    assert [h.path for h in live.vendor.seen] == ["/www.googletagmanager.com/gtm.js"]
    await live.assert_quiet()


async def test_control_a_legitimate_beacon_reaches_the_vendor_once_drained(live: Live) -> None:
    statuses = await live.send("/t/www.google-analytics.com/g/collect?v=2&tid=G-1&cg_control=1")
    assert statuses == [204]
    await live.gw.upstream.drain()
    assert [h.path for h in live.vendor.seen] == ["/www.google-analytics.com/g/collect"]
    await live.assert_quiet()


async def test_control_the_first_party_route_reaches_the_vendor(live: Live) -> None:
    assert await live.send("/ga4/g/collect?v=2&cg_control=1") == [204]
    await live.gw.upstream.drain()
    assert [h.path for h in live.vendor.seen] == ["/www.google-analytics.com/g/collect"]
    await live.assert_quiet()


async def test_control_a_websocket_is_relayed_to_the_vendor(live: Live) -> None:
    async with live.client.ws_connect(
        "/t/ws.hotjar.com/api/v2/client/ws?cg_control=1", headers={"Cookie": live.cookie}
    ) as ws:
        await ws.send_str("hello")
        msg = await ws.receive(timeout=5)
        assert msg.data == "echo:hello"
    assert [h.upgrade for h in live.vendor.seen] == ["websocket"]
    await live.assert_quiet()


# -- 1. the canary's address, spelled every way, in the host position ----------------------

IP_LITERALS = [
    ("dotted", f"/t/127.0.0.1:{P}/g/collect"),
    ("dotted-no-port", "/t/127.0.0.1/g/collect"),
    ("raw-port", f"/t/127.0.0.1:{R}/g/collect"),
    ("short-127.1", f"/t/127.1:{P}/g/collect"),
    ("hex-octet", f"/t/0x7f.0.0.1:{P}/g/collect"),
    ("hex-dword", f"/t/0x7f000001:{P}/g/collect"),
    ("decimal-dword", f"/t/2130706433:{P}/g/collect"),
    ("decimal-dword-no-port", "/t/2130706433/g/collect"),
    ("octal-octet", f"/t/0177.0.0.1:{P}/g/collect"),
    ("octal-dword", "/t/017700000001/g/collect"),
    ("zero-padded", f"/t/127.000.000.001:{P}/g/collect"),
    ("ipv6-loopback", f"/t/[::1]:{P}/g/collect"),
    ("ipv6-mapped", f"/t/[::ffff:127.0.0.1]:{P}/g/collect"),
    ("ipv6-mapped-hex", f"/t/[0:0:0:0:0:ffff:7f00:1]:{P}/g/collect"),
    ("ipv6-encoded-brackets", f"/t/%5B::1%5D:{P}/g/collect"),
    ("ipv6-bare", "/t/::1/g/collect"),
    ("localhost-port", f"/t/localhost:{P}/g/collect"),
    ("localhost", "/t/localhost/g/collect"),
    ("any-address", f"/t/0.0.0.0:{P}/g/collect"),
    ("zero", f"/t/0:{P}/g/collect"),
    ("nip-io-port", f"/t/127.0.0.1.nip.io:{P}/g/collect"),
    ("nip-io", "/t/127.0.0.1.nip.io/g/collect"),
    ("nip-io-hex", "/t/7f000001.nip.io/g/collect"),
    ("sslip-io", "/t/127-0-0-1.sslip.io/g/collect"),
    ("localtest-me", "/t/localtest.me/g/collect"),
    ("encoded-colon", f"/t/127.0.0.1%3A{P}/g/collect"),
    ("encoded-digits", f"/t/%31%32%37.0.0.1:{P}/g/collect"),
    ("localhost-subdomain", "/t/canary.localhost/g/collect"),
]


@pytest.mark.parametrize("target", [t for _, t in IP_LITERALS], ids=[i for i, _ in IP_LITERALS])
async def test_ip_literal_spellings_are_refused(live: Live, target: str) -> None:
    statuses = await live.send(target + "?v=2")
    await live.assert_quiet()
    _assert_refused(statuses)


# -- 2. userinfo and port tricks ------------------------------------------------------------

USERINFO = [
    ("listed@canary", f"/t/www.google-analytics.com@127.0.0.1:{P}/g/collect"),
    ("listed:443@canary", f"/t/www.google-analytics.com:443@127.0.0.1:{P}/g/collect"),
    ("listed:@canary", f"/t/www.google-analytics.com:@127.0.0.1:{P}/g/collect"),
    ("canary@listed", f"/t/127.0.0.1:{P}@www.google-analytics.com/g/collect"),
    ("canary%40listed", f"/t/127.0.0.1:{P}%40www.google-analytics.com/g/collect"),
    ("listed%40canary", f"/t/www.google-analytics.com%40127.0.0.1:{P}/g/collect"),
    ("listed%2540canary", f"/t/www.google-analytics.com%2540127.0.0.1:{P}/g/collect"),
    ("all-encoded", f"/t/www.google-analytics.com%3A443%40127.0.0.1%3A{P}/g/collect"),
    ("user:pass@listed", "/t/user:pass@www.google-analytics.com/g/collect"),
    ("empty-user@canary", f"/t/@127.0.0.1:{P}/g/collect"),
    ("backslash@canary", f"/t/www.google-analytics.com\\@127.0.0.1:{P}/g/collect"),
    ("semicolon@canary", f"/t/www.google-analytics.com;@127.0.0.1:{P}/g/collect"),
    ("listed-with-canary-port", f"/t/www.google-analytics.com:{P}/g/collect"),
    ("listed-with-port-80", "/t/www.google-analytics.com:80/g/collect"),
    ("canary@wildcard", f"/t/127.0.0.1:{P}@x.hotjar.com/c/hotjar-1.js"),
    ("wildcard@canary", f"/t/x.hotjar.com@127.0.0.1:{P}/c/hotjar-1.js"),
    ("route@canary", f"/ga4@127.0.0.1:{P}/g/collect"),
    ("path-@canary", f"/t/www.google-analytics.com/@127.0.0.1:{P}/g/collect"),
]


@pytest.mark.parametrize("target", [t for _, t in USERINFO], ids=[i for i, _ in USERINFO])
async def test_userinfo_and_port_tricks_are_refused(live: Live, target: str) -> None:
    statuses = await live.send(target + "?v=2")
    await live.assert_quiet()
    _assert_refused(statuses)


# -- 3. encoded separators, dot segments, control characters --------------------------------

SEPARATORS = [
    ("encoded-slash-after-canary", f"/t/127.0.0.1:{P}%2fwww.google-analytics.com/g/collect"),
    ("encoded-slash-after-listed", f"/t/www.google-analytics.com%2F127.0.0.1:{P}/g/collect"),
    ("encoded-dotdot-in-host", f"/t/www.google-analytics.com%2f..%2f127.0.0.1:{P}/g/collect"),
    ("encoded-backslash", f"/t/127.0.0.1:{P}%5cwww.google-analytics.com/g/collect"),
    # a host ending in a wildcard suffix (*.hotjar.com) whose authority ends earlier
    ("wildcard-encoded-slash", f"/t/127.0.0.1:{P}%2f.hotjar.com/c/hotjar-1.js"),
    ("wildcard-encoded-hash", f"/t/127.0.0.1:{P}%23.hotjar.com/c/hotjar-1.js"),
    ("wildcard-encoded-question", f"/t/127.0.0.1:{P}%3F.hotjar.com/c/hotjar-1.js"),
    ("wildcard-encoded-backslash", f"/t/127.0.0.1:{P}%5c.hotjar.com/c/hotjar-1.js"),
    ("wildcard-backslash", f"/t/127.0.0.1:{P}\\.hotjar.com/c/hotjar-1.js"),
    ("backslash", f"/t/127.0.0.1:{P}\\www.google-analytics.com/g/collect"),
    ("encoded-dot-segments", f"/t/www.google-analytics.com/g/%2e%2e/%2e%2e/127.0.0.1:{P}/x"),
    ("mixed-dot-segments", f"/t/www.google-analytics.com/g/collect/..%2f..%2f127.0.0.1:{P}"),
    ("double-encoded-dots", f"/t/www.google-analytics.com/%252e%252e/%252e%252e/127.0.0.1:{P}"),
    ("raw-dot-segments", f"/t/www.google-analytics.com/../127.0.0.1:{P}/g/collect"),
    ("encoded-backslash-dots", f"/t/www.google-analytics.com/%2e%2e%5c%2e%2e%5c127.0.0.1:{P}"),
    ("empty-host", f"/t//127.0.0.1:{P}/g/collect"),
    ("leading-double-slash", f"//127.0.0.1:{P}/internal"),
    ("double-slash-before-t", f"//t/127.0.0.1:{P}/internal"),
    ("matrix-param-host", f"/t/www.google-analytics.com;/127.0.0.1:{P}/g/collect"),
    ("matrix-param-dots", f"/t/www.google-analytics.com/g/collect;/../../127.0.0.1:{P}"),
    ("encoded-nul", f"/t/www.google-analytics.com/g/collect%00@127.0.0.1:{P}"),
    ("encoded-crlf", f"/t/www.google-analytics.com/g/collect%0d%0aHost:%20127.0.0.1:{P}"),
    ("route-dot-segments", f"/ga4/%2e%2e/t/127.0.0.1:{P}/internal"),
    ("route-encoded-slash", f"/ga4/..%2F..%2F127.0.0.1:{P}/internal"),
    ("route-double-slash", f"/ga4//127.0.0.1:{P}/internal"),
]


@pytest.mark.parametrize("target", [t for _, t in SEPARATORS], ids=[i for i, _ in SEPARATORS])
async def test_encoded_separators_and_dot_segments_are_refused(live: Live, target: str) -> None:
    statuses = await live.send(target + "?v=2")
    await live.assert_quiet()
    _assert_refused(statuses)


CONTROL_BYTES = [
    ("nul", "/t/www.google-analytics.com/g/collect\x00@127.0.0.1:{P}"),
    ("cr", "/t/www.google-analytics.com/g/collect\rHost: 127.0.0.1:{P}"),
    ("tab-in-host", "/t/www.google-analytics.com\t127.0.0.1:{P}/g/collect"),
    ("del", "/t/127.0.0.1:{P}\x7f/g/collect"),
]


@pytest.mark.parametrize("target", [t for _, t in CONTROL_BYTES], ids=[i for i, _ in CONTROL_BYTES])
async def test_raw_control_bytes_in_the_target_are_a_400(live: Live, target: str) -> None:
    statuses = await live.send(target)
    await live.assert_quiet()
    assert statuses == [400]


# -- 4. IDN and Unicode spellings -------------------------------------------------------------

#: a listed host's homograph, as an A-label (Cyrillic о for o): another host, never the vendor
HOMOGRAPH = "www." + "gооgle-analytics.com".encode("idna").decode()

UNICODE_HOSTS = [
    ("fullwidth-dots", "/t/www\uff0egoogle-analytics\uff0ecom/g/collect"),
    ("ideographic-dots", "/t/www\u3002google-analytics\u3002com/g/collect"),
    ("encoded-ideographic-dot", "/t/www.google-analytics.com%E3%80%82/g/collect"),
    ("ideographic-dot-ip", f"/t/127\u30020\u30020\u30021:{P}/g/collect"),
    ("fullwidth-digits", f"/t/\uff11\uff12\uff17.\uff10.\uff10.\uff11:{P}/g/collect"),
    ("fullwidth-localhost", f"/t/\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{P}/x"),
    ("circled-l-localhost", f"/t/\u24dbocalhost:{P}/g/collect"),
    ("roman-numeral-l", f"/t/loca\u217chost:{P}/g/collect"),
    ("kelvin-sign", "/t/a.\u212alaviyo.com/client/events/"),
    ("long-s", "/t/\u017ftatic.hotjar.com/c/hotjar-1.js"),
    ("cyrillic-homograph", "/t/www.googl\u0435-analytics.com/g/collect"),
    ("punycode-homograph", f"/t/{HOMOGRAPH}/g/collect"),
    ("zero-width-space", "/t/www.google-analytics.com\u200b/g/collect"),
    ("trailing-dot", "/t/www.google-analytics.com./g/collect"),
    ("trailing-dot-localhost", "/t/localhost./g/collect"),
    ("uppercase-localhost", f"/t/LOCALHOST:{P}/g/collect"),
]


@pytest.mark.parametrize("target", [t for _, t in UNICODE_HOSTS], ids=[i for i, _ in UNICODE_HOSTS])
async def test_unicode_and_idn_hosts_are_refused(live: Live, target: str) -> None:
    statuses = await live.send(target + "?v=2")
    await live.assert_quiet()
    _assert_refused(statuses)
    assert live.vendor.seen == []


@pytest.mark.parametrize(
    "host", ["WWW.GOOGLE-ANALYTICS.COM", "Www.Google-Analytics.Com"], ids=["upper", "mixed"]
)
async def test_a_case_variant_of_a_listed_host_goes_to_that_host_only(
    live: Live, host: str
) -> None:
    """Case folding is ASCII-only, so it can only name the listed host itself: the hit
    reaches that host's origin, whose redirect into the canary is not followed."""
    assert await live.send(f"/t/{host}/g/collect?v=2") == [204]
    await live.gw.upstream.drain()
    assert [h.path for h in live.vendor.seen] == ["/www.google-analytics.com/g/collect"]
    await live.assert_quiet()


# -- 5. absolute-form targets, CONNECT, Host and forwarding headers -------------------------

RAW_TARGETS = [
    ("absolute-canary", f"GET http://127.0.0.1:{P}/internal HTTP/1.1", []),
    (
        "absolute-canary-tag",
        f"GET http://127.0.0.1:{P}/t/www.google-analytics.com/g/collect?v=2 HTTP/1.1",
        [],
    ),
    ("absolute-listed", "GET http://www.google-analytics.com/g/collect?v=2 HTTP/1.1", []),
    ("absolute-https-raw", f"GET https://127.0.0.1:{R}/internal HTTP/1.1", []),
    ("absolute-localhost", f"GET http://localhost:{P}/internal HTTP/1.1", []),
    (
        "absolute-userinfo",
        f"GET http://127.0.0.1:{P}@www.google-analytics.com/g/collect HTTP/1.1",
        [],
    ),
    (
        "absolute-ws",
        f"GET ws://127.0.0.1:{P}/internal HTTP/1.1",
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
    ),
    ("connect-canary", f"CONNECT 127.0.0.1:{P} HTTP/1.1", []),
    ("connect-raw", f"CONNECT 127.0.0.1:{R} HTTP/1.1", []),
    ("connect-listed", "CONNECT www.google-analytics.com:443 HTTP/1.1", []),
    ("options-asterisk", "OPTIONS * HTTP/1.1", []),
    ("http10-absolute", f"GET http://127.0.0.1:{P}/internal HTTP/1.0", []),
    ("host-header-canary", "GET /internal HTTP/1.1", []),
    (
        "x-original-url",
        "GET /t/www.google-analytics.com/x HTTP/1.1",
        [
            ("X-Original-URL", f"/t/127.0.0.1:{P}/internal"),
            ("X-Rewrite-URL", f"/t/127.0.0.1:{P}/internal"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("line", "headers"),
    [(line, headers) for _, line, headers in RAW_TARGETS],
    ids=[i for i, _, _ in RAW_TARGETS],
)
async def test_absolute_form_connect_and_host_tricks_are_refused(
    live: Live, line: str, headers: list[tuple[str, str]]
) -> None:
    head = [live.fill(line), f"Host: 127.0.0.1:{live.canary.http_port}"]
    head += [f"{k}: {live.fill(v)}" for k, v in headers]
    head += [f"Cookie: {live.cookie}", "Connection: close"]
    statuses = await live.raw(("\r\n".join(head) + "\r\n\r\n").encode())
    await live.assert_quiet()
    _assert_refused(statuses)
    assert live.vendor.seen == []


FORWARDING_HEADERS = [
    ("host", [], f"127.0.0.1:{P}"),
    ("x-forwarded-host", [("X-Forwarded-Host", f"127.0.0.1:{P}")], "shop.example"),
    ("forwarded", [("Forwarded", f"host=127.0.0.1:{P};proto=http")], "shop.example"),
    (
        "x-forwarded-for",
        [("X-Forwarded-For", "127.0.0.1"), ("X-Real-IP", "127.0.0.1")],
        "shop.example",
    ),
    (
        "x-host",
        [("X-Host", f"127.0.0.1:{P}"), ("X-Forwarded-Server", f"127.0.0.1:{P}")],
        "shop.example",
    ),
]


@pytest.mark.parametrize("route", ["/t/www.google-analytics.com", "/ga4"], ids=["tag", "route"])
@pytest.mark.parametrize(
    ("headers", "host"),
    [(h, host) for _, h, host in FORWARDING_HEADERS],
    ids=[i for i, _, _ in FORWARDING_HEADERS],
)
async def test_host_and_forwarding_headers_never_pick_the_destination(
    live: Live, route: str, headers: list[tuple[str, str]], host: str
) -> None:
    """A listed hit with headers naming the canary goes to the listed host's origin only."""
    assert await live.send(f"{route}/g/collect?v=2", headers=headers, host=host) == [204]
    await live.gw.upstream.drain()
    assert [h.path for h in live.vendor.seen] == ["/www.google-analytics.com/g/collect"]
    await live.assert_quiet()


# -- 6. request smuggling -----------------------------------------------------------------

_OUTER = "POST /t/www.google-analytics.com/g/collect?v=2 HTTP/1.1\r\nHost: shop.example\r\n"
_OUTER_10 = _OUTER.replace("HTTP/1.1", "HTTP/1.0")
_INNER = f"GET /t/127.0.0.1:{P}/internal HTTP/1.1\r\nHost: 127.0.0.1:{P}\r\n\r\n"
_LAST = "GET /healthz HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n"

SMUGGLING = [
    ("cl-then-te", f"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{_INNER}"),
    ("te-then-cl", f"Transfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n{_INNER}"),
    ("duplicate-cl", f"Content-Length: 0\r\nContent-Length: {len(_INNER)}\r\n\r\n{_INNER}"),
    ("cl-list", f"Content-Length: 0, {len(_INNER)}\r\n\r\n{_INNER}"),
    (
        "te-obs-fold",
        f"Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{_INNER}",
    ),
    (
        "header-obs-fold",
        f"X-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{_INNER}",
    ),
    ("te-xchunked", f"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{_INNER}"),
    ("te-chunked-identity", f"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{_INNER}"),
    (
        "te-space-before-colon",
        f"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{_INNER}",
    ),
    ("te-tab-value", f"Transfer-Encoding:\tchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{_INNER}"),
    ("cl-plus-sign", f"Content-Length: +{len(_INNER)}\r\n\r\n{_INNER}"),
    ("cl-negative", f"Content-Length: -1\r\n\r\n{_INNER}"),
    ("cl-hex", f"Content-Length: 0x{len(_INNER):x}\r\n\r\n{_INNER}"),
    ("chunk-size-overflow", f"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n{_INNER}"),
    ("chunk-bare-lf", f"Transfer-Encoding: chunked\r\n\r\n0\n\n{_INNER}"),
    ("bare-lf-headers", f"Content-Length: 0\nTransfer-Encoding: chunked\n\n0\r\n\r\n{_INNER}"),
    ("http10-te", f"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{_INNER}"),
    ("nul-in-cl", f"Content-Length: 0\x00{len(_INNER)}\r\n\r\n{_INNER}"),
]


@pytest.mark.parametrize(("name", "payload"), SMUGGLING, ids=[i for i, _ in SMUGGLING])
async def test_smuggled_requests_never_reach_the_canary(
    live: Live, name: str, payload: str
) -> None:
    """A beacon whose framing is ambiguous, carrying a request for the canary, then a last
    request closing the connection. Whichever way the bytes are framed, nothing reaches the
    canary and nothing is a 5xx (today every one of these is a 400 from the HTTP parser)."""
    outer = _OUTER_10 if name.startswith("http10") else _OUTER
    data = outer + f"Cookie: {live.cookie}\r\n" + live.fill(payload) + _LAST
    statuses = await live.raw(data.encode(), timeout=3.0)
    await live.assert_quiet()
    _assert_no_5xx(statuses)


# -- 7. vendor redirects on every upstream path ----------------------------------------------


def _example(vendor: str, endpoint: str) -> ExampleSpec:
    """The rule's first forwarded example for `endpoint` (a real request the vendor gets)."""
    rule = next(r for r in RULES.rules if r.vendor == vendor)
    for ex in rule.examples:
        m = RULES.match(ex.host, ex.path, ex.method)
        if ex.expect.value == "forward" and m is not None and m.endpoint.id == endpoint:
            return ex
    raise AssertionError(f"{vendor} has no forwarded example for {endpoint}")


#: (vendor, endpoint id, kind, forward mode): several vendors on each upstream path
UPSTREAM_PATHS = [
    ("hotjar", "loader", EndpointKind.SCRIPT, ForwardMode.SYNC),
    ("meta-pixel", "fbevents", EndpointKind.SCRIPT, ForwardMode.SYNC),
    ("segment", "loader", EndpointKind.SCRIPT, ForwardMode.SYNC),
    ("amplitude", "httpapi", EndpointKind.API, ForwardMode.SYNC),
    ("posthog", "public-api", EndpointKind.API, ForwardMode.SYNC),
    ("mixpanel", "track", EndpointKind.API, ForwardMode.SYNC),
    ("yandex-metrica", "watch", EndpointKind.BEACON, ForwardMode.SYNC),
    ("segment", "track", EndpointKind.BEACON, ForwardMode.ASYNC),
    ("plausible", "event", EndpointKind.BEACON, ForwardMode.ASYNC),
    ("meta-pixel", "tr", EndpointKind.PIXEL, ForwardMode.ASYNC),
    ("linkedin-insight", "collect", EndpointKind.PIXEL, ForwardMode.ASYNC),
]
REDIRECTS = [301, 302, 303, 307, 308]


async def _bounce(live: Live, ex: ExampleSpec, status: int, to: str) -> list[int]:
    query = f"{ex.query}&" if ex.query else ""
    headers = [(k, v) for k, v in ex.headers.items() if k.lower() != "cookie"]
    if ex.content_type:
        headers.append(("Content-Type", ex.content_type))
    target = f"/t/{ex.host}{ex.path}?{query}cg_bounce={status}&cg_to={to}"
    return await live.send(target, ex.method, headers, ex.body or b"")


async def test_the_upstream_paths_are_what_the_rules_say() -> None:
    """The table above really covers sync scripts, sync APIs/beacons and async forwards."""
    for vendor, endpoint, kind, mode in UPSTREAM_PATHS:
        ex = _example(vendor, endpoint)
        m = RULES.match(ex.host, ex.path, ex.method)
        assert m is not None
        assert (m.endpoint.kind, m.endpoint.forward_mode) == (kind, mode), (vendor, endpoint)


@pytest.mark.parametrize("status", REDIRECTS)
@pytest.mark.parametrize(
    ("vendor", "endpoint", "mode"),
    [(v, e, m) for v, e, _, m in UPSTREAM_PATHS],
    ids=[f"{v}/{e}-{k.value}-{m.value}" for v, e, k, m in UPSTREAM_PATHS],
)
async def test_a_vendor_redirect_is_never_followed(
    live: Live, vendor: str, endpoint: str, mode: ForwardMode, status: int
) -> None:
    ex = _example(vendor, endpoint)
    statuses = await _bounce(live, ex, status, "http")
    await live.assert_quiet()
    assert len(live.vendor.seen) == 1, "the probe never reached the vendor"
    if mode is ForwardMode.SYNC:
        # Relayed to the visitor as the vendor's answer, not followed by the gateway.
        assert statuses == [status]
    else:
        _assert_no_5xx(statuses)


LOCATIONS = ["raw", "https", "localhost", "scheme-relative", "ws"]


async def _handshake(live: Live, target: str) -> int:
    """A WebSocket handshake through the gateway, consent granted: the status it got."""
    try:
        ws = await live.client.ws_connect(live.fill(target), headers={"Cookie": live.cookie})
    except aiohttp.WSServerHandshakeError as e:
        return e.status
    await ws.close()
    return 101


@pytest.mark.parametrize("to", LOCATIONS)
@pytest.mark.parametrize(
    ("vendor", "endpoint"),
    [("hotjar", "loader"), ("posthog", "public-api"), ("segment", "track")],
    ids=["sync-script", "sync-api", "async-beacon"],
)
async def test_a_redirect_to_any_spelling_of_the_canary_is_never_followed(
    live: Live, vendor: str, endpoint: str, to: str
) -> None:
    statuses = await _bounce(live, _example(vendor, endpoint), 307, to)
    await live.assert_quiet()
    assert len(live.vendor.seen) == 1, "the probe never reached the vendor"
    _assert_no_5xx(statuses)


@pytest.mark.parametrize(
    ("status", "to"),
    [(s, "http") for s in REDIRECTS] + [(302, t) for t in LOCATIONS],
    ids=[f"{s}-http" for s in REDIRECTS] + [f"302-{t}" for t in LOCATIONS],
)
async def test_a_websocket_handshake_redirect_is_never_followed(
    live: Live, status: int, to: str
) -> None:
    """Hotjar's stream endpoint answering the upgrade with a redirect: the gateway refuses
    the handshake (502: the vendor gave no usable answer) and relays nothing."""
    answer = await _handshake(
        live, f"/t/ws.hotjar.com/api/v2/client/ws?cg_bounce={status}&cg_to={to}"
    )
    await live.assert_quiet()
    assert [h.upgrade for h in live.vendor.seen] == ["websocket"], "the vendor was not asked"
    assert answer == 502


# -- 8. upgrades where no rule declares a WebSocket ------------------------------------------

UPGRADES = [
    ("script", "/t/www.googletagmanager.com/gtm.js?id=GTM-1", 400),
    ("beacon", "/t/www.google-analytics.com/g/collect?v=2", 400),
    ("route-beacon", "/ga4/g/collect?v=2", 400),
    ("hotjar-script", "/t/static.hotjar.com/c/hotjar-1.js", 400),
    ("ws-host-script-path", "/t/ws.hotjar.com/c/hotjar-1.js", 400),
    ("api", "/t/us.i.posthog.com/api/surveys/?token=x", 400),
    ("canary-literal", f"/t/127.0.0.1:{P}/api/v2/client/ws", 400),
    ("canary-localhost", f"/t/localhost:{P}/api/v2/client/ws", 400),
    ("listed@canary", f"/t/ws.hotjar.com@127.0.0.1:{P}/api/v2/client/ws", 400),
    ("unlisted", "/t/internal.example/api/v2/client/ws", 404),
    ("unlisted-nip-io", "/t/127.0.0.1.nip.io/api/v2/client/ws", 404),
    ("ws-dot-segments", "/t/ws.hotjar.com/api/v2/client/ws/%2e%2e/%2e%2e/x", 404),
]


@pytest.mark.parametrize(
    ("target", "status"), [(t, s) for _, t, s in UPGRADES], ids=[i for i, _, _ in UPGRADES]
)
async def test_an_upgrade_is_refused_where_no_rule_declares_a_websocket(
    live: Live, target: str, status: int
) -> None:
    answer = await _handshake(live, target)
    await live.assert_quiet()
    assert answer == status
    assert live.vendor.seen == []


RAW_UPGRADES = [
    (
        "h2c",
        [
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
    ),
    ("websocket-list", [("Connection", "Upgrade"), ("Upgrade", "websocket, h2c")]),
    ("tls", [("Connection", "Upgrade"), ("Upgrade", "TLS/1.2")]),
    ("no-key", [("Connection", "Upgrade"), ("Upgrade", "websocket")]),
]


@pytest.mark.parametrize("headers", [h for _, h in RAW_UPGRADES], ids=[i for i, _ in RAW_UPGRADES])
async def test_other_upgrades_never_open_a_tunnel(
    live: Live, headers: list[tuple[str, str]]
) -> None:
    """Upgrades the gateway does not carry: refused, or answered as a plain request whose
    forward carries no Upgrade header (and whose redirect is not followed)."""
    statuses = await live.send("/t/www.google-analytics.com/g/collect?v=2", headers=headers)
    await live.assert_quiet()
    _assert_no_5xx(statuses)
    assert 101 not in statuses
    assert all(h.upgrade is None for h in live.vendor.seen), live.vendor.seen
