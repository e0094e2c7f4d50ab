"""A first draft of a vendor rule, from what was seen of the vendor's requests.

`consent-gateway new-rule --from URL…` drafts from captured request URLs; the admin's
Unknown destinations page drafts from what the decision log kept of a host no rule lists
(methods and path templates, never a value). Both make `Sighting`s and call `draft_rule`,
which returns the rule as YAML text for an author to review, loadable as it is
(`parse_rule` finds no problem in it):

- `hosts`: every host seen, exact;
- `endpoints`: one per path shape, where a segment that looks like a value (an id, a
  hash, a long number: `gateway.redact.looks_like_value`, what the logs template) is
  generalised into a `path_regex`, else an exact `path`; its `kind` guessed from the path
  (`.js`: script; a gif or a pixel path: pixel; collect/beacon: beacon; else api);
- every parameter (query and `;` path parameters) classified by `classify_param` with the
  detectors the strip engine uses: an identifier (`gateway.identifiers`: its registry by
  name, e-mail addresses and hashed contact data by value), a consent signal (the
  parameters the gateway reads consent from, `consent.signals.SIGNAL_PARAMS`, and Consent
  Mode's, `consent.gcm.HIT_PARAMS`), or ordinary; the identifiers proposed, commented
  out, as a `when_denied` strip;
- `examples`: for each endpoint a forward and a drop, and one reject, built from the
  first sighting of the endpoint with every identifier's value replaced by `PLACEHOLDER`
  (URL values scrubbed by `identifiers.scrub_url`, value-like path segments replaced,
  consent signals left out: their values are the visitor's consent strings).

Captured values are visitor data: no value of an identifier, no consent string and no
value-like path segment reaches the draft, and nothing here logs. Pure.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote, unquote_plus, urlsplit

import orjson

from gateway.consent.gcm import HIT_PARAMS
from gateway.consent.signals import SIGNAL_PARAMS
from gateway.identifiers import (
    IdKind,
    decode_name,
    drop_json_identifiers,
    is_hashed_identifier,
    is_identifier_name,
    is_identifier_value,
    looks_like_url,
    name_kind,
    scrub_url,
)
from gateway.model import NECESSARY
from gateway.redact import VALUE_MARK, clean, looks_like_value
from gateway.ruleset.load import registrable_domain
from gateway.ruleset.match import is_safe_path
from gateway.ruleset.schema import HTTP_METHODS, check_field_name, check_vendor_id, is_dns_name

__all__ = [
    "CONSENT_SIGNALS",
    "PLACEHOLDER",
    "SCHEMA_HEADER",
    "Param",
    "ParamClass",
    "Sighting",
    "classify_param",
    "draft_rule",
    "sighting_from_template",
    "sighting_from_url",
]

#: the first line of a rule file in rules/: editors (yaml-language-server) complete and
#: validate it against the schema generated from the loader's declarations
SCHEMA_HEADER: Final = "# yaml-language-server: $schema=../schemas/rule.schema.json"

#: what a draft's examples carry in place of an identifier's value
PLACEHOLDER = "REPLACED"
#: parameter names that carry consent: what the gateway reads signals from, and Consent
#: Mode's hit parameters
CONSENT_SIGNALS = SIGNAL_PARAMS | HIT_PARAMS
#: the purposes a draft proposes, in the order it prefers them
_ADVERTISING, _ANALYTICS = "advertising", "analytics"

_PIXEL_WORDS = frozenset({"pixel", "px", "tr", "p", "i", "pixels", "img"})
_BEACON_WORDS = frozenset({"collect", "beacon", "track"})
_IMAGE_SUFFIXES = (".gif", ".png", ".jpg", ".jpeg", ".webp")
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")
#: a path regex's stand-in for one value-like segment
_VALUE_RE = "[^/]+"
_PLAIN_URL = re.compile(r"https://[A-Za-z0-9._~:/?&=%+;,@!$()*\[\]-]+")


class ParamClass(enum.StrEnum):
    """What a request parameter is, as the gateway's own detectors see it."""

    #: a click id, browser id or person's data: removed on a STRIP (`gateway.identifiers`)
    IDENTIFIER = "identifier"
    #: a consent signal the gateway reads (or Consent Mode's own parameters)
    CONSENT_SIGNAL = "consent signal"
    ORDINARY = "ordinary"


