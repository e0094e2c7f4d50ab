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
import logging
import re
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import yarl

from gateway.errors import UpstreamError, UpstreamRefused, UpstreamTimeout
from gateway.model import Outgoing

__all__ = ["BeaconPool", "Done", "request_bytes"]

log = logging.getLogger(__name__)

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
    know where they end. Its pool hears of each end through `_ended`."""

    def __init__(self, pool: BeaconPool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        #: the job on this connection (None: idle) and when it was written
        self.job: _Job | None = None
        self.started = 0.0
        self._buf = bytearray()
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
        if self.job is None:  # bytes nobody asked for: the connection is out of step
            self.close()
            return
        self._buf += data
        try:
            self._advance()
        except ValueError:
            self.fail(UpstreamError("other", "unreadable answer"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self.job is not None:
            if self._until_close and self._status is not None:
                self._end(self._status, None)
            else:
                self._end(None, UpstreamError("connect", "connection closed"))

    # -- use -----------------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        """Bytes received that no request accounts for."""
        return bool(self._buf)

    def start(self, job: _Job, now: float) -> None:
        """Write `job`'s request; its end is reported to the pool."""
        assert self.transport is not None and self.job is None
        self.job, self.started = job, now
        self._head_method = job.method == "HEAD"
        self._status, self._keep, self._remaining = None, True, 0
        self._chunked = self._until_close = False
        self._chunk = _SIZE
        self._drained = 0
        self.transport.write(job.data)

    def fail(self, error: UpstreamError) -> None:
        """End the job in progress with `error`; the connection is not reused."""
        self.close()
        if self.job is not None:
            self._end(None, error)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _end(self, status: int | None, error: UpstreamError | None) -> None:
        job, self.job = self.job, None
        if job is not None:
            reusable = error is None and self._keep and not self._buf and not self.closed
            self.pool._ended(self, job, status, error, reusable)

    # -- parsing --------------------------------------------------------------------------
    def _done(self) -> None:
        if self.job is not None and self._status is not None:
            self._end(self._status, None)

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
            self._discard(len(self._buf))
            return
        self._discard(min(self._remaining, len(self._buf)))
        if self._remaining == 0:
            self._done()

    def _discard(self, count: int) -> None:
        """Throw away `count` body bytes, counted against the answer's bound."""
        del self._buf[:count]
        self._remaining = max(0, self._remaining - count)
        self._drained += count
        if self._drained > MAX_BODY:
            raise ValueError("answer body too large")

    def _drain_chunks(self) -> None:
        while True:
            if self._chunk is _DATA:
                self._discard(min(self._remaining, len(self._buf)))
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


#: what a job's sender hears: its context (`submit`), then the vendor's status, or the
#: error that stopped it
Done = Callable[..., None]


@dataclass(slots=True)
class _Job:
    data: bytes
    method: str
    done: Done
    #: what `done` is called with before the outcome: plain values, so that an in-flight
    #: beacon is one object for the cyclic collector to walk, not a closure's four
    context: tuple[object, ...] = ()


