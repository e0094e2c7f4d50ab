"""What every admin handler shares: the sub-app's state and the ways it answers.

`ADMIN` holds the `AdminState` on the sub-app; `ACCESS` the checked credentials of the
request being handled. Every answer carries `SECURITY_HEADERS` (a strict CSP: no inline
script or style anywhere, so templates hold neither) and, unless it says otherwise,
`Cache-Control: no-store`. Pages are Jinja2 templates with autoescape on; errors are
short JSON for the API, a small page otherwise, and their messages are ours, never
request data.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import jinja2
import orjson
from aiohttp import hdrs, web

from gateway.admin.auth import COOKIE_NAME, Access, AdminAuth
from gateway.decision_log.readers import Reader
from gateway.state import Gateway

if TYPE_CHECKING:
    from gateway.admin.stream import Stream

__all__ = [
    "ACCESS",
    "ADMIN",
    "ADMIN_PREFIX",
    "API_PREFIX",
    "CSP",
    "SECURITY_HEADERS",
    "AdminState",
    "StaticFile",
    "clear_cookie",
    "error",
    "json_response",
    "redirect",
    "render",
    "secure",
]

#: where `gateway.app` mounts the admin
ADMIN_PREFIX: Final = "/_admin"
API_PREFIX: Final = ADMIN_PREFIX + "/api/"
CSP: Final = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: on every admin answer, pages, API, errors and static files alike
SECURITY_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        hdrs.CONTENT_SECURITY_POLICY: CSP,
        "X-Content-Type-Options": "nosniff",
        hdrs.REFERRER_POLICY: "no-referrer",
        hdrs.X_FRAME_OPTIONS: "DENY",
    }
)


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


@dataclass
class AdminState:
    """What the admin's handlers share, under `ADMIN` on the sub-app."""

    gw: Gateway
    auth: AdminAuth
    templates: jinja2.Environment
    static: Mapping[str, StaticFile]
    #: epoch seconds the admin (with its gateway) started: the consent counters' origin
    started: float = field(default_factory=time.time)
    streams: set[Stream] = field(default_factory=set)
    #: the decision log's reader (None: nothing stored to read back)
    reader: Reader | None = None
    #: the admin's path as the browser sees it: ADMIN_PREFIX, below server.base_path when
    #: the admin shares the public port
    prefix: str = ADMIN_PREFIX


ADMIN = web.AppKey("admin", AdminState)
#: the checked credentials of the request being handled
ACCESS = web.RequestKey("admin_access", Access)


def secure(resp: web.StreamResponse) -> None:
    resp.headers.update(SECURITY_HEADERS)
    resp.headers.setdefault(hdrs.CACHE_CONTROL, "no-store")


def json_response(doc: Mapping[str, object], status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={hdrs.LOCATION: location})


def error(request: web.Request, status: int, message: str, *, api: bool) -> web.Response:
    """A short error: JSON for the API, a small page otherwise. `message` is ours."""
    if api:
        return json_response({"error": message}, status=status)
    signed_in = ACCESS in request
    context = {"title": f"Error {status}", "status": status, "message": message}
    return render(request, "error.html", context, status, signed_in)


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    status: int = 200,
    nav: bool = True,
) -> web.Response:
    state = request.app[ADMIN]
    access = request.get(ACCESS)
    signed_in = access is not None and nav
    page = state.templates.get_template(template).render(
        {
            **context,
            "nav": signed_in,
            "csrf": access.session.csrf if access is not None and access.session else None,
            "here": request.path,
        }
    )
    return web.Response(status=status, text=page, content_type="text/html", charset="utf-8")


def clear_cookie(request: web.Request, resp: web.StreamResponse) -> None:
    cfg = request.app[ADMIN].gw.config.admin
    resp.del_cookie(
        COOKIE_NAME,
        path=request.app[ADMIN].prefix,
        secure=cfg.secure_cookie,
        httponly=True,
        samesite="Strict",
    )
