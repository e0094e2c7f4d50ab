"""Builds the aiohttp application: state, cleanup contexts, routes (DESIGN §4).

| route                         | handler                                           |
|-------------------------------|---------------------------------------------------|
| ANY /t/{vendor-host}/{path…}  | the pipeline, for hosts a rule lists              |
| ANY {route-prefix}/{path…}    | the pipeline, for a rule's first-party prefix     |
| POST/GET/DELETE /consent      | the consent API (`gateway.consent_api`)           |
| POST /csp-report, /cg-report  | pages' bypass reports (`gateway.reports`)         |
| GET /cg.js, /cg-sw.js         | the router script (`gateway.router`)              |
| GET /healthz, /readyz         | liveness, readiness                               |
| GET /metrics                  | Prometheus text format                            |
| /_admin/…                     | the admin sub-app (`gateway.admin.app`)           |

With `server.base_path` (e.g. `/cg`) the public routes live on an app mounted there:
`/cg/t/…`, `/cg/consent`, and whatever else registers on it with a plain path; the
operators' listener (`server.admin_port`) keeps its own paths. When the operators' routes
share the public port, they move under the base path too.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import UrlMappingMatchInfo
from prometheus_client import CONTENT_TYPE_LATEST

from gateway import cors, edges, pipeline
from gateway.admin import ADMIN_PREFIX, build_admin_app
from gateway.admin.auth import AdminAuth, client_key
from gateway.config import GatewayConfig, StoreBackend
from gateway.consent_api import BODY_LIMIT, add_consent_routes
from gateway.decision_log.writer import DecisionLog
from gateway.errors import RequestError
from gateway.front import tag_target
from gateway.metrics import Metrics
from gateway.reload import RuleReloader
from gateway.reports import add_report_routes
from gateway.router import add_router_routes
from gateway.ruleset.load import configured_rules
from gateway.ruleset.match import RuleSet
from gateway.state import Gateway, RulesHolder
from gateway.store.cache import ConsentBook, ConsentCache
from gateway.store.feed import ChangeFollower
from gateway.store.migrations import open_store
from gateway.upstream import Upstream
from gateway.webhooks.dispatch import WebhookDispatcher

__all__ = ["FOLLOWER", "GATEWAY", "MAIN", "OPS", "RELOADER", "build_app", "front_for"]

log = logging.getLogger(__name__)

GATEWAY = web.AppKey("gateway", Gateway)
RELOADER = web.AppKey("reloader", RuleReloader)
FOLLOWER = web.AppKey("follower", ChangeFollower)
#: on the public app: the operators' app, when it has its own listener (server.admin_port)
OPS = web.AppKey("ops", web.Application)
#: on the operators' app: the public app, whose lifecycle holds the running state
MAIN = web.AppKey("main", web.Application)
#: on an app serving /metrics on the public port: the admin token it requires
METRICS_AUTH = web.AppKey("metrics_auth", AdminAuth)

#: seconds between the webhook dispatcher's own looks at the feed (it is woken on changes)
_WEBHOOK_POLL = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(config: GatewayConfig, rules: RuleSet | None = None) -> web.Application:
    """The gateway as an aiohttp app. Rules are loaded from config unless given.

    Raises RuleError if the rules do not load (the gateway refuses to start).
    """
    if rules is None:
        rules = configured_rules(config)
    metrics = Metrics()
    # SECURITY: aiohttp's idle timer runs from a connection's start and from each answer
    # until the next request's headers are complete: a client trickling its headers
    # (slowloris) is closed after read_timeout, not an hour. Bodies are timed in
    # edges.read_facts.
    # auto_decompress off: bodies are read exactly as sent, decoded once and bounded by
    # gateway.bodies, and forwarded in the encoding their headers name.
    handler_args = {"keepalive_timeout": config.server.read_timeout, "auto_decompress": False}
    root = _PublicApp(
        middlewares=[_errors_middleware],
        client_max_size=BODY_LIMIT,
        handler_args=handler_args,
    )
    # The public routes: on an app mounted at server.base_path when there is one, so that
    # every module below registers plain paths ("/consent") and never knows the base.
    base = config.server.base_path
    app = web.Application() if base else root
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
    root[GATEWAY] = app[GATEWAY] = gw
    _read_at_scrape(gw)
    root.cleanup_ctx.append(_lifecycle)
    cors.install(app, config.server.allowed_origins)
    app.on_response_prepare.append(edges.on_prepare)

    # The operators' routes: on their own listener unless server.admin_port is null.
    # SECURITY: /metrics names every vendor and the consent rates, /_admin the blocked
    # requests: neither belongs on the port the whole internet sends tags to.
    ops = app
    if config.server.admin_port is not None:
        ops = web.Application(middlewares=[_errors_middleware], handler_args=handler_args)
        ops[GATEWAY], ops[MAIN], root[OPS] = gw, root, ops
    else:
        app[METRICS_AUTH] = AdminAuth(config.admin)
        if app is not root:
            app[MAIN] = root
    ops.router.add_get("/healthz", _healthz)
    ops.router.add_get("/readyz", _readyz)
    ops.router.add_get("/metrics", _metrics)
    # Before the catch-all prefix route; answers 401 to everything without admin.token.
    admin_at = base + ADMIN_PREFIX if ops is app else ADMIN_PREFIX
    ops.add_subapp(ADMIN_PREFIX, build_admin_app(gw, prefix=admin_at))
    if config.server.consent_api:
        add_consent_routes(app, gw)
    add_report_routes(app, gw)
    add_router_routes(app, gw)
    r = app.router
    tag = r.add_route("*", "/t/{tail:.*}", _tag_route)
    if app is root:
        root.tag_route(tag)
    r.add_route("*", "/{tail:.*}", _prefix_route)
    if app is not root:
        # Last: a mounted app's routes are frozen.
        root.add_subapp(base, app)
    return root


def front_for(app: web.Application, *, access_log: bool) -> tuple[Gateway, str] | None:
    """`GatewayRunner(front=...)` for the public app `app`: its tag requests answered locally
    go through `gateway.front`. None with an access log: every request then takes aiohttp's
    way, where the log is written."""
    if access_log:
        return None
    gw = app[GATEWAY]
    return gw, gw.config.server.base_path + "/t/"


with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # aiohttp discourages subclasses

    class _PublicApp(web.Application):
        """The root app, whose tag requests skip the router and aiohttp's middleware chain.

        A `/t/…` request has one route, whatever its path: it is resolved once, at build,
        into a frozen match (the route, this app), and each tag request gets that match
        and goes straight to `_errors_middleware(_tag_route)`, the chain the router would
        have built for it. Everything else (and a tag route below `server.base_path`,
        a preflight, an `Expect` header) takes aiohttp's way.
        """

        _tag_match: UrlMappingMatchInfo | None = None

        def tag_route(self, route: web.AbstractRoute) -> None:
            match = UrlMappingMatchInfo({}, route)
            match.add_app(self)
            match.freeze()
            self._tag_match = match

        async def _handle(self, request: web.Request) -> web.StreamResponse:
            match = self._tag_match
            if (
                match is not None
                and request.raw_path.startswith("/t/")
                and request.method != hdrs.METH_OPTIONS
                and hdrs.EXPECT not in request.headers
            ):
                request._match_info = match
                return await _errors_middleware(request, _tag_route)
            return await super()._handle(request)


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
    gw.metrics.store_feed_lag.set_function(lambda: follower.lag)
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


def _public_path(request: web.Request, gw: Gateway) -> str | None:
    """The raw path (no query) below `server.base_path`; None when the raw path does not
    start with it (a percent-encoded spelling of the base that the router decoded)."""
    raw = request.raw_path.partition("?")[0]
    base = gw.config.server.base_path
    if not base:
        return raw
    return raw[len(base) :] if raw.startswith(base + "/") else None


async def _tag_route(request: web.Request) -> web.StreamResponse:
    """`/t/{vendor-host}/{path…}` (`front.tag_target`); `gateway.front` answers most of
    them before they reach aiohttp's request cycle, with the same pipeline."""
    gw = request.app[GATEWAY]
    request[cors.KIND] = cors.Kind.TAG
    raw = _public_path(request, gw)
    if raw is None:
        return edges.error_response(404, "not found")
    request[edges.BASE_PATH] = gw.config.server.base_path
    host, path = tag_target(raw[len("/t/") :])
    if cors.is_preflight(request):
        return _tag_preflight(request, gw, host, path)
    return await pipeline.run(gw, request, host, path)


