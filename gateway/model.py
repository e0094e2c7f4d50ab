"""The values that flow through the pipeline (DESIGN §1).

Everything here is an immutable value: the pipeline's stages are functions from
these to these, so any stage can be tested without a server.

- `Facts`: what the gateway knows about one incoming request.
- `ConsentState`: per purpose, `granted | denied | unknown` with the source of
  each answer and the regime that supplied defaults.
- `StripSpec`: the identifiers a rule says to remove (compiled from YAML).
- `Decision`: what to do with the request, and why.
- `Outgoing`: the request as it would leave for the vendor.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, TypeVar, assert_never, dataclass_transform

from gateway.memo import Memo

__all__ = [
    "CMP",
    "DEFAULT_SOURCE",
    "MAX_VENDOR_ANSWERS",
    "NECESSARY",
    "SIGNALS",
    "Action",
    "BodyKind",
    "ConsentState",
    "ConsentValue",
    "CurrentConsent",
    "Decision",
    "EndpointKind",
    "Facts",
    "request_record",
    "request_record",
    "Headers",
    "IpPolicy",
    "Outgoing",
    "PurposeConsent",
    "VendorChoice",
    "ReferrerPolicy",
    "Signal",
    "StripSpec",
    "UserAgentPolicy",
    "VendorConsent",
    "check_record_fields",
    "check_vendor_id",
    "frozen_purposes",
    "frozen_vendors",
]

#: The purpose that is always granted: a rule that needs only it always forwards.
NECESSARY = "necessary"


class Action(enum.StrEnum):
    """The closed set of things the gateway does with a request."""

    #: all required purposes granted: forward, applying only the rule's `always` strips
    FORWARD = "forward"
    #: some purposes denied, each with a `when_denied` strip: forward without those identifiers
    STRIP = "strip"
    #: some purpose denied without a strip: answer locally, send nothing to the vendor
    DROP = "drop"
    #: unknown destination or malformed request: a 4xx, never forwarded
    REJECT = "reject"


class Signal(enum.StrEnum):
    """The standard consent signals a site already emits (DESIGN §2), by the one name that
    config (`consent.signals.read`), the resolver's answers (`source`) and `explain` use."""

    TCF = "tcf"
    GPP = "gpp"
    US_PRIVACY = "us_privacy"
    GCM = "gcm"


class CMP(enum.StrEnum):
    """The consent-management platforms whose cookies the gateway reads.

    The one name of each CMP: config (`consent.signals.read`, `consent.signals.cmp`),
    the decoders' registry (`gateway.consent.cmp.FORMATS`, which must have an entry for
    every member) and the answers' `source` all use it, so a name cannot drift.
    """

    ONETRUST = "onetrust"
    COOKIEBOT = "cookiebot"
    DIDOMI = "didomi"
    KLARO = "klaro"
    COOKIEYES = "cookieyes"
    COMPLIANZ = "complianz"
    COMMANDERS_ACT = "commanders_act"


#: every signal the gateway can read besides its own cookie, standard ones first
SIGNALS: tuple[Signal | CMP, ...] = (*Signal, *CMP)


class ConsentValue(enum.StrEnum):
    GRANTED = "granted"
    DENIED = "denied"
    UNKNOWN = "unknown"


class EndpointKind(enum.StrEnum):
    """How a vendor endpoint is used; decides the local answer when dropped."""

    BEACON = "beacon"  # answered 204
    PIXEL = "pixel"  # answered with a 43-byte transparent GIF
    SCRIPT = "script"  # answered with an empty text/javascript
    API = "api"  # answered 204; its response matters, so forwarded synchronously
    #: the only kind whose requests may be upgraded to a WebSocket and relayed both ways;
    #: dropped: 403 (a refused upgrade). A plain request to it is refused (426).
    WEBSOCKET = "websocket"


class BodyKind(enum.StrEnum):
    """How to read a request body so its fields can be stripped."""

    NONE = "none"  # no body expected; one present is forwarded only when nothing is stripped
    FORM = "form"  # application/x-www-form-urlencoded; `query` strips apply to it
    JSON = "json"  # a JSON document; `json` strips apply to it
    TEXT = "text"  # a JSON document sent as text/plain (sendBeacon); `json` strips apply
    GA4_BATCH = "ga4-batch"  # newline-separated form-encoded hits; `query` strips apply per line
    #: a form body whose `data` field holds JSON, plain or base64 (Mixpanel, Klaviyo legacy):
    #: `query` strips apply to the form, `json` strips to the decoded document
    FORM_JSON = "form-json"


