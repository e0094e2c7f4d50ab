"""`consent-gateway serve`: one process, or one per worker sharing the port.

`serve(cfg, config_path, overrides)` logs through the privacy filter, then serves the
app (and the operators' listener, when `server.admin_port` is set) until SIGINT or
SIGTERM: in this process for one worker, or in `server.workers` spawned processes
sharing the port through SO_REUSEPORT, which the parent supervises. The CLI has
validated `cfg` and the command-line `overrides` already.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import sys

from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError, StoreError

__all__ = ["serve", "worker_main"]

log = logging.getLogger("gateway")


def _setup_logging(level: str) -> None:
    from gateway.access_log import install_log_privacy

    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # SECURITY: aiohttp logs malformed request lines (query values) and full client
    # addresses; every record is filtered before it is written anywhere.
    install_log_privacy(*logging.getLogger().handlers)


def serve(cfg: GatewayConfig, config_path: str, overrides: dict[str, object]) -> int:
    """Serve until a signal; the exit code (1: the gateway could not start)."""
    _setup_logging(cfg.server.log_level)
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
    _setup_logging(cfg.server.log_level)
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
            print(problem, file=sys.stderr)
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
    from gateway.app import OPS, front_for

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
            shutdown_timeout=10.0,
            ops=ops,
            # tag requests answered locally skip aiohttp's request cycle (gateway.front);
            # with an access log, every request takes aiohttp's way, where it is written
            front=front_for(app, access_log=logger_class is not None),
        )
    except StoreError as e:
        # the gateway refuses to start without its consent store (unreachable, or a
        # schema it does not know)
        print(f"consent store: {e}", file=sys.stderr)
        return 1
    return 0
