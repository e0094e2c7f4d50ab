"""The admin page and its JSON API: `/_admin/`, an aiohttp sub-app (DESIGN §4, §7).

| route                         | answer                                                     |
|-------------------------------|------------------------------------------------------------|
| GET  /_admin/login            | the login form (public)                                    |
| POST /_admin/login            | check the token, set the session cookie, 303 to /_admin/   |
| POST /_admin/logout           | end the session (CSRF-checked), 303 to /_admin/login       |
| GET  /_admin/                 | blocked requests: identical ones grouped, or (`view=records`) |
|                               | filtered, paged records and a live tail                    |
| GET  /_admin/record           | one record in full (`?id=`): consent sources, removed fields |
| GET  /_admin/overview         | counts by vendor x action and by missing purpose; consent  |
| GET  /_admin/rules            | the vendor rules in force, and the last reload's errors    |
| GET  /_admin/unknown          | unknown destinations: rejected hosts, most requests first  |
| GET  /_admin/unknown/draft    | a rule drafted for one of them (`?host=`), to review       |
| GET  /_admin/bypasses         | hosts pages reached around the gateway (CSP, router)       |
| GET  /_admin/explain          | the Explain form                                           |
| POST /_admin/explain          | what `consent-gateway explain` prints (CSRF-checked)       |
| GET  /_admin/subjects         | consent records: one subject's current state and history   |
| GET  /_admin/api/records      | JSON: records, newest first, keyset-paged                  |
| GET  /_admin/api/groups       | JSON: identical records grouped, most recently seen first  |
| GET  /_admin/api/overview     | JSON: the overview's counts                                |
| GET  /_admin/api/rules        | JSON: the rules and load errors                            |
| GET  /_admin/api/unknown      | JSON: unknown hosts                                        |
| GET  /_admin/api/unknown/draft | JSON: the drafted rule for one of them (`?host=`)         |
| GET  /_admin/api/bypasses     | JSON: the Bypasses rows                                    |
| GET  /_admin/api/stream       | Server-Sent Events: each decision-log record from now on   |
| GET  /_admin/static/{name}    | admin.css, admin.js (public)                               |

This module wires the sub-app (routes, templates, static files) and guards it, with the
login and logout that lead through the guard; the pages are in `pages`, the API in
`api`, the live stream in `stream`.

Fail closed: `_admin_middleware` requires a bearer token or a login session for
every route except the login form and the two static files; pages answer a
missing or wrong credential with a 303 to the login form, the API with 401
`{"error": "unauthorized"}` and nothing else. Every answer carries `SECURITY_HEADERS`
(a strict CSP: no inline script or style anywhere, so templates hold neither).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from types import MappingProxyType
from typing import Final

import jinja2
from aiohttp import hdrs, web
from yarl import URL

from gateway import edges
from gateway.admin.answers import (
    ACCESS,
    ADMIN,
    ADMIN_PREFIX,
    AdminState,
    StaticFile,
    clear_cookie,
    error,
    json_response,
    redirect,
    render,
    secure,
)
from gateway.admin.api import (
    api_bypasses,
    api_groups,
    api_overview,
    api_records,
    api_rules,
    api_subject_erase,
    api_subject_records,
    api_unknown,
    api_unknown_draft,
)
from gateway.admin.auth import COOKIE_NAME, AdminAuth, Verdict, client_key
from gateway.admin.pages import (
    blocked_page,
    bypasses_page,
    explain_page,
    overview_page,
    record_page,
    rules_page,
    subjects_page,
    unknown_draft_page,
    unknown_page,
)
from gateway.admin.params import WINDOW_NAMES
from gateway.admin.present import host_html
from gateway.admin.stream import api_stream, stop_streams
from gateway.decision_log.readers import reader_for
from gateway.errors import LogUnavailable
from gateway.state import Gateway

__all__ = ["build_admin_app"]

log = logging.getLogger(__name__)

_STATIC: Final = MappingProxyType(
    {"admin.css": "text/css; charset=utf-8", "admin.js": "text/javascript; charset=utf-8"}
)
#: resource names anyone may reach; every other route needs credentials
_PUBLIC: Final = frozenset({"admin-login", "admin-static"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _close_reader(app: web.Application) -> None:
    reader = app[ADMIN].reader
    if reader is not None:
        await reader.close()


def build_admin_app(
    gw: Gateway, *, clock: Callable[[], float] = time.time, prefix: str = ADMIN_PREFIX
) -> web.Application:
    """The admin sub-app for `gw`; mount it at `ADMIN_PREFIX` (`app.add_subapp`). `prefix`:
    the full path the browser sees it at (links, redirects, the session cookie's path)."""
    app = web.Application(middlewares=[_admin_middleware])
    app[ADMIN] = AdminState(
        gw=gw,
        auth=AdminAuth(gw.config.admin, clock),
        templates=_templates(prefix, gw.config.server.base_path),
        static=_static_files(),
        prefix=prefix,
        reader=reader_for(gw.config.decision_log),
    )
    app.on_shutdown.append(stop_streams)
    app.on_cleanup.append(_close_reader)
    r = app.router
    r.add_get("/login", _login_form, name="admin-login")
    r.add_post("/login", _login_submit, name="admin-login")
    r.add_get("/static/{name}", _static, name="admin-static")
    r.add_post("/logout", _logout)
    r.add_get("/", blocked_page)
    r.add_get("/record", record_page)
    r.add_get("/overview", overview_page)
    r.add_get("/rules", rules_page)
    r.add_get("/unknown", unknown_page)
    r.add_get("/unknown/draft", unknown_draft_page)
    r.add_get("/bypasses", bypasses_page)
    r.add_get("/explain", explain_page)
    r.add_post("/explain", explain_page)
    r.add_get("/subjects", subjects_page)
    r.add_get("/api/records", api_records)
    r.add_get("/api/groups", api_groups)
    r.add_get("/api/overview", api_overview)
    r.add_get("/api/rules", api_rules)
    r.add_get("/api/unknown", api_unknown)
    r.add_get("/api/unknown/draft", api_unknown_draft)
    r.add_get("/api/bypasses", api_bypasses)
    r.add_get("/api/stream", api_stream)
    r.add_get("/api/subjects/{subject}/records", api_subject_records)
    r.add_post("/api/subjects/{subject}/erase", api_subject_erase)
    return app


def _templates(prefix: str, base_path: str = "") -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.admin", "templates"),
        # SECURITY: every value is escaped; only charts.py's SVG is Markup (it escapes).
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["prefix"] = prefix
    # a rule's first-party route as the public port serves it (server.base_path)
    env.globals["base_path"] = base_path
    env.globals["window_names"] = WINDOW_NAMES
    env.filters["host"] = host_html
    return env


def _static_files() -> Mapping[str, StaticFile]:
    folder = resources.files("gateway.admin").joinpath("static")
    files = {}
    for name, content_type in _STATIC.items():
        body = folder.joinpath(name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[name] = StaticFile(body, content_type, etag)
    return MappingProxyType(files)


# -- the guard -------------------------------------------------------------------------


def _is_api(request: web.Request) -> bool:
    return request.path.startswith(request.app[ADMIN].prefix + "/api/")


@web.middleware
async def _admin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Credentials for every non-public route; security headers on every answer;
    errors as short JSON (API) or a small page, never a traceback or request data."""
    api = _is_api(request)
    try:
        resp = await _guard(request, handler)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        resp = error(request, e.status, e.reason, api=api)
    except LogUnavailable as e:
        # The message names the file and the SQLite failure, never record contents.
        log.warning("admin: the decision log cannot be read: %s", e)
        resp = error(request, 503, "the decision log cannot be read", api=api)
    except ConnectionResetError:
        raise  # the client went away: nothing to answer
    except Exception:
        log.exception("admin: unhandled error on %s", request.method)
        resp = error(request, 500, "internal error", api=api)
    if not resp.prepared:
        secure(resp)
    return resp


async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[ADMIN]
    route = request.match_info.route
    name = route.resource.name if route.resource is not None else None
    if request.path == state.prefix and request.method in ("GET", "HEAD"):
        return redirect(state.prefix + "/")
    if name == "admin-static":
        return await handler(request)
    if not state.auth.enabled:
        return _denied(request, Verdict.DISABLED)
    if name in _PUBLIC:
        return await handler(request)
    access = state.auth.authenticate(
        request.headers.get(hdrs.AUTHORIZATION),
        request.cookies.get(COOKIE_NAME),
        _client(request),
    )
    if access.verdict is not Verdict.OK:
        return _denied(request, access.verdict)
    request[ACCESS] = access
    return await handler(request)


def _denied(request: web.Request, verdict: Verdict) -> web.Response:
    """The answer to a request without valid credentials: never any data."""
    api = _is_api(request)
    match verdict:
        case Verdict.LIMITED:
            resp = error(request, 429, "too many failed attempts; wait a minute", api=api)
            resp.headers[hdrs.RETRY_AFTER] = "60"
            return resp
        case Verdict.DISABLED:
            if api:
                return json_response({"error": "unauthorized"}, status=401)
            context = {"title": "Admin disabled", "disabled": True, "error": None}
            return render(request, "login.html", context, status=401, nav=False)
        case Verdict.OK:
            raise AssertionError("access granted is not denied")
        case Verdict.MISSING | Verdict.INVALID:
            if api:
                resp = json_response({"error": "unauthorized"}, status=401)
                resp.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="consent-gateway admin"'
                return resp
            resp = redirect(request.app[ADMIN].prefix + "/login")
            if COOKIE_NAME in request.cookies:
                clear_cookie(request, resp)
            return resp


def _client(request: web.Request) -> str:
    gw = request.app[ADMIN].gw
    return client_key(edges.client_ip(request, gw.config.server.trusted_proxies))


def _same_origin(request: web.Request) -> bool:
    """CSRF for the login form (it has no session yet): a browser's cross-site POST
    says so in `Sec-Fetch-Site`, or carries another site's (or an opaque) Origin.

    Scripts send neither header and pass; the token is still needed.
    """
    site = request.headers.get(hdrs.SEC_FETCH_SITE)
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return True
    if origin == "null":
        # Chromium sends `Origin: null` on a same-origin form POST from a page served
        # with `Referrer-Policy: no-referrer` (ours); so does a sandboxed cross-site
        # frame, which Fetch Metadata tells apart.
        return site == "same-origin"
    try:
        o = URL(origin)
    except ValueError:
        return False
    return o.host is not None and o.authority == request.host


# -- login, logout, static files ---------------------------------------------------------


async def _login_form(request: web.Request) -> web.Response:
    context = {"title": "Log in", "disabled": False, "error": None}
    return render(request, "login.html", context, nav=False)


async def _login_submit(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    if not _same_origin(request):
        return error(request, 403, "cross-site login refused", api=False)
    client = _client(request)
    # SECURITY: over the limit, answer before reading (let alone checking) the token.
    if state.auth.limiter.blocked(client, state.auth.clock()):
        return _denied(request, Verdict.LIMITED)
    form = await request.post()
    verdict = state.auth.login(form.get("token"), client)
    if verdict is Verdict.OK:
        value, _ = state.auth.new_session()
        cfg = state.gw.config.admin
        resp = redirect(state.prefix + "/")
        resp.set_cookie(
            COOKIE_NAME,
            value,
            max_age=int(cfg.session_max_age),
            path=state.prefix,
            secure=cfg.secure_cookie,
            httponly=True,
            samesite="Strict",
        )
        log.info("admin: login")
        return resp
    if verdict is Verdict.INVALID:
        log.warning("admin: failed login")
        return render(
            request,
            "login.html",
            {"title": "Log in", "disabled": False, "error": "That is not the admin token."},
            status=401,
            nav=False,
        )
    return _denied(request, verdict)


async def _logout(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    session = request[ACCESS].session
    form = await request.post()
    if session is None or not state.auth.check_csrf(session, form.get("csrf")):
        return error(request, 403, "the form's CSRF token does not match the session", api=False)
    state.auth.revoke(session)
    resp = redirect(state.prefix + "/login")
    clear_cookie(request, resp)
    return resp


async def _static(request: web.Request) -> web.Response:
    found = request.app[ADMIN].static.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    headers = {hdrs.ETAG: found.etag, hdrs.CACHE_CONTROL: "no-cache"}
    if request.headers.get(hdrs.IF_NONE_MATCH) == found.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, headers={**headers, hdrs.CONTENT_TYPE: found.content_type})
