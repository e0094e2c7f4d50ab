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

import asyncio
import logging
import time

from aiohttp import web

from gateway import edges
from gateway.consent.resolve import read_cookie
from gateway.core import NO_CONSENT, Evaluation, drop, evaluate, server_subject
from gateway.decide import decide, reject
from gateway.decision_log.record import record_for
from gateway.errors import ClientGone, RequestError
from gateway.model import Action, CurrentConsent, EndpointKind, Facts
from gateway.ruleset.match import Match
from gateway.ruleset.schema import ForwardMode
from gateway.state import Gateway
from gateway.transform import removed_fields

__all__ = ["LocalAnswer", "answer_locally", "local_answer_for", "run"]

log = logging.getLogger(__name__)

# An enum member read on every request, bound once: `Action.X` goes through the enum
# metaclass's attribute hook each time.
_FORWARD = Action.FORWARD


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

    # 2a. stored consent: a server-to-server event names its subject and is judged by the
    # store (waiting for it: no browser waits on this)
    book = gw.book
    server: tuple[str, CurrentConsent | None] | None = None
    subject = server_subject(gw.config, facts)
    if subject is not None:
        state = await book.lookup(subject) if book is not None and subject else None
        server = (subject, state)
    ev = _evaluate(gw, facts, server)
    _account(gw, request, facts, ev, started)
    return await _answer(gw, request, ev)


class LocalAnswer:
    """A request `answer_locally` found answerable at once, not yet counted: `commit` it
    once its answer is ready to be sent, so a request whose answer could not be made
    (handed to `run`) is never counted, logged or forwarded twice. (A plain class, not a
    frozen dataclass: one is built for most tag requests, and a frozen dataclass's
    `__init__` costs several times as much.)"""

    __slots__ = ("ev", "facts", "gw", "request", "started")

    def __init__(
        self,
        gw: Gateway,
        request: edges.RequestHead,
        facts: Facts,
        ev: Evaluation,
        started: float,
    ) -> None:
        self.gw = gw
        self.request = request
        self.facts = facts
        self.ev = ev
        self.started = started

    @property
    def request_id(self) -> str:
        return self.facts.request_id

    def commit(self) -> None:
        """Count and log the decision, and queue its forward, when it has one."""
        _account(self.gw, None, self.facts, self.ev, self.started)
        _send_in_background(self.gw, self.request, self.ev)


def answer_locally(
    gw: Gateway, request: edges.RequestHead, host: str | None, path: str
) -> LocalAnswer | None:
    """`run` for a request without a body, when it can be answered at once without waiting
    for anything (a REJECT, a DROP or a background forward, whose answer is
    `local_answer_for(request, evaluation)`): what was decided, to be committed once the
    answer is made. None for everything else (a forward the visitor waits for, a subject
    to look up, a request refused before it has facts): `run` takes it then. Nothing is
    counted, logged or sent here. `gateway.front` serves the tag requests of most
    visitors this way."""
    started = time.perf_counter()
    if host is None:
        return None
    rid = edges.new_request_id()
    try:
        facts = edges.facts_from(gw, request, host, path, rid, b"")
    except RequestError:
        return None
    if server_subject(gw.config, facts) is not None:
        return None
    ev = _evaluate(gw, facts, None)
    if not _answered_now(request, ev):
        return None
    return LocalAnswer(gw, request, facts, ev, started)


def _evaluate(
    gw: Gateway, facts: Facts, server: tuple[str, CurrentConsent | None] | None
) -> Evaluation:
    """Stages 2-5 (consent, match, decision, transform): the core, failing closed."""
    rules = gw.rules.current
    book = gw.book
    try:
        # The cookie's subject's stored state, peeked without waiting (a miss is decided
        # on the cookie, and prefetched): the core gets plain values only.
        cookie = read_cookie(facts, gw.config.consent, gw.config.cookie)
        stored = None
        if server is None and book is not None and cookie.subject is not None:
            stored = book.state_now(cookie.subject)
        return evaluate(
            facts, gw.config, rules, gw.own_cookies, cookie=cookie, stored=stored, server=server
        )
    except Exception:
        # Fail closed: a bug in the core must never turn into a forward.
        log.exception("pipeline error; dropping request %s", facts.request_id)
        try:  # the vendor's endpoint, if it can be found, picks the harmless local answer
            found = rules.match(facts.host, facts.path, facts.method)
        except Exception:
            found = None
        fallback = decide(found, NO_CONSENT) if found else reject("internal error")
        return Evaluation(
            None, found, None, drop(fallback, "internal error (see gateway log)"), None
        )