class IpPolicy(enum.StrEnum):
    KEEP = "keep"  # the vendor learns the visitor's address (X-Forwarded-For)
    TRUNCATE = "truncate"  # IPv4 to /24, IPv6 to /48
    DROP = "drop"  # the vendor sees only the gateway's address


class UserAgentPolicy(enum.StrEnum):
    KEEP = "keep"
    DROP = "drop"  # also removes the Sec-CH-UA-* client hints


class ReferrerPolicy(enum.StrEnum):
    KEEP = "keep"
    ORIGIN = "origin"  # scheme://host[:port]/ only
    DROP = "drop"


_IP_ORDER = (IpPolicy.KEEP, IpPolicy.TRUNCATE, IpPolicy.DROP)
_UA_ORDER = (UserAgentPolicy.KEEP, UserAgentPolicy.DROP)
_REF_ORDER = (ReferrerPolicy.KEEP, ReferrerPolicy.ORIGIN, ReferrerPolicy.DROP)


@dataclass(frozen=True, slots=True)
class StripSpec:
    """Identifiers to remove from a request; the unit rules are written in.

    Names are exact and case-sensitive, except that a name ending in `*` is a
    prefix (`up.*` removes every GA4 user property). `query` names apply to the
    URL query string and to form-encoded bodies (both carry the same fields in
    practice: a tag switches between GET and POST by payload size). `json`
    entries are dotted paths with `[]` for "every element of this array", e.g.
    `data[].user_data.em`. `cookies` names cookies to remove from the `Cookie`
    header; `all_cookies` removes the header. `headers` names other request
    headers to remove (lower case).
    """

    query: frozenset[str] = frozenset()
    json: frozenset[str] = frozenset()
    #: `;name=value` path parameters (Floodlight `/activity;src=1;u1=…`), by name
    path_params: frozenset[str] = frozenset()
    #: parameters (query, form or `;` path) whose values are URLs: click ids, e-mail
    #: addresses and other identity-bearing parameters are removed from inside them
    url_fields: frozenset[str] = frozenset()
    cookies: frozenset[str] = frozenset()
    all_cookies: bool = False
    headers: frozenset[str] = frozenset()
    ip: IpPolicy = IpPolicy.KEEP
    user_agent: UserAgentPolicy = UserAgentPolicy.KEEP
    referrer: ReferrerPolicy = ReferrerPolicy.KEEP
    #: also remove what is an identifier by name or shape wherever it is, listed or not
    #: (gateway.identifiers); set on every STRIP decision
    identifiers: bool = False
    #: field names (lower case, matched like gateway.identifiers' names) that
    #: `identifiers` leaves alone: what the visitor submitted on purpose (a newsletter
    #: form's e-mail) or an identifier of a purpose that is granted. A rule writes it per
    #: denied purpose; a field is kept only if every denied purpose's strip keeps it.
    keep: frozenset[str] = frozenset()

    def merge(self, other: StripSpec) -> StripSpec:
        """The union of two specs: every field of either is removed, the stricter policy wins."""
        return StripSpec(
            query=self.query | other.query,
            json=self.json | other.json,
            path_params=self.path_params | other.path_params,
            url_fields=self.url_fields | other.url_fields,
            cookies=self.cookies | other.cookies,
            all_cookies=self.all_cookies or other.all_cookies,
            headers=self.headers | other.headers,
            ip=max(self.ip, other.ip, key=_IP_ORDER.index),
            user_agent=max(self.user_agent, other.user_agent, key=_UA_ORDER.index),
            referrer=max(self.referrer, other.referrer, key=_REF_ORDER.index),
            identifiers=self.identifiers or other.identifiers,
            # one purpose's vendor-level and endpoint-level strips keep what either keeps;
            # across denied purposes `decide` keeps only what all of them keep
            keep=self.keep | other.keep,
        )

    @property
    def is_empty(self) -> bool:
        return self == _EMPTY

    @property
    def touches_body(self) -> bool:
        return bool(self.query or self.json or self.url_fields or self.identifiers)

    def field_names(self) -> list[str]:
        """Names of what this spec removes, for the decision log (never values)."""
        names = [f"query:{n}" for n in sorted(self.query)]
        names += [f"json:{n}" for n in sorted(self.json)]
        names += [f"path:{n}" for n in sorted(self.path_params)]
        names += [f"url:{n}" for n in sorted(self.url_fields)]
        names += ["cookie:*"] if self.all_cookies else [f"cookie:{n}" for n in sorted(self.cookies)]
        names += [f"header:{n}" for n in sorted(self.headers)]
        if self.ip is not IpPolicy.KEEP:
            names.append(f"ip:{self.ip}")
        if self.user_agent is not UserAgentPolicy.KEEP:
            names.append(f"user_agent:{self.user_agent}")
        if self.referrer is not ReferrerPolicy.KEEP:
            names.append(f"referrer:{self.referrer}")
        return names


