"""What the HTTP server says about requests, under the privacy rules of DESIGN §7.

Three things a request can reach besides the pipeline, each kept free of its values:

- The access log. aiohttp's default format carries the full request line (query
  string included) and the client address: exactly what the gateway refuses to
  keep. `TextAccessLogger` and `JsonAccessLogger` write the method, the path as a
  template (`decision_log.sanitize_path`: no query, values as `{…}`; for
  `/t/{host}/…` the host as a name, without userinfo or port), the status, the
  size, the time taken, the request id and the client address truncated to /24
  or /48.
- aiohttp's own loggers. A malformed request makes `aiohttp.server` log the raw
  request line and the full client address; other `aiohttp.*` records may carry
  cookie names or addresses in their arguments. `PRIVACY_FILTER` rewrites them
  (`install_log_privacy` attaches it); `aiohttp.access` records are dropped, since
  the gateway's access log is `gateway.access`.
- The answer to a request too malformed to reach the app. aiohttp echoes the raw
  request line in the 400 body. `GatewayRunner` (used by `run_app`, which
  `consent-gateway serve` runs) answers a short JSON error instead.

aiohttp has no supported hook for that answer (aio-libs/aiohttp#3287): the runner
overrides `AppRunner._make_server`, the method every runner implements, to serve
with a `RequestHandler` whose `handle_error` is the gateway's.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import signal
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Final

import orjson
from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from gateway.edges import BASE_PATH, REQUEST_ID
from gateway.front import FrontServer
from gateway.redact import (
    VALUE_MARK,
    looks_like_value,
    sanitize_host,
    sanitize_method,
    sanitize_path,
)
from gateway.state import Gateway
from gateway.transform_headers import truncate_ip

__all__ = [
    "AIOHTTP_LOGGERS",
    "FIELDS",
    "PRIVACY_FILTER",
    "GatewayRunner",
    "JsonAccessLogger",
    "PrivacyFilter",
    "SUMMARY",
    "TextAccessLogger",
    "access_logger_for",
    "install_log_privacy",
    "run_app",
]

_LOG: Final = logging.getLogger("gateway.access")
_STOP_LOG: Final = logging.getLogger("gateway")
#: a log record's attribute holding fields a JSON log line carries as its own
FIELDS: Final = "cg_fields"
#: a log record's attribute holding the message a JSON log line carries instead of its text
SUMMARY: Final = "cg_summary"
#: the admin API's subject routes carry a subject id in the path (below any base path)
_SUBJECT_PATH: Final = re.compile(r"(/_admin/api/subjects/)[^/]*")
#: every logger aiohttp writes to (`aiohttp.log`)
AIOHTTP_LOGGERS: Final = (
    "aiohttp.access",
    "aiohttp.client",
    "aiohttp.internal",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.websocket",
)
#: exceptions that mean the client sent something malformed (its doing, not a bug)
_CLIENT_ERRORS: Final = (HttpProcessingError, ClientPayloadError)


def _log_path(request: web.BaseRequest) -> str:
    # SECURITY: never the query string; values in the path become `{…}`.
    raw = request.rel_url.raw_path
    base: str = request.get(BASE_PATH, "")  # set by the generic tag route
    if raw.startswith(base + "/t/"):
        # The generic tag route: the host segment is a destination, kept as a name.
        host, slash, rest = raw[len(base) + 3 :].partition("/")
        return base + "/t/" + sanitize_host(host) + sanitize_path(slash + rest)
    # SECURITY: a subject id is personal data (erasure must not leave it in the logs).
    return sanitize_path(_SUBJECT_PATH.sub(r"\1-", raw))


def _fields(
    request: web.BaseRequest, response: web.StreamResponse, took: float
) -> dict[str, object]:
    rid = request.get(REQUEST_ID)  # set by edges.request_id when the pipeline ran
    return {
        "ts": round(time.time(), 3),
        "method": sanitize_method(request.method),
        "path": _log_path(request),
        "status": response.status,
        "bytes": response.body_length,
        "ms": round(took * 1000, 2),
        "request_id": rid if isinstance(rid, str) else None,
        # SECURITY: the network, not the visitor's address.
        "client": truncate_ip(request.remote or ""),
    }


def _summary(f: Mapping[str, object]) -> str:
    return "{method} {path} {status} {bytes} {ms}ms client={client}".format_map(f)


class JsonAccessLogger(AbstractAccessLogger):
    """One JSON object per line, for log shippers.

    The record also carries the fields themselves (`FIELDS`) and the text line
    (`SUMMARY`): with `server.log_format: json` they become the log line's own fields
    and message, instead of a JSON string inside a JSON string."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        f = _fields(request, response, time)
        extra = {FIELDS: f, SUMMARY: _summary(f)}
        self.logger.info("%s", orjson.dumps(f).decode(), extra=extra)


