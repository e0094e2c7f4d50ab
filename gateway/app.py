"""Builds the aiohttp application: state, cleanup contexts, routes (DESIGN §4).

| route                         | handler                                           |
|-------------------------------|---------------------------------------------------|
| ANY /t/{vendor-host}/{path…}  | the pipeline, for hosts a rule lists              |
| ANY {route-prefix}/{path…}    | the pipeline, for a rule's first-party prefix     |
| POST/GET/DELETE /consent      | record / show / withdraw the visitor's consent    |
| GET /healthz, /readyz         | liveness, readiness                               |
| GET /metrics                  | Prometheus text format                            |
| /_admin/…                     | the admin sub-app (`gateway.admin.app`)           |
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import orjson
from aiohttp import hdrs, web
from prometheus_client import CONTENT_TYPE_LATEST
from yarl import URL

from gateway import edges, pipeline
from gateway.admin import ADMIN_PREFIX, build_admin_app
from gateway.admin.auth import AdminAuth, client_key
from gateway.config import GatewayConfig
from gateway.consent.choice import next_choice
from gateway.consent.cookie import ConsentCookie, sign_cookie
from gateway.consent.resolve import CookieOutcome, read_cookie
from gateway.consent.signals import resolve_with_signals
from gateway.decision_log import DecisionLog
from gateway.errors import RequestError
from gateway.metrics import Metrics
from gateway.model import NECESSARY, ConsentState, CurrentConsent, Facts, Headers
from gateway.ratelimit import NetworkLimiter
from gateway.reload import RuleReloader
from gateway.ruleset.load import load_rules
from gateway.ruleset.match import RuleSet, normalize_host
from gateway.state import Gateway, RulesHolder
from gateway.store.base import ConsentRecord, StoreError
from gateway.store.cache import ConsentBook, ConsentCache
from gateway.store.feed import ChangeFollower
from gateway.store.migrations import open_store
from gateway.upstream import Upstream
from gateway.webhooks import WebhookDispatcher

__all__ = ["FOLLOWER", "GATEWAY", "MAIN", "OPS", "RELOADER", "build_app"]

log = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)
RELOADER = web.AppKey("reloader", RuleReloader)
FOLLOWER = web.AppKey("follower", ChangeFollower)
CONSENT_LIMITER = web.AppKey("consent_limiter", NetworkLimiter)
#: on the public app: the operators' app, when it has its own listener (server.admin_port)
OPS = web.AppKey("ops", web.Application)
#: on the operators' app: the public app, whose lifecycle holds the running state
MAIN = web.AppKey("main", web.Application)
#: on an app serving /metrics on the public port: the admin token it requires
METRICS_AUTH = web.AppKey("metrics_auth", AdminAuth)

#: seconds between the webhook dispatcher's own looks at the feed (it is woken on changes)
_WEBHOOK_POLL = 5.0

#: the consent API reads small JSON documents only
_CONSENT_BODY_LIMIT = 16 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(config: GatewayConfig, rules: RuleSet | None = None) -> web.Application:
    """The gateway as an aiohttp app. Rules are loaded from config unless given.

    Raises RuleError if the rules do not load (the gateway refuses to start).
    """
    if rules is None:
        rules = load_rules(config.rules.paths, frozenset(config.consent.purposes))
    metrics = Metrics()
    # SECURITY: aiohttp's idle timer runs from a connection's start and from each answer
    # until the next request's headers are complete: a client trickling its headers
    # (slowloris) is closed after read_timeout, not an hour. Bodies are timed in
    # edges.read_facts.
    # auto_decompress off: bodies are read exactly as sent, decoded once and bounded by
    # gateway.bodies, and forwarded in the encoding their headers name.
    handler_args = {"keepalive_timeout": config.server.read_timeout, "auto_decompress": False}
    app = web.Application(
        middlewares=[_errors_middleware],
        client_max_size=_CONSENT_BODY_LIMIT,
        handler_args=handler_args,
    )
    holder = RulesHolder(rules)
    gw = Gateway(
        config=config,
        rules=holder,
        metrics=metrics,
        # SECURITY: the upstream gate asks the rules in force now, not those at start
        upstream=Upstream(
            config.upstream,
            metrics,
            listed=lambda host: holder.current.vendor_for_host(host) is not None,
        ),
        decision_log=DecisionLog(config.decision_log, metrics),
        own_cookies=frozenset({config.cookie.name}),
    )
    app[GATEWAY] = gw
    app[CONSENT_LIMITER] = NetworkLimiter(config.server.consent_rate_limit)
    app.cleanup_ctx.append(_lifecycle)

    # The operators' routes: on their own listener unless server.admin_port is null.
    # SECURITY: /metrics names every vendor and the consent rates, /_admin the blocked
    # requests: neither belongs on the port the whole internet sends tags to.
    ops = app
    if config.server.admin_port is not None:
        ops = web.Application(middlewares=[_errors_middleware], handler_args=handler_args)
        ops[GATEWAY], ops[MAIN], app[OPS] = gw, app, ops
    else:
        app[METRICS_AUTH] = AdminAuth(config.admin)
    ops.router.add_get("/healthz", _healthz)
    ops.router.add_get("/readyz", _readyz)
    ops.router.add_get("/metrics", _metrics)
    # Before the catch-all prefix route; answers 401 to everything without admin.token.
    ops.add_subapp(ADMIN_PREFIX, build_admin_app(gw))
    r = app.router
    if config.server.consent_api:
        r.add_get("/consent", _consent_get)
        r.add_post("/consent", _consent_post)
        r.add_delete("/consent", _consent_delete)
    r.add_route("*", "/t/{tail:.*}", _tag_route)
    r.add_route("*", "/{tail:.*}", _prefix_route)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    gw = app[GATEWAY]
    # The store first: a gateway that cannot keep consent (unreachable, or a schema it
    # does not know) refuses to start rather than serve without it.
    store = await open_store(gw.config.store)
    cfg = gw.config.store
    cache = ConsentCache(cfg.cache_size, cfg.cache_ttl, change_ttl=gw.config.consent.max_age)
    book = ConsentBook(store, cache, gw.metrics)
    # Half the cache for the newest changes: recent withdrawals are known from the start.
    preload = cfg.cache_size // 2
    follower = app[FOLLOWER] = ChangeFollower(book, cfg.poll_interval, preload)
    await follower.start()
    # Webhooks follow the same feed: every change the book records or the follower hears
    # (from any instance) wakes them at once, so their own poll is only a safety net and
    # need not read the feed as often as the follower already does.
    webhooks = WebhookDispatcher(
        store,
        gw.config.webhooks,
        gw.metrics,
        poll_interval=max(_WEBHOOK_POLL, cfg.poll_interval),
    )
    await webhooks.start()
    book.on_change.append(lambda _change: webhooks.poke())
    gw.book = book
    await gw.decision_log.start()
    await gw.upstream.start()
    reloader = app[RELOADER] = RuleReloader(gw, gw.config.rules.watch_interval)
    await reloader.start()
    log.info(
        "gateway ready: %d vendor rules, report_only=%s",
        len(gw.rules.current.rules),
        gw.config.rules.report_only,
    )
    yield
    await reloader.close()
    # Forwards first (they may still be answered), then the log drains every record.
    await gw.upstream.close()
    await gw.decision_log.close()
    gw.book = None
    await webhooks.close()
    await follower.close()
    await book.close()
    await store.close()


@web.middleware
async def _errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is a short JSON answer; nothing the visitor sent is reflected."""
    try:
        resp = await handler(request)
    except web.HTTPException as e:
        if e.status >= 400:
            return edges.error_response(e.status, e.reason)
        raise
    except RequestError as e:
        return edges.error_response(e.status, e.message)
    except Exception:
        log.exception("unhandled error on %s", request.method)
        return edges.error_response(500, "internal error")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    return resp