_EMPTY = StripSpec()


class Headers(Mapping[str, str]):
    """A read-only, case-insensitive view of request headers (first value wins).

    The core cannot import aiohttp's CIMultiDict, and needs nothing more than this. The
    edge builds it `over` aiohttp's multidict, which then answers lookups, in C; items are
    copied, and the index of lower-cased names built, only when something needs them."""

    __slots__ = ("_index", "_items", "_lookup")

    def __init__(self, items: tuple[tuple[str, str], ...] = ()) -> None:
        self._items: tuple[tuple[str, str], ...] | None = items
        self._lookup: Mapping[str, str] | None = None
        self._index: dict[str, str] | None = None

    @classmethod
    def of(cls, mapping: Mapping[str, str]) -> Headers:
        return cls(tuple(mapping.items()))

    @classmethod
    def over(cls, multidict: Mapping[str, str]) -> Headers:
        """Headers over a case-insensitive multidict (aiohttp's request headers): its
        item is a name's first value, its `items()` every header as received."""
        headers = cls()
        headers._items = None
        headers._lookup = multidict
        return headers

    def _by_name(self) -> dict[str, str]:
        index = self._index
        if index is None:
            index = {}
            for k, v in self.items_all():
                index.setdefault(k.lower(), v)
            self._index = index
        return index

    def __getitem__(self, key: str) -> str:
        if self._lookup is not None:
            return self._lookup[key]
        return self._by_name()[key.lower()]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        if self._lookup is not None:
            return key in self._lookup
        return key.lower() in self._by_name()

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name())

    def __len__(self) -> int:
        return len(self._by_name())

    def items_all(self) -> tuple[tuple[str, str], ...]:
        """Every header as received, repeated names included."""
        items = self._items
        if items is None:
            assert self._lookup is not None
            items = self._items = tuple(self._lookup.items())
        return items

    def __repr__(self) -> str:
        # SECURITY: header values carry cookies and identifiers; never show them.
        return f"Headers(names={sorted(self._by_name())!r})"


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def request_record(cls: type[_T]) -> type[_T]:
    """A dataclass made per request on the hot path (`Facts`, `Evaluation`,
    `DecisionRecord`): frozen for the type checker, which refuses any assignment to a
    field (mypy strict runs over the whole package and its tests), and a plain slotted
    dataclass at run time. A frozen dataclass sets each field through
    `object.__setattr__`: 2.7 us to build one of 14 fields, against 0.45 us here, and
    three of them per request were a tenth of a dropped hit's cost. Values shared across
    requests and decoded from visitors' input (a kept `TCString`) stay frozen at run
    time too."""
    return dataclass(slots=True)(cls)


@request_record
class Facts:
    """An immutable view of one incoming request (DESIGN §1 "facts").

    `host` is the vendor host the request is for, already normalised (lower
    case, validated); `path` and `query` are raw (percent-encoding preserved) so
    what is matched is exactly what is forwarded.
    """

    request_id: str
    method: str
    host: str
    path: str
    query: str
    headers: Headers = field(default_factory=Headers)
    cookies: Mapping[str, str] = field(default_factory=dict)
    #: the body exactly as the client sent it (still in its Content-Encoding)
    body: bytes = b""
    client_ip: str | None = None
    country: str | None = None
    #: seconds since the epoch when the request arrived (consent ages are measured against it)
    now: float = 0.0
    #: `body` with its Content-Encoding undone (gateway.bodies), when it has one; None
    #: when the body is plain, or was not decoded yet (the transform then decodes it)
    decoded_body: bytes | None = None

    def __repr__(self) -> str:
        # SECURITY: never render query, cookies, body or the client address.
        return f"Facts(id={self.request_id!r}, {self.method} {self.host}{self.path})"


#: the source of a purpose no source answered: `default:<regime>`
DEFAULT_SOURCE = "default:"


@dataclass(frozen=True, slots=True)
class PurposeConsent:
    """One purpose's answer and where it came from."""

    state: ConsentValue
    #: e.g. "cookie", "store", "gpc", "default:opt-in" (a regime's default), "tcf", "onetrust"
    source: str
    #: when the source recorded the answer (epoch seconds), when it says
    at: float | None = None
    policy_version: int | None = None


