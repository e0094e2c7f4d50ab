"""The standard consent signals on a request, as explicit sources for the resolver.

A site that already runs a CMP expresses the visitor's choice in ways the
gateway can read without the site changing anything (DESIGN §2):

| signal       | where                                                      | source name   |
|--------------|------------------------------------------------------------|---------------|
| IAB TCF      | cookie `euconsent-v2`, OneTrust `eupubconsent-v2`, query    | `tcf`         |
|              | `gdpr_consent` (unless `gdpr=0`), GPP section tcfeuv2      |               |
| IAB GPP      | query `gpp`/`gpp_sid`, cookies `__gpp`/`__gpp_sid`,        | `gpp`         |
|              | OneTrust `OTGPPConsent` (US sections: opt-outs)            |               |
| US Privacy   | query `us_privacy`, cookies `us_privacy`/`usprivacy`        | `us_privacy`  |
| Consent Mode | query `gcs`/`gcd` (Google tag hits)                        | `gcm`         |
| CMP cookies  | OneTrust, Cookiebot, Didomi, Klaro, CookieYes, Complianz,  | the CMP's name|
|              | Commanders Act                                             |               |

`read_signals(facts, cfg)` decodes what is there and maps it onto the
gateway's purposes with `consent.signals` from config. What the tag request says
about itself (its query: `gcs`, `gcd`, `gdpr_consent`, `gpp`, `us_privacy`) is
named `<signal>:query` and may deny or restrict but never grant, unless config sets
`consent.signals.request_params_grant: true`: a tag must not grant itself consent.
The site's first-party cookies (CMP cookies, `euconsent-v2`, `__gpp`) may grant.
A signal that cannot be decoded is reported in `problems` and otherwise ignored: it never grants
anything (fail closed). US opt-outs only ever deny. Everything here is pure.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import unquote_plus

from gateway.config import ConsentConfig, CookieConfig, SignalsConfig
from gateway.config.consent import CmpTable
from gateway.consent import cmp, gcm, gpp, tcf
from gateway.consent.gpc import gpc_signal
from gateway.consent.regimes import regime_for
from gateway.consent.resolve import (
    CookieOutcome,
    SourceAnswer,
    VendorAnswer,
    forget_cookies,
    read_cookie,
    resolve_request,
    stored_fresh,
)
from gateway.consent.usp import decode_us_privacy, usp_opted_out
from gateway.errors import SignalError
from gateway.memo import Memo
from gateway.model import CMP, ConsentState, ConsentValue, CurrentConsent, Facts, Signal

__all__ = [
    "REQUEST_SUFFIX",
    "SIGNAL_PARAMS",
    "SignalInputs",
    "Signals",
    "TcfVendorConsent",
    "decode_signals",
    "forget",
    "gcm_states",
    "google_consent_params",
    "query_params",
    "read_signals",
    "resolve_with_signals",
    "signal_inputs",
    "vendor_consent_params",
]

_GRANTED, _DENIED = ConsentValue.GRANTED, ConsentValue.DENIED
#: section id of the TC string inside a GPP string
_GPP_TCFEUV2 = 2
#: appended to a signal's name when the tag request's own query carried it (`gcm:query`)
REQUEST_SUFFIX = ":query"


@dataclass(frozen=True, slots=True)
class TcfVendorConsent:
    """Vendor-level TCF consent (implements `model.VendorConsent`)."""

    tc: tcf.TCString
    purposes: Mapping[str, tuple[int, ...]]
    special_features: Mapping[str, tuple[int, ...]]
    legitimate_interest: bool

    def denied(self, vendor_id: int, purposes: frozenset[str]) -> frozenset[str]:
        """Purposes (of `purposes`) whose TCF purposes this vendor may not process.

        A purpose with no TCF mapping is not judged here. A vendor the CMP did not
        disclose is permitted nothing.
        """
        disclosed = tcf.vendor_disclosed(self.tc, vendor_id)
        out: set[str] = set()
        for p in purposes:
            tcf_purposes = self.purposes.get(p)
            if tcf_purposes is None:
                continue
            features = self.special_features.get(p, ())
            if not disclosed or not all(
                tcf.vendor_may(
                    self.tc, vendor_id, t, legitimate_interest_allowed=self.legitimate_interest
                )
                for t in tcf_purposes
            ):
                out.add(p)
            elif not all(f in self.tc.special_feature_optins for f in features):
                out.add(p)
        return frozenset(out)


@dataclass(frozen=True, slots=True)
class Signals:
    """What the request's signals say: answers for the resolver, and what failed."""

    answers: tuple[SourceAnswer, ...] = ()
    #: vendor-level consent from the first TC string that applies
    vendors: TcfVendorConsent | None = None
    #: (signal, reason) for each signal present but undecodable; reasons never quote values
    problems: tuple[tuple[str, str], ...] = ()
    #: (source, purpose) for each grant the request's own parameters claimed and that was
    #: not believed (`consent.signals.request_params_grant: false`)
    ignored: tuple[tuple[str, str], ...] = ()


