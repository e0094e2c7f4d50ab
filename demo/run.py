"""`make demo`: a small shop whose tags go through the gateway, and vendors that show what
reached them.

Three servers on this machine, nothing on the internet:

    shop    http://localhost:8000      the page: a consent banner on window.consentGateway,
                                       a GA4-style beacon, a Meta pixel <img>, and Meta's
                                       SDK loaded from connect.facebook.net, all unmodified
    gateway http://localhost:8080      `consent-gateway serve` on a demo config; /cg.js,
                                       first in the shop's <head>, routes the tags to it
    vendors http://127.0.0.1:8090      stands in for every vendor (upstream.overrides); the
                                       shop's side panel lists what each received
    admin   http://127.0.0.1:9091/_admin   the blocked-request log (token printed below)

The shop and the gateway are different origins of one site (localhost), the sibling
subdomain deployment: the gateway's cookie reaches it, and CORS (server.allowed_origins)
lets the banner call the consent API. Everything lives in a temporary folder, gone when
the demo stops (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(__file__).resolve().parent
#: the vendor hosts the shop's tags call; each is sent to the fake vendors instead
VENDOR_HOSTS = ("www.google-analytics.com", "www.facebook.com", "connect.facebook.net")
#: a stand-in for Meta's SDK: defines fbq and fires the pixel the way fbevents.js does
FAKE_FBEVENTS = b"""(function () {
  var q = (window.fbq && window.fbq.queue) || [];
  function fbq(cmd, a, b) {
    if (cmd === 'init') { fbq.pixel = a; return; }
    if (cmd !== 'track') return;
    var img = new Image();
    img.src = 'https://www.facebook.com/tr?id=' + encodeURIComponent(fbq.pixel || '0') +
      '&ev=' + encodeURIComponent(a) + '&fbp=fb.1.1700000000000.1234567890' +
      '&dl=' + encodeURIComponent(location.href) + '&sdk=fbevents';
  }
  window.fbq = fbq;
  q.forEach(function (args) { fbq.apply(null, args); });
})();
"""


def demo_config(
    data: Path, shop: str, vendors: str, gateway_port: int, admin_port: int = 9091
) -> dict[str, Any]:
    """The gateway's config for the demo: the example config's defaults, plus what a
    sibling-subdomain deployment on plain http needs."""
    return {
        "data_dir": str(data),
        "server": {
            "host": "127.0.0.1",
            "port": gateway_port,
            "admin_port": admin_port,
            "allowed_origins": [shop],
            # no load balancer to wait for: stop at once
            "drain_delay": 0,
        },
        "rules": {"paths": [str(ROOT / "rules")]},
        # http on localhost: a Secure cookie would never be sent back
        "cookie": {"keys": [], "dev_key_file": "cookie-dev.key", "secure": False},
        "upstream": {"overrides": {f"https://{h}": f"{vendors}/{h}" for h in VENDOR_HOSTS}},
        "decision_log": {"sqlite_path": str(data / "decisions.db"), "flush_interval": "100ms"},
        "admin": {"token_env": "CONSENT_GATEWAY_ADMIN_TOKEN", "secure_cookie": False},
        "store": {"backend": "sqlite", "sqlite_path": str(data / "consent.db")},
    }


Hits = deque[dict[str, object]]


def vendors_app(hits: Hits) -> web.Application:
    """Every vendor at once: `/<vendor host>/<path>` records the hit in `hits`."""

    async def hit(request: web.Request) -> web.StreamResponse:
        host, _, path = request.match_info["tail"].partition("/")
        body = (await request.read()).decode("utf-8", "replace")
        hits.appendleft(
            {
                "at": time.strftime("%H:%M:%S"),
                "vendor_host": host,
                "method": request.method,
                "path": "/" + path,
                "query": dict(request.query),
                "cookies": sorted(request.cookies),
                "body": body[:500],
            }
        )
        if path.endswith("fbevents.js"):
            return web.Response(body=FAKE_FBEVENTS, content_type="text/javascript")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hit)
    return app


def shop_app(gateway: str, hits: Hits) -> web.Application:
    """The shop's page, and `/_hits`: what the vendors received (same origin as the page,
    so the panel's own polling is not a third-party request)."""
    page = (DEMO / "shop.html").read_text().replace("{{GATEWAY}}", gateway)

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(list(hits))

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/_hits", listing)
    return app


async def _serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shop-port", type=int, default=8000)
    p.add_argument("--gateway-port", type=int, default=8080)
    p.add_argument("--vendors-port", type=int, default=8090)
    p.add_argument("--admin-port", type=int, default=9091)
    args = p.parse_args(argv)
    shop = f"http://localhost:{args.shop_port}"
    gateway = f"http://localhost:{args.gateway_port}"
    vendors = f"http://127.0.0.1:{args.vendors_port}"
    token = secrets.token_urlsafe(18)
    with tempfile.TemporaryDirectory(prefix="cg-demo-") as tmp:
        data = Path(tmp)
        config = data / "demo.yaml"
        doc = demo_config(data, shop, vendors, args.gateway_port, args.admin_port)
        config.write_text(yaml.safe_dump(doc))
        hits: Hits = deque(maxlen=200)
        runners = [
            await _serve(vendors_app(hits), "127.0.0.1", args.vendors_port),
            await _serve(shop_app(gateway, hits), "localhost", args.shop_port),
        ]
        env = {**os.environ, "CONSENT_GATEWAY_ADMIN_TOKEN": token}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), env=env
        )
        print(
            f"\n  shop     {shop}"
            f"\n  admin    http://127.0.0.1:{args.admin_port}/_admin  (token: {token})"
            "\n\n  Ctrl-C stops the demo.\n",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waiter = asyncio.ensure_future(proc.wait())
        await asyncio.wait(
            [waiter, asyncio.ensure_future(stop.wait())], return_when="FIRST_COMPLETED"
        )
        if proc.returncode is None:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
        for runner in runners:
            await runner.cleanup()
        return proc.returncode or 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
