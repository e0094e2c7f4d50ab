"""gateway.edges: client address through trusted proxies only; local answers."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from gateway.edges import (
    TRANSPARENT_GIF,
    client_ip,
    decision_header,
    forwarded_elements,
    local_answer,
    public_origin,
    raw_host_hint,
)
from gateway.model import Action, Decision, EndpointKind, StripSpec
from gateway.ruleset.schema import DropAnswer, EndpointSpec, default_forward_mode

LB = (ipaddress.ip_network("10.0.0.0/8"),)


def _request(
    peer: str,
    xff: str | None = None,
    path: str = "/t/a.example/x",
    headers: dict[str, str] | None = None,
) -> object:
    headers = dict(headers or {})
    if xff is not None:
        headers["X-Forwarded-For"] = xff
    transport = type(
        "T",
        (),
        {
            "get_extra_info": lambda self, name, default=None: (
                (peer, 1234) if name == "peername" else default
            )
        },
    )()
    return make_mocked_request("GET", path, headers=headers, transport=transport)


@pytest.mark.parametrize(
    ("peer", "xff", "trusted", "expected"),
    [
        ("203.0.113.9", None, (), "203.0.113.9"),
        # The visitor's own X-Forwarded-For is never believed.
        ("203.0.113.9", "1.2.3.4", (), "203.0.113.9"),
        ("203.0.113.9", "1.2.3.4", LB, "203.0.113.9"),
        # Behind a trusted load balancer: the right-most untrusted hop.
        ("10.0.0.5", "198.51.100.7", LB, "198.51.100.7"),
        ("10.0.0.5", "6.6.6.6, 198.51.100.7", LB, "198.51.100.7"),
        ("10.0.0.5", "198.51.100.7, 10.1.1.1", LB, "198.51.100.7"),
        ("10.0.0.5", "garbage, 198.51.100.7", LB, "198.51.100.7"),
        ("10.0.0.5", "198.51.100.7, garbage", LB, None),
        ("10.0.0.5", None, LB, "10.0.0.5"),
        ("2001:db8::1", None, (), "2001:db8::1"),
    ],
)
def test_client_ip(
    peer: str, xff: str | None, trusted: tuple[object, ...], expected: str | None
) -> None:
    assert client_ip(_request(peer, xff), trusted) == expected  # type: ignore[arg-type]


_SOURCE = "an SDK's request module"


def _endpoint(kind: EndpointKind, answer: DropAnswer | None = None) -> EndpointSpec:
    return EndpointSpec(
        id="e",
        path="/x",
        kind=kind,
        purposes=frozenset({"analytics"}),
        forward_mode=default_forward_mode(kind),
        drop_answer=answer,
    )


@pytest.mark.parametrize(
    ("endpoint", "status", "content_type", "body"),
    [
        (_endpoint(EndpointKind.PIXEL), 200, "image/gif", TRANSPARENT_GIF),
        (_endpoint(EndpointKind.BEACON), 204, None, b""),
        (_endpoint(EndpointKind.API), 204, None, b""),
        (_endpoint(EndpointKind.SCRIPT), 200, "text/javascript", b""),
        (None, 204, None, b""),
        # an api endpoint's drop answer is its SDK's success, exactly as the rule writes it
        (
            _endpoint(
                EndpointKind.API,
                DropAnswer(200, b'{"status":1}', "application/json", _SOURCE),
            ),
            200,
            "application/json",
            b'{"status":1}',
        ),
        (
            _endpoint(EndpointKind.API, DropAnswer(200, b"1", "text/plain", _SOURCE)),
            200,
            "text/plain",
            b"1",
        ),
        (_endpoint(EndpointKind.API, DropAnswer(202, source=_SOURCE)), 202, None, b""),
    ],
)
def test_local_answers(
    endpoint: EndpointSpec | None, status: int, content_type: str | None, body: bytes
) -> None:
    resp = local_answer(endpoint)
    assert resp.status == status and (resp.body or b"") == body
    assert resp.headers["Cache-Control"] == "no-store"
    if content_type:
        assert resp.content_type == content_type
    assert len(TRANSPARENT_GIF) == 43 and TRANSPARENT_GIF.startswith(b"GIF89a")


@pytest.mark.parametrize(
    ("status", "body", "source", "error"),
    [
        (204, b"x", _SOURCE, "has no body"),
        (302, b"", _SOURCE, "200-299"),
        (500, b"", _SOURCE, "200-299"),
        (200, b"", " ", "source"),
    ],
)
def test_drop_answers_that_are_not_a_success_are_refused(
    status: int, body: bytes, source: str, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        DropAnswer(status, body, None, source)


def test_only_an_api_endpoint_has_a_drop_answer() -> None:
    with pytest.raises(ValueError, match="only an api endpoint"):
        _endpoint(EndpointKind.BEACON, DropAnswer(200, source=_SOURCE))


@pytest.mark.parametrize(
    ("path", "hint"),
    [("/t/evil.example/x", "evil.example"), ("/t/a%40b/x", "a%40b"), ("/other", "-")],
)
def test_raw_host_hint(path: str, hint: str) -> None:
    assert raw_host_hint(_request("1.2.3.4", path=path)) == hint  # type: ignore[arg-type]
    below = _request("1.2.3.4", path="/cg" + path)
    assert raw_host_hint(below, "/cg") == hint  # type: ignore[arg-type]


async def test_websocket_is_proxied_only_with_consent(
    gateway_factory: object, fake_vendor: object, aiohttp_server: object
) -> None:
    """Hotjar's live stream: relayed both ways when analytics is granted; refused (and
    nothing reaches the vendor) without it."""
    from aiohttp import WSMsgType, web

    from tests.conftest import cookie_for

    seen: list[str] = []

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                seen.append(msg.data)
                await ws.send_str("echo:" + msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/api/v2/client/ws", echo)
    server = await aiohttp_server(app)  # type: ignore[operator]
    client = await gateway_factory(  # type: ignore[operator]
        extra={"upstream": {"overrides": {"https://ws.hotjar.com": str(server.make_url(""))}}}
    )
    granted = {"Cookie": f"cg_consent={cookie_for({'analytics': 'granted'})}"}
    async with client.ws_connect("/t/ws.hotjar.com/api/v2/client/ws", headers=granted) as ws:
        # the handshake names the decision like any tag answer
        assert ws._response.headers["Consent-Gateway-Decision"].startswith(
            "forward; vendor=hotjar; id="
        )
        await ws.send_str("hello")
        msg = await ws.receive(timeout=5)
        assert msg.data == "echo:hello"
    assert seen == ["hello"]

    from aiohttp import WSServerHandshakeError

    with pytest.raises(WSServerHandshakeError) as info:
        await client.ws_connect("/t/ws.hotjar.com/api/v2/client/ws")
    assert info.value.status == 403
    assert info.value.headers is not None
    assert info.value.headers["Consent-Gateway-Decision"].startswith("drop; vendor=hotjar; ")
    assert seen == ["hello"]


# --- request bodies: read once as sent, decoded once, forwarded as their headers say --------

AMPLITUDE = "api2.amplitude.com"
SEGMENT = "api.segment.io"
AMP_DOC = {
    "api_key": "3d5e7f9a1b2c4d6e8f0a1b2c3d4e5f6a",
    "events": [{"device_id": "d-1", "event_type": "Search", "ip": "203.0.113.7"}],
}
SEG_DOC = {"type": "track", "event": "Added", "anonymousId": "a-1", "context": {"ip": "1.2.3.4"}}


def _encoded(doc: object, coding: str) -> bytes:
    import gzip
    import zlib

    import brotli
    import orjson

    raw = orjson.dumps(doc)
    encoders: dict[str, Callable[[bytes], bytes]] = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "br": brotli.compress,
        "identity": lambda b: b,
    }
    return encoders[coding](raw)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "identity"])
@pytest.mark.parametrize(
    ("host", "path", "doc", "gone"),
    [
        (AMPLITUDE, "/2/httpapi", AMP_DOC, "203.0.113.7"),  # sync api, always strips events[].ip
        (SEGMENT, "/v1/t", SEG_DOC, "1.2.3.4"),  # background beacon, strips context.ip
    ],
    ids=["amplitude", "segment"],
)
async def test_a_compressed_body_reaches_the_vendor_decodable_and_stripped(
    gateway_factory: object,
    fake_vendor: object,
    host: str,
    path: str,
    doc: dict[str, object],
    gone: str,
    coding: str,
) -> None:
    """Issue 10, defect 4: aiohttp's server already inflated the body, the transform
    inflated it again, failed, and dropped every compressed hit."""
    import orjson

    from tests.conftest import FakeVendor, cookie_for

    assert isinstance(fake_vendor, FakeVendor)
    client = await gateway_factory(hosts=[host])  # type: ignore[operator]
    headers = {
        "Content-Type": "application/json",
        "Cookie": f"cg_consent={cookie_for({'analytics': 'granted'})}",
    }
    if coding != "identity":
        headers["Content-Encoding"] = coding
    resp = await client.post(f"/t/{host}{path}", data=_encoded(doc, coding), headers=headers)
    assert resp.status < 300
    [seen] = await fake_vendor.wait_for(1)
    # the fake vendor's server decoded it by the header the gateway sent: they agree
    assert seen.headers.get("content-encoding", "identity") == coding
    sent = orjson.loads(seen.body)
    assert gone not in seen.body.decode()
    assert {k: v for k, v in sent.items() if k not in ("events", "context")} == {
        k: v for k, v in doc.items() if k not in ("events", "context")
    }


@pytest.mark.parametrize(
    ("coding", "body", "status"),
    [
        ("gzip", b'{"plain": "json labelled gzip"}', 400),
        ("br", b"\xff\xfe\xfd not brotli", 400),
        ("deflate", b"\x78\x9c\x01\x02", 400),
        ("zstd", b"whatever", 415),
    ],
)
async def test_a_body_that_is_not_what_its_header_says_is_refused(
    gateway_factory: object, fake_vendor: object, coding: str, body: bytes, status: int
) -> None:
    from tests.conftest import FakeVendor, cookie_for

    assert isinstance(fake_vendor, FakeVendor)
    client = await gateway_factory(hosts=[AMPLITUDE])  # type: ignore[operator]
    headers = {
        "Content-Type": "application/json",
        "Content-Encoding": coding,
        "Cookie": f"cg_consent={cookie_for({'analytics': 'granted'})}",
    }
    resp = await client.post(f"/t/{AMPLITUDE}/2/httpapi", data=body, headers=headers)
    assert resp.status == status
    assert set(await resp.json()) == {"error"}
    assert fake_vendor.seen == []  # never forwarded empty, nor as it came


async def test_a_compression_bomb_is_413(gateway_factory: object, fake_vendor: object) -> None:
    import gzip

    from tests.conftest import FakeVendor, cookie_for

    assert isinstance(fake_vendor, FakeVendor)
    client = await gateway_factory(hosts=[AMPLITUDE])  # type: ignore[operator]
    bomb = gzip.compress(b"{" + b" " * (64 * 1024 * 1024) + b"}")
    assert len(bomb) < 64 * 1024  # under server.max_body_bytes as sent
    resp = await client.post(
        f"/t/{AMPLITUDE}/2/httpapi",
        data=bomb,
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Cookie": f"cg_consent={cookie_for({'analytics': 'granted'})}",
        },
    )
    assert resp.status == 413
    assert await resp.json() == {"error": "request body too large once decompressed"}
    assert fake_vendor.seen == []


POSTHOG = "us.i.posthog.com"
PH_DOC = {
    "api_key": "phc_k2J4h5G6f7D8s9A0q1W2e3R4t5Y6u7I8o9P0",
    "batch": [{"event": "$pageview", "distinct_id": "d-1", "properties": {"$os": "Linux"}}],
}


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
async def test_an_opaque_compressed_body_reaches_the_vendor_as_sent(
    gateway_factory: object, fake_vendor: object, coding: str
) -> None:
    """PostHog's body is never read (forward or drop): its bytes and their coding go on
    together, so the vendor decodes exactly the batch the SDK compressed."""
    import orjson

    from tests.conftest import FakeVendor, cookie_for

    assert isinstance(fake_vendor, FakeVendor)
    client = await gateway_factory(hosts=[POSTHOG])  # type: ignore[operator]
    resp = await client.post(
        f"/t/{POSTHOG}/batch/",
        data=_encoded(PH_DOC, coding),
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": coding,
            "Cookie": f"cg_consent={cookie_for({'analytics': 'granted'})}",
        },
    )
    assert resp.status == 200
    [seen] = await fake_vendor.wait_for(1)
    assert seen.headers["content-encoding"] == coding
    assert orjson.loads(seen.body) == PH_DOC  # every field intact


SENTRY = "o4711.ingest.sentry.io"
PLAUSIBLE = "plausible.io"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
@pytest.mark.parametrize(
    ("host", "path", "doc", "kept"),
    [
        (
            SENTRY,
            "/api/4711/store/?sentry_key=0123456789abcdef0123456789abcdef",
            {
                "event_id": "fc6d8c0c43fc4630ad850ee518f1b9d0",
                "message": "TypeError: x is undefined",
                "level": "error",
                "user": {"id": "customer-4711", "email": "jane.doe@mail.example"},
                "request": {"url": "https://shop.example/", "cookies": "_ga=GA1.1.1"},
                "extra": {"contact": "jane.doe@mail.example", "cart": 3},
            },
            {
                "event_id": "fc6d8c0c43fc4630ad850ee518f1b9d0",
                "message": "TypeError: x is undefined",
                "level": "error",
                "request": {"url": "https://shop.example/"},
                "extra": {"cart": 3},
            },
        ),
        (
            PLAUSIBLE,
            "/api/event",
            {
                "n": "pageview",
                "u": "https://shop.example/kettle",
                "d": "shop.example",
                "p": {"email": "jane.doe@mail.example"},
            },
            {"n": "pageview", "u": "https://shop.example/kettle", "d": "shop.example"},
        ),
    ],
    ids=["sentry-store", "plausible-event"],
)
async def test_without_consent_identifiers_are_stripped_from_a_compressed_body(
    gateway_factory: object,
    fake_vendor: object,
    host: str,
    path: str,
    doc: dict[str, object],
    kept: dict[str, object],
    coding: str,
) -> None:
    """The strip reads the decoded body: nothing the rule (or the identifier scrub) removes
    slips through inside a compressed one, and the rest arrives decodable."""
    import orjson

    from tests.conftest import FakeVendor, cookie_for

    assert isinstance(fake_vendor, FakeVendor)
    client = await gateway_factory(hosts=[host])  # type: ignore[operator]
    resp = await client.post(
        f"/t/{host}{path}",
        data=_encoded(doc, coding),
        headers={
            "Content-Type": "text/plain",
            "Content-Encoding": coding,
            "Cookie": f"cg_consent={cookie_for({'analytics': 'denied'})}",
        },
    )
    assert resp.status < 300
    [seen] = await fake_vendor.wait_for(1)
    assert seen.headers["content-encoding"] == coding
    assert orjson.loads(seen.body) == kept
    assert b"jane.doe" not in seen.body and b"customer-4711" not in seen.body


@pytest.mark.parametrize(("size", "status"), [(3900, 200), (4200, 413)])
@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
async def test_a_decoded_body_is_held_to_max_body_bytes(
    gateway_factory: object, fake_vendor: object, coding: str, size: int, status: int
) -> None:
    """`server.max_body_bytes` bounds the body as sent and once decompressed alike."""
    from tests.conftest import FakeVendor, cookie_for

    assert isinstance(fake_vendor, FakeVendor)
    client = await gateway_factory(  # type: ignore[operator]
        hosts=[AMPLITUDE], extra={"server": {"max_body_bytes": 4096}}
    )
    doc = {"api_key": "k", "events": [{"device_id": "d-1", "event_type": "x" * size}]}
    body = _encoded(doc, coding)
    assert len(body) < 1024  # far under the limit as sent
    resp = await client.post(
        f"/t/{AMPLITUDE}/2/httpapi",
        data=body,
        headers={
            "Content-Type": "application/json",
            "Content-Encoding": coding,
            "Cookie": f"cg_consent={cookie_for({'analytics': 'granted'})}",
        },
    )
    assert resp.status == status
    if status == 413:
        assert await resp.json() == {"error": "request body too large once decompressed"}
        assert fake_vendor.seen == []
    else:
        [seen] = await fake_vendor.wait_for(1)
        assert len(seen.body) > 3900


@contextlib.asynccontextmanager
async def _served_as_in_production(app: web.Application) -> AsyncIterator[int]:
    """`app` served by `GatewayRunner` as `serve` does, on a free port.

    aiohttp's test server cancels a handler whose client left (handler_cancellation);
    production lets it run, so a client leaving makes reads and writes fail instead:
    the paths these tests are about.
    """
    from gateway.access_log import GatewayRunner

    runner = GatewayRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        server = site._server
        assert isinstance(server, asyncio.Server)
        yield int(server.sockets[0].getsockname()[1])
    finally:
        await runner.cleanup()


async def _until(check: Callable[[], object]) -> None:
    """Wait until `check()` is truthy: an explicit condition, never a fixed sleep."""
    async with asyncio.timeout(5):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_client_gone_mid_body_is_counted_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10, defect 8: this was a 500 and an ERROR traceback for the client's doing."""
    from gateway.app import GATEWAY, build_app
    from tests.conftest import make_config

    caplog.set_level(logging.DEBUG)
    app = build_app(make_config(tmp_path))
    metrics = app[GATEWAY].metrics.registry
    async with _served_as_in_production(app) as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /t/{AMPLITUDE}/2/httpapi HTTP/1.1\r\nHost: gw\r\n"
            "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{".encode()
        )
        await writer.drain()
        writer.close()
        await _until(
            lambda: metrics.get_sample_value(
                "consent_gateway_client_disconnects_total", {"stage": "request"}
            )
        )
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert (
        metrics.get_sample_value(
            "consent_gateway_requests_total", {"vendor": "-", "endpoint": "-", "action": "reject"}
        )
        is None
    )