#: the query parameters that carry signals (tag hits and ad-tech macros); `new-rule`
#: calls them consent signals too
SIGNAL_PARAMS = frozenset(
    {"gdpr", "gdpr_consent", "gpp", "gpp_sid", "gcs", "gcd", "npa", "us_privacy"}
)


def query_params(raw: str, names: frozenset[str] = SIGNAL_PARAMS) -> dict[str, str]:
    """The values of `names` in the raw query string `raw` (first occurrence wins), as
    `urllib.parse.parse_qsl` would read them.

    Hot path: a browser's GA4 hit carries three dozen parameters and few signals. One
    scan (`_pairs_named`, compiled once per set of names) finds the wanted pairs and the
    pairs whose name is percent-encoded (`%67cs` still counts as `gcs`); only those are
    looked at in Python. A `+` in a name decodes to a space, which no wanted name has.
    """
    out: dict[str, str] = {}
    for plain, encoded, value in _pairs_named(names).findall("&" + raw):
        name = plain or unquote_plus(encoded)
        if name in names and name not in out:
            out[name] = unquote_plus(value) if ("%" in value or "+" in value) else value
    return out


def _pairs_named(names: frozenset[str]) -> re.Pattern[str]:
    """`query_params`' scan for `names`: each pair (after an `&`) whose name is one of
    them, or contains a `%`, with its value (empty without `=`). Longer names are tried
    first, so `gdpr_consent` is not read as `gdpr`."""
    pattern = _NAMED_PAIRS.get(names)
    if pattern is None:
        if len(_NAMED_PAIRS) >= 16:  # callers pass module constants: a few sets in all
            _NAMED_PAIRS.clear()
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        pattern = re.compile(rf"&(?:({alternatives})|([^&=]*%[^&=]*))(?:=([^&]*))?(?=&|\Z)")
        _NAMED_PAIRS[names] = pattern
    return pattern


_NAMED_PAIRS: dict[frozenset[str], re.Pattern[str]] = {}


def _tcf_answer(tc: tcf.TCString, cfg: SignalsConfig, source: str) -> SourceAnswer:
    purposes: dict[str, ConsentValue] = {}
    for p, tcf_purposes in cfg.tcf_purposes.items():
        ok = all(
            t in tc.purpose_consents
            or (
                cfg.tcf_legitimate_interest
                and t not in (1, 3, 4, 5, 6)
                and t in tc.purpose_legitimate_interests
            )
            for t in tcf_purposes
        )
        features = cfg.tcf_special_features.get(p, ())
        ok = ok and all(f in tc.special_feature_optins for f in features)
        purposes[p] = _GRANTED if ok else _DENIED
    return SourceAnswer(source, purposes, tc.last_updated.timestamp())


_NO_TABLE = CmpTable({})


def _map_categories(
    categories: Mapping[str, bool], table: CmpTable, others: bool | None = None
) -> dict[str, ConsentValue]:
    """purpose -> denied if any category standing for it is denied, granted if all present
    ones are granted; purposes with no category present are not answered. `others` is
    the CMP's answer for categories it does not list (Commanders Act), if it gives one.
    An id the table maps to vendors answers for them only (`_map_vendors`), not here."""
    out: dict[str, ConsentValue] = {}
    for category, purposes in table.items():
        if category in table.vendors:
            continue
        granted = categories.get(category, others)
        if granted is None:
            continue
        for p in purposes:
            if not granted:
                out[p] = _DENIED
            else:
                out.setdefault(p, _GRANTED)
    return out


