"""The pure middle of the gateway (DESIGN §1): a request's facts in, a decision out.

    facts ─▶ consent ─▶ rule match ─▶ decision ─▶ transform

`evaluate` runs those stages on plain values: the `Facts` read from a request, the
config, the rules in force, and the stored consent the caller looked up first. It does
no I/O, counts nothing and starts nothing: `pipeline.run` wraps it with reading the
request, answering and logging; `consent-gateway explain` calls it on a request
described on the command line; property tests call it directly. What it may import is
checked (tests/test_core.py): never aiohttp, asyncpg, sqlite3 or prometheus_client.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from gateway.config import GatewayConfig
from gateway.consent.resolve import CookieOutcome, resolve_server
from gateway.consent.signals import Signals, resolve_with_signals, vendor_consent_params
from gateway.decide import decide, reject
from gateway.errors import TransformError
from gateway.model import (
    Action,
    ConsentState,
    CurrentConsent,
    Decision,
    Facts,
    Outgoing,
    StripSpec,
    request_record,
)
from gateway.redact import sanitize_method, sanitize_path
from gateway.ruleset.match import Match, RuleSet
from gateway.transform import transform

__all__ = ["NO_CONSENT", "Evaluation", "address_in", "drop", "evaluate", "server_subject"]


def address_in(
    address: str | None, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    """Whether `address` is a valid IP address inside one of `networks`."""
    try:
        addr = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(addr in n for n in networks)


@request_record
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
    cookie: CookieOutcome | None = None,
    stored: CurrentConsent | None = None,
    server: tuple[str, CurrentConsent | None] | None = None,
) -> Evaluation:
    """The pure middle of the pipeline: consent, rule match, decision, transform.

    No I/O: `run` wraps it with reading the request, answering and logging, and
    `consent-gateway explain` calls it on a request described on the command line.
    Plain values only: `cookie` is `consent.resolve.read_cookie`'s answer when the caller
    read it already (to know whose stored state to look up; read here otherwise),
    `stored` that subject's state as the caller's store had it at hand (None: not known
    now), `server` the subject and stored state of a server-to-server event, which is
    judged by that alone (`consent.resolve.resolve_server`).
    """
    # 2. consent: per purpose, with its source (cookie, store, standard signals, GPC, regime)
    signals: Signals | None = None
    if server is not None:
        consent = resolve_server(facts, config.consent, *server)
        cookie = CookieOutcome(None, None)
    else:
        consent, cookie, signals = resolve_with_signals(
            facts, config.consent, config.cookie, outcome=cookie, stored=stored
        )
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
    if match is not None and decision.sends:
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
                decision
                if strips is decision.strips
                else dataclasses.replace(decision, strips=strips),
                match.endpoint.body,
                own_cookies=own_cookies,
                set_query=params,
                set_json=fields,
                forward_headers=match.endpoint.forward_headers,
            )
        except TransformError as e:
            decision = drop(decision, f"body could not be read safely: {e}")
    return Evaluation(consent, match, outgoing, decision, signals, cookie.problem)


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
        and not address_in(facts.client_ip, store.server_networks)
    ):
        # SECURITY: not a back end: the header is ignored, the request judged as a browser's
        return None
    value = facts.headers[header].strip()
    return value if 0 < len(value) <= _MAX_SUBJECT else ""


_MAX_SUBJECT = 256


NO_CONSENT = ConsentState(purposes={}, regime="none")


def drop(decision: Decision, reason: str) -> Decision:
    return dataclasses.replace(
        decision, action=Action.DROP, strips=StripSpec(), reason=reason, report_only=False
    )