# -- tag routes ----------------------------------------------------------------


async def _tag_route(request: web.Request) -> web.StreamResponse:
    """`/t/{vendor-host}/{path…}`, parsed from the raw path so encoded separators stay
    encoded and cannot move the boundary between host and path."""
    raw = request.raw_path.partition("?")[0]
    host_raw, _, tail = raw[len("/t/") :].partition("/")
    # SECURITY: the host must be a plain DNS name (no userinfo, port, IP literal or
    # percent-encoding); a rule must list it, or the pipeline REJECTs.
    host = normalize_host(host_raw)
    return await pipeline.run(request.app[GATEWAY], request, host, "/" + tail)


async def _prefix_route(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    raw = request.raw_path.partition("?")[0]
    found = gw.rules.current.route_for(raw)
    if found is None:
        return edges.error_response(404, "not found")
    rule, rest = found
    return await pipeline.run(gw, request, rule.route_host or rule.hosts[0], rest)


# -- health and metrics ----------------------------------------------------------


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, dumps=_dumps)


async def _readyz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    follower = request.app.get(MAIN, request.app).get(FOLLOWER)
    checks = {
        "rules": bool(gw.rules.current.rules),
        "decision_log": gw.decision_log.running,
        "store": gw.book is not None and await gw.book.store.ping(),
        "change_feed": follower is not None and follower.healthy,
    }
    ok = all(checks.values())
    return web.json_response(
        {"status": "ready" if ok else "not ready", "checks": checks},
        status=200 if ok else 503,
        dumps=_dumps,
    )


