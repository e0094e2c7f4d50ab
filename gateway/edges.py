"""The pipeline's I/O edges: reading a request into Facts, answering the visitor.

Everything that touches aiohttp's request or response objects for tag traffic
is here, so the core never does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import re
import secrets
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Protocol

import aiohttp
import orjson
from aiohttp import hdrs, web
from multidict import CIMultiDictProxy

from gateway import bodies
from gateway.config.convert import origin_pattern
from gateway.consent.regimes import country_from
from gateway.core import address_in
from gateway.cors import DECISION_HEADER
from gateway.errors import BadDestination, BodyTimeout, BodyTooLarge, ClientGone, UpstreamError
from gateway.memo import Memo
from gateway.model import Action, Decision, EndpointKind, Facts, Headers, Outgoing
from gateway.ratelimit import NetworkLimiter
from gateway.ruleset.match import Match
from gateway.ruleset.schema import EndpointSpec
from gateway.state import Gateway

__all__ = [
    "over_limit",
    "read_body",
    "BASE_PATH",
    "DECISION",
    "REQUEST_ID",
    "TRANSPARENT_GIF",
    "client_ip",
    "decision_header",
    "name_decision",
    "forwarded_elements",
    "on_prepare",
    "peer_trusted",
    "public_origin",
    "is_websocket",
    "proxy_websocket",
    "country_of",
    "deliver",
    "error_response",
    "local_answer",
    "raw_host_hint",
    "read_facts",
    "request_id",
    "new_request_id",
    "facts_from",
    "RequestHead",
]

log = logging.getLogger(__name__)

#: the classic 1x1 transparent GIF, 43 bytes
TRANSPARENT_GIF: Final = bytes.fromhex(
    "47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b"
)
_NO_STORE = {hdrs.CACHE_CONTROL: "no-store"}

#: vendor response headers passed back to the visitor; anything else stays behind
_RESPONSE_HEADERS: Final = frozenset(
    {
        "content-type",
        "content-encoding",
        "content-language",
        "cache-control",
        "expires",
        "last-modified",
        "etag",
        "vary",
        "timing-allow-origin",
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-expose-headers",
        "x-content-type-options",
    }
)


REQUEST_ID = web.RequestKey("request_id", str)
#: on a tag request under `server.base_path`: that path (the access log names the route)
BASE_PATH = web.RequestKey("base_path", str)


#: request ids: a random prefix per process, then a counter. An id names a request in
#: logs and answers; it grants nothing, so it needs to be unique, not unguessable, and a
#: counter is a tenth of the cost of fresh random bytes per request.
_ID_PREFIX: Final = secrets.token_hex(5)
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A fresh id (never taken from the visitor: it goes into logs)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):06x}"


def request_id(request: web.Request) -> str:
    """The request's id, made on first use."""
    rid = request.get(REQUEST_ID)
    if rid is None:
        rid = request[REQUEST_ID] = new_request_id()
    return rid


class RequestHead(Protocol):
    """What the edges read of a request to make its facts: aiohttp's `web.Request`, or a
    head parsed by `gateway.front` with the same parser. Read-only."""

    @property
    def method(self) -> str: ...
    @property
    def raw_path(self) -> str: ...
    @property
    def headers(self) -> CIMultiDictProxy[str]: ...
    @property
    def remote(self) -> str | None: ...
    @property
    def cookies(self) -> Mapping[str, str]: ...


def raw_host_hint(request: web.Request, base_path: str = "") -> str:
    """For the log of a refused `/t/` request: the host segment as sent (sanitised later)."""
    raw = request.raw_path.split("?", 1)[0]
    if base_path and raw.startswith(base_path + "/"):
        raw = raw[len(base_path) :]
    parts = raw.split("/", 3)
    return parts[2] if len(parts) > 2 and parts[1] == "t" else "-"


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def peer_trusted(request: RequestHead, trusted: Networks) -> bool:
    """Is the connection's peer one of `server.trusted_proxies`? The one answer to it:
    only then are forwarding headers (addresses, host, scheme) believed."""
    return bool(trusted) and address_in(request.remote, trusted)


def _parse_ip(peer: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(peer)) if peer else None
    except ValueError:
        return None


#: peer string -> (its address normalised, or None)
_PEERS: Memo[str, tuple[str | None]] = Memo(4096)