def classify_param(name: str, value: str | None) -> ParamClass:
    """A parameter by its (decoded) name and value (None: the value was not kept, as for
    the decision log's templates): a consent signal by name; an identifier by name
    (`gateway.identifiers.REGISTRY`, as at the top of a tag hit) or by value (an e-mail
    address, Google's hashed marker, a hash in a contact field, JSON holding any of
    those); else ordinary."""
    if name.lower() in CONSENT_SIGNALS:
        return ParamClass.CONSENT_SIGNAL
    if is_identifier_name(name):
        return ParamClass.IDENTIFIER
    if value is not None and _identifier_value(name, value):
        return ParamClass.IDENTIFIER
    return ParamClass.ORDINARY


def _identifier_value(name: str, value: str) -> bool:
    if is_identifier_value(value) or is_hashed_identifier(name, value):
        return True
    if value[:1] in ("{", "["):
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            return False
        return drop_json_identifiers(doc)
    return False


@dataclass(frozen=True, slots=True)
class Param:
    """One query or `;` path parameter: its name decoded, and as it was written."""

    name: str
    #: decoded; None when it was not kept (a template)
    value: str | None
    #: the `name=value` pair as written (percent-encoding kept)
    raw: str
    #: `query` or `path` (a `;name=value` parameter of a path segment)
    where: str = "query"

    @property
    def kind(self) -> ParamClass:
        return classify_param(self.name, self.value)

    @property
    def is_url(self) -> bool:
        return self.value is not None and looks_like_url(self.value)


@dataclass(frozen=True, slots=True)
class Sighting:
    """One request to the vendor, as far as it was seen.

    `segments` is the raw path split on `/` (the first, empty one left out); each is a
    literal, or None for a value (a value-like segment of a captured URL, `{…}` in a
    decision log template). A segment's `;name=value` parameters are in `params` with
    `where="path"` and the index of their segment in `param_segments`.
    """

    host: str
    segments: tuple[str | None, ...]
    method: str | None = None
    params: tuple[Param, ...] = ()
    #: for each `path` parameter in `params`, in order, the index of its segment
    param_segments: tuple[int, ...] = ()