async def test_a_visitor_gone_while_a_script_streams_back_is_not_an_upstream_error(
    tmp_path: Path, fake_vendor: object, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10, defect 8: the visitor's disconnect was counted as an upstream connect
    error (errors were mapped around the whole exchange, not only the vendor's side)."""
    from gateway.app import GATEWAY, build_app
    from tests.conftest import FakeVendor, make_config, overrides_for

    assert isinstance(fake_vendor, FakeVendor)
    host = "www.googletagmanager.com"
    fake_vendor.answers["/gtag/js"] = (
        200,
        {"Content-Type": "text/javascript"},
        b"/*x*/" * 2_000_000,
    )
    caplog.set_level(logging.DEBUG)
    app = build_app(make_config(tmp_path, overrides_for(fake_vendor, [host])))
    metrics = app[GATEWAY].metrics.registry
    async with _served_as_in_production(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /t/{host}/gtag/js?id=G-1 HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.transport.abort()  # gone, mid-answer (a reset, not a polite close)
        await _until(
            lambda: metrics.get_sample_value(
                "consent_gateway_client_disconnects_total", {"stage": "response"}
            )
        )
    for kind in ("connect", "other", "timeout"):
        assert not metrics.get_sample_value("consent_gateway_upstream_errors_total", {"kind": kind})
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_body_trickled_past_read_timeout_is_408(gateway_factory: object) -> None:
    import asyncio

    client = await gateway_factory(  # type: ignore[operator]
        hosts=[AMPLITUDE], extra={"server": {"read_timeout": "300ms"}}
    )
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"POST /t/{AMPLITUDE}/2/httpapi HTTP/1.1\r\nHost: gw\r\n"
        "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{".encode()
    )
    try:
        async with asyncio.timeout(10):
            status = b""
            while not status:
                try:
                    status = await asyncio.wait_for(reader.readline(), 0.05)
                except TimeoutError:
                    writer.write(b" ")  # a byte at a time, never the whole body
    finally:
        writer.close()
    assert status.startswith(b"HTTP/1.1 408")


# --- the public origin: forwarding headers from trusted proxies only ------------------

NGINX = {"Host": "gateway-upstream:8080", "X-Forwarded-Host": "www.example.com"}


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # a direct request: the Host header and the connection's scheme
        ("203.0.113.9", {"Host": "www.example.com"}, "http://www.example.com"),
        ("203.0.113.9", {"Host": "WWW.Example.com:80"}, "http://www.example.com"),
        ("203.0.113.9", {"Host": "www.example.com:8443"}, "http://www.example.com:8443"),
        # nginx's default `Host $proxy_host`, with X-Forwarded-Host and -Proto
        ("10.0.0.2", {**NGINX, "X-Forwarded-Proto": "https"}, "https://www.example.com"),
        ("10.0.0.2", NGINX, "http://www.example.com"),
        # SECURITY: the same headers from anyone else change nothing
        ("203.0.113.9", {**NGINX, "X-Forwarded-Proto": "https"}, "http://gateway-upstream:8080"),
        (
            "203.0.113.9",
            {"Host": "cg.internal", "Forwarded": 'host="www.example.com";proto=https'},
            "http://cg.internal",
        ),
        # RFC 7239 from a trusted proxy wins over X-Forwarded-*; its right-most element
        # is the one the proxy next to the gateway wrote
        (
            "10.0.0.2",
            {**NGINX, "Forwarded": 'for=1.2.3.4;host="www.example.com";proto=https'},
            "https://www.example.com",
        ),
        (
            "10.0.0.2",
            {"Host": "cg.internal", "Forwarded": "host=evil.test, host=www.example.com"},
            "http://www.example.com",
        ),
        (
            "10.0.0.2",
            {"Host": "cg.internal", "X-Forwarded-Host": "evil.test, www.example.com"},
            "http://www.example.com",
        ),
        # what the proxy leaves out comes from the request
        (
            "10.0.0.2",
            {"Host": "www.example.com", "X-Forwarded-Proto": "https"},
            "https://www.example.com",
        ),
        ("10.0.0.2", {"Host": "cg.internal", "Forwarded": "proto=https"}, "https://cg.internal"),
        # nonsense is no origin
        ("10.0.0.2", {"Host": "cg.internal", "X-Forwarded-Host": "a/b@c"}, None),
        ("10.0.0.2", {"Host": "cg.internal", "X-Forwarded-Host": "*.example.com"}, None),
        ("10.0.0.2", {"Host": "cg.internal", "X-Forwarded-Proto": "javascript"}, None),
    ],
)
def test_public_origin(peer: str, headers: dict[str, str], expected: str | None) -> None:
    request = _request(peer, headers=headers)
    assert isinstance(request, web.Request)
    assert public_origin(request, LB) == expected