def _map_vendors(answers: Mapping[str, bool], table: CmpTable) -> Mapping[str, VendorAnswer]:
    """rule vendor id -> its answer, from the CMP's answers for its own ids (`vendors` in
    the table). A granted id grants its vendors the purposes it stands for as a category
    (a Klaro service mapped to `[analytics]`): to them alone, where nothing else answers
    for everyone. Two ids standing for one vendor: a denial wins."""
    out: dict[str, VendorAnswer] = {}
    for cmp_id, vendors in table.vendors.items():
        granted = answers.get(cmp_id)
        if granted is None:
            continue
        answer = (_GRANTED, frozenset(table.get(cmp_id, ()))) if granted else (_DENIED, _NONE)
        for vendor in vendors:
            prior = out.get(vendor)
            if prior is None or prior[0] is not _DENIED:
                out[vendor] = answer
    return MappingProxyType(out)


_NONE: frozenset[str] = frozenset()


def _map_types(
    states: Mapping[str, ConsentValue], mapping: Mapping[str, tuple[str, ...]]
) -> dict[str, ConsentValue]:
    out: dict[str, ConsentValue] = {}
    for p, types in mapping.items():
        values = [states.get(t, ConsentValue.UNKNOWN) for t in types]
        if any(v is _DENIED for v in values):
            out[p] = _DENIED
        elif values and all(v is _GRANTED for v in values):
            out[p] = _GRANTED
    return out


#: the cookies signals are read from: the standard ones and every CMP's
_SIGNAL_COOKIES = (
    frozenset({"euconsent-v2", "__gpp", "__gpp_sid", "OTGPPConsent", "us_privacy", "usprivacy"})
    | cmp.CMP_COOKIE_NAMES
)

#: what signals are read from: the query's signal parameters and the signal cookies
SignalInputs = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]


def signal_inputs(facts: Facts) -> SignalInputs:
    """Everything of `facts` that `read_signals` reads, and nothing else: the key of any
    cache of what it answers."""
    # most hits carry no cookie, or no query: skip building what would be empty
    jar = facts.cookies
    cookies = tuple((n, v) for n, v in jar.items() if n in _SIGNAL_COOKIES) if jar else ()
    query = facts.query
    return (tuple(query_params(query).items()) if query else ()), cookies


def read_signals(facts: Facts, cfg: SignalsConfig) -> Signals:
    """Decode every enabled signal on `facts` into answers (see the module table).

    Signals the tag request carries about itself (its query) are named `<signal>:query`
    and, unless `cfg.request_params_grant`, keep only their denials: a tag cannot grant
    itself consent. The grants dropped are listed in `Signals.ignored`.
    """
    return decode_signals(signal_inputs(facts), cfg)