class TextAccessLogger(AbstractAccessLogger):
    """`METHOD /path STATUS BYTES MSms client=NET` for people."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s", _summary(_fields(request, response, time)))


def access_logger_for(mode: str) -> type[AbstractAccessLogger] | None:
    """The logger class for `server.access_log` (`off`, `text` or `json`)."""
    return {"json": JsonAccessLogger, "text": TextAccessLogger}.get(mode)


# --- aiohttp's own log records ------------------------------------------------------------


def _scrub(arg: object) -> object:
    """One log argument without values: numbers stay, an address becomes its network,
    a value-like string `{…}`, any other object its type's name."""
    if arg is None or isinstance(arg, int | float):
        return arg
    if isinstance(arg, str):
        net = truncate_ip(arg)
        if net is not None:
            return net
        return VALUE_MARK if looks_like_value(arg) else arg
    if isinstance(arg, list | tuple | set | frozenset):
        return [_scrub(a) for a in arg]
    # An exception or a request object: its text may hold a URL with its query.
    return type(arg).__name__


class PrivacyFilter(logging.Filter):
    """Keeps aiohttp's log records free of request values.

    - A record about a malformed request (its exception an `HttpProcessingError` or
      `ClientPayloadError`, from any logger) becomes `bad request from a client:
      <exception class>` at INFO at most, without the traceback: the exception's
      text is the raw request line or header, query values and all.
    - `aiohttp.access` records are dropped: aiohttp's access format is the raw
      request line and the full address (the gateway logs to `gateway.access`).
    - Other `aiohttp.*` records keep their message; their arguments are scrubbed
      (addresses truncated, value-like strings `{…}`, objects as their type name).
      A traceback of a gateway bug stays: it is how the bug gets fixed.

    Records of other loggers pass unchanged unless they are about a malformed request.
    Attach it to loggers and handlers with `install_log_privacy`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "aiohttp.access":
            return False
        # A record passes the filter on its logger and again on each handler: scrubbing
        # what was already scrubbed would hide the exception class it kept.
        if getattr(record, _FILTERED, False):
            return True
        setattr(record, _FILTERED, True)
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, _CLIENT_ERRORS):
            # SECURITY: the parser's message quotes the bytes it choked on.
            record.msg = "bad request from a client: %s"
            record.args = (type(exc).__name__,)
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
            # The client's doing, not the gateway's failure: never above INFO.
            if record.levelno > logging.INFO:
                record.levelno, record.levelname = logging.INFO, "INFO"
            return True
        if record.name.startswith("aiohttp.") and record.args:
            args = record.args
            if isinstance(args, Mapping):
                record.args = {k: _scrub(v) for k, v in args.items()}
            else:
                record.args = tuple(_scrub(a) for a in args)
        return True


#: set on a record once `PrivacyFilter` has rewritten it
_FILTERED: Final = "cg_private"

#: the one filter every logger and handler shares
PRIVACY_FILTER: Final = PrivacyFilter()


def install_log_privacy(*handlers: logging.Handler) -> None:
    """Attach `PRIVACY_FILTER` to each of aiohttp's loggers and to `handlers` (e.g. the
    root handlers `consent-gateway serve` logs through). Idempotent.

    A logger's filter sees only records logged to that logger, whoever handles them;
    a handler's sees every record that reaches it, whichever logger it came from.
    """
    for target in (*(logging.getLogger(n) for n in AIOHTTP_LOGGERS), *handlers):
        if PRIVACY_FILTER not in target.filters:
            target.addFilter(PRIVACY_FILTER)


# --- the answer to a malformed request ----------------------------------------------------


class _PrivateRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering errors without echoing the request."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A short JSON error, `{"error": "bad request"}`, closing the connection.

        aiohttp calls this for a request its parser refused (400, `message` quoting
        the raw bytes) and for an exception out of the app (500); `message` and the
        exception's text are never sent or logged. An exception caused by the
        client's bytes (a bad chunk, a truncated body) is a 400, logged at INFO
        without values; anything else is a 500 logged with its traceback.
        """
        if isinstance(exc, _CLIENT_ERRORS):
            status = HTTPStatus.BAD_REQUEST
            # A scanner or TLS on the plain port: noise, as aiohttp treats it.
            level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.INFO
            # Already what the privacy filter makes of such a record: the class name is
            # the gateway's, not the client's (scrubbed again, it would read `{…}`).
            self.logger.log(
                level,
                "bad request from a client: %s",
                type(exc).__name__,
                extra={_FILTERED: True},
            )
        else:
            self.logger.error("error answering a request", exc_info=exc)
        if request.writer.output_size > 0:
            # Part of the answer is out: the connection is broken, as aiohttp would say.
            raise ConnectionError("response is sent already, cannot send an error")
        # SECURITY: aiohttp's own body quotes the raw request line (query values included).
        phrase = HTTPStatus(status).phrase.lower()
        resp = web.Response(
            status=status,
            body=orjson.dumps({"error": phrase}),
            content_type="application/json",
            headers={hdrs.CACHE_CONTROL: "no-store"},
        )
        resp.force_close()
        return resp


