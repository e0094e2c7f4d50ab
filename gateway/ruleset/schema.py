"""The typed specs a rule file compiles into, and the grammars their fields obey.

A rule file (`rules/*.yaml`, documented for authors in `rules/README.md`) is
read once by `gateway.ruleset.parse` into a `VendorRule`: the vendor's hosts,
its optional first-party route, the purposes it needs, its ordered
`EndpointSpec`s and its `ExampleSpec`s. Everything here is an immutable value;
the loader reports a bad field as a `Problem` with its line before any spec is
built, and each spec re-checks its own invariants in `__post_init__` (raising
`ValueError`) so a spec built in code can never be looser than one from YAML.

The `check_*` functions return `None` for a valid value, else a short message
saying what is wrong; the loader turns that message into a `Problem`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar
from urllib.parse import urlsplit

from gateway.model import (
    Action,
    BodyKind,
    ConsentValue,
    EndpointKind,
    StripSpec,
    check_vendor_id,
)

__all__ = [
    "DEFAULT_METHODS",
    "ConsentParams",
    "DropAnswer",
    "HTTP_METHODS",
    "NEVER_FORWARDED",
    "NEVER_FORWARDED_PREFIXES",
    "RESERVED_ROUTES",
    "EndpointSpec",
    "ExampleSpec",
    "ForwardMode",
    "VendorRule",
    "check_endpoint_id",
    "check_forward_header",
    "check_field_name",
    "check_header_name",
    "check_host_pattern",
    "check_json_path",
    "check_path_prefix",
    "check_route",
    "check_vendor_id",
    "default_forward_mode",
    "host_matches",
    "is_dns_name",
]

#: Methods an endpoint accepts when its `match` names none.
DEFAULT_METHODS = frozenset({"GET", "POST"})
#: Methods a rule may name (HEAD is implied wherever GET is).
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: First-party paths the gateway serves itself; no vendor route may be or live under one.
RESERVED_ROUTES = frozenset(
    {"/t", "/consent", "/_admin", "/metrics", "/healthz", "/readyz", "/cg.js", "/cg-sw.js"}
)

_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HEX_NUMBER = re.compile(r"0x[0-9a-f]*")
_ROUTE_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # RFC 9110 §5.6.2 token, lower case
_JSON_SEGMENT = re.compile(r"[^.\[\]*\s]+(?:\[\])*")
_JSON_ROOT = re.compile(r"(?:\[\])+")


class ForwardMode(enum.StrEnum):
    """How a forwarded request reaches the vendor (DESIGN §1 "upstream")."""

    #: answer the visitor locally at once, forward through the bounded background queue
    ASYNC = "async"
    #: stream the vendor's answer back: the tag needs it (scripts, APIs)
    SYNC = "sync"


class ConsentParams(enum.StrEnum):
    """A vendor's own consent parameters, which forwarded hits must not contradict."""

    #: Google Consent Mode: `gcs`, `gcd`, `npa` on every Google tag hit
    GOOGLE = "google"
    #: Microsoft UET: `asc=D` (ad storage denied) unless advertising is granted
    MICROSOFT = "microsoft"
    #: Meta Limited Data Use: `dpo=LDU` where a US opt-out denied advertising
    META = "meta"
    #: TikTok Events API: `"limited_data_use": true` where a US opt-out denied advertising
    TIKTOK = "tiktok"


@dataclass(frozen=True, slots=True)
class DropAnswer:
    """What a dropped call to an `api` endpoint is answered: the vendor's own success.

    An SDK that retries every answer but its vendor's success (posthog-js retries all but
    200) keeps a dropped event in the page and sends it again once consent arrives: a
    replay nobody configured. Answered as the SDK's final success, a drop stays a drop.
    """

    #: 2xx: a drop must read as success, never as an error or a redirect to follow
    status: int
    #: the exact body (JSON already encoded), empty for none
    body: bytes = b""
    content_type: str | None = None
    #: where the shape comes from (the SDK file or vendor page): the rule's evidence
    source: str = ""

    def __post_init__(self) -> None:
        if not 200 <= self.status <= 299:
            raise ValueError(f"drop_answer status {self.status}: must be 200-299")
        if self.status in (204, 205) and self.body:
            raise ValueError(f"drop_answer status {self.status} has no body")
        if not self.source.strip():
            raise ValueError("drop_answer needs its source (the SDK file or vendor page)")