def decode_signals(inputs: SignalInputs, cfg: SignalsConfig) -> Signals:
    """`read_signals` on what `signal_inputs` took from a request."""
    q, c = dict(inputs[0]), dict(inputs[1])
    read = cfg.read
    out = _Collect(cfg)
    vendors: TcfVendorConsent | None = None
    # TC string -> carried only by the request (False once any cookie carries it too)
    tc_strings: dict[str, bool] = {}

    def add_tc(raw: str | None, from_request: bool) -> None:
        if raw:
            tc_strings[raw] = tc_strings.get(raw, True) and from_request

    if Signal.TCF in read:
        # `gdpr=0` says GDPR does not apply to this hit: its TC string speaks for no one.
        if q.get("gdpr") != "0":
            add_tc(q.get("gdpr_consent"), True)
        add_tc(c.get("euconsent-v2"), False)

    if Signal.GPP in read:
        gpps = [(q.get("gpp"), q.get("gpp_sid"), True), (c.get("__gpp"), c.get("__gpp_sid"), False)]
        if CMP.ONETRUST in read:
            gpps.append((c.get("OTGPPConsent"), None, False))
        for raw, sid, from_request in gpps:
            if raw:
                section = _read_gpp(raw, sid, cfg, out, from_request)
                if section is not None and Signal.TCF in read:
                    add_tc(section, from_request)

    if Signal.US_PRIVACY in read:
        usps = {c.get("us_privacy"): False, c.get("usprivacy"): False}
        usps.setdefault(q.get("us_privacy"), True)
        for raw, from_request in usps.items():
            if not raw:
                continue
            try:
                usp = decode_us_privacy(raw)
            except SignalError as e:
                out.problems.append((Signal.US_PRIVACY, e.reason))
                continue
            if usp_opted_out(usp):
                denied = dict.fromkeys(cfg.us_opt_out_purposes, _DENIED)
                out.add(SourceAnswer(Signal.US_PRIVACY, denied, None), from_request)

    if Signal.GCM in read and ("gcs" in q or "gcd" in q):
        try:
            states = gcm.signal_answers(q.get("gcs"), q.get("gcd"))
        except SignalError as e:
            out.problems.append((Signal.GCM, e.reason))
        else:
            # Consent Mode travels only on Google's tag hits: always the request's own word.
            out.add(SourceAnswer(Signal.GCM, _map_types(states, cfg.gcm), None), True)

    consents, failures = cmp.decode_cmp_cookies(c)
    out.problems += [(name, reason) for name, reason in failures if name in read]
    for consent in consents:
        if consent.cmp not in read:
            continue
        if consent.tc_string and Signal.TCF in read:
            # OneTrust's eupubconsent-v2, Cookiebot's iab2: TC strings in CMP clothing.
            add_tc(consent.tc_string, False)
        if consent.no_consent_required:
            # Cookiebot's "-1": its own geolocation found no consent needed. The gateway's
            # regime (from the operator's trusted geo header) decides that, not the CMP.
            continue
        table = cfg.cmp.get(consent.cmp, _NO_TABLE)
        mapped = _map_categories(consent.categories, table, consent.others)
        answered = _map_vendors(consent.vendors, table)
        out.add(SourceAnswer(consent.cmp, mapped, consent.at, vendors=answered), False)

    for raw, from_request in tc_strings.items():  # the same string in two places counts once
        try:
            tc = tcf.decode_tc_string_kept(raw)
        except SignalError as e:
            out.problems.append((Signal.TCF, e.reason))
            continue
        out.add(_tcf_answer(tc, cfg, Signal.TCF), from_request)
        if vendors is None:
            # Vendor-level consent only ever denies (TcfVendorConsent.denied): safe from
            # the request's own string too.
            vendors = TcfVendorConsent(
                tc, cfg.tcf_purposes, cfg.tcf_special_features, cfg.tcf_legitimate_interest
            )

    return Signals(tuple(out.answers), vendors, tuple(out.problems), tuple(out.ignored))


class _Collect:
    """Answers and problems as `read_signals` finds them; the one place the request's own
    signals lose their grants."""

    def __init__(self, cfg: SignalsConfig) -> None:
        self._grant = cfg.request_params_grant
        self.answers: list[SourceAnswer] = []
        self.problems: list[tuple[str, str]] = []
        self.ignored: list[tuple[str, str]] = []

    def add(self, answer: SourceAnswer, from_request: bool) -> None:
        if from_request:
            source = f"{answer.source}{REQUEST_SUFFIX}"
            purposes = dict(answer.purposes)
            if not self._grant:
                # SECURITY: the tag request speaks for itself here (gcs=G111, its own
                # gdpr_consent...): it may deny or restrict, never grant.
                for p, v in answer.purposes.items():
                    if v is _GRANTED:
                        self.ignored.append((source, p))
                        del purposes[p]
                vendors = {v: a for v, a in answer.vendors.items() if a[0] is not _GRANTED}
                answer = dataclasses.replace(answer, vendors=MappingProxyType(vendors))
            answer = dataclasses.replace(answer, source=source, purposes=purposes)
        if answer.purposes or answer.vendors:
            self.answers.append(answer)


