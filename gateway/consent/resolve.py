"""Consent resolution (DESIGN §2): from a request's facts and explicit answers to a ConsentState.

For each configured purpose, in this order:

1. `necessary` is always granted (source `necessary`).
2. Explicit answers (`granted`/`denied`) from the sources combine by `consent.conflict`:
   `restrictive` (default): any denial wins, else the grant stands; `newest`: the answer
   with the latest timestamp wins (no timestamp counts as oldest), ties restrictively.
   The gateway's own record is one record however it arrives: of the `cookie` and the
   `store` answers only the newer stands, so a withdrawal or re-consent made elsewhere
   takes effect at once.
3. No explicit answer: the regime's default (`opt-in` denies, `opt-out` grants), source
   `default:<regime>`.
4. `Sec-GPC: 1`, where the regime says GPC binds, denies every `consent.gpc_purposes`
   purpose (source `gpc`), whatever the other sources say.

Server-to-server events (a back end naming the subject in `store.subject_header`) are
resolved by `resolve_server` instead: only what the stored record grants is granted, and
an unknown subject has no consent (DESIGN §6).

Everything here is pure: the app supplies the facts (with `facts.country` already read
from the trusted header by `regimes.country_from`) and any answers it looked up (the
store's state comes through a lookup function that never waits: see gateway.store.cache).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gateway.config import ConflictPolicy, ConsentConfig, CookieConfig, CookieKey
from gateway.consent.cookie import ConsentCookie, verify_cookie
from gateway.consent.gpc import gpc_signal
from gateway.consent.regimes import regime_for
from gateway.errors import ConsentCookieError
from gateway.memo import Memo
from gateway.model import (
    DEFAULT_SOURCE,
    NECESSARY,
    ConsentState,
    ConsentValue,
    CurrentConsent,
    Facts,
    PurposeConsent,
    VendorChoice,
)

__all__ = [
    "FUTURE_SKEW",
    "OWN_RECORD_SOURCES",
    "CookieOutcome",
    "SourceAnswer",
    "VendorAnswer",
    "forget_cookies",
    "own_vendors",
    "read_cookie",
    "resolve",
    "resolve_request",
    "resolve_server",
    "stored_answer",
    "stored_fresh",
]

#: seconds a cookie's issued-at may lie ahead of the gateway's clock (clock skew between
#: instances); further ahead, the payload is not one this gateway could have issued
FUTURE_SKEW = 300.0

#: sources that carry the gateway's own record of the visitor's choice (DESIGN §2)
OWN_RECORD_SOURCES = frozenset({"cookie", "store"})

_GRANTED = ConsentValue.GRANTED
_DENIED = ConsentValue.DENIED
_EXPLICIT = (_GRANTED, _DENIED)


#: a source's answer for one vendor: granted or denied, and the purposes a grant answers
#: for that vendor alone (a CMP service standing for it; see `model.VendorChoice`)
VendorAnswer = tuple[ConsentValue, frozenset[str]]
_NO_VENDORS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SourceAnswer:
    """One explicit source's answers for one request.

    Only `granted` and `denied` entries are answers; `unknown` entries and purposes
    the gateway is not configured with are ignored.
    """

    #: "cookie", "store", "tcf", "onetrust", ...: shown as the purpose's source
    source: str
    purposes: Mapping[str, ConsentValue]
    #: when the source recorded the answers (epoch seconds), if it says
    at: float | None
    policy_version: int | None = None
    #: the gateway's subject id, for sources that know it (cookie, store)
    subject: str | None = None
    #: rule vendor id -> (granted or denied, the purposes a grant answers for it alone)
    vendors: Mapping[str, VendorAnswer] = field(default_factory=lambda: _NO_VENDORS)


@dataclass(frozen=True, slots=True)
class CookieOutcome:
    """What the consent cookie contributed to a request.

    `answer` is None unless the cookie is present, authentic, well formed and fresh.
    `problem` is None when the cookie was fine or absent, else a reason code to log
    (never the value): `malformed`, `unknown-key`, `bad-signature`, `bad-payload`
    (see `cookie.verify_cookie`), `expired` (older than `consent.max_age`) or
    `old-policy` (given under an older `consent.policy_version`).
    """

    answer: SourceAnswer | None
    problem: str | None
    #: the subject of an authentic cookie, even a stale one: re-consent keeps the same id
    subject: str | None = None
    #: what this outcome was read from, (cookie value, freshness), for caches of answers
    #: derived from it (`resolve_with_signals`); None when not read from a cookie value
    key: tuple[str, str] | None = field(default=None, compare=False, repr=False)


class _Checked:
    """A cookie value checked once: the HMAC and the payload's parse, with the keys they
    were checked against, and the outcomes made of it per freshness under `consent`."""

    __slots__ = ("consent", "keys", "outcomes", "record")

    def __init__(self, keys: Sequence[CookieKey], record: ConsentCookie | str) -> None:
        self.keys = keys
        self.record = record
        self.consent: ConsentConfig | None = None
        self.outcomes: dict[str, CookieOutcome] = {}


#: cookie value -> its check: bounded, so a flood of forged values costs HMACs, not memory
_COOKIES: Memo[str, _Checked] = Memo(8192)
#: longer values (ours are about 150 characters) are checked every time, never kept
_MAX_KEPT = 1024


def forget_cookies() -> None:
    """Drop every kept cookie check."""
    _COOKIES.clear()


def read_cookie(facts: Facts, consent: ConsentConfig, cookie: CookieConfig) -> CookieOutcome:
    """The consent cookie of this request (`facts.cookies[cookie.name]`) as a SourceAnswer.

    Absent (or empty, as a cleared cookie is): no answer and no problem. Stale consent
    (`expired`, `old-policy`) is verified but yields no answer: it counts as unknown,
    so the visitor is asked again. Only `consent.purposes` are carried into the answer,
    `necessary` excepted (it is never the cookie's to deny).
    """
    value = facts.cookies.get(cookie.name)
    if not value:
        return _NO_COOKIE
    checked = _COOKIES.get(value)
    if checked is None or checked.keys is not cookie.keys:
        try:
            record: ConsentCookie | str = verify_cookie(value, cookie.keys)
        except ConsentCookieError as e:
            record = e.reason
        checked = _Checked(cookie.keys, record)
        if len(value) <= _MAX_KEPT:
            _COOKIES.put(value, checked)
    record = checked.record
    if isinstance(record, str):
        freshness = record
    elif record.issued_at - facts.now > FUTURE_SKEW:
        # SECURITY: a future issued-at would outlive max_age; we never sign one.
        freshness = "future"
    elif facts.now - record.issued_at > consent.max_age:
        freshness = "expired"
    elif record.policy_version < consent.policy_version:
        freshness = "old-policy"
    else:
        freshness = "fresh"
    if checked.consent is not consent:
        checked.consent, checked.outcomes = consent, {}
    made = checked.outcomes.get(freshness)
    if made is None:
        made = checked.outcomes[freshness] = _outcome(record, freshness, consent, value)
    return made


_NO_COOKIE = CookieOutcome(None, None, key=("", "absent"))


def _outcome(
    record: ConsentCookie | str, freshness: str, consent: ConsentConfig, value: str
) -> CookieOutcome:
    key = (value, freshness)
    if isinstance(record, str):
        return CookieOutcome(None, record, key=key)
    if freshness == "future":
        return CookieOutcome(None, "bad-payload", key=key)
    if freshness != "fresh":
        return CookieOutcome(None, freshness, record.subject, key=key)
    purposes = _answered(record.purposes, consent)
    answer = SourceAnswer(
        source="cookie",
        purposes=MappingProxyType(purposes),
        at=float(record.issued_at),
        policy_version=record.policy_version,
        subject=record.subject,
        vendors=own_vendors(record.vendors),
    )
    return CookieOutcome(answer, None, record.subject, key=key)


def resolve(facts: Facts, consent: ConsentConfig, answers: Sequence[SourceAnswer]) -> ConsentState:
    """The consent state for a request, by the rules in this module's docstring.

    Every purpose in `consent.purposes` (and `necessary`) gets an answer; none is left
    unknown. The regime comes from `facts.country` (an unknown or invalid country gets
    the default regime).
    `subject` is that of the first answer carrying one; `gpc` is True when `Sec-GPC: 1`
    was sent and binds in the visitor's regime.
    """
    regime = regime_for(consent, facts.country)
    gpc = regime.gpc_binds and gpc_signal(facts.headers)
    explicit = _own_record_once(answers)
    newest = consent.conflict == ConflictPolicy.NEWEST
    default = PurposeConsent(regime.default, f"{DEFAULT_SOURCE}{regime.name}")

    purposes: dict[str, PurposeConsent] = {
        NECESSARY: PurposeConsent(ConsentValue.GRANTED, NECESSARY)
    }
    for purpose in consent.purposes:
        if purpose != NECESSARY:
            purposes[purpose] = _combine(purpose, explicit, newest) or default
    if gpc:
        _deny_gpc_purposes(purposes, consent)

    return ConsentState(
        purposes=MappingProxyType(purposes),
        regime=regime.name,
        subject=next((a.subject for a in answers if a.subject), None),
        gpc=gpc,
        vendor_choices=_vendor_choices(explicit, newest),
    )


def resolve_request(
    facts: Facts,
    consent: ConsentConfig,
    cookie: CookieConfig,
    extra: Sequence[SourceAnswer] = (),
    *,
    outcome: CookieOutcome | None = None,
    stored: CurrentConsent | None = None,
) -> tuple[ConsentState, CookieOutcome]:
    """Resolve the consent cookie with `extra` answers (TCF, ...) and the store's state
    for the cookie's subject (`stored`, which the caller looked up: plain values only).

    `outcome` is `read_cookie`'s answer when the caller already read the cookie to know
    whose state to look up; read here otherwise. It is returned too, so the app can log
    a cookie's problem and keep its subject. A stale cookie's subject is looked up too:
    a newer record (re-consent on another page view) then stands instead. A `stored`
    state of another subject than the cookie's is ignored.
    """
    if outcome is None:
        outcome = read_cookie(facts, consent, cookie)
    answers = tuple(extra) if outcome.answer is None else (outcome.answer, *extra)
    if stored is not None and stored.subject == outcome.subject:
        answers = (*answers, stored_answer(stored, consent, facts.now))
    return resolve(facts, consent, answers), outcome


def stored_fresh(state: CurrentConsent, consent: ConsentConfig, now: float) -> bool:
    """Whether the stored state still answers: within `consent.max_age`, current policy."""
    return now - state.at <= consent.max_age and state.policy_version >= consent.policy_version


def stored_answer(state: CurrentConsent, consent: ConsentConfig, now: float) -> SourceAnswer:
    """The store's current state for a subject as an answer (source `store`).

    Stale state (older than `consent.max_age`, under an older `policy_version`, or an
    erased subject's) answers nothing but keeps its time: a record newer than the
    cookie still puts the older cookie out of force.
    """
    fresh = stored_fresh(state, consent, now)
    purposes = _answered(state.purposes, consent) if fresh else {}
    return SourceAnswer(
        source="store",
        purposes=MappingProxyType(purposes),
        at=state.at,
        policy_version=state.policy_version,
        subject=state.subject,
        vendors=own_vendors(state.vendors) if fresh else _NO_VENDORS,
    )


def resolve_server(
    facts: Facts, consent: ConsentConfig, subject: str, state: CurrentConsent | None
) -> ConsentState:
    """The consent of a server-to-server event for `subject`, whose stored state is
    `state` (None: the store has no record of the subject).

    Only purposes the stored record grants, fresh (see `stored_answer`), are granted;
    every other purpose is denied, source `store` when the record denies it and
    `store:none` when nothing stored answers: regime defaults do not apply, so an
    unknown subject has no consent. `Sec-GPC: 1` denies as in `resolve`.
    """
    regime = regime_for(consent, facts.country)
    purposes: dict[str, PurposeConsent] = {
        NECESSARY: PurposeConsent(ConsentValue.GRANTED, NECESSARY)
    }
    unanswered = PurposeConsent(ConsentValue.DENIED, "store:none")
    answer = stored_answer(state, consent, facts.now) if state is not None else None
    for purpose in consent.purposes:
        if purpose != NECESSARY:
            value = answer.purposes.get(purpose) if answer is not None else None
            purposes[purpose] = (
                unanswered
                if answer is None or value is None
                else PurposeConsent(value, "store", answer.at, answer.policy_version)
            )
    gpc = regime.gpc_binds and gpc_signal(facts.headers)
    if gpc:
        _deny_gpc_purposes(purposes, consent)
    return ConsentState(
        purposes=MappingProxyType(purposes),
        regime=regime.name,
        subject=subject,
        gpc=gpc,
        vendor_choices=_vendor_choices([answer] if answer is not None else [], False),
    )


def _answered(purposes: Mapping[str, bool], consent: ConsentConfig) -> dict[str, ConsentValue]:
    """A record's answers (cookie or store) for the configured purposes, `necessary`
    excepted (it is never a record's to deny)."""
    known = set(consent.purposes) - {NECESSARY}
    return {
        p: ConsentValue.GRANTED if granted else ConsentValue.DENIED
        for p, granted in purposes.items()
        if p in known
    }


def own_vendors(vendors: Mapping[str, bool]) -> Mapping[str, VendorAnswer]:
    """A record's vendor answers (cookie or store). The gateway's own choice only ever
    says whether a vendor may have what its purposes grant: it grants no purpose."""
    if not vendors:
        return _NO_VENDORS
    return MappingProxyType(
        {v: (_GRANTED if ok else _DENIED, frozenset()) for v, ok in vendors.items()}
    )


def _deny_gpc_purposes(purposes: dict[str, PurposeConsent], consent: ConsentConfig) -> None:
    """`Sec-GPC: 1` overrides every other source (DESIGN §2). A GPC purpose missing from
    consent.purposes is denied too rather than left unknown."""
    for purpose in sorted(consent.gpc_purposes - {NECESSARY}):
        purposes[purpose] = PurposeConsent(ConsentValue.DENIED, "gpc")


def _when(answer: SourceAnswer) -> float:
    """The answer's timestamp for ordering; none (or NaN) sorts as oldest."""
    at = answer.at
    return -math.inf if at is None or math.isnan(at) else at


def _own_record_once(answers: Sequence[SourceAnswer]) -> Sequence[SourceAnswer]:
    """`answers` with only the newest of the gateway's own records (cookie, store) kept.

    Both carry the same record, one possibly out of date: a store record newer than
    the cookie wins (DESIGN §2), and a cookie newer than the store (a store write not
    yet seen) wins too. Records of equal age are both kept and combine as usual.
    """
    own = [a for a in answers if a.source in OWN_RECORD_SOURCES]
    if len(own) < 2:
        return answers
    newest = max(_when(a) for a in own)
    return [a for a in answers if a.source not in OWN_RECORD_SOURCES or _when(a) == newest]


def _combine(purpose: str, answers: Sequence[SourceAnswer], newest: bool) -> PurposeConsent | None:
    """The explicit answer for `purpose`, or None when no source gives one."""
    explicit = [
        (a, ConsentValue(v)) for a in answers if (v := a.purposes.get(purpose)) in _EXPLICIT
    ]
    if not explicit:
        return None
    answer, value = _winner(explicit, newest)
    return PurposeConsent(value, answer.source, answer.at, answer.policy_version)


def _vendor_choices(answers: Sequence[SourceAnswer], newest: bool) -> Mapping[str, VendorChoice]:
    """Each vendor's answer, combined across sources as purposes are (`consent.conflict`)."""
    named = sorted({v for a in answers for v in a.vendors})
    if not named:
        return _NO_VENDORS
    out: dict[str, VendorChoice] = {}
    for vendor in named:
        explicit = [(a, a.vendors[vendor][0]) for a in answers if vendor in a.vendors]
        answer, value = _winner(explicit, newest)
        grants = answer.vendors[vendor][1] if value is _GRANTED else frozenset()
        out[vendor] = VendorChoice(value, answer.source, grants, answer.at)
    return MappingProxyType(out)


def _winner(
    explicit: list[tuple[SourceAnswer, ConsentValue]], newest: bool
) -> tuple[SourceAnswer, ConsentValue]:
    """The answer that stands: restrictive, the first denial, else (all grants) the first
    grant; `newest`, the same among the latest answers."""
    if newest:
        latest = max(_when(a) for a, _ in explicit)
        explicit = [(a, v) for a, v in explicit if _when(a) == latest]
    return next(((a, v) for a, v in explicit if v is _DENIED), explicit[0])