def default_forward_mode(kind: EndpointKind) -> ForwardMode:
    """Beacons and pixels need no vendor answer; scripts and APIs do."""
    match kind:
        case EndpointKind.BEACON | EndpointKind.PIXEL:
            return ForwardMode.ASYNC
        case EndpointKind.SCRIPT | EndpointKind.API | EndpointKind.WEBSOCKET:
            return ForwardMode.SYNC


# ---------------------------------------------------------------------------
# Grammars


def is_dns_name(name: str) -> bool:
    """True if `name` is a plain lower-case DNS host name, and nothing else.

    Labels of `[a-z0-9-]` (1-63 characters, not starting or ending with `-`),
    at least two labels, at most 253 characters, no trailing dot, and a last
    label that is not a number: this excludes IP literals in every spelling,
    ports, userinfo, percent-encoding and non-ASCII (IDNs must be A-labels).
    """
    if not 0 < len(name) <= 253:
        return False
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return False
    # SECURITY: WHATWG URL "ends in a number": a last label that parses as an IPv4 number
    # (decimal, or 0x-hex) makes a browser or URL library treat the whole host as an IPv4
    # address (`0x7f.1`, `1.2.3.4`), so such a name could reach an internal address.
    last = labels[-1]
    return not (last.isdigit() or _HEX_NUMBER.fullmatch(last))


def check_host_pattern(pattern: str) -> str | None:
    """An exact lower-case DNS name, or `*.suffix` (any subdomain of suffix, not suffix itself)."""
    if pattern.startswith("*."):
        if is_dns_name(pattern[2:]):
            return None
        return "a wildcard must be '*.' followed by a DNS name of at least two labels"
    if "*" in pattern:
        return "a wildcard may only be a leading '*.'"
    if pattern != pattern.lower():
        return "host names must be written in lower case"
    if not is_dns_name(pattern):
        return "not a plain DNS host name (no scheme, port, path, IP address or trailing dot)"
    return None