def _read_gpp(
    raw: str, sid: str | None, cfg: SignalsConfig, out: _Collect, from_request: bool
) -> str | None:
    """Add the GPP string's US opt-outs to `out`; return its TCF EU section, if in force."""
    try:
        parsed = gpp.decode_gpp(raw)
    except SignalError as e:
        out.problems.append((Signal.GPP, e.reason))
        return None
    applicable = _gpp_sid(sid, parsed.section_ids)
    if gpp.us_opt_outs(parsed, applicable):
        denied = dict.fromkeys(cfg.us_opt_out_purposes, _DENIED)
        out.add(SourceAnswer(Signal.GPP, denied, None), from_request)
    if _GPP_TCFEUV2 in applicable:
        # Bit for bit a TC string (GPP spec, section 2): decode it as one.
        index = parsed.section_ids.index(_GPP_TCFEUV2)
        sections = raw.split("~")[1:]
        if index < len(sections):
            return sections[index]
    return None


def _gpp_sid(sid: str | None, present: Iterable[int]) -> tuple[int, ...]:
    """Sections in force: those `gpp_sid` lists (all present when it is absent)."""
    present = tuple(present)
    if sid is None or sid.strip() in ("", "-1"):
        return present if sid is None else ()
    wanted: set[int] = set()
    for part in sid.replace("_", ",").split(","):
        part = part.strip()
        if part.isdigit():
            wanted.add(int(part))
    return tuple(s for s in present if s in wanted)


def resolve_with_signals(
    facts: Facts,
    consent: ConsentConfig,
    cookie: CookieConfig,
    *,
    outcome: CookieOutcome | None = None,
    stored: CurrentConsent | None = None,
) -> tuple[ConsentState, CookieOutcome, Signals]:
    """The request's consent from the gateway's cookie and the store's record of its
    subject (`stored`), the standard signals, GPC and the regime's defaults (DESIGN §2),
    with vendor-level TCF consent attached. `outcome`: as in `resolve_request`.

    Answers are kept (`_RESOLVED`) under everything they depend on: the cookie's value and
    freshness, the stored state and whether it is fresh, the signals' inputs, the regime
    and GPC; a visitor's next hit costs a lookup.
    """
    if outcome is None:
        outcome = read_cookie(facts, consent, cookie)
    inputs = signal_inputs(facts)
    key = None
    if outcome.key is not None and _size(inputs) <= _MAX_KEPT:
        own = None
        if stored is not None and stored.subject == outcome.subject:
            own = (
                stored.at,
                stored.policy_version,
                tuple(stored.purposes.items()),
                tuple(stored.vendors.items()),
                stored_fresh(stored, consent, facts.now),
            )
        regime = regime_for(consent, facts.country)
        gpc = regime.gpc_binds and gpc_signal(facts.headers)
        key = (outcome.key, own, inputs, regime.name, gpc)
        kept = _RESOLVED.get(key)
        if kept is not None and kept[0] is consent and kept[1] is cookie:
            return kept[2], outcome, kept[3]
    signals = decode_signals(inputs, consent.signals)
    state, outcome = resolve_request(
        facts, consent, cookie, signals.answers, outcome=outcome, stored=stored
    )
    if signals.vendors is not None:
        state = dataclasses.replace(state, vendors=signals.vendors)
    if key is not None:
        _RESOLVED.put(key, (consent, cookie, state, signals))
    return state, outcome, signals


#: resolved consent by its inputs (see resolve_with_signals); an entry is a few KB at most
_RESOLVED: Memo[tuple[object, ...], tuple[ConsentConfig, CookieConfig, ConsentState, Signals]] = (
    Memo(16384)
)
#: inputs longer than this (characters of signal values) are resolved every time: a
#: cache of them would hold whatever large strings visitors send
_MAX_KEPT = 2048


def forget() -> None:
    """Drop every kept answer (cookie checks and resolved consent): tests compare kept
    answers with fresh ones."""
    _RESOLVED.clear()
    forget_cookies()


def _size(inputs: SignalInputs) -> int:
    query, cookies = inputs
    if not query and not cookies:  # most hits: no signal at all
        return 0
    return sum(len(v) for _, v in query) + sum(len(v) for _, v in cookies)


