"""Cross-origin calls to the public routes (CORS), for the origins in `server.allowed_origins`.

| request                                        | answer                                          |
|------------------------------------------------|-------------------------------------------------|
| preflight, origin allowed, path served         | 204: exact origin, credentials, method, headers |
| preflight, origin not allowed (or none listed) | 403, no CORS headers                            |
| preflight for a tag path no rule serves        | 403, no CORS headers (never an open proxy)      |
| actual request, origin allowed                 | the answer, with origin, credentials, exposure  |
| actual request, origin not allowed             | the answer as without CORS                      |

The consent API is read and written with credentials (its cookie), so an origin is never
`*`: it is echoed exactly, only when it matches, with `Vary: Origin`. Tag routes answer the
same way: SDKs that POST JSON or send custom headers need a preflight; `sendBeacon` sends
credentials, so the answer must name the origin too. `sendBeacon` of plain text, images
and `no-cors` fetches need none of it.

`origin_allowed` is the one test of an origin against the list, used for preflights,
answers and the consent API's same-origin check.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from typing import Final

from aiohttp import hdrs, web
from multidict import CIMultiDict

from gateway.config.convert import origin_pattern

__all__ = [
    "DECISION_HEADER",
    "KIND",
    "Kind",
    "allowed_headers",
    "answer_headers",
    "install",
    "is_preflight",
    "on_prepare",
    "origin_allowed",
    "preflight",
    "refuse_preflight",
    "requested_method",
]

#: the header a tag answer names the decision in (gateway.edges), readable by page scripts
DECISION_HEADER: Final = "Consent-Gateway-Decision"
#: at most this many request headers are echoed in Access-Control-Allow-Headers
MAX_HEADERS: Final = 16
#: a header name longer than this is not echoed
MAX_HEADER_LEN: Final = 64
#: seconds a browser may cache a preflight's answer
MAX_AGE: Final = "600"
#: RFC 9110 token
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VARY: Final = ("Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers")


class Kind(enum.Enum):
    """What a public route is, for CORS."""

    #: the consent API: GET, POST and DELETE with credentials
    CONSENT = "consent"
    #: tag traffic: whatever the matched endpoint accepts; answers expose the decision
    TAG = "tag"
    #: violation reports (gateway.reports): POST, never with credentials
    REPORT = "report"


#: set by a handler of a route CORS applies to; `on_prepare` decorates its answer
KIND = web.RequestKey("cors_kind", Kind)
#: on the public app: `server.allowed_origins`
_ALLOWED: web.AppKey[tuple[str, ...]] = web.AppKey("cors_allowed")


def origin_allowed(origin: str | None, allowed: Sequence[str]) -> bool:
    """Does an `Origin` header match an entry of `server.allowed_origins`?

    Entries are normalised (`gateway.config.convert.origin_pattern`): an exact origin, or
    `scheme://*.name[:port]`, which matches any subdomain of `name` at any depth (not
    `name` itself) with the same scheme and port. `null`, a malformed origin or one with
    a `*` of its own never matches.
    """
    if not origin or not allowed or "*" in origin:
        return False
    norm = origin_pattern(origin)
    if norm is None:
        return False
    for entry in allowed:
        if entry == norm:
            return True
        scheme, sep, rest = entry.partition("://*.")
        if not sep:
            continue
        o_scheme, _, o_rest = norm.partition("://")
        if o_scheme == scheme and o_rest.endswith("." + rest):
            return True
    return False


def is_preflight(request: web.BaseRequest) -> bool:
    """A CORS preflight: OPTIONS with Origin and Access-Control-Request-Method."""
    return (
        request.method == hdrs.METH_OPTIONS
        and hdrs.ORIGIN in request.headers
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    )


def allowed_headers(requested: Iterable[str]) -> tuple[str, ...]:
    """The header names of `Access-Control-Request-Headers` values that may be echoed:
    valid tokens, lower case, each once, at most MAX_HEADERS (visitor input, bounded)."""
    out: list[str] = []
    for value in requested:
        for name in value.split(","):
            name = name.strip().lower()
            if len(out) >= MAX_HEADERS:
                return tuple(out)
            if name and len(name) <= MAX_HEADER_LEN and _TOKEN.fullmatch(name) and name not in out:
                out.append(name)
    return tuple(out)


def requested_method(request: web.BaseRequest) -> str | None:
    """The preflight's Access-Control-Request-Method, if it is a token."""
    method = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD, "").strip()
    return method if _TOKEN.fullmatch(method) and len(method) <= 16 else None


