"""`consent-gateway serve`: one process, or one per worker sharing the port.

`serve(cfg, config_path, overrides)` logs through the privacy filter, then serves the
app (and the operators' listener, when `server.admin_port` is set) until SIGINT or
SIGTERM: in this process for one worker, or in `server.workers` spawned processes
sharing the port through SO_REUSEPORT, which the parent supervises. The CLI has
validated `cfg` and the command-line `overrides` already.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import multiprocessing
import os
import signal
import sys
import threading
import types
from functools import partial
from typing import TYPE_CHECKING, Final

import orjson

from gateway.config import GatewayConfig, LogFormat, load_config
from gateway.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from gateway.state import Gateway

__all__ = ["JsonLogFormatter", "serve", "worker_main"]

log = logging.getLogger("gateway")


#: attributes every log record has: anything else on a record came from `extra=`
_RECORD_ATTRS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line: `time` (UTC, ISO 8601), `level`, `logger`, `message`, then
    the record's own fields (`extra=`), and `exc` (the traceback) or `stack` when it has
    them. Newlines inside a traceback are escaped: a record is always exactly one line."""

    def __init__(self) -> None:
        super().__init__()
        # imported here, not per record: the access log formats one per request
        from gateway.access_log import FIELDS, SUMMARY

        self._fields, self._summary = FIELDS, SUMMARY

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        doc: dict[str, object] = {
            "time": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": getattr(record, self._summary, None) or record.getMessage(),
        }
        own = getattr(record, self._fields, None)
        if isinstance(own, dict):
            for key, value in own.items():
                doc.setdefault(key, value)
        for key, value in vars(record).items():
            # `cg_*`: the gateway's own bookkeeping on a record (its fields, its summary,
            # the privacy filter's mark), not fields of the line
            if key not in _RECORD_ATTRS and not key.startswith("cg_"):
                doc.setdefault(key, value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        # default=str: an `extra=` value JSON has no type for is still written, as text
        return orjson.dumps(doc, default=str).decode()


def _setup_logging(level: str, fmt: LogFormat = LogFormat.TEXT) -> None:
    from gateway.access_log import install_log_privacy

    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handlers = logging.getLogger().handlers
    if fmt is LogFormat.JSON:
        for handler in handlers:
            handler.setFormatter(JsonLogFormatter())
        # What would otherwise reach stderr as plain text: warnings, and exceptions that
        # end the main thread or another thread.
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread
    # SECURITY: aiohttp logs malformed request lines (query values) and full client
    # addresses; every record is filtered before it is written anywhere.
    install_log_privacy(*handlers)


def _log_uncaught(
    kind: type[BaseException], exc: BaseException, tb: types.TracebackType | None
) -> None:
    log.critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        log.error(
            "uncaught exception in a thread",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )


def serve(cfg: GatewayConfig, config_path: str, overrides: dict[str, object]) -> int:
    """Serve until a signal; the exit code (1: the gateway could not start)."""
    _setup_logging(cfg.server.log_level, cfg.server.log_format)
    if cfg.server.workers == 1:
        return _serve_one(cfg, reuse_port=False)
    # One process per core, sharing the port through SO_REUSEPORT; the parent supervises.
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=worker_main, args=(config_path, overrides), name=f"gateway-{i}")
        for i in range(cfg.server.workers)
    ]
    for proc in procs:
        proc.start()

    def stop(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for proc in procs:
        proc.join()
    return max((proc.exitcode or 0) for proc in procs)


def worker_main(config_path: str, overrides: dict[str, object]) -> None:
    """One worker process: loads the config itself (spawned, it shares nothing)."""
    cfg = load_config(config_path)
    cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, **overrides))  # type: ignore[arg-type]
    _setup_logging(cfg.server.log_level, cfg.server.log_format)
    sys.exit(_serve_one(cfg, reuse_port=True))


def _serve_one(cfg: GatewayConfig, *, reuse_port: bool) -> int:
    from aiohttp import web_log

    from gateway.access_log import access_logger_for, run_app
    from gateway.app import build_app

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional off Linux/macOS
        pass
    try:
        app = build_app(cfg)
    except ConfigError as e:
        for problem in e.problems:
            _refuse(cfg, str(problem))
        return 1
    server = cfg.server
    # the public routes' address, below server.base_path when there is one
    log.info(
        "starting on http://%s:%d%s/ (pid %d)",
        server.host,
        server.port,
        server.base_path,
        os.getpid(),
    )
    from gateway.app import GATEWAY, OPS, front_for

    ops_app = app.get(OPS)
    ops = None
    if ops_app is not None and cfg.server.admin_port is not None:
        ops = (ops_app, cfg.server.admin_host, cfg.server.admin_port)
        log.info(
            "operators' listener (/_admin, /metrics, /healthz, /readyz) on http://%s:%d",
            cfg.server.admin_host,
            cfg.server.admin_port,
        )
    logger_class = access_logger_for(cfg.server.access_log)
    try:
        # Not web.run_app: its runner answers a malformed request by echoing it back.
        run_app(
            app,
            host=cfg.server.host,
            port=cfg.server.port,
            reuse_port=reuse_port,
            access_log=logging.getLogger("gateway.access") if logger_class else None,
            access_log_class=logger_class or web_log.AccessLogger,
            shutdown_timeout=cfg.server.shutdown_timeout,
            drain_delay=cfg.server.drain_delay,
            on_drain=partial(_drain, app[GATEWAY]),
            ops=ops,
            # tag requests answered locally skip aiohttp's request cycle (gateway.front);
            # with an access log, every request takes aiohttp's way, where it is written
            front=front_for(app, access_log=logger_class is not None),
        )
    except StoreError as e:
        # the gateway refuses to start without its consent store (unreachable, or a
        # schema it does not know)
        _refuse(cfg, f"consent store: {e}")
        return 1
    return 0


def _refuse(cfg: GatewayConfig, message: str) -> None:
    """Why the gateway will not start: a plain line for people, a log line in JSON."""
    if cfg.server.log_format is LogFormat.JSON:
        log.error("%s", message)
    else:
        print(message, file=sys.stderr)


def _drain(gw: Gateway) -> None:
    # /readyz answers 503 from now on: balancers stop sending before the listeners close
    gw.draining = True