async def _metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    auth = request.app.get(METRICS_AUTH)
    if auth is not None:
        # The public port: the admin token, with the admin's failure limit.
        client, now = client_key(request.remote), auth.clock()
        if auth.limiter.blocked(client, now):
            return edges.error_response(429, "too many failed attempts; wait a minute")
        scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "bearer" or not auth.check_token(token.strip()):
            auth.limiter.failed(client, now)
            resp = edges.error_response(
                401, "/metrics on the public port needs the admin token (or set server.admin_port)"
            )
            resp.headers[hdrs.WWW_AUTHENTICATE] = "Bearer"
            return resp
    gw.metrics.queue_depth.set(gw.upstream.depth)
    resp = web.Response(body=gw.metrics.render())
    resp.headers[hdrs.CONTENT_TYPE] = CONTENT_TYPE_LATEST
    return resp


# -- the consent API -------------------------------------------------------------


def _consent_facts(request: web.Request, gw: Gateway, cookies: Mapping[str, str]) -> Facts:
    headers = Headers(tuple(request.headers.items()))
    return Facts(
        request_id=edges.request_id(request),
        method=request.method,
        host="-",
        path="/consent",
        query="",
        headers=headers,
        cookies=cookies,
        country=edges.country_of(gw, request, headers),
        now=time.time(),
    )


def _state_json(state: ConsentState, cookie: CookieOutcome) -> dict[str, object]:
    return {
        "regime": state.regime,
        "gpc": state.gpc,
        "subject": state.subject,
        "cookie": "valid" if cookie.answer is not None else (cookie.problem or "absent"),
        "purposes": {
            p: {"state": pc.state.value, "source": pc.source}
            for p, pc in sorted(state.purposes.items())
        },
    }


async def _stored_for(gw: Gateway, outcome: CookieOutcome) -> CurrentConsent | None:
    """The store's state for the cookie's subject, looked up now (the consent API may
    wait on the store; tag requests never do)."""
    if gw.book is None or outcome.subject is None:
        return None
    return await gw.book.lookup(outcome.subject)