@pytest.mark.parametrize(
    ("values", "elements"),
    [
        (["for=1.2.3.4"], [{"for": "1.2.3.4"}]),
        (
            ['For="[2001:db8::1]:80";HOST=a.example'],
            [{"for": "[2001:db8::1]:80", "host": "a.example"}],
        ),
        (["host=a.example, host=b.example"], [{"host": "a.example"}, {"host": "b.example"}]),
        (["host=a.example", "proto=https"], [{"host": "a.example"}, {"proto": "https"}]),
        (['host="a,b;c"'], [{"host": "a,b;c"}]),
        (['host="a\\"b"'], [{"host": 'a"b'}]),
        (["host a.example"], [{}]),
        (["host=a.example;host=b.example"], [{"host": "a.example"}]),
        (["x" * 5000], []),
    ],
)
def test_forwarded_elements(values: list[str], elements: list[dict[str, str]]) -> None:
    assert forwarded_elements(values) == elements


@given(st.lists(st.text(max_size=300), max_size=5))
def test_forwarded_elements_never_raise(values: list[str]) -> None:
    for element in forwarded_elements(values):
        assert all(k == k.lower() for k in element)


# --- the decision header ----------------------------------------------------------


def _decision(
    action: Action,
    vendor: str | None = "meta-pixel",
    missing: frozenset[str] = frozenset(),
    report_only: bool = False,
) -> Decision:
    return Decision(
        action=action,
        vendor=vendor,
        endpoint="tr" if vendor else None,
        required=frozenset({"advertising"}),
        missing=missing,
        strips=StripSpec(),
        reason="test",
        report_only=report_only,
    )


@pytest.mark.parametrize(
    ("decision", "header"),
    [
        (_decision(Action.FORWARD), "forward; vendor=meta-pixel; id=r1"),
        (
            _decision(Action.DROP, missing=frozenset({"advertising", "analytics"})),
            "drop; vendor=meta-pixel; missing=advertising,analytics; id=r1",
        ),
        (
            _decision(Action.STRIP, missing=frozenset({"advertising"})),
            "strip; vendor=meta-pixel; missing=advertising; id=r1",
        ),
        (_decision(Action.REJECT, vendor=None), "reject; id=r1"),
        (_decision(Action.REJECT), "reject; vendor=meta-pixel; id=r1"),
        # report-only: what was done, then what would have been
        (
            _decision(Action.DROP, missing=frozenset({"advertising"}), report_only=True),
            "forward; vendor=meta-pixel; missing=advertising; report-only=drop; id=r1",
        ),
        (
            _decision(Action.FORWARD, report_only=True),
            "forward; vendor=meta-pixel; report-only=forward; id=r1",
        ),
    ],
)
def test_decision_header(decision: Decision, header: str) -> None:
    assert decision_header(decision, "r1") == header
