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
