"""The admin page and its JSON API: `/_admin/`, an aiohttp sub-app (DESIGN §4, §7).

| route                         | answer                                                     |
|-------------------------------|------------------------------------------------------------|
| GET  /_admin/login            | the login form (public)                                    |
| POST /_admin/login            | check the token, set the session cookie, 303 to /_admin/   |
| POST /_admin/logout           | end the session (CSRF-checked), 303 to /_admin/login       |
| GET  /_admin/                 | blocked requests: filtered, paged records and a live tail  |
| GET  /_admin/overview         | counts by vendor x action and by missing purpose; consent  |
| GET  /_admin/rules            | the vendor rules in force, and the last reload's errors    |
| GET  /_admin/unknown          | unknown destinations: rejected hosts, most requests first  |
| GET  /_admin/subjects         | consent records: one subject's current state and history   |
| GET  /_admin/api/records      | JSON: records, newest first, keyset-paged                  |
| GET  /_admin/api/overview     | JSON: the overview's counts                                |
| GET  /_admin/api/rules        | JSON: the rules and load errors                            |
| GET  /_admin/api/unknown      | JSON: unknown hosts                                        |
| GET  /_admin/api/stream       | Server-Sent Events: each decision-log record from now on   |
| GET  /_admin/static/{name}    | admin.css, admin.js (public)                               |

Fail closed: `_admin_middleware` requires a bearer token or a login session for
every route except the login form and the two static files; pages answer a
missing or wrong credential with a 303 to the login form, the API with 401
`{"error": "unauthorized"}` and nothing else. Every answer carries `SECURITY_HEADERS`
(a strict CSP: no inline script or style anywhere, so templates hold neither).
Pages are Jinja2 templates with autoescape on; SQLite is read in the default
executor, never on the event loop. The pages and the API share every query.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shlex
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlencode

import jinja2
import orjson
from aiohttp import hdrs, web
from yarl import URL

from gateway import edges
from gateway.admin.auth import COOKIE_NAME, COOKIE_PATH, Access, AdminAuth, Verdict, client_key
from gateway.admin.charts import Bar, bar_chart
from gateway.config import ConsentConfig
from gateway.decision_log.query import (
    DecisionCounts,
    LogQuery,
    LogReader,
    UnknownHost,
    parse_since,
)
from gateway.decision_log.record import DecisionRecord, record_to_dict
from gateway.errors import LogUnavailable
from gateway.model import Action, ConsentValue
from gateway.ruleset.schema import EndpointSpec, VendorRule, check_vendor_id
from gateway.state import Gateway
from gateway.store.base import (
    ERASED_PREFIX,
    ERASURE_SOURCE,
    ConsentRecord,
    CurrentConsent,
    StoreError,
    subject_export,
    subject_history,
)
from gateway.store.cache import ConsentBook

__all__ = [
    "ACCESS",
    "ADMIN",
    "ADMIN_PREFIX",
    "CSP",
    "PAGE_SIZE",
    "SECURITY_HEADERS",
    "AdminState",
    "build_admin_app",
]

log = logging.getLogger(__name__)

#: where `gateway.app` mounts the admin
ADMIN_PREFIX: Final = "/_admin"
_API_PREFIX: Final = ADMIN_PREFIX + "/api/"
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
#: records per page on the Blocked page (and the API's default `limit`)
PAGE_SIZE: Final = 50
_API_MAX_LIMIT: Final = 1000
_UNKNOWN_LIMIT: Final = 200
#: seconds between two keep-alive comments on the live stream
_PING_INTERVAL = 15.0
#: time windows offered by the pages (the API also takes any `parse_since` value)
_WINDOWS: Final = MappingProxyType({"1h": 3600.0, "1d": 86400.0, "1w": 604800.0})
_WINDOW_NAMES: Final = MappingProxyType(
    {"1h": "last hour", "1d": "last day", "1w": "last week", "all": "all time"}
)
_ACTIONS: Final = tuple(a.value for a in Action)
_STATES: Final = tuple(s.value for s in ConsentValue)
_STATIC: Final = MappingProxyType(
    {"admin.css": "text/css; charset=utf-8", "admin.js": "text/javascript; charset=utf-8"}
)
#: resource names anyone may reach; every other route needs credentials
_PUBLIC: Final = frozenset({"admin-login", "admin-static"})
_UNKNOWN_VENDOR: Final = "(unknown destination)"
_MAX_ID: Final = 2**63 - 1
_MAX_SUBJECT: Final = 256
#: hex digits of a notice hash the Consent records page shows (the full value in a title)
_HASH_SHOWN: Final = 12


@dataclass(frozen=True, slots=True)
class _StaticFile:
    body: bytes
    content_type: str
    etag: str


class _Stream:
    """One live-tail connection: its subscription and a way to end it from outside."""

    __slots__ = ("queue", "stopping")

    def __init__(self, queue: asyncio.Queue[DecisionRecord]) -> None:
        self.queue = queue
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True
        # A full queue wakes the stream anyway; it sees `stopping` after that record.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(_WAKE)


#: put in a stream's queue to wake it up (compared by identity, never sent)
_WAKE: Final = DecisionRecord(
    ts=0.0,
    request_id="",
    action="",
    vendor=None,
    endpoint=None,
    missing=(),
    sources=MappingProxyType({}),
    regime=None,
    method="",
    host="",
    path="",
    stripped=(),
    reason="",
)


@dataclass
class AdminState:
    """What the admin's handlers share, under `ADMIN` on the sub-app."""

    gw: Gateway
    auth: AdminAuth
    templates: jinja2.Environment
    static: Mapping[str, _StaticFile]
    #: epoch seconds the admin (with its gateway) started: the consent counters' origin
    started: float = field(default_factory=time.time)
    streams: set[_Stream] = field(default_factory=set)