def host_matches(pattern: str, host: str) -> bool:
    """Whether `host` (lower case) is `pattern`, or a subdomain of a `*.suffix` pattern."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def check_endpoint_id(endpoint: str) -> str | None:
    if len(endpoint) <= 64 and _SLUG.fullmatch(endpoint):
        return None
    return "must be a lower-case slug: letters, digits and single '-' (e.g. collect)"


def check_path_prefix(prefix: str) -> str | None:
    """A path prefix: `/seg[/seg...]`, no trailing `/`, no dot segment."""
    if not prefix.startswith("/") or prefix.endswith("/"):
        return "must start with '/' and not end with '/' (e.g. /ga4)"
    segments = prefix[1:].split("/")
    if any(not _ROUTE_SEGMENT.fullmatch(s) or s in (".", "..") for s in segments):
        return "each segment must be letters, digits, '.', '_', '~' or '-' (no dot segments)"
    return None


def check_route(route: str) -> str | None:
    """A first-party prefix: `/seg[/seg...]`, no trailing `/`, not a gateway path."""
    if error := check_path_prefix(route):
        return error
    for reserved in sorted(RESERVED_ROUTES):
        if route == reserved or route.startswith(reserved + "/"):
            return f"{reserved} is served by the gateway itself"
    return None


#: headers a rule may never forward: hop-by-hop, framing, the visitor's address and
#: the site's cookies (RFC 9110 §7.6.1; the cookie has its own strips)
NEVER_FORWARDED = frozenset(
    {
        "host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
        "proxy-authorization", "proxy-authenticate", "content-length", "cookie",
        "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip",
        "true-client-ip", "via",
    }
)  # fmt: skip
#: and every header whose name starts with one of these (CDN, proxy and address headers)
NEVER_FORWARDED_PREFIXES = ("cf-", "proxy-", "x-forwarded-")


def check_forward_header(name: str) -> str | None:
    """A header a rule may add to the forwarded allow-list."""
    lname = name.lower()
    if lname in NEVER_FORWARDED or lname.startswith(NEVER_FORWARDED_PREFIXES):
        # SECURITY: framing, hop-by-hop and address headers are the gateway's to set.
        return "the gateway never forwards this header"
    return check_header_name(lname)


def check_json_path(path: str) -> str | None:
    """Dotted keys; `key[]` means every element of that array (`data[].user_data.em`).

    `key[][]` goes two array levels down; a path may start with a bare `[]`
    when the body itself is an array (`[].user_id`). A trailing `*` on the last
    key makes it a prefix (as for every strip name). The last segment cannot
    end in `[]`: name the field to remove, or the array itself to remove it whole.
    """
    body = path[:-1] if path.endswith("*") else path
    first, *rest = body.split(".")
    valid = _JSON_SEGMENT.fullmatch(first) or (rest and _JSON_ROOT.fullmatch(first))
    if not valid or not all(_JSON_SEGMENT.fullmatch(s) for s in rest):
        return "a JSON path is dotted keys, each optionally ending in [] (e.g. data[].em)"
    if body.endswith("[]"):
        return "a JSON path cannot end in []: name the field inside the array, or the array"
    return None


def check_field_name(name: str) -> str | None:
    """A query, form or cookie name; a trailing `*` makes it a prefix (`up.*`)."""
    if not name or name == "*":
        return "a name is required (a bare '*' would remove every field)"
    if any(c.isspace() or not c.isprintable() for c in name) or "*" in name[:-1]:
        return "no whitespace or control characters; '*' only at the end (a prefix)"
    return None


def check_header_name(name: str) -> str | None:
    """A request header name: an HTTP token (lower case)."""
    if _TOKEN.fullmatch(name):
        return None
    return "not an HTTP header name"


# ---------------------------------------------------------------------------
# Specs


K = TypeVar("K")
V = TypeVar("V")


def _frozen_map(m: Mapping[K, V]) -> Mapping[K, V]:
    return m if isinstance(m, MappingProxyType) else MappingProxyType(dict(m))


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSpec:
    """One vendor endpoint: how to recognise its requests and what they need.

    Exactly one of `path`, `path_prefix`, `path_regex` is set; each is
    compared with the raw request path (percent-encoding preserved), so what
    is matched is exactly what is forwarded.
    """

    id: str
    #: exact raw path, e.g. "/g/collect"
    path: str | None = None
    #: raw path prefix, e.g. "/tr/"
    path_prefix: str | None = None
    #: compiled once at load; must match the whole raw path (`fullmatch`)
    path_regex: re.Pattern[str] | None = None
    #: upper-case; HEAD is accepted wherever GET is
    methods: frozenset[str] = DEFAULT_METHODS
    kind: EndpointKind
    body: BodyKind = BodyKind.NONE
    #: purposes needed to forward untouched (the vendor's, unless the endpoint names its own)
    purposes: frozenset[str]
    #: per missing purpose, what to remove so the request may still go (STRIP); a missing
    #: purpose without an entry means DROP. Vendor-level entries are already merged in.
    when_denied: Mapping[str, StripSpec] = field(default_factory=lambda: MappingProxyType({}))
    #: removed on every forward, STRIP or FORWARD (vendor-level `always` already merged in)
    always: StripSpec = StripSpec()
    #: the loader defaults it from `kind` (`default_forward_mode`)
    forward_mode: ForwardMode
    #: the vendor no longer runs this service: matched so it is recognised, always dropped
    retired: bool = False
    #: request headers forwarded beyond the gateway's allow-list (server-to-server APIs that
    #: authenticate with Authorization / Access-Token); lower case, never hop-by-hop or
    #: address headers (check_forward_header)
    forward_headers: frozenset[str] = frozenset()
    #: `api` endpoints: the answer to a drop, the SDK's own success (None: 204)
    drop_answer: DropAnswer | None = None

    def __post_init__(self) -> None:
        if self.drop_answer is not None and self.kind is not EndpointKind.API:
            raise ValueError(f"endpoint {self.id!r}: only an api endpoint has a drop_answer")
        if sum(m is not None for m in (self.path, self.path_prefix, self.path_regex)) != 1:
            raise ValueError(f"endpoint {self.id!r}: exactly one of path, path_prefix, path_regex")
        if error := check_endpoint_id(self.id):
            raise ValueError(f"endpoint id {self.id!r}: {error}")
        if not self.methods or not self.methods <= HTTP_METHODS:
            raise ValueError(f"endpoint {self.id!r}: methods must be among {sorted(HTTP_METHODS)}")
        if not self.purposes:
            raise ValueError(f"endpoint {self.id!r}: at least one purpose (e.g. necessary)")
        object.__setattr__(self, "when_denied", _frozen_map(self.when_denied))

    def matches(self, path: str, method: str) -> bool:
        """Whether a request with this raw path and (upper-case) method is for this endpoint.

        Pure matching: the caller has already refused unsafe paths
        (`gateway.ruleset.match.is_safe_path`).
        """
        if method not in self.methods and not (method == "HEAD" and "GET" in self.methods):
            return False
        if self.path is not None:
            return path == self.path
        if self.path_prefix is not None:
            return path.startswith(self.path_prefix)
        assert self.path_regex is not None  # __post_init__: exactly one matcher is set
        return self.path_regex.fullmatch(path) is not None

    @property
    def pattern(self) -> str:
        """The matcher as written, for messages and logs."""
        if self.path is not None:
            return self.path
        if self.path_prefix is not None:
            return self.path_prefix + "*"
        assert self.path_regex is not None
        return f"~{self.path_regex.pattern}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExampleSpec:
    """One request from a rule's acceptance table, and what the gateway must do with it.

    `removed` and `kept` name fields that must not / must reach the vendor:
    query or form names, or JSON paths prefixed `json:` (e.g. `json:context.user.email`).
    """

    url: str
    method: str = "GET"
    body: bytes | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: purpose -> answer; purposes not named are unknown
    consent: Mapping[str, ConsentValue] = field(default_factory=lambda: MappingProxyType({}))
    expect: Action
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    #: line of the example in its rule file (for test ids); None when built in code
    line: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _frozen_map(self.headers))
        object.__setattr__(self, "consent", _frozen_map(self.consent))

    @property
    def host(self) -> str:
        """The URL's host, lower case."""
        return urlsplit(self.url).hostname or ""

    @property
    def path(self) -> str:
        """The URL's raw path ("/" when empty)."""
        return urlsplit(self.url).path or "/"

    @property
    def query(self) -> str:
        """The URL's raw query string, without `?`."""
        return urlsplit(self.url).query


