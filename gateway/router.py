"""The router script: `GET /cg.js` and `GET /cg-sw.js` on the public app (docs/router.md).

| route        | answers                                                                 |
|--------------|-------------------------------------------------------------------------|
| GET /cg.js    | the page script that sends requests to listed hosts through the gateway |
| GET /cg-sw.js | the same, as an opt-in Service Worker (same-origin deployments only)   |

Each is a generated prelude (the rules' hosts, the purposes each vendor's endpoints need,
the Consent Mode mapping of `consent.signals.gcm`, `server.base_path`) followed by a
hand-written source in `gateway/static/`, served as it is written but for its `//`
comment lines and spaces (`_source`): no build step. The bytes are built once per rule
set (rules reload by swapping the whole `RuleSet`, so its identity is the cache key) and
carry a strong ETag.

`Cache-Control: public, max-age=300`: the script is first in every page's `<head>` and
blocks parsing, so it must come from the browser's cache; five minutes bounds how long a
page keeps routing by rules the gateway has since reloaded, after which the ETag makes
the check a 304.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson
from aiohttp import hdrs, web

from gateway.model import NECESSARY
from gateway.ruleset.match import RuleSet
from gateway.state import Gateway

__all__ = [
    "CACHE_CONTROL",
    "ROUTER",
    "RouterScripts",
    "Script",
    "add_router_routes",
    "build_script",
    "compact_line",
    "prelude",
]

STATIC: Final = Path(__file__).parent / "static"
CACHE_CONTROL: Final = "public, max-age=300"
_CONTENT_TYPE: Final = "text/javascript; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Script:
    body: bytes
    etag: str


def prelude(
    rules: RuleSet,
    gcm: Mapping[str, tuple[str, ...]],
    base_path: str,
    vendors: Collection[str] = (),
) -> dict[str, object]:
    """What the scripts know, as one JSON-able value:

    - `h`: exact host -> index into `v`; `w`: wildcard suffix (`*.example.com` ->
      `example.com`) -> index into `v`; `m`: host -> the path prefix a vendor's paths live
      under there (`rules.vendor_hosts`: the rest of that host is not routed)
    - `v`: the distinct purpose sets, each the union of the purposes a vendor's endpoints
      need (`necessary` left out: it is never asked), sorted
    - `g`: purpose -> Consent Mode types (`consent.signals.gcm`)
    - `b`: `server.base_path`; `o`: options (none set on the server yet)

    Of the rules of `vendors` only, when given (`rules.router_vendors`): the table is
    most of the script's bytes, and a page needs its site's vendors, not the catalogue.
    """
    sets: dict[tuple[str, ...], int] = {}
    exact: dict[str, int] = {}
    wild: dict[str, int] = {}
    mounts: dict[str, str] = {}
    for rule in rules.rules:
        if vendors and rule.vendor not in vendors:
            continue
        needed = set(rule.purposes).union(*(e.purposes for e in rule.endpoints))
        key = tuple(sorted(needed - {NECESSARY}))
        index = sets.setdefault(key, len(sets))
        for host in rule.hosts:
            if host.startswith("*."):
                wild[host[2:]] = index
            else:
                exact[host] = index
        mounts.update(rule.mounts)
    return {
        "h": dict(sorted(exact.items())),
        "w": dict(sorted(wild.items())),
        "m": dict(sorted(mounts.items())),
        "v": [list(k) for k in sets],
        "g": {p: list(types) for p, types in sorted(gcm.items())},
        "b": base_path,
        "o": {},
    }


def _source(name: str) -> str:
    """A static script without its `//` comment lines, indentation and the spaces around
    punctuation outside its strings. Newlines stay (the sources rely on them to end
    statements); the sources use only '-quoted strings, and no regex literal of theirs
    holds a space."""
    lines = (line.strip() for line in (STATIC / name).read_text("utf-8").splitlines())
    return "\n".join(compact_line(line) for line in lines if line and not line.startswith("//"))


_STRING: Final = re.compile(r"'(?:\\.|[^'\\])*'")
_AROUND: Final = re.compile(r"[ \t]*([=(){}\[\],;:<>?&|!])[ \t]*")


def compact_line(line: str) -> str:
    """One source line without the spaces around punctuation outside its strings."""
    out, at = [], 0
    for m in _STRING.finditer(line):
        out += [_AROUND.sub(r"\1", line[at : m.start()]), m.group()]
        at = m.end()
    out.append(_AROUND.sub(r"\1", line[at:]))
    return "".join(out)


def build_script(name: str, config: Mapping[str, object]) -> Script:
    """`name` (a file in gateway/static) inside a function that receives `config` as C."""
    head = "/*! consent-gateway router, docs/router.md */\n(()=>{'use strict';const C="
    text = head + orjson.dumps(config).decode() + ";\n" + _source(name) + "\n})();\n"
    body = text.encode()
    return Script(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


class RouterScripts:
    """The scripts of the rule set in force, rebuilt when the gateway swaps its rules."""

    NAMES: Final = ("cg.js", "cg-sw.js")

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._for: RuleSet | None = None
        self._scripts: dict[str, Script] = {}

    def get(self, name: str) -> Script:
        rules = self.gw.rules.current
        if rules is not self._for:
            cfg = self.gw.config
            routed = {r.vendor for r in cfg.rules.router_vendors}
            doc = prelude(rules, cfg.consent.signals.gcm, cfg.server.base_path, routed)
            self._scripts = {n: build_script(n, doc) for n in self.NAMES}
            self._for = rules
        return self._scripts[name]


ROUTER = web.AppKey("router", RouterScripts)


def add_router_routes(app: web.Application, gw: Gateway) -> None:
    """Serve /cg.js and /cg-sw.js of `gw` on `app`; add it before any catch-all route."""
    app[ROUTER] = RouterScripts(gw)
    app.router.add_get("/cg.js", _cg_js)
    app.router.add_get("/cg-sw.js", _cg_sw_js)


def _matches(header: str | None, etag: str) -> bool:
    """If-None-Match (RFC 9110 §13.1.2): a weak comparison against any listed tag."""
    if header is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def _serve(request: web.Request, name: str, extra: Mapping[str, str]) -> web.Response:
    script = request.app[ROUTER].get(name)
    headers = {hdrs.ETAG: script.etag, hdrs.CACHE_CONTROL: CACHE_CONTROL, **extra}
    if _matches(request.headers.get(hdrs.IF_NONE_MATCH), script.etag):
        return web.Response(status=304, headers=headers)
    headers[hdrs.CONTENT_TYPE] = _CONTENT_TYPE
    return web.Response(body=script.body, headers=headers)


async def _cg_js(request: web.Request) -> web.Response:
    return _serve(request, "cg.js", {})


async def _cg_sw_js(request: web.Request) -> web.Response:
    # The worker lives at <base>/cg-sw.js but must control the site's pages from "/".
    return _serve(request, "cg-sw.js", {"Service-Worker-Allowed": "/"})