def client_ip(request: RequestHead, trusted: Networks) -> str | None:
    """The visitor's address: the peer, or, when the peer is a trusted proxy, the
    right-most X-Forwarded-For entry that is not itself a trusted proxy."""
    peer = request.remote
    if not trusted:
        # The common case: the peer is the visitor. Its address, normalised, is kept per
        # peer string (a kept-alive connection sends many requests).
        kept = _PEERS.get(peer or "")
        if kept is None:
            kept = _PEERS.put(peer or "", (_parse_ip(peer),))
        return kept[0]
    try:
        addr = ipaddress.ip_address(peer) if peer else None
    except ValueError:
        return None
    if addr is None or not peer_trusted(request, trusted):
        return str(addr) if addr is not None else None
    # SECURITY: entries left of a trusted hop are the visitor's own claims; we walk from
    # the right and stop at the first address no trusted proxy vouches for.
    chain = [
        p.strip() for v in request.headers.getall(hdrs.X_FORWARDED_FOR, []) for p in v.split(",")
    ]
    for hop in reversed(chain):
        try:
            hop_addr = ipaddress.ip_address(hop)
        except ValueError:
            return None
        if not any(hop_addr in n for n in trusted):
            return str(hop_addr)
    return str(addr)


async def read_facts(gw: Gateway, request: web.Request, host: str | None, path: str) -> Facts:
    """Facts for a tag request. Raises RequestError subclasses for refused requests."""
    if host is None:
        raise BadDestination("not a valid destination host")
    limit = gw.config.server.max_body_bytes
    body = await read_body(request, limit, gw.config.server.read_timeout)
    return facts_from(gw, request, host, path, request_id(request), body)


def facts_from(
    gw: Gateway, request: RequestHead, host: str, path: str, rid: str, body: bytes
) -> Facts:
    """Facts for a tag request whose body (`b""`: none) has been read. Raises
    RequestError subclasses for a body that does not decode."""
    headers = Headers.over(request.headers)
    codings = bodies.encodings(headers.items_all()) if body else ()
    # Decoded once, here: a body that is not what its header says is the client's error
    # (400), a compression bomb is refused (413) before any stage looks at it.
    # SECURITY: the decoded body is held to the same limit as a plain one, so compressing
    # buys a sender no more memory or strip work than sending plain text would.
    limit = gw.config.server.max_body_bytes
    decoded = bodies.decode(body, codings, limit) if codings and body else None
    return Facts(
        request_id=rid,
        method=request.method,
        host=host,
        path=path,
        query=request.raw_path.partition("?")[2],
        headers=headers,
        cookies=cookies_of(request),
        body=body,
        client_ip=client_ip(request, gw.config.server.trusted_proxies),
        country=country_of(gw, request, headers),
        now=time.time(),
        decoded_body=decoded,
    )


def cookies_of(request: RequestHead) -> Mapping[str, str]:
    """The request's cookies (aiohttp's parse of its first Cookie header), read-only.

    A visitor sends the same Cookie header with each hit: the parse is kept per header
    value (bounded; long headers are parsed every time)."""
    raw = request.headers.get(hdrs.COOKIE, "")
    if not raw:
        return _NO_COOKIES
    kept = _COOKIE_HEADERS.get(raw)
    if kept is None:
        kept = MappingProxyType(dict(request.cookies))
        if len(raw) <= 2048:
            _COOKIE_HEADERS.put(raw, kept)
    return kept


_NO_COOKIES: Mapping[str, str] = MappingProxyType({})
_COOKIE_HEADERS: Memo[str, Mapping[str, str]] = Memo(8192)


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The body exactly as sent (the server does not decompress it), at most `limit` bytes,
    within `timeout` seconds. Raises BodyTooLarge, BodyTimeout or ClientGone."""
    if not request.body_exists:
        return b""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge("request body too large")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_chunked(65536):
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge("request body too large")
                chunks.append(chunk)
    except TimeoutError:
        # SECURITY: a body trickled byte by byte would hold a connection and its buffer
        raise BodyTimeout("request body not received in time") from None
    except ConnectionResetError:
        raise ClientGone from None
    return b"".join(chunks)


def country_of(gw: Gateway, request: RequestHead, headers: Headers) -> str | None:
    """The visitor's country from the configured geo header, if it can be believed."""
    server = gw.config.server
    trusted = server.trusted_proxies
    # SECURITY: the geo header is believed only from a trusted proxy when proxies are
    # configured; otherwise it is the operator's word that only the CDN reaches us.
    if trusted and not peer_trusted(request, trusted):
        return None
    return country_from(headers, server.country_header)


#: RFC 7239 `Forwarded` pair: a token, `=`, a token or a quoted string
_PAIR: Final = re.compile(r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)=("(?:[^"\\]|\\.)*"|[^;,"\s]*)\s*')
#: a Forwarded header longer than this is not read (visitor input, via the proxy)
_FORWARDED_MAX: Final = 4096


