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

import dataclasses
import logging
import time
from dataclasses import dataclass

from aiohttp import web

from gateway import edges
from gateway.config import GatewayConfig
from gateway.consent.resolve import CookieOutcome, StoreLookup, resolve_server
from gateway.consent.signals import Signals, resolve_with_signals, vendor_consent_params
from gateway.decide import decide, reject
from gateway.decision_log import record_for
from gateway.errors import ClientGone, RequestError, TransformError
from gateway.model import (
    Action,
    ConsentState,
    Decision,
    EndpointKind,
    Facts,
    Outgoing,
    StripSpec,
)
from gateway.redact import sanitize_method, sanitize_path
from gateway.ruleset.match import Match, RuleSet
from gateway.state import Gateway
from gateway.store.base import CurrentConsent
from gateway.transform import removed_fields, transform

__all__ = ["Evaluation", "evaluate", "run", "server_subject"]

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
        fallback = decide(found, _NO_CONSENT) if found else reject("internal error")
        ev = Evaluation(
            None, found, None, _drop(fallback, "internal error (see gateway log)"), None
        )
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


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Stages 2-5 for one request: what the gateway resolved, matched, decided and built."""

    consent: ConsentState | None
    match: Match | None
    outgoing: Outgoing | None
    decision: Decision
    signals: Signals | None
    cookie_problem: str | None = None

    @property
    def signal_problems(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.signals.problems) if self.signals else ()


def evaluate(
    facts: Facts,
    config: GatewayConfig,
    rules: RuleSet,
    own_cookies: frozenset[str] = frozenset(),
    *,
    store: StoreLookup | None = None,
    server: tuple[str, CurrentConsent | None] | None = None,
) -> Evaluation:
    """The pure middle of the pipeline: consent, rule match, decision, transform.

    No I/O: `run` wraps it with reading the request, answering and logging, and
    `consent-gateway explain` calls it on a request described on the command line.
    `store` answers the cookie subject's stored state without waiting (None: not known
    now); `server` is the subject and stored state of a server-to-server event, which is
    judged by that alone (`consent.resolve.resolve_server`).
    """
    # 2. consent: per purpose, with its source (cookie, store, standard signals, GPC, regime)
    signals: Signals | None = None
    if server is not None:
        consent = resolve_server(facts, config.consent, *server)
        cookie = CookieOutcome(None, None)
    else:
        consent, cookie, signals = resolve_with_signals(facts, config.consent, config.cookie, store)
    # 3. rule match: host index, then the vendor's ordered endpoints
    match = rules.match(facts.host, facts.path, facts.method)
    # 4. decision
    decision = decide(match, consent, report_only=config.rules.report_only)
    if match is None and (owner := rules.vendor_for_host(facts.host)) is not None:
        # A listed host, a request none of its endpoints accepts: the vendor is known, and
        # the operator's fix is to that vendor's rule, not a new one.
        method, path = sanitize_method(facts.method), sanitize_path(facts.path)
        decision = reject(f"no endpoint of {owner.vendor} matches {method} {path}", owner.vendor)
    # 5. transform: the request as it would leave (None when nothing leaves)
    outgoing = None
    if match is not None and (decision.report_only or decision.action in _SENDS):
        strips = match.endpoint.always if decision.report_only else decision.strips
        # A vendor that reads its own consent parameters must not be told more than
        # the gateway resolved (a hit saying gcs=G111 when analytics is denied).
        params: dict[str, str] = {}
        fields: dict[str, object] = {}
        if match.vendor.consent_params is not None and not decision.report_only:
            params, fields = vendor_consent_params(
                match.vendor.consent_params.value, consent, config.consent.signals, facts.query
            )
        try:
            outgoing = transform(
                facts,
                dataclasses.replace(decision, strips=strips),
                match.endpoint.body,
                own_cookies=own_cookies,
                set_query=params,
                set_json=fields,
                forward_headers=match.endpoint.forward_headers,
            )
        except TransformError as e:
            decision = _drop(decision, f"body could not be read safely: {e}")
    return Evaluation(consent, match, outgoing, decision, signals, cookie.problem)


_SENDS = frozenset({Action.FORWARD, Action.STRIP})


def server_subject(
    config: GatewayConfig, facts: Facts, *, check_network: bool = True
) -> str | None:
    """The subject a server-to-server event names in `store.subject_header`, if any.

    A header that is present but empty or overlong still marks the request as
    server-to-server: it names no known subject, so it has no consent (fail closed).
    From outside `store.server_networks` (unless `check_network` is False, for
    `explain`) the header is not believed: None."""
    store = config.store
    header = store.subject_header
    if header is None or header not in facts.headers:
        return None
    if (
        check_network
        and store.server_networks
        and not edges.address_in(facts.client_ip, store.server_networks)
    ):
        # SECURITY: not a back end: the header is ignored, the request judged as a browser's
        return None
    value = facts.headers[header].strip()
    return value if 0 < len(value) <= _MAX_SUBJECT else ""


_MAX_SUBJECT = 256


_NO_CONSENT = ConsentState(purposes={}, regime="none")


def _drop(decision: Decision, reason: str) -> Decision:
    return dataclasses.replace(
        decision, action=Action.DROP, strips=StripSpec(), reason=reason, report_only=False
    )


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