async def _prefix_route(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    raw = _public_path(request, gw)
    found = gw.rules.current.route_for(raw) if raw is not None else None
    if found is None:
        return edges.error_response(404, "not found")
    request[cors.KIND] = cors.Kind.TAG
    rule, rest = found
    host = rule.route_host or rule.hosts[0]
    if cors.is_preflight(request):
        return _tag_preflight(request, gw, host, rest)
    return await pipeline.run(gw, request, host, rest)


def _tag_preflight(request: web.Request, gw: Gateway, host: str | None, path: str) -> web.Response:
    """A preflight for a tag route: answered here, before any stage of the pipeline, and
    only for an endpoint a rule serves with the method asked for (never an open proxy)."""
    method = cors.requested_method(request)
    served = (
        host is not None
        and method is not None
        and gw.rules.current.match(host, path, method.upper()) is not None
    )
    return cors.preflight(
        request, gw.config.server.allowed_origins, [method.upper()] if served and method else []
    )


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
    gating = checks
    if gw.config.store.backend == StoreBackend.POSTGRES:
        # A database every instance shares is reported, not gated on: were it to make
        # every instance not ready at once, balancers would stop all tags, where the
        # instances decide on cookies and keep them flowing (docs/SCALING.md).
        gating = {k: v for k, v in checks.items() if k not in ("store", "change_feed")}
    ok = all(gating.values()) and not gw.draining
    degraded = ok and not all(checks.values())
    status = (
        "draining" if gw.draining else "degraded" if degraded else "ready" if ok else "not ready"
    )
    return web.json_response(
        {"status": status, "checks": checks}, status=200 if ok else 503, dumps=_dumps
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
    resp = web.Response(body=gw.metrics.render())
    resp.headers[hdrs.CONTENT_TYPE] = CONTENT_TYPE_LATEST
    return resp


def _read_at_scrape(gw: Gateway) -> None:
    """Bind the gauges that mirror state to it: each is read when /metrics is scraped."""
    m, rules = gw.metrics, gw.rules
    m.queue_depth.set_function(lambda: gw.upstream.depth)
    m.log_depth.set_function(lambda: gw.decision_log.depth)
    m.rules_loaded.set_function(lambda: len(rules.current.rules))
    m.rules_loaded_at.set_function(lambda: rules.loaded_at)
    m.rules_reload_ok.set_function(lambda: 0 if rules.last_error else 1)


def _dumps(doc: object) -> str:
    return orjson.dumps(doc).decode()