def sighting_from_url(url: str) -> Sighting:
    """A captured request URL as a `Sighting`. Raises `ValueError` for a URL that is not
    http(s) to a plain DNS host name; the message never quotes the URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("not a URL") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or parts.username is not None or port is not None:
        raise ValueError("not an http(s) URL without userinfo or port")
    if not is_dns_name(host):
        raise ValueError("the host is not a plain DNS name (no IP address)")
    if not is_safe_path(parts.path or "/"):
        raise ValueError("a path the gateway never matches (dot segments, backslashes...)")
    segments: list[str | None] = []
    params: list[Param] = []
    where: list[int] = []
    for i, segment in enumerate((parts.path or "/").split("/")[1:]):
        head, sep, rest = segment.partition(";")
        segments.append(None if looks_like_value(head) else head)
        if sep:
            for pair in rest.split(";"):
                params.append(_param(pair, "path"))
                where.append(i)
    if parts.query:
        params += [_param(pair, "query") for pair in parts.query.split("&") if pair]
    return Sighting(host, tuple(segments), None, tuple(params), tuple(where))


def _param(pair: str, where: str) -> Param:
    name, _, value = pair.partition("=")
    return Param(decode_name(name), unquote_plus(value), pair, where)


def sighting_from_template(host: str, method: str, path: str) -> Sighting | None:
    """What the decision log kept of a request (`gateway.redact.sanitize_path`: `{…}` for
    each value, `;name={…}` parameters) as a `Sighting`; None for a template that cannot
    be drafted from."""
    if not is_safe_path(path.replace(VALUE_MARK, PLACEHOLDER)):
        return None  # cut short (`…`), or no path the gateway could match
    segments: list[str | None] = []
    params: list[Param] = []
    where: list[int] = []
    for i, segment in enumerate(path.split("/")[1:]):
        head, sep, rest = segment.partition(";")
        segments.append(None if head == VALUE_MARK else head)
        if sep:
            for pair in rest.split(";"):
                name, eq, _ = pair.partition("=")
                if name != VALUE_MARK:
                    raw = f"{name}={PLACEHOLDER}" if eq else name
                    params.append(Param(name, None, raw, "path"))
                    where.append(i)
    # a CORS preflight is the browser's question, not the vendor's request
    known = method if method in HTTP_METHODS and method != "OPTIONS" else None
    return Sighting(host, tuple(segments), known, tuple(params), tuple(where))


# ---------------------------------------------------------------------------
# Endpoints


@dataclass
class _Endpoint:
    shape: tuple[str | None, ...]
    sightings: list[Sighting] = field(default_factory=list)
    id: str = ""

    @property
    def has_params(self) -> bool:
        return any(p.where == "path" for s in self.sightings for p in s.params)

    @property
    def literal(self) -> bool:
        return None not in self.shape and not self.has_params

    @property
    def path(self) -> str:
        return "/" + "/".join(s or "" for s in self.shape)

    @property
    def regex(self) -> str:
        parts: list[str] = []
        params_at = {i for s in self.sightings for i in s.param_segments}
        for i, segment in enumerate(self.shape):
            part = _VALUE_RE if segment is None else re.escape(segment)
            if i in params_at:
                part += "(?:;[^/]*)?"
            parts.append(part)
        return "/" + "/".join(parts)

    def matches(self, path: str) -> bool:
        if self.literal:
            return path == self.path
        return re.fullmatch(self.regex, path) is not None

    @property
    def methods(self) -> list[str]:
        seen = {"GET" if s.method == "HEAD" else s.method for s in self.sightings}
        return sorted(m for m in seen if m is not None)

    @property
    def kind(self) -> str:
        words = [s.lower() for s in self.shape if s]
        last = words[-1] if words else ""
        if last.endswith(".js") or last == "js":
            return "script"
        if last.endswith(_IMAGE_SUFFIXES) or any(w in _PIXEL_WORDS or "pixel" in w for w in words):
            return "pixel"
        if any(w.split(".")[0] in _BEACON_WORDS for w in words):
            return "beacon"
        return "api"


def _endpoint_id(shape: Sequence[str | None], taken: set[str]) -> str:
    words = [s for s in shape if s]
    base = ""
    for word in reversed(words):
        base = _SLUG_JUNK.sub("-", word.lower().rsplit(".", 1)[0]).strip("-")[:48]
        if base:
            break
    base = base or "root"
    found, n = base, 2
    while found in taken:
        found, n = f"{base}-{n}", n + 1
    taken.add(found)
    return found


def _group(sightings: Iterable[Sighting]) -> list[_Endpoint]:
    by_shape: dict[tuple[str | None, ...], _Endpoint] = {}
    for s in sightings:
        by_shape.setdefault(s.segments, _Endpoint(s.segments)).sightings.append(s)
    # Exact paths first: a regex listed earlier would take their requests (first match wins).
    endpoints = sorted(by_shape.values(), key=lambda e: (not e.literal, e.path))
    taken: set[str] = set()
    for e in endpoints:
        e.id = _endpoint_id(e.shape, taken)
    return endpoints


# ---------------------------------------------------------------------------
# The draft


def draft_rule(
    sightings: Sequence[Sighting],
    vendor: str | None = None,
    purposes: Iterable[str] = (NECESSARY, _ANALYTICS, _ADVERTISING),
    source: str = "captured request(s)",
) -> str:
    """The YAML text of a rule drafted from `sightings` (at least one), for vendor id
    `vendor` (default: from the first host's registered domain). `purposes` are the
    configured ones: the draft proposes advertising when a pixel or a click id / user data
    was seen, else analytics (whichever is configured). Raises `ValueError` without
    sightings or for a `vendor` that is not a slug."""
    if not sightings:
        raise ValueError("nothing to draft from")
    vendor = vendor or _vendor_slug(sightings[0].host)
    if error := check_vendor_id(vendor):
        raise ValueError(f"vendor id: {error}")
    endpoints = _group(sightings)
    params = [p for s in sightings for p in s.params]
    purpose = _purpose(endpoints, params, set(purposes))
    hosts = sorted({s.host for s in sightings})
    lines = [
        SCHEMA_HEADER,
        f"# A draft from {len(sightings)} {source} (`consent-gateway new-rule`). Review",
        "# every line marked `review`, then: consent-gateway check --strict <this file>",
        f"vendor: {vendor}",
        f"name: {_name(vendor)}  # review",
        "# tcf_vendor_id: 0  # the vendor's IAB TCF Global Vendor List id, if it has one",
        f"hosts: [{', '.join(hosts)}]",
        f"purposes: [{purpose}]  # review: what the vendor does with a hit",
        "",
        "always:  # every forwarded hit, whatever the consent",
        "  cookies: all  # the site's own cookies never leave",
        "  ip: truncate",
        "  referrer: origin",
        *_proposed_strips(purpose, params),
        "",
        "endpoints:",
    ]
    for e in endpoints:
        lines += _endpoint_lines(e)
    lines += ["", "examples:"]
    lines += _example_lines(endpoints, purpose, hosts)
    return "\n".join(lines) + "\n"


def _vendor_slug(host: str) -> str:
    domain = registrable_domain(host) or host
    slug = _SLUG_JUNK.sub("-", domain.split(".")[0]).strip("-")[:64]
    return slug if slug and not check_vendor_id(slug) else "vendor"


def _name(vendor: str) -> str:
    return " ".join(w.capitalize() for w in vendor.split("-"))


def _purpose(endpoints: Sequence[_Endpoint], params: Sequence[Param], known: set[str]) -> str:
    ads = any(e.kind == "pixel" for e in endpoints) or any(
        name_kind(p.name) is IdKind.CLICK_ID for p in params
    )
    preferred = [_ADVERTISING, _ANALYTICS] if ads else [_ANALYTICS, _ADVERTISING]
    for p in (*preferred, *sorted(known - {NECESSARY})):
        if p in known:
            return p
    return NECESSARY


def _shown(name: str) -> str:
    """A parameter's name as a draft shows it: printable, and never a value."""
    return VALUE_MARK if looks_like_value(name) else clean(name, 64)


def _names(params: Iterable[Param], kind: ParamClass, where: str | None = None) -> list[str]:
    found = {
        _shown(p.name)
        for p in params
        if p.kind is kind and (where is None or p.where == where) and p.name
    }
    return sorted(found - {VALUE_MARK})


def _flow(names: Sequence[str]) -> str:
    return "[" + ", ".join(_flow_str(n) for n in names) + "]"


def _proposed_strips(purpose: str, params: Sequence[Param]) -> list[str]:
    """The identifiers seen, as a commented-out `when_denied` strip for review."""
    query = _names(params, ParamClass.IDENTIFIER, "query")
    path = _names(params, ParamClass.IDENTIFIER, "path")
    urls = sorted({_shown(p.name) for p in params if p.is_url and p.where == "query"})
    if not (query or path or urls):
        return []
    out = [
        "# Identifiers seen (the strip engine's own detectors). To forward a hit without them",
        f"# when {purpose} is denied (STRIP) instead of dropping it, uncomment and review; one",
        "# no forwarded hit should ever carry goes under `always` instead.",
        "# when_denied:",
        f"#   {purpose}:",
    ]
    if query:
        out.append(f"#     query: {_flow(query)}")
    if path:
        out.append(f"#     path_params: {_flow(path)}")
    if urls:
        out.append(f"#     url_fields: {_flow(urls)}  # URLs: the identifiers inside removed")
    return out


def _endpoint_lines(e: _Endpoint) -> list[str]:
    regex = e.regex.replace("'", "''")
    match = f"path: {_flow_str(e.path)}" if e.literal else f"path_regex: '{regex}'"
    if e.methods:
        match += f", methods: [{', '.join(e.methods)}]"
    lines = [
        f"  - id: {e.id}",
        f"    match: {{{match}}}",
        f"    kind: {e.kind}  # review: pixel, beacon, script or api",
    ]
    if e.kind == "api":
        lines.append(
            "    # drop_answer: {status: 200, source: ...}  # review: what its SDK takes as success"
        )
    params = [p for s in e.sightings for p in s.params]
    for kind in ParamClass:
        names = _names(params, kind)
        if names:
            lines.append(f"    # {kind}: {', '.join(names)}")
    return lines


def _example_lines(endpoints: Sequence[_Endpoint], purpose: str, hosts: Sequence[str]) -> list[str]:
    lines = [
        f"  # From the first request of each endpoint: identifier values are {PLACEHOLDER},",
        "  # consent signals left out. Add a strip example if you uncomment when_denied.",
    ]
    for e in endpoints:
        s = e.sightings[0]
        url = _example_url(s)
        method = s.method if s.method in e.methods else None
        if method is None and e.methods and "GET" not in e.methods:
            method = e.methods[0]
        kept = [
            n
            for n in _names([p for p in s.params if p.where == "query"], ParamClass.ORDINARY)
            if check_field_name(n) is None and not n.startswith("json:")
        ]
        for state, expect in (("granted", "forward"), ("denied", "drop")):
            lines.append(f"  - url: {_yaml_str(url)}")
            if method and method != "GET":
                lines.append(f"    method: {method}")
            lines.append(f"    consent: {{{purpose}: {state}}}")
            lines.append(f"    expect: {expect}")
            if expect == "forward" and kept:
                lines.append(f"    kept: {_flow(kept)}")
    reject = next(
        p for p in ("/", "/not-an-endpoint", "/x/not-an-endpoint") if not _taken(endpoints, p)
    )
    lines += [
        f"  - url: {_yaml_str(f'https://{hosts[0]}{reject}')}",
        f"    consent: {{{purpose}: granted}}",
        "    expect: reject  # a path on the host no endpoint lists",
    ]
    return lines


def _taken(endpoints: Sequence[_Endpoint], path: str) -> bool:
    return any(e.matches(path) for e in endpoints)


def _example_url(s: Sighting) -> str:
    """`s` as an example's URL: value-like segments and identifiers' values as
    `PLACEHOLDER`, URL values scrubbed, consent signals and value-like names left out."""
    segments = [PLACEHOLDER if seg is None else seg for seg in s.segments]
    query: list[str] = []
    path_params = iter(s.param_segments)
    for p in s.params:
        at = next(path_params) if p.where == "path" else None
        pair = _example_pair(p)
        if pair is None:
            continue
        if at is not None:
            segments[at] += ";" + pair
        else:
            query.append(pair)
    url = f"https://{s.host}/" + "/".join(segments)
    return url + ("?" + "&".join(query) if query else "")


def _example_pair(p: Param) -> str | None:
    if p.kind is ParamClass.CONSENT_SIGNAL or looks_like_value(p.name) or not p.name:
        return None
    name = p.raw.partition("=")[0]
    if p.kind is ParamClass.IDENTIFIER:
        return f"{name}={PLACEHOLDER}"
    if p.value is not None and looks_like_url(p.value):
        return f"{name}={quote(scrub_url(p.value), safe='')}"
    return p.raw


#: plain scalars YAML 1.1 would read as something other than a string
_NOT_STRINGS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})
_PLAIN_WORD = re.compile(r"[A-Za-z_/][A-Za-z0-9_./~$-]*")


def _yaml_str(text: str) -> str:
    """`text` (a URL) as a block YAML scalar: plain when it reads back the same, else
    double-quoted (JSON's escapes are YAML's)."""
    if _PLAIN_URL.fullmatch(text):
        return text
    return orjson.dumps(text).decode()


def _flow_str(text: str) -> str:
    """`text` (a name or path) as a scalar inside a flow collection (`[a, b]`, `{k: v}`)."""
    if _PLAIN_WORD.fullmatch(text) and text.lower() not in _NOT_STRINGS:
        return text
    return orjson.dumps(text).decode()