def gcm_states(state: ConsentState, cfg: SignalsConfig) -> dict[str, ConsentValue]:
    """Each Consent Mode type's state implied by the resolved purposes: granted only when
    every purpose that maps to the type is granted."""
    out: dict[str, ConsentValue] = {}
    for purpose, types in cfg.gcm.items():
        for t in types:
            if state.granted(purpose):
                out.setdefault(t, _GRANTED)
            else:
                out[t] = _DENIED
    for t in gcm.GCM_TYPES:
        out.setdefault(t, _DENIED)  # fail closed: a type no purpose vouches for is denied
    return out


_GOOGLE_PARAMS = frozenset({"gcs", "gcd", "npa"})
# the scans of the sets the hot path reads, compiled at load
_pairs_named(SIGNAL_PARAMS)
_pairs_named(_GOOGLE_PARAMS)


def google_consent_params(
    state: ConsentState, cfg: SignalsConfig, query: str | None = None
) -> dict[str, str]:
    """The `gcs`/`gcd`/`npa` values a forwarded Google hit must carry.

    With `query` (the hit's raw query): {} when every type is granted and the hit
    carries none of the parameters, so a fully consented hit reaches Google as the
    tag sent it; a hit that claims anything, or any denial, gets all three.
    """
    states = gcm_states(state, cfg)
    if query is not None and all(v is _GRANTED for v in states.values()):
        if not query_params(query, _GOOGLE_PARAMS):
            return {}
    return gcm.consent_params(states)


#: sources that express a US opt-out of sale / sharing / targeted advertising
_US_OPT_OUT_SOURCES = frozenset(
    {"gpc", Signal.US_PRIVACY, Signal.GPP}
    | {f"{s}{REQUEST_SUFFIX}" for s in (Signal.US_PRIVACY, Signal.GPP)}
)


def vendor_consent_params(
    kind: str, state: ConsentState, cfg: SignalsConfig, query: str | None = None
) -> tuple[dict[str, str], dict[str, object]]:
    """(query parameters, top-level JSON fields) a forwarded hit must carry so the vendor's
    own consent parameters agree with the resolved consent (`consent_params` in a rule).

    Only ever restricts: a parameter saying consent was given is never added, so a tag's
    own "denied" is never upgraded. `kind` is a rule's `consent_params` value.

    Kept per (kind, state, config, whether the hit carries Google's parameters): that is
    all the answer depends on, and states are cached objects.
    """
    # only Google's answer depends on the hit's own parameters
    carries = kind == "google" and query is not None and bool(query_params(query, _GOOGLE_PARAMS))
    key = (kind, id(state), id(cfg), query is None, carries)
    kept = _PARAMS.get(key)
    if kept is not None and kept[0] is state and kept[1] is cfg:
        return dict(kept[2]), dict(kept[3])
    params, fields = _vendor_consent_params(kind, state, cfg, query)
    _PARAMS.put(key, (state, cfg, params, fields))
    return dict(params), dict(fields)


_PARAMS: Memo[
    tuple[str, int, int, bool, bool],
    tuple[ConsentState, SignalsConfig, dict[str, str], dict[str, object]],
] = Memo(4096)


def _vendor_consent_params(
    kind: str, state: ConsentState, cfg: SignalsConfig, query: str | None
) -> tuple[dict[str, str], dict[str, object]]:
    advertising = state.purposes.get("advertising")
    denied = advertising is None or advertising.state is not _GRANTED
    us_opt_out = denied and advertising is not None and advertising.source in _US_OPT_OUT_SOURCES
    if kind == "google":
        return google_consent_params(state, cfg, query), {}
    if kind == "microsoft":
        # UET: asc=D keeps Microsoft from writing or reading ad cookies for this hit.
        return ({"asc": "D"} if denied else {}), {}
    if kind == "meta":
        # Meta's Limited Data Use is a US-state mechanism (not a GDPR signal); country and
        # state 0 ask Meta to geolocate the hit itself.
        return ({"dpo": "LDU", "dpoco": "0", "dpost": "0"} if us_opt_out else {}), {}
    if kind == "tiktok":
        return {}, ({"limited_data_use": True} if us_opt_out else {})
    return {}, {}
