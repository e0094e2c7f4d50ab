"""gateway.edges: client address through trusted proxies only; local answers."""

from __future__ import annotations

import ipaddress

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.edges import TRANSPARENT_GIF, client_ip, local_answer, raw_host_hint
from gateway.model import EndpointKind

LB = (ipaddress.ip_network("10.0.0.0/8"),)


def _request(peer: str, xff: str | None = None, path: str = "/t/a.example/x") -> object:
    headers = {"X-Forwarded-For": xff} if xff is not None else {}
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


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "body"),
    [
        (EndpointKind.PIXEL, 200, "image/gif", TRANSPARENT_GIF),
        (EndpointKind.BEACON, 204, None, b""),
        (EndpointKind.API, 204, None, b""),
        (EndpointKind.SCRIPT, 200, "text/javascript", b""),
        (None, 204, None, b""),
    ],
)
def test_local_answers(
    kind: EndpointKind | None, status: int, content_type: str | None, body: bytes
) -> None:
    resp = local_answer(kind)
    assert resp.status == status and (resp.body or b"") == body
    assert resp.headers["Cache-Control"] == "no-store"
    if content_type:
        assert resp.content_type == content_type
    assert len(TRANSPARENT_GIF) == 43 and TRANSPARENT_GIF.startswith(b"GIF89a")


@pytest.mark.parametrize(
    ("path", "hint"),
    [("/t/evil.example/x", "evil.example"), ("/t/a%40b/x", "a%40b"), ("/other", "-")],
)
def test_raw_host_hint(path: str, hint: str) -> None:
    assert raw_host_hint(_request("1.2.3.4", path=path)) == hint  # type: ignore[arg-type]


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
        await ws.send_str("hello")
        msg = await ws.receive(timeout=5)
        assert msg.data == "echo:hello"
    assert seen == ["hello"]

    from aiohttp import WSServerHandshakeError

    with pytest.raises(WSServerHandshakeError) as info:
        await client.ws_connect("/t/ws.hotjar.com/api/v2/client/ws")
    assert info.value.status == 403
    assert seen == ["hello"]