def forwarded_elements(values: list[str]) -> list[dict[str, str]]:
    """RFC 7239 `Forwarded` header values as their elements, in order, each a mapping of
    lower-case parameter names to values (quotes removed). An element that does not parse
    is empty; a header past a bound gives no elements."""
    text = ",".join(values)
    if len(text) > _FORWARDED_MAX:
        return []
    out: list[dict[str, str]] = []
    for element in _split_outside_quotes(text, ","):
        pairs: dict[str, str] = {}
        for pair in _split_outside_quotes(element, ";"):
            if not pair.strip():
                continue
            m = _PAIR.fullmatch(pair)
            if m is None:
                pairs = {}
                break
            value = m.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            pairs.setdefault(m.group(1).lower(), value)
        out.append(pairs)
    return out


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def public_origin(request: web.BaseRequest, trusted: Networks) -> str | None:
    """The origin (`scheme://host[:port]`, normalised) the visitor used to reach the gateway.

    From a trusted proxy (`peer_trusted`): the right-most `Forwarded` element's `host=` and
    `proto=` (the one the proxy next to us wrote), else the right-most `X-Forwarded-Host`
    and `X-Forwarded-Proto` entries; what is missing comes from the request itself. From
    anyone else: the Host header and the connection's own scheme, whatever else it sent.
    """
    host, scheme = request.host, request.scheme
    if peer_trusted(request, trusted):
        forwarded = [e for e in forwarded_elements(request.headers.getall(hdrs.FORWARDED, [])) if e]
        if forwarded:
            host = forwarded[-1].get("host", host)
            scheme = forwarded[-1].get("proto", scheme)
        else:
            host = _last(request.headers.getall(hdrs.X_FORWARDED_HOST, [])) or host
            scheme = _last(request.headers.getall(hdrs.X_FORWARDED_PROTO, [])) or scheme
    if "*" in host:
        return None
    return origin_pattern(f"{scheme.lower()}://{host}")


def _last(values: list[str]) -> str | None:
    entries = [p.strip() for v in values for p in v.split(",") if p.strip()]
    return entries[-1] if entries else None


# -- the decision header ----------------------------------------------------------


#: on a tag request: the value of its `Consent-Gateway-Decision` answer header
DECISION = web.RequestKey("decision_header", str)


def decision_header(decision: Decision, rid: str) -> str:
    """`Consent-Gateway-Decision`: `<action>; vendor=<id>; missing=<p1,p2>; id=<request id>`.

    The action is what the gateway did (`Decision.effective`); in report-only mode a
    `report-only=<logged action>` parameter follows. `vendor=` is left out for a request
    no rule claims, `missing=` when no purpose is missing. Vendor ids and purposes are
    names from the rules and the config, the id the gateway's own: nothing here is the
    visitor's input.
    """
    kept = _HEADERS.get(id(decision))
    if kept is not None and kept[0] is decision:
        return kept[1] + rid
    parts = [decision.effective.value]
    if decision.vendor is not None:
        parts.append(f"vendor={decision.vendor}")
    if decision.missing:
        parts.append("missing=" + ",".join(sorted(decision.missing)))
    if decision.report_only:
        parts.append(f"report-only={decision.action.value}")
    parts.append("id=")
    prefix = "; ".join(parts)
    _HEADERS.put(id(decision), (decision, prefix))
    return prefix + rid


#: id(decision) -> (decision, the header up to its request id); decisions are cached
#: (`decide`), so a visitor's repeated hit builds its header by one concatenation
_HEADERS: Memo[int, tuple[Decision, str]] = Memo(4096)