class BeaconPool:
    """Kept-alive connections per origin, opened only to the origins the gate returned.

    Driven by callbacks, not tasks: `submit` writes the request on an idle connection
    at once (or opens one, or queues the job), and a connection that reads its answer's
    end takes the next job for its origin. No future, task or timer per beacon: a sweep
    ends jobs older than `total_timeout`. Bounded: at most `max_busy` connections busy
    or opening, `max_pending` jobs waiting, `max_idle` connections idle.
    """

    def __init__(
        self,
        *,
        connect_timeout: float,
        total_timeout: float,
        max_busy: int,
        max_pending: int,
        max_idle: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_busy = max_busy
        self._max_pending = max_pending
        self._max_idle = max_idle
        self._clock = clock
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._pending: dict[Origin, deque[_Job]] = {}
        self._pending_count = 0
        #: connections with a job, and connections being opened (counted in `_busy`)
        self._active: set[_Connection] = set()
        self._busy = 0
        self._opening: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._ssl: ssl.SSLContext | None = None

    @property
    def waiting(self) -> int:
        """Jobs queued for a free connection."""
        return self._pending_count

    def submit(
        self, out: Outgoing, url: yarl.URL, done: Done, context: tuple[object, ...] = ()
    ) -> bool:
        """Send `out` to `url` (from `Upstream.url_for`) and call `done(*context, status,
        error)` with the outcome.

        False, and `done` never called, when the job cannot even wait (the pending
        bound is reached). Raises UpstreamRefused, before anything is sent, for a
        request that would not be one clean HTTP/1.1 request or a destination that is
        not http(s)."""
        job = _Job(request_bytes(out, url), out.method, done, context)
        origin = _origin(url)
        conn = self._reuse(origin)
        if conn is not None:
            self._begin(conn, job)
            return True
        if self._busy < self._max_busy:
            self._open(origin, job)
            return True
        if self._pending_count >= self._max_pending:
            return False
        self._pending.setdefault(origin, deque()).append(job)
        self._pending_count += 1
        self._quiet.clear()
        return True

    async def send(self, out: Outgoing, url: yarl.URL) -> int:
        """`submit`, awaited: the vendor's status, or its UpstreamError raised."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def done(status: int | None, error: UpstreamError | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(status if status is not None else 0)

        if not self.submit(out, url, done):
            raise UpstreamError("full", "too many beacons waiting")
        return await future

    async def quiet(self) -> None:
        """Wait until no job is waiting or in progress."""
        await self._quiet.wait()

    def abandon(self) -> int:
        """Drop every waiting job (shutdown); how many there were."""
        dropped = self._pending_count
        self._pending.clear()
        self._pending_count = 0
        self._settle()
        return dropped

    def close(self) -> None:
        """Close every connection; jobs in progress end with an error."""
        self.abandon()
        for task in list(self._opening):
            task.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._active):
            conn.fail(UpstreamError("closed", "upstream closed"))
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._idle_count = 0

    # -- the machinery ---------------------------------------------------------------------
    def _begin(self, conn: _Connection, job: _Job) -> None:
        self._active.add(conn)
        self._quiet.clear()
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        conn.start(job, self._clock())

    def _open(self, origin: Origin, job: _Job) -> None:
        self._busy += 1
        self._quiet.clear()
        task = asyncio.get_running_loop().create_task(self._connect(origin, job))
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    async def _connect(self, origin: Origin, job: _Job) -> None:
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self, origin),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
        except TimeoutError:
            self._unopened(job, UpstreamTimeout("no connection in time"))
            return
        except (OSError, ssl.SSLError) as e:
            self._unopened(job, UpstreamError("connect", type(e).__name__))
            return
        except asyncio.CancelledError:
            self._unopened(job, UpstreamError("closed", "upstream closed"))
            raise
        self._begin(conn, job)

    def _unopened(self, job: _Job, error: UpstreamError) -> None:
        self._busy -= 1
        _report(job, None, error)
        self._next()

    def _ended(
        self,
        conn: _Connection,
        job: _Job,
        status: int | None,
        error: UpstreamError | None,
        reusable: bool,
    ) -> None:
        self._active.discard(conn)
        _report(job, status, error)
        if reusable:
            waiting = self._pending.get(conn.origin)
            if waiting:
                self._pending_count -= 1
                self._begin(conn, waiting.popleft())
                return
            if self._idle_count < self._max_idle:
                conn.idle_since = self._clock()
                self._idle.setdefault(conn.origin, []).append(conn)
                self._idle_count += 1
            else:
                conn.close()
        else:
            conn.close()
        self._busy -= 1
        self._next()

    def _next(self) -> None:
        """Open connections for waiting jobs while there is room, then note quiet."""
        for origin, waiting in self._pending.items():
            while waiting and self._busy < self._max_busy:
                self._pending_count -= 1
                self._open(origin, waiting.popleft())
        self._settle()

    def _settle(self) -> None:
        if self._busy == 0 and self._pending_count == 0:
            self._quiet.set()

    def _reuse(self, origin: Origin) -> _Connection | None:
        conns = self._idle.get(origin)
        if not conns:
            return None
        now = self._clock()
        while conns:
            conn = conns.pop()
            self._idle_count -= 1
            # bytes on an idle connection are an answer to nothing: it is out of step
            if not conn.closed and not conn.pending and now - conn.idle_since < IDLE_SECONDS:
                self._busy += 1
                return conn
            conn.close()
        return None

    async def _sweep(self) -> None:
        """End jobs older than `total_timeout`: one timer for all, not one per beacon."""
        interval = min(1.0, self._total_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            limit = self._clock() - self._total_timeout
            for conn in [c for c in self._active if c.started < limit]:
                conn.fail(UpstreamTimeout("no answer in time"))


def _report(job: _Job, status: int | None, error: UpstreamError | None) -> None:
    # A sender's callback failing must not stop the pool (it runs inside a protocol
    # callback, where an exception would end the connection's bookkeeping).
    try:
        job.done(*job.context, status, error)
    except Exception:
        log.exception("beacon outcome callback failed")


def _origin(url: yarl.URL) -> Origin:
    if url.scheme not in ("http", "https") or not url.raw_host:
        raise UpstreamRefused("refused", "not an http(s) destination")
    return url.scheme, url.raw_host, url.port or (443 if url.scheme == "https" else 80)
