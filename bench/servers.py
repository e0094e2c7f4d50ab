"""The servers `bench/run.py` measures against, each run as its own process.

    python bench/servers.py vendor [--delay MS]     a fake vendor that counts what it gets
    python bench/servers.py trivial                 aiohttp + uvloop answering 204
    python bench/servers.py naive --target URL      aiohttp pass-through proxy to URL

Each binds 127.0.0.1 on a free port, prints `port N` on stdout once it serves, and runs
until SIGTERM. Nothing here knows the gateway: the gateway runs as itself
(`consent-gateway serve`), and nginx, when installed, from `nginx_config`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

LOOPBACK = "127.0.0.1"  # the only address the benchmark binds or connects to
#: the fake vendor's counter and its delay switch: the gateway never forwards here (its
#: overrides send a vendor origin to /{vendor-host}/… on the fake vendor)
STATS_PATH = "/__bench/stats"
DELAY_PATH = "/__bench/delay/"
REQUEST_TIMEOUT = 10.0
#: a small stand-in for gtag.js, so a script path streams a realistic-ish body
FAKE_SCRIPT = b"/* fake gtag.js */" + b"(function(){var d=window.dataLayer||[];})();" * 40

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


def _uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    sock.listen(4096)
    return sock


def _ready(sock: socket.socket) -> None:
    print(f"port {sock.getsockname()[1]}", flush=True)


async def _until_sigterm() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()


# -- the fake vendor -----------------------------------------------------------------
# A raw asyncio protocol rather than an aiohttp app: the vendor shares the two cores
# with what is measured, so it must cost as little as possible per request, the same
# for every scenario that sends to it.


class _State:
    requests = 0
    #: seconds before answering; `GET /__bench/delay/{ms}` changes it
    delay = 0.0


class _VendorProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, pipelining, Content-Length bodies: what clients send here."""

    def __init__(self) -> None:
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            length = 0
            low = head.lower()
            at = low.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = low.find(b"\r\n", at + 2)
                length = int(low[at + 17 : stop if stop > 0 else None])
            if len(buf) < end + 4 + length:
                break
            buf = buf[end + 4 + length :]
            self._answer(head.split(b" ", 2)[1])
        self._buf = buf

    def _answer(self, target: bytes) -> None:
        control = target.startswith(b"/__bench/")
        if control:
            if target.startswith(DELAY_PATH.encode()):
                _State.delay = float(target[len(DELAY_PATH) :]) / 1000
            body = b'{"requests": %d}' % _State.requests
            ctype = b"application/json"
        else:
            _State.requests += 1
            body, ctype = b"ok", b"text/plain"
            if target.partition(b"?")[0].endswith(b"/js"):
                body, ctype = FAKE_SCRIPT, b"text/javascript"
        out = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            ctype,
            len(body),
            body,
        )
        if _State.delay and not control:
            asyncio.get_running_loop().call_later(_State.delay, self._write, out)
        else:
            self._write(out)

    def _write(self, out: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def _vendor(delay: float) -> None:
    _State.delay = delay
    sock = _listen()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_VendorProtocol, sock=sock)
    _ready(sock)
    await _until_sigterm()
    server.close()


# -- the trivial handler and the naive proxy ---------------------------------------------


async def _answer_204(request: web.Request) -> web.Response:
    return web.Response(status=204)


_SESSION = web.AppKey("session", aiohttp.ClientSession)
_TARGET = web.AppKey("target", str)


async def _pass_through(request: web.Request) -> web.Response:
    """Forward to the target laid out like the gateway's overrides (/{host}/{path})."""
    url = request.app[_TARGET] + request.raw_path.removeprefix("/t")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    body = await request.read()
    async with request.app[_SESSION].request(
        request.method, url, headers=headers, data=body or None, allow_redirects=False
    ) as up:
        content = await up.read()
        ctype = up.headers.get("Content-Type")
        return web.Response(
            status=up.status, body=content, headers={"Content-Type": ctype} if ctype else None
        )


async def _session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200),  # the gateway's default max_connections
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        app[_SESSION] = session
        yield


async def _serve_app(app: web.Application) -> None:
    sock = _listen()
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        _ready(sock)
        await _until_sigterm()
    finally:
        await runner.cleanup()


def trivial_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _answer_204)
    return app


def naive_app(target: str) -> web.Application:
    app = web.Application()
    app[_TARGET] = target
    app.cleanup_ctx.append(_session)
    app.router.add_route("*", "/t/{tail:.*}", _pass_through)
    return app


# -- nginx, the physical limit ------------------------------------------------------------


def nginx_config(tmp: Path, port: int, vendor_port: int) -> str:
    """One worker: `/t/…` answered 204 by `return`, `/p/{host}/…` proxied to the vendor
    over kept-alive connections. Every path nginx writes is under `tmp`."""
    return f"""
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    upstream vendor {{ server {LOOPBACK}:{vendor_port}; keepalive 64; }}
    server {{
        listen {LOOPBACK}:{port} reuseport;
        location /t/ {{ return 204; }}
        location /p/ {{
            proxy_pass http://vendor/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/servers.py")
    sub = p.add_subparsers(dest="kind", required=True)
    v = sub.add_parser("vendor")
    v.add_argument("--delay", type=float, default=0.0, help="milliseconds before answering")
    sub.add_parser("trivial")
    n = sub.add_parser("naive")
    n.add_argument("--target", required=True)
    args = p.parse_args(argv)
    _uvloop()
    if args.kind == "vendor":
        asyncio.run(_vendor(args.delay / 1000))
    elif args.kind == "trivial":
        asyncio.run(_serve_app(trivial_app()))
    else:
        asyncio.run(_serve_app(naive_app(args.target)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