class VendorConsent(Protocol):
    """Per-vendor consent from a signal that knows vendors (the IAB TCF TC string)."""

    def denied(self, vendor_id: int, purposes: frozenset[str]) -> frozenset[str]:
        """The purposes among `purposes` for which this vendor lacks permission."""
        ...


@dataclass(frozen=True, slots=True)
class VendorChoice:
    """One vendor's own answer (a rule's `vendor` id) and where it came from.

    Purposes are not enough where a visitor chose vendor by vendor (a CMP's services, the
    gateway's own `POST /consent {"vendors": …}`): a request needs its purposes granted
    and its vendor not denied. A CMP service that stands for a vendor also answers that
    service's purposes for that vendor alone (`grants`), where no source answered them
    for everyone: accepting one analytics service grants analytics to it, not to every
    analytics vendor.
    """

    state: ConsentValue
    #: e.g. "cookie", "store", "klaro", "didomi"
    source: str
    #: purposes this answer grants this vendor alone (only with `state` granted)
    grants: frozenset[str] = frozenset()
    at: float | None = None


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The visitor's consent, per purpose, with the regime that supplied defaults."""

    purposes: Mapping[str, PurposeConsent]
    regime: str
    subject: str | None = None
    gpc: bool = False
    #: vendor-level consent when a TC string applies (rules with `tcf_vendor_id` use it)
    vendors: VendorConsent | None = None
    #: the visitor's answers vendor by vendor (rule vendor id ->), from every source
    vendor_choices: Mapping[str, VendorChoice] = field(default_factory=lambda: MappingProxyType({}))

    def state(self, purpose: str) -> ConsentValue:
        """`granted`, `denied` or `unknown`; a purpose never mentioned is unknown."""
        if purpose == NECESSARY:
            return ConsentValue.GRANTED
        pc = self.purposes.get(purpose)
        return pc.state if pc is not None else ConsentValue.UNKNOWN

    def granted(self, purpose: str) -> bool:
        return self.state(purpose) is ConsentValue.GRANTED

    def sources(self) -> dict[str, str]:
        """purpose -> source name, for logs and explanations."""
        return {p: pc.source for p, pc in sorted(self.purposes.items())}

    def vendors_json(self) -> dict[str, dict[str, object]]:
        """vendor -> its answer, source and the purposes it grants, JSON-ready (the consent
        API, `explain`): names only, as every answer here is."""
        return {
            v: {"state": vc.state.value, "source": vc.source, "grants": sorted(vc.grants)}
            for v, vc in sorted(self.vendor_choices.items())
        }

    def missing_for(self, vendor: str, required: frozenset[str]) -> frozenset[str]:
        """The purposes among `required` this vendor lacks: those not granted, and every
        one if the visitor denied this vendor. A purpose no source answered for everyone
        (its regime default stands) counts as granted where the vendor's own answer grants
        it; an explicit denial (GPC, a withdrawal, a CMP category) is never overruled."""
        choice = self.vendor_choices.get(vendor)
        if choice is not None and choice.state is ConsentValue.DENIED:
            return required
        missing = frozenset(p for p in required if not self.granted(p))
        if choice is None or not choice.grants or not missing:
            return missing
        return frozenset(p for p in missing if p not in choice.grants or not self._defaulted(p))

    def _defaulted(self, purpose: str) -> bool:
        pc = self.purposes.get(purpose)
        return pc is not None and pc.source.startswith(DEFAULT_SOURCE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What to do with a request, and why (DESIGN §1 "decision").

    `strips` is the complete spec to apply for FORWARD and STRIP (the rule's
    `always` strips included); it is empty for DROP and REJECT. `report_only`
    means: log `action`, but forward with only the `always` strips applied.
    """

    action: Action
    vendor: str | None
    endpoint: str | None
    required: frozenset[str]
    missing: frozenset[str]
    strips: StripSpec
    reason: str
    report_only: bool = False
    #: what the gateway does, which `action` names only outside report-only mode: there a
    #: STRIP or DROP is logged as such and forwarded with the `always` strips. Set once,
    #: with `sends`: both are read several times for each request.
    effective: Action = field(init=False, compare=False, repr=False)
    #: does anything of this request leave the gateway? The one answer to it.
    sends: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        effective = self.action
        if self.report_only and effective in (Action.STRIP, Action.DROP):
            effective = Action.FORWARD
        match effective:
            case Action.FORWARD | Action.STRIP:
                sends = True
            case Action.DROP | Action.REJECT:
                sends = False
            case unreachable:
                assert_never(unreachable)
        object.__setattr__(self, "effective", effective)
        object.__setattr__(self, "sends", sends)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """The request as it would leave for the vendor: the output of `transform`.

    `headers` holds only what the gateway chose to send (an allow-list applied
    by transform), never hop-by-hop headers.
    """

    method: str
    host: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def __repr__(self) -> str:
        return f"Outgoing({self.method} {self.host}{self.path})"


# --- a subject's stored consent, as the core sees it ----------------------------------------

#: the longest subject id a record may carry
_MAX_ID = 256


def frozen_purposes(purposes: Mapping[str, bool]) -> Mapping[str, bool]:
    """A purpose -> answer mapping, checked and frozen (stored records, current state)."""
    out: dict[str, bool] = {}
    for key, value in purposes.items():
        if not isinstance(key, str) or not key:
            raise ValueError("purpose names must be non-empty strings")
        if not isinstance(value, bool):
            raise ValueError("purpose answers must be booleans")
        out[key] = value
    # Shared: a million cached subjects hold a handful of distinct choices, and each
    # mapping costs a few hundred bytes (it is read-only, so sharing is safe).
    answers = tuple(out.items())
    shared = _PURPOSES.get(answers)
    if shared is None and len(out) <= 64:
        shared = _PURPOSES.put(answers, MappingProxyType(out))
    return shared if shared is not None else MappingProxyType(out)


_PURPOSES: Memo[tuple[tuple[str, bool], ...], Mapping[str, bool]] = Memo(1024)
_NO_VENDORS: Mapping[str, bool] = MappingProxyType({})
#: the most vendor answers one record holds (a cookie must stay under 4096 bytes)
MAX_VENDOR_ANSWERS = 64
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def check_vendor_id(vendor: str) -> str | None:
    """None for a valid rule vendor id (`vendor:` in a rule file), else what is wrong."""
    if len(vendor) <= 64 and _SLUG.fullmatch(vendor):
        return None
    return "must be a lower-case slug: letters, digits and single '-' (e.g. meta-pixel)"


def frozen_vendors(vendors: Mapping[str, bool]) -> Mapping[str, bool]:
    """A vendor id -> answer mapping, checked and frozen (stored records, current state).
    Ids are rule vendor ids (slugs of at most 64 characters)."""
    if not isinstance(vendors, Mapping):
        raise ValueError("vendor answers must be a mapping")
    if not vendors:
        return _NO_VENDORS
    if len(vendors) > MAX_VENDOR_ANSWERS:
        raise ValueError(f"at most {MAX_VENDOR_ANSWERS} vendor answers")
    out: dict[str, bool] = {}
    for key, value in vendors.items():
        if not isinstance(key, str) or check_vendor_id(key) is not None:
            raise ValueError("vendor ids must be rule vendor ids (lower-case slugs)")
        if not isinstance(value, bool):
            raise ValueError("vendor answers must be booleans")
        out[key] = value
    return MappingProxyType(out)


def check_record_fields(subject: str, source: str, policy_version: int, at: float) -> None:
    """Raise ValueError unless these fields of a consent record are well formed."""
    if not isinstance(subject, str) or not subject or len(subject) > _MAX_ID:
        raise ValueError(f"subject must be a non-empty string of at most {_MAX_ID} characters")
    if not isinstance(source, str) or not source:
        raise ValueError("source must be a non-empty string")
    if isinstance(policy_version, bool) or not isinstance(policy_version, int):
        raise ValueError("policy_version must be an int")
    if policy_version < 0:
        raise ValueError("policy_version must be >= 0")
    if not isinstance(at, int | float) or not math.isfinite(at):
        raise ValueError("at must be a finite number (seconds since the epoch)")


@dataclass(frozen=True, slots=True)
class CurrentConsent:
    """A subject's current state: the purposes, policy version, time and source of its
    newest record. `purposes` is frozen on construction."""

    subject: str
    purposes: Mapping[str, bool]
    policy_version: int
    at: float
    source: str
    #: rule vendor id -> may it have what its purposes grant? (`VendorChoice`)
    vendors: Mapping[str, bool] = field(default_factory=lambda: _NO_VENDORS)

    def __post_init__(self) -> None:
        check_record_fields(self.subject, self.source, self.policy_version, self.at)
        object.__setattr__(self, "purposes", frozen_purposes(self.purposes))
        object.__setattr__(self, "vendors", frozen_vendors(self.vendors))