async def _consent_get(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    facts = _consent_facts(request, gw, dict(request.cookies))
    outcome = read_cookie(facts, gw.config.consent, gw.config.cookie)
    stored = await _stored_for(gw, outcome)
    state, cookie, signals = resolve_with_signals(
        facts, gw.config.consent, gw.config.cookie, outcome=outcome, stored=stored
    )
    doc = _state_json(state, cookie)
    # Which signals were unreadable (never their values), so a site can fix its CMP setup.
    doc["signal_problems"] = [{"signal": s, "reason": r} for s, r in signals.problems]
    # Grants a request's own parameters claimed and that were not believed (never values).
    doc["ignored_grants"] = [{"source": s, "purpose": p} for s, p in signals.ignored]
    return _json(doc)


def _rate_limited(request: web.Request, gw: Gateway) -> web.Response | None:
    """429 when the client's network has used its consent writes for now (gateway.ratelimit)."""
    ip = edges.client_ip(request, gw.config.server.trusted_proxies)
    limiter, now = request.app[CONSENT_LIMITER], time.monotonic()
    if limiter.allow(ip, now):
        return None
    gw.metrics.consent_rate_limited.inc()
    resp = edges.error_response(429, "too many consent changes from this network; retry later")
    resp.headers[hdrs.RETRY_AFTER] = str(limiter.retry_after(ip, now))
    return resp


async def _consent_post(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    _check_same_origin(request)
    if (limited := _rate_limited(request, gw)) is not None:
        return limited
    if request.content_type != "application/json":
        return edges.error_response(415, "send application/json")
    try:
        doc = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return edges.error_response(400, "body is not JSON")
    if not isinstance(doc, dict) or not set(doc) <= _POST_KEYS:
        return edges.error_response(400, f"expected an object with keys {sorted(_POST_KEYS)}")
    purposes_in = doc.get("purposes")
    if not isinstance(purposes_in, dict) or not all(
        isinstance(v, bool) for v in purposes_in.values()
    ):
        return edges.error_response(400, 'expected {"purposes": {"<purpose>": true|false}}')
    known = set(gw.config.consent.purposes)
    if not set(purposes_in) <= known:
        # SECURITY: the unknown names are not echoed back.
        return edges.error_response(400, f"unknown purpose; known: {', '.join(sorted(known))}")
    source = doc.get("source", "banner")
    if source not in _POST_SOURCES:
        return edges.error_response(400, f"source must be one of {sorted(_POST_SOURCES)}")
    notice = doc.get("notice")
    if notice is not None and (not isinstance(notice, str) or not notice):
        return edges.error_response(400, "notice must be the notice text shown, a string")
    # Only a hash of the notice is kept: enough to prove which text was shown.
    notice_hash = None if notice is None else hashlib.sha256(notice.encode()).hexdigest()
    purposes = {k: bool(v) for k, v in purposes_in.items()}
    return await _issue(request, gw, purposes, source, notice_hash=notice_hash)


async def _consent_delete(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    _check_same_origin(request)
    if (limited := _rate_limited(request, gw)) is not None:
        return limited
    withdrawn = {p: False for p in gw.config.consent.purposes if p != NECESSARY}
    return await _issue(request, gw, withdrawn, "withdrawal", merge=False)


#: what a POST /consent body may hold, and the sources it may claim
_POST_KEYS = frozenset({"purposes", "source", "notice"})
_POST_SOURCES = frozenset({"banner", "api", "cmp"})


async def _issue(
    request: web.Request,
    gw: Gateway,
    purposes: dict[str, bool],
    source: str,
    *,
    merge: bool = True,
    notice_hash: str | None = None,
) -> web.Response:
    """Record the choice in the store (durable before this answers), sign a new consent
    cookie (purposes given win over the current record's), set it, and answer with the
    consent now in force. A store that cannot record answers 503 and sets no cookie:
    the visitor's choice is never acknowledged without its proof."""
    cfg = gw.config
    book = gw.book
    if book is None:
        return edges.error_response(503, "the consent store is not available")
    facts = _consent_facts(request, gw, dict(request.cookies))
    current = read_cookie(facts, cfg.consent, cfg.cookie)
    stored = await book.lookup(current.subject) if current.subject is not None else None
    choice = next_choice(current, stored, purposes, cfg.consent, facts.now, merge=merge)
    subject, merged, issued_at = choice.subject, dict(choice.purposes), choice.issued_at
    try:
        written = await book.record(
            ConsentRecord(
                subject=subject,
                purposes=merged,
                source=source,
                policy_version=cfg.consent.policy_version,
                # the cookie's own time, so cookie and record are the same age
                at=float(issued_at),
                notice_hash=notice_hash,
                request_id=facts.request_id,
            )
        )
    except StoreError as e:
        log.warning("consent could not be recorded: %s", e)
        return edges.error_response(503, "consent could not be recorded; try again")
    cookie = ConsentCookie(
        subject=subject,
        purposes=merged,
        issued_at=issued_at,
        policy_version=cfg.consent.policy_version,
        source=source,
    )
    value = sign_cookie(cookie, cfg.cookie.keys)
    state, outcome, _ = resolve_with_signals(
        _consent_facts(request, gw, {**request.cookies, cfg.cookie.name: value}),
        cfg.consent,
        cfg.cookie,
        stored=book.state_now(subject),
    )
    doc = _state_json(state, outcome)
    doc["record"] = {"id": written.id, "at": written.at}
    resp = _json(doc)
    resp.set_cookie(
        cfg.cookie.name,
        value,
        max_age=int(cfg.consent.max_age),
        path=cfg.cookie.path,
        domain=cfg.cookie.domain,
        secure=cfg.cookie.secure,
        httponly=cfg.cookie.http_only,
        samesite=cfg.cookie.same_site,
    )
    return resp


def _check_same_origin(request: web.Request) -> None:
    """CSRF: another site must not record consent on the visitor's behalf.

    Browsers send Origin on cross-site POST/DELETE; a JSON body (required) cannot be
    sent cross-site without a CORS preflight, which this gateway never approves.
    """
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return
    try:
        o = URL(origin)
    except ValueError:
        o = URL()
    if o.host is None or o.authority != request.host:
        raise web.HTTPForbidden(reason="cross-origin consent change refused")


def _json(doc: Mapping[str, object], status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(doc),
        content_type="application/json",
        headers={hdrs.CACHE_CONTROL: "no-store"},
    )


def _dumps(doc: object) -> str:
    return orjson.dumps(doc).decode()
