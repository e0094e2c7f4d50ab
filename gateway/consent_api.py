"""The consent API (DESIGN §6): `GET`/`POST`/`DELETE /consent` on the public app.

| route           | answers                                                           |
|-----------------|-------------------------------------------------------------------|
| GET /consent    | the consent in force for this visitor, and which signals were bad |
| POST /consent   | records a choice (JSON `{"purposes": {…}, "vendors": {…}, …}`)     |
| DELETE /consent | records a withdrawal of every purpose but `necessary`             |
| OPTIONS /consent| the CORS preflight, for `server.allowed_origins` (`gateway.cors`) |

This module is the HTTP side only: reading the request, the CSRF and rate checks, the
store write, the cookie and the JSON answer. What a choice is (the body's checks, the
merge of cookie and stored record, the subject and the time) is `gateway.consent.choice`.

A write is recorded in the store before it is answered: a store that cannot record
answers 503 and sets no cookie, so a choice is never acknowledged without its proof.
Answers are JSON with `Cache-Control: no-store`; errors never repeat what was sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import orjson
from aiohttp import hdrs, web

from gateway import cors, edges
from gateway.config.convert import origin_pattern
from gateway.consent.choice import Asked, next_choice, read_posted, withdrawal
from gateway.consent.cookie import ConsentCookie, sign_cookie
from gateway.consent.resolve import CookieOutcome, read_cookie
from gateway.consent.signals import resolve_with_signals
from gateway.errors import RequestError
from gateway.model import ConsentState, CurrentConsent, Facts, Headers
from gateway.ratelimit import NetworkLimiter
from gateway.state import Gateway
from gateway.store.base import ConsentRecord, StoreError

__all__ = ["BODY_LIMIT", "CONSENT_API", "ConsentAPI", "add_consent_routes"]

log = logging.getLogger(__name__)

#: the consent API reads small JSON documents only (the app's `client_max_size`)
BODY_LIMIT: Final = 16 * 1024


@dataclass(frozen=True)
class ConsentAPI:
    """What the consent API's handlers share, under `CONSENT_API` on the public app."""

    gw: Gateway
    #: consent writes per client network (gateway.ratelimit)
    limiter: NetworkLimiter


CONSENT_API = web.AppKey("consent_api", ConsentAPI)


def add_consent_routes(app: web.Application, gw: Gateway) -> None:
    """Serve the consent API of `gw` on `app`; add it before any catch-all route."""
    app[CONSENT_API] = ConsentAPI(gw, NetworkLimiter(gw.config.server.consent_rate_limit))
    app.router.add_get("/consent", _consent_get)
    app.router.add_post("/consent", _consent_post)
    app.router.add_delete("/consent", _consent_delete)
    app.router.add_route("OPTIONS", "/consent", _consent_preflight)


#: what a page on an allowed origin may call with a preflight
_METHODS = ("GET", "POST", "DELETE")


async def _consent_preflight(request: web.Request) -> web.Response:
    if not cors.is_preflight(request):
        return edges.error_response(405, "method not allowed")
    return cors.preflight(
        request, request.app[CONSENT_API].gw.config.server.allowed_origins, _METHODS
    )


def _consent_facts(request: web.Request, gw: Gateway, cookies: Mapping[str, str]) -> Facts:
    headers = Headers.over(request.headers)
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
        # the visitor's answers vendor by vendor: a request needs its purposes granted
        # and its vendor not denied
        "vendors": state.vendors_json(),
    }


async def _stored_for(gw: Gateway, outcome: CookieOutcome) -> CurrentConsent | None:
    """The store's state for the cookie's subject, looked up now (the consent API may
    wait on the store; tag requests never do)."""
    if gw.book is None or outcome.subject is None:
        return None
    return await gw.book.lookup(outcome.subject)


async def _consent_get(request: web.Request) -> web.Response:
    request[cors.KIND] = cors.Kind.CONSENT
    gw = request.app[CONSENT_API].gw
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


def _rate_limited(request: web.Request, api: ConsentAPI) -> web.Response | None:
    """429 when the client's network has used its consent writes for now (gateway.ratelimit)."""
    trusted = api.gw.config.server.trusted_proxies
    message = "too many consent changes from this network; retry later"
    resp = edges.over_limit(request, api.limiter, trusted, message)
    if resp is not None:
        api.gw.metrics.consent_rate_limited.inc()
    return resp


async def _consent_post(request: web.Request) -> web.Response:
    request[cors.KIND] = cors.Kind.CONSENT
    api = request.app[CONSENT_API]
    _check_same_origin(request, api.gw)
    if (limited := _rate_limited(request, api)) is not None:
        return limited
    if request.content_type != "application/json":
        return edges.error_response(415, "send application/json")
    try:
        doc = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return edges.error_response(400, "body is not JSON")
    try:
        asked = read_posted(doc, api.gw.config.consent, api.gw.rules.current.vendor_ids)
    except RequestError as e:
        return edges.error_response(e.status, e.message)
    return await _issue(request, api.gw, asked)


async def _consent_delete(request: web.Request) -> web.Response:
    request[cors.KIND] = cors.Kind.CONSENT
    api = request.app[CONSENT_API]
    _check_same_origin(request, api.gw)
    if (limited := _rate_limited(request, api)) is not None:
        return limited
    return await _issue(request, api.gw, withdrawal(api.gw.config.consent), merge=False)


async def _issue(
    request: web.Request, gw: Gateway, asked: Asked, *, merge: bool = True
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
    choice = next_choice(
        current, stored, asked.purposes, cfg.consent, facts.now, merge=merge, vendors=asked.vendors
    )
    subject, merged, issued_at = choice.subject, dict(choice.purposes), choice.issued_at
    try:
        written = await book.record(
            ConsentRecord(
                subject=subject,
                purposes=merged,
                source=asked.source,
                policy_version=cfg.consent.policy_version,
                # the cookie's own time, so cookie and record are the same age
                at=float(issued_at),
                notice_hash=asked.notice_hash,
                request_id=facts.request_id,
                vendors=choice.vendors,
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
        source=asked.source,
        vendors=choice.vendors,
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


def _check_same_origin(request: web.Request, gw: Gateway) -> None:
    """CSRF: another site must not record consent on the visitor's behalf.

    Browsers send Origin on cross-site POST/DELETE; a JSON body (required) cannot be
    sent cross-site without a CORS preflight, which is approved for
    `server.allowed_origins` only. The Origin must be exactly the gateway's own public
    origin (`edges.public_origin`: forwarding headers count only from a trusted proxy)
    or an allowed one.
    """
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return
    server = gw.config.server
    if cors.origin_allowed(origin, server.allowed_origins):
        return
    own = edges.public_origin(request, server.trusted_proxies)
    if own is None or "*" in origin or origin_pattern(origin) != own:
        raise web.HTTPForbidden(reason="cross-origin consent change refused")


def _json(doc: Mapping[str, object], status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(doc),
        content_type="application/json",
        headers={hdrs.CACHE_CONTROL: "no-store"},
    )