ADMIN = web.AppKey("admin", AdminState)
#: the checked credentials of the request being handled
ACCESS = web.RequestKey("admin_access", Access)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_admin_app(gw: Gateway, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The admin sub-app for `gw`; mount it at `ADMIN_PREFIX` (`app.add_subapp`)."""
    app = web.Application(middlewares=[_admin_middleware])
    app[ADMIN] = AdminState(
        gw=gw,
        auth=AdminAuth(gw.config.admin, clock),
        templates=_templates(),
        static=_static_files(),
    )
    app.on_shutdown.append(_stop_streams)
    r = app.router
    r.add_get("/login", _login_form, name="admin-login")
    r.add_post("/login", _login_submit, name="admin-login")
    r.add_get("/static/{name}", _static, name="admin-static")
    r.add_post("/logout", _logout)
    r.add_get("/", _blocked_page)
    r.add_get("/overview", _overview_page)
    r.add_get("/rules", _rules_page)
    r.add_get("/unknown", _unknown_page)
    r.add_get("/subjects", _subjects_page)
    r.add_get("/api/records", _api_records)
    r.add_get("/api/overview", _api_overview)
    r.add_get("/api/rules", _api_rules)
    r.add_get("/api/unknown", _api_unknown)
    r.add_get("/api/stream", _api_stream)
    r.add_get("/api/subjects/{subject}/records", _api_subject_records)
    r.add_post("/api/subjects/{subject}/erase", _api_subject_erase)
    return app


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.admin", "templates"),
        # SECURITY: every value is escaped; only charts.py's SVG is Markup (it escapes).
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["prefix"] = ADMIN_PREFIX
    env.globals["window_names"] = _WINDOW_NAMES
    return env


def _static_files() -> Mapping[str, _StaticFile]:
    folder = resources.files("gateway.admin").joinpath("static")
    files = {}
    for name, content_type in _STATIC.items():
        body = folder.joinpath(name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[name] = _StaticFile(body, content_type, etag)
    return MappingProxyType(files)


async def _stop_streams(app: web.Application) -> None:
    """On shutdown, end live tails at once rather than at the shutdown timeout."""
    for stream in list(app[ADMIN].streams):
        stream.stop()


# -- the guard -------------------------------------------------------------------------


def _is_api(request: web.Request) -> bool:
    return request.path.startswith(_API_PREFIX)


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
        resp = _error(request, e.status, e.reason, api=api)
    except LogUnavailable as e:
        # The message names the file and the SQLite failure, never record contents.
        log.warning("admin: the decision log cannot be read: %s", e)
        resp = _error(request, 503, "the decision log cannot be read", api=api)
    except ConnectionResetError:
        raise  # the client went away: nothing to answer
    except Exception:
        log.exception("admin: unhandled error on %s", request.method)
        resp = _error(request, 500, "internal error", api=api)
    if not resp.prepared:
        _secure(resp)
    return resp


def _secure(resp: web.StreamResponse) -> None:
    resp.headers.update(SECURITY_HEADERS)
    resp.headers.setdefault(hdrs.CACHE_CONTROL, "no-store")


async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[ADMIN]
    route = request.match_info.route
    name = route.resource.name if route.resource is not None else None
    if request.path == ADMIN_PREFIX and request.method in ("GET", "HEAD"):
        return _redirect(ADMIN_PREFIX + "/")
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
            resp = _error(request, 429, "too many failed attempts; wait a minute", api=api)
            resp.headers[hdrs.RETRY_AFTER] = "60"
            return resp
        case Verdict.DISABLED:
            if api:
                return _json({"error": "unauthorized"}, status=401)
            context = {"title": "Admin disabled", "disabled": True, "error": None}
            return _render(request, "login.html", context, status=401, nav=False)
        case Verdict.OK:
            raise AssertionError("access granted is not denied")
        case Verdict.MISSING | Verdict.INVALID:
            if api:
                resp = _json({"error": "unauthorized"}, status=401)
                resp.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="consent-gateway admin"'
                return resp
            resp = _redirect(ADMIN_PREFIX + "/login")
            if COOKIE_NAME in request.cookies:
                _clear_cookie(request, resp)
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


# -- answers -----------------------------------------------------------------------------


def _json(doc: Mapping[str, object], status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={hdrs.LOCATION: location})


def _error(request: web.Request, status: int, message: str, *, api: bool) -> web.Response:
    """A short error: JSON for the API, a small page otherwise. `message` is ours."""
    if api:
        return _json({"error": message}, status=status)
    signed_in = ACCESS in request
    context = {"title": f"Error {status}", "status": status, "message": message}
    return _render(request, "error.html", context, status, signed_in)


def _render(
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


def _clear_cookie(request: web.Request, resp: web.StreamResponse) -> None:
    cfg = request.app[ADMIN].gw.config.admin
    resp.del_cookie(
        COOKIE_NAME, path=COOKIE_PATH, secure=cfg.secure_cookie, httponly=True, samesite="Strict"
    )


class _BadParameter(ValueError):
    """A query parameter the admin cannot use; its message names the parameter only."""


# -- login, logout, static files ---------------------------------------------------------


async def _login_form(request: web.Request) -> web.Response:
    context = {"title": "Log in", "disabled": False, "error": None}
    return _render(request, "login.html", context, nav=False)


async def _login_submit(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    if not _same_origin(request):
        return _error(request, 403, "cross-site login refused", api=False)
    client = _client(request)
    # SECURITY: over the limit, answer before reading (let alone checking) the token.
    if state.auth.limiter.blocked(client, state.auth.clock()):
        return _denied(request, Verdict.LIMITED)
    form = await request.post()
    verdict = state.auth.login(form.get("token"), client)
    if verdict is Verdict.OK:
        value, _ = state.auth.new_session()
        cfg = state.gw.config.admin
        resp = _redirect(ADMIN_PREFIX + "/")
        resp.set_cookie(
            COOKIE_NAME,
            value,
            max_age=int(cfg.session_max_age),
            path=COOKIE_PATH,
            secure=cfg.secure_cookie,
            httponly=True,
            samesite="Strict",
        )
        log.info("admin: login")
        return resp
    if verdict is Verdict.INVALID:
        log.warning("admin: failed login")
        return _render(
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
        return _error(request, 403, "the form's CSRF token does not match the session", api=False)
    state.auth.revoke(session)
    resp = _redirect(ADMIN_PREFIX + "/login")
    _clear_cookie(request, resp)
    return resp


async def _static(request: web.Request) -> web.Response:
    found = request.app[ADMIN].static.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    headers = {hdrs.ETAG: found.etag, hdrs.CACHE_CONTROL: "no-cache"}
    if request.headers.get(hdrs.IF_NONE_MATCH) == found.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, headers={**headers, hdrs.CONTENT_TYPE: found.content_type})


# -- shared queries ----------------------------------------------------------------------

T = TypeVar("T")


async def _read(fn: Callable[..., T], *args: object) -> T:
    """Run a synchronous decision-log read in the default executor."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _db(request: web.Request) -> Path | None:
    return request.app[ADMIN].gw.config.decision_log.sqlite_path


def _since(
    value: str | None, default: str, *, any_time: bool, name: str = "since"
) -> tuple[str, float | None]:
    """A `since`/`window` value and the epoch seconds it starts at (None: all time).

    Pages take the offered windows (`1h`, `1d`, `1w`, `all`); the API (`any_time`) also
    takes any duration or ISO-8601 time `parse_since` understands.
    """
    text = value or default
    if text == "all":
        return text, None
    now = time.time()
    if text in _WINDOWS:
        return text, now - _WINDOWS[text]
    if any_time:
        try:
            return text, parse_since(text, now)
        except ValueError:
            pass
    also = ", a duration (90m) or an ISO-8601 time" if any_time else ""
    raise _BadParameter(f"{name}: use 1h, 1d, 1w, all{also}")


def _window(request: web.Request) -> tuple[str, float | None]:
    """The overview's `window`: `1h`, `1d` (the default) or `1w`."""
    window, since = _since(request.query.get("window"), "1d", any_time=False, name="window")
    if window == "all":
        raise _BadParameter("window: use 1h, 1d or 1w")
    return window, since


def _int_param(query: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    value = query.get(name) or None
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or not lo <= int(value) <= hi:
        raise _BadParameter(f"{name}: a whole number from {lo} to {hi}")
    return int(value)


@dataclass(frozen=True, slots=True)
class _Filters:
    """The record filters of the Blocked page and `api/records` (and the stream's)."""

    since: str
    since_ts: float | None
    vendor: str | None
    purpose: str | None
    action: str | None
    regime: str | None

    def query(self, limit: int, **cursor: int | None) -> LogQuery:
        return LogQuery(
            since=self.since_ts,
            vendor=self.vendor,
            purpose=self.purpose,
            action=self.action,
            regime=self.regime,
            limit=limit,
            **cursor,
        )

    def matches(self, r: DecisionRecord) -> bool:
        return (
            (self.vendor is None or r.vendor == self.vendor)
            and (self.action is None or r.action == self.action)
            and (self.purpose is None or self.purpose in r.missing)
            and (self.regime is None or r.regime == self.regime)
        )

    def params(self) -> dict[str, str]:
        """The query parameters that reproduce these filters (for page links)."""
        out = {"since": self.since}
        for key in ("vendor", "purpose", "action", "regime"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def _filters(request: web.Request, *, any_time: bool) -> _Filters:
    q = request.query
    cfg = request.app[ADMIN].gw.config
    since, since_ts = _since(q.get("since"), "1d", any_time=any_time)
    vendor = q.get("vendor") or None
    if vendor is not None and check_vendor_id(vendor) is not None:
        raise _BadParameter("vendor: a vendor id (lower-case slug)")
    purpose = q.get("purpose") or None
    if purpose is not None and purpose not in cfg.consent.purposes:
        raise _BadParameter("purpose: one of the configured purposes")
    action = q.get("action") or None
    if action is not None and action not in _ACTIONS:
        raise _BadParameter("action: one of " + ", ".join(_ACTIONS))
    regime = q.get("regime") or None
    if regime is not None and regime not in {r.name for r in cfg.consent.regimes}:
        raise _BadParameter("regime: one of the configured regimes")
    return _Filters(since, since_ts, vendor, purpose, action, regime)


@dataclass(frozen=True, slots=True)
class _Page:
    records: list[DecisionRecord]
    #: the cursor of the next (older) page; None on the last page
    next_before_id: int | None
    #: whether there is a previous (newer) page, and its cursor (None: the first page)
    has_prev: bool = False
    prev_before_id: int | None = None


def _load_page(
    db: Path | None, f: _Filters, limit: int, before_id: int | None, with_prev: bool
) -> _Page:
    """One page of records (newest first) and the cursors around it; synchronous."""
    if db is None:
        return _Page([], None)
    reader = LogReader(db)
    rows = reader.records(f.query(limit + 1, before_id=before_id))
    more = len(rows) > limit
    rows = rows[:limit]
    page = _Page(rows, rows[-1].id if more and rows else None)
    if not with_prev or before_id is None:
        return page
    # The previous page ends with record `before_id`: it starts `limit` records above it.
    newer = reader.records(f.query(limit, newer_than_id=before_id))
    prev = newer[-1].id if len(newer) == limit else None
    return replace(page, has_prev=True, prev_before_id=prev)


def _time(ts: float) -> tuple[str, str]:
    """(ISO-8601 UTC, short display) of epoch seconds."""
    when = datetime.fromtimestamp(ts, UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z"), when.strftime(
        "%Y-%m-%d %H:%M:%S"
    )


def _iso(ts: float | None) -> str | None:
    return None if ts is None else _time(ts)[0]


def _record_row(r: DecisionRecord) -> dict[str, object]:
    iso, shown = _time(r.ts)
    target = r.vendor or _UNKNOWN_VENDOR
    if r.vendor and r.endpoint:
        target += f"/{r.endpoint}"
    return {
        "id": r.id,
        "iso": iso,
        "time": shown,
        "action": r.action,
        "report_only": r.report_only,
        "vendor": target,
        "missing": ", ".join(r.missing),
        "regime": r.regime or "",
        "method": r.method,
        "host": r.host,
        "path": r.path,
        "stripped": ", ".join(r.stripped),
        "reason": r.reason,
    }


def _rule_doc(rule: VendorRule) -> dict[str, object]:
    return {
        "vendor": rule.vendor,
        "name": rule.name,
        "file": rule.file,
        "hosts": list(rule.hosts),
        "route": rule.route,
        "route_host": rule.route_host,
        "purposes": sorted(rule.purposes),
        "tcf_vendor_id": rule.tcf_vendor_id,
        "report_only": rule.report_only,
        "consent_params": rule.consent_params.value if rule.consent_params else None,
        "endpoints": [_endpoint_doc(e) for e in rule.endpoints],
    }


def _endpoint_doc(e: EndpointSpec) -> dict[str, object]:
    return {
        "id": e.id,
        "match": e.pattern,
        "methods": sorted(e.methods),
        "kind": e.kind.value,
        "body": e.body.value,
        "purposes": sorted(e.purposes),
        "forward_mode": e.forward_mode.value,
        "when_denied": {p: s.field_names() for p, s in sorted(e.when_denied.items())},
        "always": e.always.field_names(),
    }


def _rules_doc(gw: Gateway) -> dict[str, object]:
    rules = sorted(gw.rules.current.rules, key=lambda r: r.vendor)
    return {"rules": [_rule_doc(r) for r in rules], "load_errors": list(gw.rules.last_error)}


@dataclass(frozen=True, slots=True)
class _Share:
    purpose: str
    granted: int
    denied: int
    unknown: int

    @property
    def total(self) -> int:
        return self.granted + self.denied + self.unknown

    @property
    def share(self) -> float | None:
        """granted / total, None before the first request."""
        return self.granted / self.total if self.total else None


def _purpose_shares(gw: Gateway) -> list[_Share]:
    """From `gateway_consent_purpose_total`: this process's counts since it started."""
    registry = gw.metrics.registry

    def count(purpose: str, state: str) -> int:
        labels = {"purpose": purpose, "state": state}
        return int(registry.get_sample_value("gateway_consent_purpose_total", labels) or 0)

    return [_Share(p, *(count(p, s) for s in _STATES)) for p in gw.config.consent.purposes]


def _overview_doc(
    window: str,
    since: float | None,
    counts: DecisionCounts,
    shares: Sequence[_Share],
    started: float,
) -> dict[str, object]:
    return {
        "window": window,
        "since": _iso(since),
        "total": counts.total,
        "by_vendor_action": [
            {"vendor": v, "action": a, "count": n}
            for (v, a), n in sorted(counts.by_vendor_action.items(), key=_pair_order)
        ],
        "by_purpose": [
            {"purpose": p, "count": n}
            for p, n in sorted(counts.by_purpose.items(), key=lambda i: (-i[1], i[0]))
        ],
        "purpose_share": {
            "measured": "tag requests this gateway process handled since it started, "
            "counted once per purpose after consent was resolved",
            "since": _iso(started),
            "purposes": [
                {
                    "purpose": s.purpose,
                    "granted": s.granted,
                    "denied": s.denied,
                    "unknown": s.unknown,
                    "total": s.total,
                    "granted_share": s.share,
                }
                for s in shares
            ],
        },
    }


def _pair_order(item: tuple[tuple[str | None, str], int]) -> tuple[str, str]:
    (vendor, action), _ = item
    return (vendor or "", action)


def _charts(counts: DecisionCounts, purposes: Sequence[str]) -> tuple[str, str]:
    vendors: dict[str | None, list[int]] = {}
    for (vendor, action), n in counts.by_vendor_action.items():
        row = vendors.setdefault(vendor, [0] * len(_ACTIONS))
        if action in _ACTIONS:
            row[_ACTIONS.index(action)] += n
    bars = [
        Bar(v if v is not None else _UNKNOWN_VENDOR, tuple(vals))
        for v, vals in sorted(vendors.items(), key=lambda i: (-sum(i[1]), i[0] or ""))
    ]
    by_vendor = bar_chart("chart-vendor-action", "Requests by vendor and action", _ACTIONS, bars)
    names = list(purposes) + sorted(set(counts.by_purpose) - set(purposes))
    purpose_bars = [Bar(p, (counts.by_purpose.get(p, 0),)) for p in names]
    by_purpose = bar_chart(
        "chart-purpose", "Requests by missing purpose", ("requests missing it",), purpose_bars
    )
    return by_vendor, by_purpose


def _unknown_doc(
    since: str, since_ts: float | None, hosts: Sequence[UnknownHost]
) -> dict[str, object]:
    return {
        "since": since,
        "since_time": _iso(since_ts),
        "hosts": [
            {
                "host": h.host,
                "count": h.count,
                "first_seen": _iso(h.first_seen),
                "last_seen": _iso(h.last_seen),
                "first_seen_epoch": h.first_seen,
                "last_seen_epoch": h.last_seen,
            }
            for h in hosts
        ],
    }


# -- pages -------------------------------------------------------------------------------


def _bad_page(request: web.Request, e: _BadParameter) -> web.Response:
    return _error(request, 400, str(e), api=False)


async def _blocked_page(request: web.Request) -> web.Response:
    gw = request.app[ADMIN].gw
    try:
        f = _filters(request, any_time=False)
        before_id = _int_param(request.query, "before_id", 1, _MAX_ID)
    except _BadParameter as e:
        return _bad_page(request, e)
    page = await _read(_load_page, _db(request), f, PAGE_SIZE, before_id, True)

    def link(cursor: int | None) -> str:
        params = f.params()
        if cursor is not None:
            params["before_id"] = str(cursor)
        return f"{ADMIN_PREFIX}/?{urlencode(params)}"

    cfg = gw.config
    return _render(
        request,
        "blocked.html",
        {
            "title": "Blocked requests",
            "filters": f,
            "windows": [*_WINDOWS, "all"],
            # A vendor filtered on may be gone from the rules; its records are not.
            "vendors": sorted({r.vendor for r in gw.rules.current.rules} | {f.vendor or ""} - {""}),
            "purposes": cfg.consent.purposes,
            "actions": _ACTIONS,
            "regimes": [r.name for r in cfg.consent.regimes],
            "rows": [_record_row(r) for r in page.records],
            "next_url": link(page.next_before_id) if page.next_before_id is not None else None,
            "prev_url": link(page.prev_before_id) if page.has_prev else None,
            "live": before_id is None,
            "log_off": _db(request) is None,
        },
    )


async def _overview_page(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    try:
        window, since = _window(request)
    except _BadParameter as e:
        return _bad_page(request, e)
    counts = await _counts(request, since)
    by_vendor, by_purpose = _charts(counts, state.gw.config.consent.purposes)
    return _render(
        request,
        "overview.html",
        {
            "title": "Overview",
            "window": window,
            "windows": list(_WINDOWS),
            "total": counts.total,
            "chart_vendor": by_vendor,
            "chart_purpose": by_purpose,
            "shares": _purpose_shares(state.gw),
            "started": _time(state.started),
            "log_off": _db(request) is None,
        },
    )


async def _counts(request: web.Request, since: float | None) -> DecisionCounts:
    db = _db(request)
    if db is None:
        return DecisionCounts(MappingProxyType({}), MappingProxyType({}), 0)
    return await _read(LogReader(db).counts, since)


async def _rules_page(request: web.Request) -> web.Response:
    gw = request.app[ADMIN].gw
    doc = _rules_doc(gw)
    return _render(request, "rules.html", {"title": "Rules", **doc})


async def _unknown_page(request: web.Request) -> web.Response:
    try:
        since, since_ts = _since(request.query.get("since"), "1w", any_time=False)
    except _BadParameter as e:
        return _bad_page(request, e)
    hosts = await _hosts(request, since_ts, _UNKNOWN_LIMIT)
    rows = [
        {
            "host": h.host,
            "count": h.count,
            "first": _time(h.first_seen),
            "last": _time(h.last_seen),
        }
        for h in hosts
    ]
    return _render(
        request,
        "unknown.html",
        {
            "title": "Unknown destinations",
            "since": since,
            "windows": [*_WINDOWS, "all"],
            "rows": rows,
            "limit": _UNKNOWN_LIMIT,
            "log_off": _db(request) is None,
        },
    )


async def _hosts(request: web.Request, since: float | None, limit: int) -> list[UnknownHost]:
    db = _db(request)
    if db is None:
        return []
    return await _read(LogReader(db).unknown_hosts, since, limit)


async def _subjects_page(request: web.Request) -> web.Response:
    """Consent records: one subject's current state and full history, oldest first (what
    `api/subjects/{subject}/records` exports), for operators answering an access request.

    Read-only: erasure stays with the bearer-token API and the CLI, so no form here
    changes anything (no CSRF surface). The subject comes in the query string, which the
    access log never keeps; this handler never logs it either.
    """
    gw = request.app[ADMIN].gw
    subject = request.query.get("subject", "")
    context: dict[str, object] = {
        "title": "Consent records",
        "subject": "",
        "cookie_name": gw.config.cookie.name,
        "erased_prefix": ERASED_PREFIX,
        "error": None,
        "result": None,
    }
    if not subject:
        return _render(request, "subjects.html", context)
    if len(subject) > _MAX_SUBJECT:
        # Not echoed back (nor put in the form): most likely a whole cookie value.
        context["error"] = (
            f"subject: at most {_MAX_SUBJECT} characters (a subject id or an "
            f"{ERASED_PREFIX}… token, not a whole cookie value)"
        )
        return _render(request, "subjects.html", context, status=400)
    context["subject"] = subject
    book = gw.book
    if book is None:
        context["error"] = "the consent store is not open"
        return _render(request, "subjects.html", context, status=503)
    try:
        current, records = await subject_history(book.store, subject)
    except StoreError as e:
        # SECURITY: a driver's message may quote a parameter; the subject stays out of logs.
        log.warning("admin: the consent store cannot be read: %s", str(e).replace(subject, "-"))
        context["error"] = "the consent store cannot be read; try again later"
        return _render(request, "subjects.html", context, status=503)
    token = subject.startswith(ERASED_PREFIX)
    encoded = quote(subject, safe="")
    context["result"] = {
        "token": token,
        "current": _current_view(current, gw.config.consent),
        "records": [_consent_row(r, gw.config.consent.purposes) for r in records],
        "export_url": f"{_API_PREFIX}subjects/{encoded}/records",
        # How to erase, while records are linked to the id (a token's already are not).
        "erase_url": f"{_API_PREFIX}subjects/{encoded}/erase" if records and not token else None,
        "erase_cli": _erase_command(subject),
    }
    return _render(request, "subjects.html", context)


def _erase_command(subject: str) -> str:
    """The CLI line that erases `subject`, quoted for a POSIX shell."""
    # `--`: a subject id may start with `-` (base64url), which argparse takes for an option.
    dashes = "-- " if subject.startswith("-") else ""
    return f"consent-gateway erase {dashes}{shlex.quote(subject)}"


def _exact_time(ts: float) -> str:
    """ISO-8601 UTC to the millisecond: a consent record's time as stored."""
    when = datetime.fromtimestamp(ts, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _answered(purposes: Mapping[str, bool], configured: Sequence[str]) -> list[str]:
    """The answered purposes: configured ones in config order, then the rest sorted (a
    purpose since dropped from the config is still part of the proof)."""
    return [p for p in configured if p in purposes] + sorted(set(purposes) - set(configured))


def _current_view(current: CurrentConsent | None, cfg: ConsentConfig) -> dict[str, object] | None:
    """The current state for the page (None: no record, no consent), with the reasons the
    gateway no longer applies it, as `consent.resolve.stored_answer` decides them."""
    if current is None:
        return None
    erased = current.source == ERASURE_SOURCE and not current.purposes
    stale: list[str] = []
    if not erased and current.policy_version < cfg.policy_version:
        stale.append(
            f"it was given under policy version {current.policy_version} and version "
            f"{cfg.policy_version} is in force"
        )
    if not erased and time.time() - current.at > cfg.max_age:
        stale.append("it is older than consent.max_age")
    return {
        "erased": erased,
        "purposes": [(p, current.purposes[p]) for p in _answered(current.purposes, cfg.purposes)],
        "policy_version": current.policy_version,
        "source": current.source,
        "iso": _exact_time(current.at),
        "time": _time(current.at)[1],
        "stale": stale,
    }


def _consent_row(r: ConsentRecord, configured: Sequence[str]) -> dict[str, object]:
    names = _answered(r.purposes, configured)
    notice = r.notice_hash
    short = None
    if notice:
        short = notice if len(notice) <= _HASH_SHOWN else notice[:_HASH_SHOWN] + "…"
    return {
        "id": r.id,
        "iso": _exact_time(r.at),
        "time": _time(r.at)[1],
        "source": r.source,
        "policy_version": r.policy_version,
        "granted": [p for p in names if r.purposes[p]],
        "denied": [p for p in names if not r.purposes[p]],
        "notice_hash": notice or None,
        "notice_short": short,
        "request_id": r.request_id or None,
    }


# -- the JSON API ------------------------------------------------------------------------


def _bad_api(e: _BadParameter) -> web.Response:
    return _json({"error": str(e)}, status=400)


async def _api_records(request: web.Request) -> web.Response:
    try:
        f = _filters(request, any_time=True)
        before_id = _int_param(request.query, "before_id", 1, _MAX_ID)
        limit = _int_param(request.query, "limit", 1, _API_MAX_LIMIT) or PAGE_SIZE
    except _BadParameter as e:
        return _bad_api(e)
    page = await _read(_load_page, _db(request), f, limit, before_id, False)
    return _json(
        {
            "records": [record_to_dict(r) for r in page.records],
            "next_before_id": page.next_before_id,
        }
    )


async def _api_overview(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    try:
        window, since = _window(request)
    except _BadParameter as e:
        return _bad_api(e)
    counts = await _counts(request, since)
    return _json(_overview_doc(window, since, counts, _purpose_shares(state.gw), state.started))


async def _api_rules(request: web.Request) -> web.Response:
    return _json(_rules_doc(request.app[ADMIN].gw))


async def _api_unknown(request: web.Request) -> web.Response:
    try:
        since, since_ts = _since(request.query.get("since"), "1w", any_time=True)
        limit = _int_param(request.query, "limit", 1, _API_MAX_LIMIT) or _UNKNOWN_LIMIT
    except _BadParameter as e:
        return _bad_api(e)
    return _json(_unknown_doc(since, since_ts, await _hosts(request, since_ts, limit)))


def _book(request: web.Request) -> ConsentBook:
    book = request.app[ADMIN].gw.book
    if book is None:
        raise web.HTTPServiceUnavailable(reason="the consent store is not open")
    return book


def _subject_param(request: web.Request) -> str:
    subject = request.match_info["subject"]
    if not 0 < len(subject) <= _MAX_SUBJECT:
        raise web.HTTPBadRequest(reason="subject must be 1-256 characters")
    return subject


async def _api_subject_records(request: web.Request) -> web.Response:
    """A subject's full consent history and current state: the proof of consent, for
    audits and access requests (`consent-gateway records SUBJECT` prints the same)."""
    subject = _subject_param(request)
    try:
        doc = await subject_export(_book(request).store, subject)
    except StoreError as e:
        log.warning("admin: the consent store cannot be read: %s", str(e).replace(subject, "-"))
        return _json({"error": "the consent store cannot be read"}, status=503)
    return _json(doc)


async def _api_subject_erase(request: web.Request) -> web.Response:
    """Unlink a subject (its id becomes a one-way token; the records stay). Bearer token
    only: a browser session cannot be made to erase someone by another site."""
    # SECURITY: no cookie-authenticated POST here, so no CSRF exposure.
    if request[ACCESS].session is not None:
        return _json({"error": "use the bearer token (Authorization header)"}, status=403)
    subject = _subject_param(request)
    try:
        token = await _book(request).erase(subject)
    except StoreError as e:
        log.warning("admin: erasure failed: %s", str(e).replace(subject, "-"))
        return _json({"error": "the consent store cannot be written"}, status=503)
    # The subject is not logged: the log would keep what erasure removes.
    log.info("admin: a subject was erased")
    return _json({"erased": True, "token": token})


async def _api_stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: `data: <record_to_dict JSON>` per record submitted from now
    on that matches the optional `vendor`/`action`/`purpose`/`regime` filters; a
    `: ping` comment every 15 s. Ends when the session expires or the gateway stops.

    A tail that falls behind loses records (`DecisionLog.subscribe`), never slows
    the gateway. orjson escapes every control character, so a record is one line.
    """
    state = request.app[ADMIN]
    try:
        f = _filters(request, any_time=True)
    except _BadParameter as e:
        return _bad_api(e)
    session = request[ACCESS].session
    resp = web.StreamResponse(
        headers={
            hdrs.CONTENT_TYPE: "text/event-stream; charset=utf-8",
            hdrs.CACHE_CONTROL: "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass events on at once
        }
    )
    _secure(resp)
    stream = _Stream(state.gw.decision_log.subscribe())
    state.streams.add(stream)
    try:
        await resp.prepare(request)
        await resp.write(b"retry: 5000\n: connected\n\n")
        while not stream.stopping:
            wait = _PING_INTERVAL
            if session is not None:
                wait = min(wait, session.expires - state.auth.clock())
                if wait <= 0:
                    break
            try:
                async with asyncio.timeout(wait):
                    record = await stream.queue.get()
            except TimeoutError:
                await resp.write(b": ping\n\n")
                continue
            if record is _WAKE or not f.matches(record):
                continue
            await resp.write(b"data: " + orjson.dumps(record_to_dict(record)) + b"\n\n")
    except ConnectionResetError:
        pass  # the browser went away
    finally:
        state.gw.decision_log.unsubscribe(stream.queue)
        state.streams.discard(stream)
    return resp
