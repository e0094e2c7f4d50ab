"""Background forwarding of beacons and pixels: kept-alive HTTP/1.1 connections per origin.

A beacon's visitor has its answer already; what is left is one request to the vendor
whose answer nobody reads. aiohttp's client does far more per request than that needs
(cookie and redirect machinery, response objects, streams): this sender writes the
request line and headers itself, reads the status and throws the body away, on a small
pool of kept-alive connections per origin. Scripts, APIs and WebSockets, whose answers
go back to the visitor, keep aiohttp's client (`gateway.upstream`).

SECURITY, the same gate as every upstream call:
- a connection is opened only to the origin of a URL that `Upstream.url_for` returned
  for the request (a host a loaded rule lists, or the configured override): the
  sender is handed that URL, never a host of its own;
- one request per send, and a 3xx is a status like any other: nothing is followed;
- the request line and every header are checked for control characters before a byte
  is written (no header or request splitting, whatever transform produced);
- answers are bounded (header block, body drained and discarded up to a cap): a vendor
  cannot make the gateway hold memory.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Callable
from typing import Final

import yarl

from gateway.errors import UpstreamError, UpstreamRefused, UpstreamTimeout
from gateway.model import Outgoing

__all__ = ["BeaconPool", "request_bytes"]

#: the largest answer header block accepted, and the most body bytes drained
MAX_HEAD: Final = 64 * 1024
MAX_BODY: Final = 1024 * 1024
#: seconds an idle connection is kept: below the keep-alive timeout of common servers
#: (nginx 75 s, Google's front ends minutes), so a reused connection is rarely stale
IDLE_SECONDS: Final = 15.0

#: what may not appear in a request line or a header: CR, LF, NUL, other controls
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TARGET_BAD = re.compile(r"[\x00-\x20\x7f#]")
#: headers the sender writes itself
_OWN = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})
_BODYLESS_STATUS = frozenset({204, 304})
#: where a chunked answer's reader is: a size line, data, the CRLF after it, trailers
_SIZE, _DATA, _DATA_END, _TRAILER = object(), object(), object(), object()

Origin = tuple[str, str, int]


def request_bytes(out: Outgoing, url: yarl.URL) -> bytes:
    """The HTTP/1.1 request for `out`, sent to `url` (from `Upstream.url_for`).

    Raises UpstreamRefused if any part would not be one clean request line and header
    block (a control character anywhere, a space in the target)."""
    target = url.raw_path_qs or "/"
    if _TARGET_BAD.search(target) or _CONTROL.search(out.method) or " " in out.method:
        raise UpstreamRefused("refused", "request target not sendable")
    host = url.raw_host or ""
    port = url.port
    default = 443 if url.scheme == "https" else 80
    authority = host + (f":{port}" if port and port != default else "")
    lines = [f"{out.method} {target} HTTP/1.1", f"Host: {authority}"]
    for name, value in out.headers:
        if name.lower() in _OWN:
            continue
        if _CONTROL.search(name) or ":" in name or _CONTROL.search(value.replace("\t", " ")):
            raise UpstreamRefused("refused", "header not sendable")
        lines.append(f"{name}: {value}")
    if out.body or out.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(out.body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    return head + out.body if out.body else head


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one request at a time, answers parsed just enough to
    know where they end."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[int, bool]] | None = None
        self._head_method = False
        # the answer being read: None until its head is complete
        self._status: int | None = None
        self._keep = True
        self._remaining = 0  # Content-Length bytes still to drain
        self._chunked = False
        self._chunk = _SIZE
        self._until_close = False
        self._drained = 0

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection is not reusable
            self.close()
            return
        self._buf += data
        try:
            self._advance()
        except ValueError:
            self._fail(UpstreamError("other", "unreadable answer"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self._waiter is not None and not self._waiter.done():
            if self._until_close and self._status is not None:
                self._waiter.set_result((self._status, False))
            else:
                self._waiter.set_exception(UpstreamError("connect", "connection closed"))

    # -- use -----------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        """Bytes received that no request accounts for."""
        return bool(self._buf)

    async def exchange(self, data: bytes, method: str) -> tuple[int, bool]:
        """Send one request; (status, whether the connection can be reused)."""
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self._head_method = method == "HEAD"
        self._status, self._keep, self._remaining = None, True, 0
        self._chunked = self._until_close = False
        self._chunk = _SIZE
        self._drained = 0
        self.transport.write(data)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- parsing --------------------------------------------------------------------------
    def _fail(self, error: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        self.close()

    def _done(self) -> None:
        if self._waiter is not None and not self._waiter.done() and self._status is not None:
            self._waiter.set_result((self._status, self._keep and not self._buf))

    def _advance(self) -> None:
        while self._status is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:
                    raise ValueError("answer head too large")
                return
            head = bytes(self._buf[:end]).decode("latin-1")
            del self._buf[: end + 4]
            status_line, _, fields = head.partition("\r\n")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise ValueError("not an HTTP/1.x status line")
            status = int(parts[1])
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue): the real one follows
            length: int | None = None
            for line in fields.split("\r\n"):
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip())
                    if not 0 <= length <= MAX_BODY:
                        raise ValueError("answer body length out of bounds")
                elif name == "transfer-encoding":
                    self._chunked = value.strip().lower().endswith("chunked")
                elif name == "connection" and "close" in value.lower():
                    self._keep = False
            self._status = status
            if self._head_method or status in _BODYLESS_STATUS:
                self._chunked = False
                self._remaining = 0
            elif self._chunked:
                self._chunk = _SIZE
            elif length is not None:
                self._remaining = length
            else:
                self._until_close, self._keep = True, False
        self._drain()

    def _drain(self) -> None:
        if self._chunked:
            self._drain_chunks()
            return
        if self._until_close:
            self._drained += len(self._buf)
            self._buf.clear()
            if self._drained > MAX_BODY:
                raise ValueError("answer body too large")
            return
        take = min(self._remaining, len(self._buf))
        del self._buf[:take]
        self._remaining -= take
        self._drained += take
        if self._drained > MAX_BODY:
            raise ValueError("answer body too large")
        if self._remaining == 0:
            self._done()

    def _drain_chunks(self) -> None:
        while True:
            if self._chunk is _DATA:
                take = min(self._remaining, len(self._buf))
                del self._buf[:take]
                self._remaining -= take
                self._drained += take
                if self._drained > MAX_BODY:
                    raise ValueError("answer body too large")
                if self._remaining:
                    return
                self._chunk = _DATA_END
            end = self._buf.find(b"\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:
                    raise ValueError("chunk line too long")
                return
            line = bytes(self._buf[:end])
            del self._buf[: end + 2]
            if self._chunk is _DATA_END:
                if line:
                    raise ValueError("chunk data longer than its size")
                self._chunk = _SIZE
            elif self._chunk is _SIZE:
                size = int(line.split(b";", 1)[0].strip(), 16)
                self._chunk = _TRAILER if size == 0 else _DATA
                self._remaining = size
            elif not line:  # the empty line after the trailers: the answer is complete
                self._chunked = False
                self._done()
                return


class BeaconPool:
    """Kept-alive connections per origin, opened only to the origins the gate returned.

    `send(out, url)` returns the vendor's status; it raises UpstreamError (UpstreamTimeout
    for a deadline) for a failure to get one. At most `max_idle` connections wait idle in
    all; open connections are bounded by the callers' concurrency (the queue's workers).
    """

    def __init__(
        self,
        *,
        connect_timeout: float,
        total_timeout: float,
        max_idle: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_idle = max_idle
        self._clock = clock
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._ssl: ssl.SSLContext | None = None

    async def send(self, out: Outgoing, url: yarl.URL) -> int:
        data = request_bytes(out, url)
        origin = _origin(url)
        conn = self._reuse(origin)
        try:
            async with asyncio.timeout(self._total_timeout):
                if conn is None:
                    conn = await self._connect(origin)
                status, reusable = await conn.exchange(data, out.method)
        except TimeoutError:
            if conn is not None:
                conn.close()
            raise UpstreamTimeout("no answer in time") from None
        except UpstreamError:
            if conn is not None:
                conn.close()
            raise
        except (OSError, ssl.SSLError) as e:
            if conn is not None:
                conn.close()
            raise UpstreamError("connect", type(e).__name__) from e
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if reusable and not conn.closed and self._idle_count < self._max_idle:
            conn.idle_since = self._clock()
            self._idle.setdefault(origin, []).append(conn)
            self._idle_count += 1
        else:
            conn.close()
        return status

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._idle_count = 0

    def _reuse(self, origin: Origin) -> _Connection | None:
        conns = self._idle.get(origin)
        now = self._clock()
        while conns:
            conn = conns.pop()
            self._idle_count -= 1
            # bytes on an idle connection are an answer to nothing: it is out of step
            if not conn.closed and not conn.pending and now - conn.idle_since < IDLE_SECONDS:
                return conn
            conn.close()
        return None

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            _, conn = await loop.create_connection(
                _Connection, host, port, ssl=tls, server_hostname=host if tls else None
            )
        return conn


def _origin(url: yarl.URL) -> Origin:
    if url.scheme not in ("http", "https") or not url.raw_host:
        raise UpstreamRefused("refused", "not an http(s) destination")
    return url.scheme, url.raw_host, url.port or (443 if url.scheme == "https" else 80)
