"""Forwarding to vendors: one shared ClientSession, a bounded background queue.

This is the one boundary where `aiohttp.ClientError` and `TimeoutError` are
mapped to the gateway's `UpstreamError` (see errors.py). Nothing here decides
anything: it sends what `transform` built, to where config says.

- `Upstream.url_for(out)` is the gate's first half: the vendor URL (https, a host a
  loaded rule lists), or the configured override's base URL for that origin. Only
  config can send a vendor origin elsewhere; a host no rule lists is refused.
- `_gate`, a client middleware on the one session, is its second half: every
  connection attempt the session makes (HTTP, WebSocket handshakes, and any redirect
  aiohttp would follow) must be the one URL `url_for` permitted for the call in
  progress, once. A redirect, a second attempt or a request made outside
  `open`/`ws_connect` is refused with `UpstreamRefused` before a socket is opened.
- `Upstream.open(out)` sends synchronously and returns the response for
  streaming back (scripts, APIs); `Upstream.body(resp)` reads it back, chunk by chunk.
- `Upstream.ws_connect(out)` opens a WebSocket to the same destination.
- `Upstream.enqueue(out)` hands a beacon or pixel to the beacon pool
  (`gateway.beacons`: kept-alive connections, driven by callbacks), to the URL
  `url_for` permitted; a full queue drops it, counts it and logs it
  (rate-limited), never blocks.

Errors are mapped only around what the vendor side does (connecting, sending,
reading the vendor's body): a visitor going away while its answer streams back is
the caller's business, never counted as an upstream error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import aiohttp
import yarl
from prometheus_client import Histogram

from gateway.beacons import BeaconPool
from gateway.config import UpstreamConfig
from gateway.errors import UpstreamError, UpstreamRefused, UpstreamTimeout
from gateway.metrics import Metrics
from gateway.model import Outgoing

__all__ = ["Upstream"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Permit:
    """The one connection attempt an `open`/`ws_connect` call may make."""

    url: yarl.URL
    used: bool = False


#: the permit of the upstream call running in this task (None: no call is in progress)
_PERMIT: ContextVar[_Permit | None] = ContextVar("upstream_permit", default=None)

_WS_SCHEMES = {"ws": "http", "wss": "https"}


def _target(url: yarl.URL) -> tuple[str, str | None, int | None, str, str]:
    # ws:// and wss:// handshakes are plain http(s) requests to the same place
    return (
        _WS_SCHEMES.get(url.scheme, url.scheme),
        url.raw_host,
        url.port,
        url.raw_path,
        url.raw_query_string,
    )


async def _gate(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """The session's only middleware: it runs before every connection attempt.

    aiohttp calls middlewares once per attempt, redirects included, so this is the
    one place that sees every URL the gateway would connect to.
    """
    permit = _PERMIT.get()
    # SECURITY: no permit means a request made outside `open`/`ws_connect`; a used one
    # means aiohttp is following a redirect (ws_connect always would): a vendor, a
    # wildcard host someone else controls or an open redirect could otherwise send the
    # gateway into the internal network.
    if permit is None or permit.used or _target(request.url) != _target(permit.url):
        raise UpstreamRefused("refused", "upstream connection not permitted")
    permit.used = True
    return await handler(request)


class Upstream:
    """The gateway's only HTTP client. Create inside a running loop; `close()` on shutdown."""

    def __init__(
        self, cfg: UpstreamConfig, metrics: Metrics, *, listed: Callable[[str], bool]
    ) -> None:
        """`listed(host)` says whether a loaded rule lists `host` (the gate asks it)."""
        self._cfg = cfg
        self._metrics = metrics
        self._listed = listed
        self._session: aiohttp.ClientSession | None = None
        self._beacons: BeaconPool | None = None
        #: every beacon's outcome callback, bound once
        self._done = self._beacon_done
        #: upstream_seconds' child per vendor, bound once (a label lookup per beacon costs)
        self._seconds: dict[str, Histogram] = {}
        self._dropped_since_warning = 0
        self._last_warning = 0.0
        self._closing = False

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._cfg.max_connections, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=self._cfg.total_timeout, connect=self._cfg.connect_timeout
            ),
            # SECURITY: one session serves every visitor; a cookie jar would hand one
            # visitor's vendor cookies to the next.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Bytes pass through as the vendor encoded them (Content-Encoding kept).
            auto_decompress=False,
            # A stripped User-Agent must stay stripped, not become "Python/aiohttp".
            skip_auto_headers=("User-Agent",),
            trust_env=False,
            middlewares=(_gate,),
        )
        self._beacons = BeaconPool(
            connect_timeout=self._cfg.connect_timeout,
            total_timeout=self._cfg.total_timeout,
            max_busy=self._cfg.queue_workers,
            max_pending=self._cfg.queue_size,
            max_idle=self._cfg.max_connections,
        )

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Finish queued forwards (up to `drain_timeout` seconds), then close the session."""
        self._closing = True
        pool, self._beacons = self._beacons, None
        if pool is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.quiet(), drain_timeout)
            left = pool.abandon()
            if left:
                self._metrics.queue_dropped.inc(left)
                log.warning("shutdown: %d queued forwards abandoned", left)
            pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def drain(self) -> None:
        """Wait until every queued forward has been sent or has failed (tests, shutdown)."""
        if self._beacons is not None:
            await self._beacons.quiet()

    @property
    def depth(self) -> int:
        return self._beacons.waiting if self._beacons is not None else 0

    def url_for(self, out: Outgoing) -> yarl.URL:
        """Where `out` goes: https://{host}{path}?{query}, unless config overrides the origin.

        Raises UpstreamRefused when no loaded rule lists `out.host` and config has no
        override for its origin: the gateway is not an open proxy, whoever asks.
        """
        path = out.path if out.path.startswith("/") else "/" + out.path
        tail = path + ("?" + out.query if out.query else "")
        base = self._cfg.overrides.get(f"https://{out.host}")
        if base is None:
            if not self._listed(out.host):
                raise UpstreamRefused("refused", "no rule lists this destination")
            # SECURITY: the host comes from the rule index (validated), never a raw request;
            # building with host= keeps the path from ever becoming an authority.
            return yarl.URL.build(
                scheme="https",
                host=out.host,
                path=path,
                query_string=out.query,
                encoded=True,
            )
        return yarl.URL(str(base).rstrip("/") + tail, encoded=True)

    @contextlib.asynccontextmanager
    async def open(self, out: Outgoing, vendor: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send `out` and yield the vendor's response (body unread: see `body`).

        Raises UpstreamError (UpstreamTimeout, UpstreamRefused) for every failure to get
        a response; the caller answers the visitor itself. Redirects are not followed:
        a 3xx is the response. Exceptions raised by the caller's block pass unmapped.
        """
        session = self._session
        if session is None:
            raise UpstreamError("closed", "upstream is not running")
        url = self.url_for(out)
        started = time.perf_counter()
        token = _PERMIT.set(_Permit(url))
        try:
            with self._mapped(vendor):
                resp = await session.request(
                    out.method,
                    url,
                    headers=list(out.headers),
                    data=out.body or None,
                    allow_redirects=False,
                )
        finally:
            _PERMIT.reset(token)
        try:
            self._metrics.upstream_seconds.labels(vendor).observe(time.perf_counter() - started)
            if resp.status >= 500:
                self._metrics.upstream_errors.labels("status").inc()
            yield resp
        finally:
            resp.release()

    async def body(self, resp: aiohttp.ClientResponse, vendor: str) -> AsyncIterator[bytes]:
        """The vendor's response body in chunks; a failure reading it is an UpstreamError."""
        it = resp.content.iter_chunked(65536).__aiter__()
        while True:
            with self._mapped(vendor):
                try:
                    chunk = await it.__anext__()
                except StopAsyncIteration:
                    return
            yield chunk

    async def ws_connect(self, out: Outgoing, vendor: str) -> aiohttp.ClientWebSocketResponse:
        """Open a WebSocket to `out`'s destination with its (already filtered) headers.

        Goes through the same gate as `open`: the same destination, no redirect.
        Raises UpstreamError for every failure to connect.
        """
        session = self._session
        if session is None:
            raise UpstreamError("closed", "upstream is not running")
        url = self.url_for(out)
        url = url.with_scheme({"https": "wss", "http": "ws"}[url.scheme])
        token = _PERMIT.set(_Permit(url))
        try:
            with self._mapped(vendor):
                return await session.ws_connect(
                    url,
                    headers=[(k, v) for k, v in out.headers if k.lower() != "content-type"],
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                    autoping=True,
                )
        finally:
            _PERMIT.reset(token)

    @contextlib.contextmanager
    def _mapped(self, vendor: str) -> Iterator[None]:
        """The one boundary where aiohttp's and the socket's errors become UpstreamErrors."""
        try:
            yield
        except UpstreamRefused:
            self._metrics.upstream_errors.labels("refused").inc()
            log.warning("upstream connection refused by the gate (%s)", vendor)
            raise
        except UpstreamError as e:  # the beacon pool's refusals, mapped already
            self._metrics.upstream_errors.labels(e.kind).inc()
            raise
        except TimeoutError as e:
            self._metrics.upstream_errors.labels("timeout").inc()
            raise UpstreamTimeout(f"{vendor}: no answer in time") from e
        except (aiohttp.ClientConnectionError, OSError) as e:
            self._metrics.upstream_errors.labels("connect").inc()
            raise UpstreamError("connect", f"{vendor}: {type(e).__name__}") from e
        except aiohttp.ClientError as e:
            self._metrics.upstream_errors.labels("other").inc()
            raise UpstreamError("other", f"{vendor}: {type(e).__name__}") from e

    def enqueue(self, out: Outgoing, vendor: str) -> bool:
        """Send `out` in the background (beacons, pixels). Never blocks.

        False when it was not taken: the queue is full or closed (counted as dropped), or
        the gate refused the destination (counted as refused)."""
        pool = self._beacons
        if self._closing or pool is None:
            self._count_drop()
            return False
        # The outcome's callback is one bound method for all beacons, with plain values
        # for context: a closure per beacon (a function and three cells) lived as long as
        # the vendor's round trip, and every collection of the young generation walked
        # them (bench/PROFILE.md step 28).
        context = (vendor, time.perf_counter())
        try:
            with self._mapped(vendor):
                # SECURITY: the pool connects only to what the gate (url_for) returned
                accepted = pool.submit(out, self.url_for(out), self._done, context)
        except UpstreamError as e:
            log.info("background forward failed: %s (%s)", e.kind, vendor)
            return False
        if not accepted:
            self._count_drop()
        return accepted

    def _beacon_done(
        self, vendor: str, started: float, status: int | None, error: UpstreamError | None
    ) -> None:
        if error is not None:
            self._metrics.upstream_errors.labels(error.kind).inc()
            log.info("background forward failed: %s (%s)", error.kind, vendor)
            return
        seconds = self._seconds.get(vendor)
        if seconds is None:
            seconds = self._seconds[vendor] = self._metrics.upstream_seconds.labels(vendor)
        seconds.observe(time.perf_counter() - started)
        if status is not None and status >= 500:
            self._metrics.upstream_errors.labels("status").inc()

    def _count_drop(self) -> None:
        self._metrics.queue_dropped.inc()
        self._dropped_since_warning += 1
        now = time.monotonic()
        if now - self._last_warning >= 10.0:
            log.warning(
                "background forward queue full: %d request(s) not forwarded",
                self._dropped_since_warning,
            )
            self._last_warning = now
            self._dropped_since_warning = 0
