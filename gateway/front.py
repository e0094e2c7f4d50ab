"""The public listener's front: tag requests answered locally, without aiohttp's request cycle.

Most tag hits a gateway sees are dropped (no consent yet), or forwarded in the
background (beacons, pixels), and answered at once with a few bytes that need no body
and no waiting. aiohttp's request cycle (a task step,
request and response objects, header preparation, the writer) costs as much as a whole
trivial handler, and more than the gateway's decision. The front is the connection's
first protocol: for each complete request head in what it received, it asks
`pipeline.answer_locally`; when that answers, the front writes the answer itself. At the
first request it cannot answer that way (a body, a forward the visitor waits for, a
subject to look up, a preflight, an upgrade, HTTP/1.0, a head cut across reads, anything
it does not parse), it hands the connection, with every byte from that request on, to
aiohttp's own connection handler, which serves it from then on exactly as if the front
had never been there.

What it does not change:
- the parser: each head is parsed by aiohttp's own HTTP parser (llhttp), built with the
  server's limits; a head it refuses is handed to aiohttp, which refuses it the same way;
- the decision: `answer_locally` is the pipeline's own flow (facts, consent, match,
  decision, metrics, decision log) and its answer is the one `run` would give;
- the answer's headers: what aiohttp, the error middleware and the public app's
  `on_response_prepare` hooks (decision header, CORS) put on it; `tests/test_front.py`
  sends every case both ways and compares the bytes;
- timeouts: a connection idle between requests for `keepalive_timeout` is closed (one
  sweep a second for all, so up to a second later), like aiohttp's; a head not yet
  complete is aiohttp's to wait for, with its own timers.

The front is on when the public app serves `/t/` (`tag_prefix`) and the access log is
off (an access-logged request takes aiohttp's way, where the log lives).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, cast

from aiohttp import hdrs, web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from aiohttp.http_parser import HttpRequestParser
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict, CIMultiDictProxy

from gateway import cors, edges, pipeline
from gateway.cors import DECISION_HEADER
from gateway.memo import Memo
from gateway.model import Decision
from gateway.ruleset.match import normalize_host
from gateway.state import Gateway

try:  # the Cookie parser aiohttp's requests use; without it, no front (aiohttp serves all)
    from aiohttp._cookie_helpers import parse_cookie_header

    _PARSER_FOUND = True
except ImportError:  # pragma: no cover - an aiohttp that moved it
    _PARSER_FOUND = False

__all__ = ["FrontServer", "tag_target"]

log = logging.getLogger(__name__)

#: statuses whose answer has no body and no Content-Length (RFC 9110 §8.6, §15.3.5)
_EMPTY: Final = frozenset({204, 304})
_METHODS: Final = (b"GET ", b"POST ")
#: seconds between two looks at the connections idle between requests
_SWEEP: Final = 1.0

#: (the decision, the match, the answer's bytes in three parts; see `FrontServer._template`)
_Template = tuple[Decision, object, tuple[bytes, bytes, bytes]]


def tag_target(rest: str) -> tuple[str | None, str]:
    """(the vendor host, or None if it is not a valid one; the path) of a `/t/` route,
    from the raw path after `/t/` without its query. Parsed raw, so encoded separators
    stay encoded and cannot move the boundary between host and path."""
    host_raw, _, tail = rest.partition("/")
    # SECURITY: the host must be a plain DNS name (no userinfo, port, IP literal or
    # percent-encoding); a rule must list it, or the pipeline REJECTs.
    return normalize_host(host_raw), "/" + tail


class _Head:
    """A parsed request head, as `edges.RequestHead`."""

    __slots__ = ("headers", "method", "raw_path", "remote")

    def __init__(
        self, method: str, raw_path: str, headers: CIMultiDictProxy[str], remote: str | None
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.headers = headers
        self.remote = remote

    @property
    def cookies(self) -> Mapping[str, str]:
        # as aiohttp's BaseRequest.cookies
        parsed = parse_cookie_header(self.headers.get(hdrs.COOKIE, ""))
        return MappingProxyType({name: morsel.value for name, morsel in parsed})


class FrontServer:
    """The public listener's protocol factory: a `_Front` per connection, handing over to
    `handover()` (aiohttp's connection handler) when it must."""

    def __init__(
        self,
        gw: Gateway,
        handover: Callable[[], RequestHandler],
        *,
        tag_prefix: str,
        keepalive_timeout: float,
        max_line_size: int = 8190,
        max_field_size: int = 8190,
        max_headers: int = 128,
    ) -> None:
        self.gw = gw
        self.handover = handover
        self._prefix = tag_prefix
        self._heads = tuple(m + tag_prefix.encode() for m in _METHODS)
        self._keepalive = keepalive_timeout
        self._limits = (max_line_size, max_field_size, max_headers)
        self._allowed = gw.config.server.allowed_origins
        self.connections: dict[_Front, None] = {}
        self._templates: Memo[tuple[int, int, bool, str | None], _Template] = Memo(1024)
        self._sweeper: asyncio.TimerHandle | None = None

    @staticmethod
    def available() -> bool:
        return _PARSER_FOUND

    def __call__(self) -> asyncio.Protocol:
        return _Front(self)

    def parser(self, protocol: asyncio.Protocol) -> HttpRequestParser:
        line, field, headers = self._limits
        loop = asyncio.get_running_loop()
        # the limits of aiohttp's own connections (web_protocol.RequestHandler)
        return HttpRequestParser(
            protocol,  # type: ignore[arg-type]
            loop,
            2**16,
            max_line_size=line,
            max_field_size=field,
            max_headers=headers,
        )

    def answer(
        self, parser: HttpRequestParser, head: bytes, peer: str | None
    ) -> tuple[bytes, bool, pipeline.LocalAnswer] | None:
        """(the bytes answering one complete request head, whether the connection closes
        after it, the decision to `commit` once they are written), or None: aiohttp's to
        serve."""
        if not head.startswith(self._heads):
            return None
        messages, upgraded, tail = parser.feed_data(head)
        if len(messages) != 1 or upgraded or tail:
            return None
        msg, payload = messages[0]
        if (
            payload is not EMPTY_PAYLOAD
            or msg.version != HttpVersion11
            or msg.upgrade
            or hdrs.EXPECT in msg.headers
            or hdrs.UPGRADE in msg.headers
        ):
            return None
        raw_path: str = msg.path
        host, path = tag_target(raw_path[len(self._prefix) :].partition("?")[0])
        request = _Head(msg.method, raw_path, msg.headers, peer)
        answered = pipeline.answer_locally(self.gw, request, host, path)
        if answered is None:
            return None
        ev, rid = answered.ev, answered.request_id
        close = bool(msg.should_close)
        origin = request.headers.get(hdrs.ORIGIN) if self._allowed else None
        # The answer is a function of the decision and match objects (kept by the core's
        # caches), the Origin (with CORS on) and whether the connection closes: its bytes
        # are kept but for the request id and the date. Entries hold their objects, so
        # their ids are not reused meanwhile.
        key = (id(ev.decision), id(ev.match), close, origin)
        kept = self._templates.get(key)
        if kept is None or kept[0] is not ev.decision or kept[1] is not ev.match:
            answer = pipeline.local_answer_for(request, ev)
            decision = ""
            if self.gw.config.server.decision_header:
                decision = edges.decision_header(ev.decision, "")
            kept = (ev.decision, ev.match, self._template(answer, decision, origin, close))
            if len(origin or "") <= 256:
                self._templates.put(key, kept)
        before_id, before_date, rest = kept[2]
        if before_date:  # a decision header: the id, then the date
            data = b"".join(
                (before_id, rid.encode(), before_date, rfc822_formatted_time().encode(), rest)
            )
        else:
            data = b"".join((before_id, rfc822_formatted_time().encode(), rest))
        # Committed (counted, logged, its forward queued) only once the answer is made and
        # written: an answer that could not be made hands the request to aiohttp, which
        # does all of it once.
        return data, close, answered

    def _template(
        self, response: web.Response, decision: str, origin: str | None, close: bool
    ) -> tuple[bytes, bytes, bytes]:
        """`response` as aiohttp writes it after the public app's middleware and hooks, in
        three parts: up to the request id (of a decision header, when there is one), up to
        the date, and the rest (when there is no decision header, the second is empty and
        the first ends where the date goes)."""
        headers = CIMultiDict(response.headers)
        # app._errors_middleware
        headers.setdefault("X-Content-Type-Options", "nosniff")
        # cors.on_prepare, for an app that has origins configured
        if self._allowed:
            cors.decorate(headers, cors.Kind.TAG, origin, self._allowed)
        # web_response: lengths, type, server, connection (the date goes in per answer)
        body = response.body
        assert body is None or isinstance(body, bytes)
        status = response.status
        if status in _EMPTY:
            headers.popall(hdrs.CONTENT_LENGTH, None)
            body = b""
        else:
            headers[hdrs.CONTENT_LENGTH] = str(len(body or b""))
            if body:
                headers.setdefault(hdrs.CONTENT_TYPE, "application/octet-stream")
        headers.setdefault(hdrs.SERVER, SERVER_SOFTWARE)
        if close:
            headers[hdrs.CONNECTION] = "close"
        # edges.on_prepare: the decision header (a local answer never carries another)
        headers.popall(DECISION_HEADER, None)
        headers.popall(hdrs.DATE, None)
        lines = [f"HTTP/1.1 {status} {response.reason}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        rest = b"\r\n\r\n" + (body or b"")  # the end of the date's line, of the head
        if decision:
            lines.append(f"{DECISION_HEADER}: {decision}")
            return ("\r\n".join(lines)).encode(), b"\r\nDate: ", rest
        lines.append("Date: ")
        return ("\r\n".join(lines)).encode(), b"", rest

    # -- connections idle between requests ----------------------------------------------

    def track(self, front: _Front) -> None:
        self.connections[front] = None
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(_SWEEP, self._sweep)

    def _sweep(self) -> None:
        # A connection idle since the last sweep grows older by the sweep's interval;
        # one that received anything was reset to 0 (a store per read, not a clock read).
        loop = asyncio.get_running_loop()
        for front in list(self.connections):
            front.idle += _SWEEP
            if front.idle > self._keepalive:
                front.close()
        self._sweeper = loop.call_later(_SWEEP, self._sweep) if self.connections else None

    def close(self) -> None:
        """Close every connection the front still holds (they are between requests)."""
        for front in list(self.connections):
            front.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


class _Front(asyncio.Protocol):
    """One connection, until it is handed to aiohttp (if ever)."""

    __slots__ = ("_parser", "_paused", "_peer", "_server", "_transport", "idle")

    def __init__(self, server: FrontServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._parser: HttpRequestParser | None = None
        self._peer: str | None = None
        self._paused = False
        #: seconds idle, in sweeps (gateway.front.FrontServer._sweep)
        self.idle = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are asyncio.Transport in all but inheritance
        self._transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        # as aiohttp's BaseRequest.remote: the address of an IP socket, else None
        self._peer = str(peer[0]) if isinstance(peer, (list, tuple)) and peer else None
        self._parser = self._server.parser(self)
        self._server.track(self)

    def data_received(self, data: bytes) -> None:
        transport, parser = self._transport, self._parser
        assert transport is not None and parser is not None
        pos = 0
        while pos < len(data):
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            end += 4
            try:
                answer = self._server.answer(parser, data[pos:end], self._peer)
            except Exception as e:
                # Anything the front does not expect is aiohttp's to answer, or refuse.
                # SECURITY: the type only: parser errors quote the request's bytes.
                log.debug("front: handing over after %s", type(e).__name__)
                answer = None
            if answer is None:
                break
            # The visitor's answer first: a forward's request to the vendor is built and
            # written after it, not on the visitor's time.
            transport.write(answer[0])
            try:
                answer[2].commit()
            except Exception:
                # Answered already: nothing to hand over. Whatever was not done (a count,
                # the record, the forward) fails closed: nothing left for the vendor.
                log.exception("front: committing an answered request failed")
            pos = end
            if answer[1]:  # the client asked to close after this answer
                self.close()
                return
        else:
            self.idle = 0.0
            return
        self._hand_over(data[pos:])

    def _hand_over(self, rest: bytes) -> None:
        transport = self._transport
        assert transport is not None
        self._server.connections.pop(self, None)
        self._transport = self._parser = None
        if self._paused:
            # aiohttp's handler starts unpaused: it must be able to read its requests
            transport.resume_reading()
        handler = self._server.handover()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if rest:
            handler.data_received(rest)

    def pause_writing(self) -> None:
        # A client that does not read its answers: stop reading its requests.
        if self._transport is not None and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and self._paused:
            self._paused = False
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.pop(self, None)
        self._transport = self._parser = None

    def close(self) -> None:
        self._server.connections.pop(self, None)
        if self._transport is not None:
            self._transport.close()