@dataclass(frozen=True, slots=True, kw_only=True)
class VendorRule:
    """Everything the gateway knows about one vendor: one rule file, compiled."""

    #: lower-case slug, unique across the rule set
    vendor: str
    name: str
    #: the file it came from (for messages)
    file: str
    #: IAB TCF Global Vendor List id, if the vendor is registered
    tcf_vendor_id: int | None = None
    #: exact lower-case DNS names, or "*.suffix" (any subdomain of suffix, not suffix itself)
    hosts: tuple[str, ...]
    #: first-party prefix such as "/ga4"; None = reachable only through /t/{host}/
    route: str | None = None
    #: the host name a route forwards to (covered by `hosts`); set iff route is set
    route_host: str | None = None
    purposes: frozenset[str]
    #: ordered: the first endpoint that matches wins
    endpoints: tuple[EndpointSpec, ...]
    #: log what would be enforced, forward with only the `always` strips
    report_only: bool = False
    #: the vendor's own consent parameters, rewritten to agree with the resolved consent
    consent_params: ConsentParams | None = None
    examples: tuple[ExampleSpec, ...] = ()
    #: hosts among `hosts` the site's config added (`rules.vendor_hosts`), not the file
    added_hosts: tuple[str, ...] = ()
    #: exact host -> the path prefix the endpoints live under there (`www.example.com/m`)
    mounts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if error := check_vendor_id(self.vendor):
            raise ValueError(f"vendor {self.vendor!r}: {error}")
        if not self.hosts:
            raise ValueError(f"vendor {self.vendor!r}: at least one host")
        for host in self.hosts:
            if error := check_host_pattern(host):
                raise ValueError(f"vendor {self.vendor!r}: host {host!r}: {error}")
        if not self.purposes:
            raise ValueError(f"vendor {self.vendor!r}: at least one purpose (e.g. necessary)")
        if not self.endpoints:
            raise ValueError(f"vendor {self.vendor!r}: at least one endpoint")
        ids = [e.id for e in self.endpoints]
        if len(set(ids)) != len(ids):
            raise ValueError(f"vendor {self.vendor!r}: endpoint ids must be unique")
        if self.route is not None:
            if error := check_route(self.route):
                raise ValueError(f"vendor {self.vendor!r}: route {self.route!r}: {error}")
            target = self.route_host
            if target is None or not is_dns_name(target) or not self.covers_host(target):
                raise ValueError(
                    f"vendor {self.vendor!r}: route_host must be a host the rule covers"
                )
        elif self.route_host is not None:
            raise ValueError(f"vendor {self.vendor!r}: route_host without route")
        for host, prefix in self.mounts.items():
            if host not in self.hosts or check_path_prefix(prefix) is not None:
                raise ValueError(f"vendor {self.vendor!r}: mount {host}{prefix} is not valid")
        object.__setattr__(self, "mounts", _frozen_map(self.mounts))

    def covers_host(self, host: str) -> bool:
        """Whether one of this rule's host patterns matches `host` (a linear scan).

        For checks and tests; request matching goes through `RuleSet`'s index.
        """
        return any(host_matches(p, host) for p in self.hosts)

    def endpoint(self, endpoint_id: str) -> EndpointSpec | None:
        return next((e for e in self.endpoints if e.id == endpoint_id), None)