class _PrivateServer(web.Server):
    """aiohttp's low-level server, making `_PrivateRequestHandler` connections; with a
    front (`gateway.front`), each connection starts with it and is handed to one of
    those when the front cannot answer."""

    front: FrontServer | None = None

    # the listener's protocol factory (loop.create_server): any protocol will do
    def __call__(self) -> asyncio.Protocol:  # type: ignore[override]
        if self.front is not None:
            return self.front()
        return self.handler()

    def handler(self) -> RequestHandler:
        return _PrivateRequestHandler(self, loop=self._loop, **self._kwargs)

    def pre_shutdown(self) -> None:
        if self.front is not None:
            self.front.close()
        super().pre_shutdown()

    async def shutdown(self, timeout: float | None = None) -> None:
        if self.front is not None:
            self.front.close()
        await super().shutdown(timeout)


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer malformed requests without echoing
    them (`_PrivateRequestHandler.handle_error`). Use it as an `AppRunner`. With
    `front` (the gateway and its tag route prefix), tag requests answered locally are
    served by `gateway.front.FrontServer` before aiohttp sees them."""

    def __init__(
        self, app: web.Application, *, front: tuple[Gateway, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._front = front

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # app startup, then aiohttp's own server
        # Same handler, request factory and settings (app `handler_args` merged in).
        server = _PrivateServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            **made._kwargs,
        )
        if self._front is not None and FrontServer.available():
            gw, prefix = self._front
            kw = made._kwargs
            server.front = FrontServer(
                gw,
                server.handler,
                tag_prefix=prefix,
                keepalive_timeout=float(kw.get("keepalive_timeout", 75.0)),
                max_line_size=int(kw.get("max_line_size", 8190)),
                max_field_size=int(kw.get("max_field_size", 8190)),
                max_headers=int(kw.get("max_headers", 128)),
            )
        return server


def run_app(
    app: web.Application,
    *,
    host: str,
    port: int,
    reuse_port: bool,
    access_log: logging.Logger | None,
    access_log_class: type[AbstractAccessLogger],
    shutdown_timeout: float,
    drain_delay: float = 0.0,
    on_drain: Callable[[], None] | None = None,
    ops: tuple[web.Application, str, int] | None = None,
    front: tuple[Gateway, str] | None = None,
) -> None:
    """Serve `app` on `host:port` until SIGINT or SIGTERM, like `web.run_app`, through
    `GatewayRunner`, and `ops` (the operators' app, its host and port), if given, on its
    own listener. Exceptions from the app's startup (cleanup contexts) propagate.

    The stop is graceful: `on_drain` is called first (readiness turns 503); on SIGTERM,
    what a service manager or an orchestrator sends, the listeners keep serving for
    `drain_delay` seconds so that a load balancer notices and stops sending (SIGINT, a
    person at a terminal, or a second signal cuts that short). Then the listeners close
    and requests in flight have `shutdown_timeout` seconds to finish.

    A signal ends the wait below, and the runners are cleaned up (the decision log
    drained) while every task still runs. aiohttp's own handling raises `GracefulExit`
    out of the loop instead, and `asyncio.run` then cancels every task at once: the
    decision log's writer among them, before the clean-up could hand it the records
    still queued, which were lost.
    """

    async def serve() -> None:
        signals: asyncio.Queue[int] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, signals.put_nowait, sig)
        runner = GatewayRunner(
            app,
            handle_signals=False,  # the handlers above
            access_log=access_log,  # None: no access log at all
            access_log_class=access_log_class,
            shutdown_timeout=shutdown_timeout,
            front=front,
        )
        await runner.setup()  # the main app's startup: the state both apps serve
        # What start-up built (rules, config, caches' structure) lives as long as the
        # process or until a reload replaces it (which freezes its own: gateway.reload):
        # frozen, no full collection walks it again, which were pauses of tens of ms.
        gc.freeze()
        ops_runner: GatewayRunner | None = None
        try:
            await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
            if ops is not None:
                ops_app, ops_host, ops_port = ops
                ops_runner = GatewayRunner(
                    ops_app,
                    handle_signals=False,
                    access_log=None,
                    shutdown_timeout=shutdown_timeout,
                )
                await ops_runner.setup()
                await web.TCPSite(
                    ops_runner, ops_host, ops_port, reuse_port=reuse_port or None
                ).start()
            first = await signals.get()
            if on_drain is not None:
                on_drain()
            if first == signal.SIGTERM and drain_delay > 0:
                _STOP_LOG.info("draining: not ready, closing the listeners in %gs", drain_delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signals.get(), drain_delay)
        finally:
            if ops_runner is not None:
                await ops_runner.cleanup()
            await runner.cleanup()

    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        asyncio.run(serve())