def _account(
    gw: Gateway, request: web.Request | None, facts: Facts, ev: Evaluation, started: float
) -> None:
    """Metrics, the decision log (6) and the decision header for what was decided."""
    consent, match, decision, outgoing = ev.consent, ev.match, ev.decision, ev.outgoing
    gw.metrics.observe(ev, gw.config.consent.purposes, time.perf_counter() - started)
    regime = consent.regime if consent is not None else None
    # (an `Action` is its value: `.value` would cost an enum descriptor call per request)
    gw.decision_log.count(facts.now, decision.vendor, decision.action, decision.missing, regime)
    # 6. decision log: every non-FORWARD, and everything in report-only mode
    if decision.action is not _FORWARD or decision.report_only:
        removed: tuple[str, ...] | None = None  # report-only: what the strips would remove
        if not decision.report_only:
            removed = (
                removed_fields(facts, outgoing, match.endpoint.body)
                if outgoing is not None and match is not None
                else ()
            )
        gw.decision_log.submit(record_for(facts, decision, consent, match, removed))
    # 7. the answer names what was done (edges.on_prepare sets the header)
    if request is not None:
        edges.name_decision(gw, request, decision, facts.request_id)


async def _answer(gw: Gateway, request: web.Request, ev: Evaluation) -> web.StreamResponse:
    """The visitor's answer for what the core decided: every action handled, none forgotten."""
    if _answered_now(request, ev):
        # The visitor's answer first (as `gateway.front` does): the forward is built and
        # written in the loop's next round, after aiohttp has written this answer.
        asyncio.get_running_loop().call_soon(_send_soon, gw, request, ev)
        return local_answer_for(request, ev)
    match, decision, outgoing = ev.match, ev.decision, ev.outgoing
    assert match is not None and outgoing is not None  # `sends`: the core built it
    if edges.is_websocket(request):
        return await edges.proxy_websocket(gw, request, decision, outgoing)
    return await edges.deliver(gw, request, match, decision, outgoing)


def _answered_now(request: edges.RequestHead, ev: Evaluation) -> bool:
    """Whether the visitor's answer is local and given at once: a REJECT, a DROP, a refused
    upgrade, or a forward in the background (async endpoints: beacons, pixels)."""
    if not ev.decision.sends:  # REJECT or DROP (`Decision.sends` names every action)
        return True
    match_ = ev.match
    assert match_ is not None and ev.outgoing is not None  # `sends`: the core built it
    return (
        _upgrade_refused(request, match_) is not None
        or match_.endpoint.forward_mode is ForwardMode.ASYNC
    )


def _send_in_background(gw: Gateway, request: edges.RequestHead, ev: Evaluation) -> None:
    """For a request `_answered_now`: its forward to the vendor, queued, when it has one."""
    match, decision, outgoing = ev.match, ev.decision, ev.outgoing
    if (
        decision.sends
        and match is not None
        and outgoing is not None
        and _upgrade_refused(request, match) is None
    ):
        gw.upstream.enqueue(outgoing, decision.vendor or "-")


def _send_soon(gw: Gateway, request: edges.RequestHead, ev: Evaluation) -> None:
    try:
        _send_in_background(gw, request, ev)
    except Exception:
        # Not the loop's handler: it would print this callback's arguments, the request.
        log.exception("queueing a background forward failed (not forwarded)")


def local_answer_for(request: edges.RequestHead, ev: Evaluation) -> web.Response:
    """The visitor's answer to a request `_answered_now` (a function of the decision, the
    match and whether the request is an upgrade: `gateway.front` keeps its bytes)."""
    match, decision = ev.match, ev.decision
    if decision.effective is Action.REJECT:
        if decision.vendor is not None:
            return edges.error_response(404, "no endpoint of this vendor matches this request")
        return edges.error_response(404, "unknown destination")
    if match is None:  # the core failed before matching: a generic local answer
        return edges.local_answer(None)
    if (refused := _upgrade_refused(request, match)) is not None:
        return refused
    return edges.local_answer(match.endpoint)


def _upgrade_refused(request: edges.RequestHead, match: Match) -> web.Response | None:
    """An answer when the request's upgrade does not fit its endpoint, else None."""
    upgrade = edges.is_websocket(request)
    if upgrade == (match.endpoint.kind is EndpointKind.WEBSOCKET):
        return None
    # SECURITY: an upgrade is relayed only where a rule declares a WebSocket endpoint;
    # any other endpoint upgraded would be a raw two-way tunnel to the vendor's host.
    if upgrade:
        return edges.error_response(400, "this endpoint does not accept WebSocket upgrades")
    return edges.error_response(426, "this endpoint is a WebSocket")


def _refuse(
    gw: Gateway, request: web.Request, host: str | None, path: str, e: RequestError
) -> web.Response:
    """A request refused before it had facts (bad host, too large): logged, answered 4xx."""
    facts = Facts(
        request_id=edges.request_id(request),
        method=request.method,
        host=host or edges.raw_host_hint(request, gw.config.server.base_path),
        path=path,
        query="",
        now=time.time(),
    )
    decision = reject(e.message)
    gw.decision_log.submit(record_for(facts, decision, None))
    gw.decision_log.count(facts.now, None, Action.REJECT.value, frozenset(), None)
    gw.metrics.count_request("-", "-", Action.REJECT.value)
    edges.name_decision(gw, request, decision, facts.request_id)
    return edges.error_response(e.status, e.message)
