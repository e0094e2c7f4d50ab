"""The pipeline of DESIGN §1, in order, and nothing else.

    request in ─▶ facts ─▶ consent ─▶ rule match ─▶ decision ─▶ transform
              ─▶ upstream / local answer ─▶ decision log

`run()` is the whole flow for one tag request. Each stage is a function of the
previous stages' values; the pure ones (consent, match, decide, transform) live
in the core, the I/O ones (reading the request, answering, forwarding,
logging) at the edges, in `edges.py`.

Fail closed: an exception inside the core becomes a DROP with a logged
traceback, never a forward.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from gateway import edges
from gateway.core import NO_CONSENT, Evaluation, drop, evaluate, server_subject
from gateway.decide import decide, reject
from gateway.decision_log import record_for
from gateway.errors import ClientGone, RequestError
from gateway.model import Action, CurrentConsent, EndpointKind, Facts
from gateway.state import Gateway
from gateway.transform import removed_fields

__all__ = ["run"]

log = logging.getLogger(__name__)


async def run(gw: Gateway, request: web.Request, host: str | None, path: str) -> web.StreamResponse:
    """Handle one tag request for `host` (None: not a valid host) and raw `path`."""
    started = time.perf_counter()
    # 1. facts: an immutable view of the request (reads the body, bounded)
    try:
        facts = await edges.read_facts(gw, request, host, path)
    except RequestError as e:
        return _refuse(gw, request, host, path, e)
    except ClientGone:
        # The visitor went away mid-request: its doing, nothing to decide or log.
        gw.metrics.client_disconnects.labels("request").inc()
        return web.Response(status=400)

    rules = gw.rules.current
    # 2a. stored consent: a server-to-server event names its subject and is judged by the
    # store (waiting for it: no browser waits on this); a visitor's cookie subject is
    # looked up in the cache without waiting
    book = gw.book
    server: tuple[str, CurrentConsent | None] | None = None
    subject = server_subject(gw.config, facts)
    if subject is not None:
        state = await book.lookup(subject) if book is not None and subject else None
        server = (subject, state)
    try:
        ev = evaluate(
            facts,
            gw.config,
            rules,
            gw.own_cookies,
            store=book.state_now if book is not None else None,
            server=server,
        )
    except Exception:
        # Fail closed: a bug in the core must never turn into a forward.
        log.exception("pipeline error; dropping request %s", facts.request_id)
        try:  # the vendor's endpoint, if it can be found, picks the harmless local answer
            found = rules.match(facts.host, facts.path, facts.method)
        except Exception:
            found = None
        fallback = decide(found, NO_CONSENT) if found else reject("internal error")
        ev = Evaluation(None, found, None, drop(fallback, "internal error (see gateway log)"), None)
    consent, match, decision, outgoing = ev.consent, ev.match, ev.decision, ev.outgoing
    if consent is not None:
        for purpose in gw.config.consent.purposes:
            gw.metrics.consent_purpose.labels(purpose, consent.state(purpose).value).inc()
    if ev.cookie_problem is not None:
        gw.metrics.consent_cookie_invalid.labels(ev.cookie_problem).inc()
    for signal in ev.signal_problems:
        gw.metrics.signal_invalid.labels(signal).inc()
    gw.metrics.gateway_seconds.observe(time.perf_counter() - started)

    # 6. decision log: every non-FORWARD, and everything in report-only mode
    if decision.action is not Action.FORWARD or decision.report_only:
        removed: tuple[str, ...] | None = None  # report-only: what the strips would remove
        if not decision.report_only:
            removed = (
                removed_fields(facts, outgoing, match.endpoint.body)
                if outgoing is not None and match is not None
                else ()
            )
        gw.decision_log.submit(record_for(facts, decision, consent, match, removed))
    gw.metrics.requests.labels(
        decision.vendor or "-", decision.endpoint or "-", decision.action.value
    ).inc()

    # 7. upstream or local answer
    if decision.action is Action.REJECT:
        if decision.vendor is not None:
            return edges.error_response(404, "no endpoint of this vendor matches this request")
        return edges.error_response(404, "unknown destination")
    upgrade = edges.is_websocket(request)
    stream = match is not None and match.endpoint.kind is EndpointKind.WEBSOCKET
    if upgrade != stream:
        # SECURITY: an upgrade is relayed only where a rule declares a WebSocket endpoint;
        # any other endpoint upgraded would be a raw two-way tunnel to the vendor's host.
        if upgrade:
            return edges.error_response(400, "this endpoint does not accept WebSocket upgrades")
        return edges.error_response(426, "this endpoint is a WebSocket")
    if upgrade:
        if outgoing is None:
            return edges.error_response(403, "no consent for this stream")
        return await edges.proxy_websocket(gw, request, decision, outgoing)
    if outgoing is None or match is None:
        return edges.local_answer(match.endpoint.kind if match else None)
    return await edges.deliver(gw, request, match, decision, outgoing)


def _refuse(
    gw: Gateway, request: web.Request, host: str | None, path: str, e: RequestError
) -> web.Response:
    """A request refused before it had facts (bad host, too large): logged, answered 4xx."""
    facts = Facts(
        request_id=edges.request_id(request),
        method=request.method,
        host=host or edges.raw_host_hint(request),
        path=path,
        query="",
        now=time.time(),
    )
    decision = reject(e.message)
    gw.decision_log.submit(record_for(facts, decision, None))
    gw.metrics.requests.labels("-", "-", Action.REJECT.value).inc()
    return edges.error_response(e.status, e.message)