def answer_headers(origin: str, kind: Kind) -> dict[str, str]:
    """The CORS headers of an answer to an allowed `origin` (exactly as sent)."""
    headers: dict[str, str] = {hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin}
    if kind is not Kind.REPORT:
        headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
    if kind is Kind.TAG:
        headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = DECISION_HEADER
    return headers


def preflight(
    request: web.BaseRequest,
    allowed: Sequence[str],
    methods: Iterable[str],
    kind: Kind = Kind.CONSENT,
) -> web.Response:
    """The answer to a preflight for a path that is served with `methods`: 204 with the
    CORS headers when the origin is allowed and asks for one of `methods`, else 403."""
    origin = request.headers.get(hdrs.ORIGIN)
    if not origin_allowed(origin, allowed):
        return refuse_preflight("this origin is not allowed to call the gateway")
    assert origin is not None
    method = requested_method(request)
    if method is None or method.upper() not in set(methods):
        return refuse_preflight("nothing is served here with this method")
    headers = {
        **answer_headers(origin, kind),
        hdrs.ACCESS_CONTROL_ALLOW_METHODS: method.upper(),
        hdrs.ACCESS_CONTROL_MAX_AGE: MAX_AGE,
        hdrs.VARY: ", ".join(_VARY),
        hdrs.CACHE_CONTROL: "no-store",
    }
    names = allowed_headers(request.headers.getall(hdrs.ACCESS_CONTROL_REQUEST_HEADERS, []))
    if names:
        headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(names)
    return web.Response(status=204, headers=headers)


def refuse_preflight(message: str) -> web.Response:
    """403 without any CORS header: the browser refuses the call that was asked for."""
    # Not edges.error_response: this layer answers before any tag stage, in one place.
    return web.json_response(
        {"error": f"preflight refused: {message}"},
        status=403,
        headers={hdrs.CACHE_CONTROL: "no-store", hdrs.VARY: "Origin"},
    )


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` of the public app: CORS headers on the answers of routes that
    set `KIND`, for an allowed origin. Anything the vendor said about CORS is replaced."""
    kind = request.get(KIND)
    if kind is None or response.status == 101 or is_preflight(request):
        return  # a preflight's answer is whole: a refusal must carry no CORS header
    allowed = request.config_dict[_ALLOWED]
    if allowed:
        decorate(response.headers, kind, request.headers.get(hdrs.ORIGIN), allowed)


def decorate(
    headers: CIMultiDict[str], kind: Kind, origin: str | None, allowed: Sequence[str]
) -> None:
    """The CORS headers of an answer to a request of `kind` from `origin` (`Vary: Origin`
    whatever the origin; the allow headers for an allowed one, replacing any others)."""
    _add_vary(headers, "Origin")
    if not origin_allowed(origin, allowed):
        return
    assert origin is not None
    for name in (
        hdrs.ACCESS_CONTROL_ALLOW_ORIGIN,
        hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS,
        hdrs.ACCESS_CONTROL_EXPOSE_HEADERS,
    ):
        headers.popall(name, None)
    headers.update(answer_headers(origin, kind))


def _add_vary(headers: CIMultiDict[str], name: str) -> None:
    current = headers.get(hdrs.VARY, "")
    names = [v.strip() for v in current.split(",") if v.strip()]
    if name.lower() not in (v.lower() for v in names) and "*" not in names:
        headers[hdrs.VARY] = ", ".join([*names, name])


def install(app: web.Application, allowed: tuple[str, ...]) -> None:
    """CORS for the routes of `app` that set `KIND` (their handlers answer preflights)."""
    app[_ALLOWED] = allowed
    if allowed:  # none configured: answers are exactly as without this module, at no cost
        app.on_response_prepare.append(on_prepare)