def name_decision(gw: Gateway, request: web.Request, decision: Decision, rid: str) -> None:
    """Have the answer to `request` name `decision` (unless `server.decision_header` is
    off): `on_prepare` writes the header however the answer is made."""
    if gw.config.server.decision_header:
        request[DECISION] = decision_header(decision, rid)


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` of the public app: the decision header on every tag answer
    (local, forwarded, streamed, the WebSocket handshake), never the vendor's own."""
    # SECURITY: a vendor's answer must not speak for the gateway (deliver's allow-list
    # never passes it; this holds whatever that list becomes).
    response.headers.popall(DECISION_HEADER, None)
    value = request.get(DECISION)
    if value is not None:
        response.headers[DECISION_HEADER] = value


def over_limit(
    request: web.Request, limiter: NetworkLimiter, trusted: Networks, message: str
) -> web.Response | None:
    """429 with Retry-After when the client's network has used `limiter`'s allowance for
    now (this request counts against it), else None. `message` is the gateway's own."""
    ip = client_ip(request, trusted)
    now = time.monotonic()
    if limiter.allow(ip, now):
        return None
    resp = error_response(429, message)
    resp.headers[hdrs.RETRY_AFTER] = str(limiter.retry_after(ip, now))
    return resp


def error_response(status: int, message: str) -> web.Response:
    """A short JSON error. `message` is the gateway's own text, never the visitor's input."""
    return web.Response(
        status=status,
        body=orjson.dumps({"error": message}),
        content_type="application/json",
        headers=_NO_STORE,
    )


def local_answer(endpoint: EndpointSpec | None) -> web.Response:
    """The harmless answer for a dropped request (DESIGN §4): the endpoint's `drop_answer`
    (its SDK's own success), else one by endpoint kind."""
    if endpoint is not None and (answer := endpoint.drop_answer) is not None:
        return web.Response(
            status=answer.status,
            body=answer.body or None,
            headers={**_NO_STORE, hdrs.CONTENT_TYPE: answer.content_type}
            if answer.content_type
            else _NO_STORE,
        )
    match endpoint.kind if endpoint is not None else None:
        case EndpointKind.PIXEL:
            return web.Response(body=TRANSPARENT_GIF, content_type="image/gif", headers=_NO_STORE)
        case EndpointKind.SCRIPT:
            return web.Response(
                body=b"", content_type="text/javascript", charset="utf-8", headers=_NO_STORE
            )
        case EndpointKind.BEACON | EndpointKind.API | None:
            return web.Response(status=204, headers=_NO_STORE)
        case EndpointKind.WEBSOCKET:
            return error_response(403, "no consent for this stream")


async def deliver(
    gw: Gateway, request: web.Request, match: Match, decision: Decision, out: Outgoing
) -> web.StreamResponse:
    """Send `out` to the vendor and stream its answer back to the visitor (endpoints in
    sync mode; the pipeline queues async ones itself). A failure to reach the vendor is
    a 502 (never a hang: the session has a total timeout).
    """
    endpoint = match.endpoint
    vendor = decision.vendor or "-"
    resp: web.StreamResponse | None = None
    try:
        async with gw.upstream.open(out, vendor) as upstream:
            if 300 <= upstream.status < 400 and decision.action is Action.STRIP:
                # SECURITY: following a vendor redirect, the browser would reach the vendor
                # directly with its own cookies: exactly what was just stripped.
                return local_answer(endpoint)
            headers = {k: v for k, v in upstream.headers.items() if k.lower() in _RESPONSE_HEADERS}
            if 300 <= upstream.status < 400 and hdrs.LOCATION in upstream.headers:
                headers[hdrs.LOCATION] = upstream.headers[hdrs.LOCATION]
            resp = web.StreamResponse(status=upstream.status, headers=headers)
            if upstream.content_length is not None:
                resp.content_length = upstream.content_length
            await resp.prepare(request)
            async for chunk in gw.upstream.body(upstream, vendor):
                await resp.write(chunk)
            await resp.write_eof()
            return resp
    except UpstreamError as e:
        log.info("forward failed: %s (%s/%s)", e.kind, decision.vendor, decision.endpoint)
        if resp is not None and resp.prepared:
            return resp  # headers already sent: the visitor sees a truncated body
        return error_response(504 if e.kind == "timeout" else 502, "vendor unavailable")
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        # The visitor went away while its answer streamed back: its doing, not the vendor's.
        gw.metrics.client_disconnects.labels("response").inc()
        log.debug("visitor disconnected during the answer (%s/%s)", vendor, decision.endpoint)
        return resp if resp is not None else local_answer(endpoint)


def is_websocket(request: RequestHead) -> bool:
    """A WebSocket upgrade (RFC 6455 §4.1): it must never be passed on blindly."""
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


async def proxy_websocket(
    gw: Gateway, request: web.Request, decision: Decision, out: Outgoing
) -> web.StreamResponse:
    """Carry a WebSocket between the visitor and the vendor, for FORWARD decisions only.

    Messages cannot be stripped (the stream is the body, and it is opaque), so a
    STRIP decision refuses the upgrade like a DROP: fail closed.
    """
    if decision.effective is not Action.FORWARD:
        return error_response(403, "no consent for this stream")
    try:
        upstream = await gw.upstream.ws_connect(out, decision.vendor or "-")
    except UpstreamError as e:
        log.info("websocket to vendor failed: %s (%s)", e.kind, decision.vendor)
        return error_response(502, "vendor unavailable")
    visitor = web.WebSocketResponse()
    await visitor.prepare(request)
    try:
        await _pump(visitor, upstream)
    finally:
        await upstream.close()
        await visitor.close()
    return visitor


_Socket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


async def _relay(src: _Socket, dst: _Socket) -> None:
    """Copy text and binary messages from `src` to `dst` until `src` closes."""
    async for msg in src:
        if msg.type is aiohttp.WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type is aiohttp.WSMsgType.BINARY:
            await dst.send_bytes(msg.data)


async def _pump(visitor: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(_relay(visitor, upstream)),
        loop.create_task(_relay(upstream, visitor)),
    ]
    # Either side closing ends the relay; the other direction is cancelled.
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
