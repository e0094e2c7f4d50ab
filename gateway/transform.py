"""Apply a decision's strips to a request: the `transform` stage (DESIGN §1).

`transform(facts, decision, body_kind)` builds the `Outgoing` request that
leaves for the vendor. It is pure (no aiohttp, no I/O) and only ever removes:

- query pairs and form-body pairs whose decoded name is in `strips.query`
  (the rest are kept byte-for-byte, in order: the vendor gets exactly what the
  tag sent minus the stripped fields);
- JSON paths in `strips.json` from JSON / text bodies;
- cookies, and headers: the outgoing headers are an allow-list, never a copy;
- the visitor's address, user agent and referrer, per the spec's policies.

Name sets follow `StripSpec`: exact and case-sensitive, and a name ending in
`*` is a prefix (`up.*`). A body the strips apply to but that cannot be read
safely raises `TransformError`; the pipeline then drops the request (fail
closed) rather than forwarding an identifier it could not remove.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton
from typing import Final
from urllib.parse import quote, unquote_plus, urlencode, urlsplit

import orjson

from gateway import bodies
from gateway.errors import RequestError, TransformError
from gateway.identifiers import (
    decode_name,
    drop_identifiers,
    drop_json_identifiers,
    scrub_url,
    scrubbed_pair,
)
from gateway.model import (
    BodyKind,
    Decision,
    Facts,
    IpPolicy,
    Outgoing,
    ReferrerPolicy,
    StripSpec,
    UserAgentPolicy,
)

__all__ = [
    "json_paths",
    "removed_fields",
    "MAX_INFLATED_BODY",
    "scrub_url",
    "strip_json",
    "strip_path_params",
    "strip_query",
    "transform",
    "truncate_ip",
]

#: request headers that may reach a vendor (lower case); everything else stays behind
_ALLOWED_HEADERS: Final = frozenset(
    {
        "accept",
        "accept-language",
        "content-type",
        # The body is forwarded as received, or rewritten and encoded again in the
        # same codings (gateway.bodies): the header stays true either way.
        "content-encoding",
        "user-agent",
        "referer",
        "origin",
        "cookie",
        "dnt",
        "sec-gpc",
    }
)
#: allowed by prefix: User-Agent client hints (`sec-ch-ua`, `sec-ch-ua-platform`, ...)
_CLIENT_HINTS: Final = "sec-ch-ua"
#: a header value that could split or smuggle a header in the outgoing request
_UNSAFE_VALUE: Final = re.compile(r"[\r\n\x00]")
_XFF: Final = "X-Forwarded-For"

#: bytes kept by truncation: IPv4 /24, IPv6 /48 (what Google Analytics' own IP anonymisation keeps)
_V4_KEEP_BYTES: Final = 3
_V6_KEEP_BYTES: Final = 6
_V4_MAPPED: Final = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96
_SIX_TO_FOUR: Final = b"\x20\x02"  # 2002::/16


@dataclass(frozen=True, slots=True)
class _NameSet:
    """A `StripSpec` name set split once into exact names and `*` prefixes."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    def __contains__(self, name: str) -> bool:
        return name in self.exact or name.startswith(self.prefixes)


@lru_cache(maxsize=1024)
def _names(names: frozenset[str]) -> _NameSet:
    """The compiled form of a name set; rules reuse the same frozensets, so this is cached."""
    prefixes = tuple(sorted(n[:-1] for n in names if n.endswith("*")))
    return _NameSet(frozenset(n for n in names if not n.endswith("*")), prefixes)


# --- query strings and form bodies -------------------------------------------------------


def _strip_pairs(raw: str, names: _NameSet) -> str:
    # Hot path (every query and form body): one loop, no call per pair unless it is encoded.
    exact, prefixes = names.exact, names.prefixes
    kept: list[str] = []
    removed = False
    for pair in raw.split("&"):
        if pair:
            name = pair.partition("=")[0]
            if "%" in name or "+" in name:
                name = decode_name(name)
            if name in exact or name.startswith(prefixes):
                removed = True
                continue
            kept.append(pair)
    # nothing removed: `raw` itself, not even an empty piece normalised away
    return "&".join(kept) if removed else raw


def strip_query(raw: str, names: frozenset[str]) -> str:
    """`raw` (a query string without '?', or a form body) without the named pairs.

    A pair is removed when its name, percent-decoded with '+' as a space, is in
    `names` (a name ending in `*` is a prefix); every occurrence is removed.
    Every other pair is kept exactly as received, in order, blank values and
    pairs without '=' included; empty pieces (from `&&`) may be dropped. When
    nothing is removed, `raw` itself is returned.
    """
    if not names or not raw:
        return raw
    return _strip_pairs(raw, _names(names))


#: `keep` argument meaning "no identifier scrub" (StripSpec.identifiers is off)
_NO_SCRUB: Final = None


def _edit_pairs(
    raw: str, names: _NameSet, urls: _NameSet, keep: frozenset[str] | None = _NO_SCRUB
) -> str:
    """Named pairs removed, identifiers scrubbed from URL-valued pairs, and unless `keep`
    is None every pair that is an identifier by name or shape removed (but those named
    in `keep`)."""
    out = _strip_pairs(raw, names) if names.exact or names.prefixes else raw
    out = _scrub_pairs(out, urls) if urls.exact or urls.prefixes else out
    return out if keep is None else drop_identifiers(out, keep)


_NO_NAMES: Final = _NameSet(frozenset(), ())


def _scrub_pairs(raw: str, urls: _NameSet) -> str:
    """Scrub the values of pairs named in `urls` as URLs; `raw` itself when unchanged."""
    out: list[str] = []
    changed = False
    for pair in raw.split("&"):
        name, eq, value = pair.partition("=")
        dname = decode_name(name) if "%" in name or "+" in name else name
        if eq and (dname in urls.exact or dname.startswith(urls.prefixes)):
            scrubbed = scrubbed_pair(name, value)
            if scrubbed is not None:
                pair, changed = scrubbed, True
        out.append(pair)
    return "&".join(out) if changed else raw


def strip_path_params(path: str, names: frozenset[str], urls: frozenset[str]) -> str:
    """`path` without the `;name=value` parameters named in `names`, and with the values
    of those named in `urls` scrubbed as URLs (Floodlight's `~oref`). `path` itself when
    nothing changes."""
    if ";" not in path or not (names or urls):
        return path
    first, *params = path.split(";")
    drop, scrub = _names(names), _names(urls)
    kept: list[str] = []
    changed = False
    for param in params:
        name, eq, value = param.partition("=")
        dname = decode_name(name)
        if dname in drop.exact or dname.startswith(drop.prefixes):
            changed = True
            continue
        if eq and (dname in scrub.exact or dname.startswith(scrub.prefixes)):
            scrubbed = scrubbed_pair(name, value)
            if scrubbed is not None:
                param, changed = scrubbed, True
        kept.append(param)
    return ";".join([first, *kept]) if changed else path


def _strip_form(
    body: bytes, names: _NameSet, urls: _NameSet = _NO_NAMES, keep: frozenset[str] | None = None
) -> bytes:
    # surrogateescape round-trips any bytes exactly, so undecodable bytes in values survive
    text = body.decode("utf-8", "surrogateescape")
    out = _edit_pairs(text, names, urls, keep)
    return body if out is text else out.encode("utf-8", "surrogateescape")


def _strip_ga4_batch(
    body: bytes, names: _NameSet, urls: _NameSet = _NO_NAMES, keep: frozenset[str] | None = None
) -> bytes:
    text = body.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    changed = False
    for i, line in enumerate(lines):
        # keep `\r\n` line ends even when a line's last pair is removed
        cr = "\r" if line.endswith("\r") else ""
        hit = line[:-1] if cr else line
        out = _edit_pairs(hit, names, urls, keep)
        if out is not hit:
            lines[i] = out + cr
            changed = True
    return "\n".join(lines).encode("utf-8", "surrogateescape") if changed else body


# --- JSON bodies -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Segment:
    """One dotted path segment: `key` (`*`-suffixed = prefix), then `arrays` levels of `[]`."""

    key: str
    arrays: int

    def matching_keys(self, obj: dict[str, object]) -> list[str]:
        if self.key.endswith("*"):
            prefix = self.key[:-1]
            return [k for k in obj if k.startswith(prefix)]
        return [self.key] if self.key in obj else []


@lru_cache(maxsize=1024)
def _parse_paths(paths: frozenset[str]) -> tuple[tuple[_Segment, ...], ...]:
    parsed: list[tuple[_Segment, ...]] = []
    for path in sorted(paths):
        segments: list[_Segment] = []
        for part in path.split("."):
            arrays = 0
            while part.endswith("[]"):
                part = part[:-2]
                arrays += 1
            segments.append(_Segment(part, arrays))
        parsed.append(tuple(segments))
    return tuple(parsed)


def _elements(value: object, arrays: int) -> Iterable[object]:
    """The values `arrays` levels of `[]` below `value`; wrong types yield nothing."""
    level = [value]
    for _ in range(arrays):
        level = [e for v in level if isinstance(v, list) for e in v]
    return level


def _remove(value: object, path: tuple[_Segment, ...]) -> bool:
    seg, rest = path[0], path[1:]
    if not seg.key:
        # a bare `[]` segment: `value` itself is the array (e.g. a top-level batch)
        return any([_remove(e, rest) for e in _elements(value, seg.arrays)]) if rest else False
    if not isinstance(value, dict):
        return False
    keys = seg.matching_keys(value)
    if not rest:
        # The last segment names what goes; `em[]` (every element) removes the key whole.
        for k in keys:
            del value[k]
        return bool(keys)
    # a list, not a generator: every branch must be visited, not only up to the first hit
    return any([_remove(e, rest) for k in keys for e in _elements(value[k], seg.arrays)])


def strip_json(doc: object, paths: frozenset[str]) -> bool:
    """Remove every path in `paths` from the parsed JSON `doc`, in place.

    A path is dotted keys (`user_data.em`); `key[]` means every element of the
    array under `key` (`data[].user_data.em`, `a[].b[].c`), a bare `[]` the
    array `doc` itself (`[].user_id`), and a key ending in `*` every key with
    that prefix. The last segment is the key removed (`em[]` removes `em`).
    Missing keys and values of the wrong type along a path simply do not match.
    Keys containing '.' cannot be named. Returns whether anything was removed.
    """
    removed = False
    for path in _parse_paths(paths):
        removed = _remove(doc, path) or removed
    return removed


def _strip_json_body(
    body: bytes, paths: frozenset[str], keep: frozenset[str] | None = None
) -> bytes:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        # SECURITY: a body we cannot parse may carry the identifiers: fail closed.
        raise TransformError("body is not valid UTF-8 JSON") from None
    # SECURITY: re-encode even when nothing was removed. orjson keeps the last of duplicate
    # keys, so `{"user_data": {"em": 1}, "user_data": {}}` looks clean to us; a vendor
    # whose parser keeps the first would still read `em` from the original bytes.
    strip_json(doc, paths)
    if keep is not None:
        drop_json_identifiers(doc, keep)
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:
        raise TransformError("body could not be re-encoded as JSON") from None


# --- JSON inside a form field -----------------------------------------------------------

_DATA_FIELD: Final = "data"


def _strip_data_field(form: str, paths: frozenset[str], keep: frozenset[str] | None = None) -> str:
    """`form` with the JSON in its `data` field (plain, or standard/url-safe base64 of it)
    stripped of `paths` and put back in the same encoding. `form` itself if there is no
    `data` field. Raises TransformError for a `data` field that is neither."""
    pairs = form.split("&")
    changed = False
    for i, pair in enumerate(pairs):
        name, eq, value = pair.partition("=")
        if not eq or decode_name(name) != _DATA_FIELD:
            continue
        raw = unquote_plus(value)
        if raw.lstrip().startswith(("{", "[")):
            doc_bytes, was_b64 = raw.encode(), False
        else:
            try:
                doc_bytes = base64.b64decode(
                    raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True
                )
            except (binascii.Error, ValueError):
                raise TransformError("data field is neither JSON nor base64 JSON") from None
            was_b64 = True
        new = _strip_json_body(doc_bytes, paths, keep)
        encoded = base64.b64encode(new).decode() if was_b64 else new.decode()
        pairs[i] = f"{name}={quote(encoded, safe='')}"
        changed = True
    return "&".join(pairs) if changed else form


# --- bodies ------------------------------------------------------------------------------


#: the largest body the gateway will decompress to strip it (a bomb is refused)
MAX_INFLATED_BODY: Final = bodies.MAX_DECODED


def _decoded(facts: Facts) -> tuple[bytes, tuple[str, ...]]:
    """The body as the vendor will read it, and the content codings it arrived in.

    Uses the body `edges.read_facts` decoded; decodes it here for facts built elsewhere
    (`explain`, tests). Raises TransformError for a coding the gateway cannot read, or a
    body that is corrupt or decompresses beyond MAX_INFLATED_BODY.
    """
    codings = bodies.encodings(facts.headers.items_all())
    if not codings:
        return facts.body, ()
    if facts.decoded_body is not None:
        return facts.decoded_body, codings
    return _inflated(facts.body, codings), codings


def _inflated(body: bytes, codings: tuple[str, ...]) -> bytes:
    """`body` with `codings` undone; TransformError when it cannot be (see `_decoded`)."""
    try:
        return bodies.decode(body, codings, MAX_INFLATED_BODY)
    except RequestError as e:
        # SECURITY: a body we cannot decode cannot be searched; forwarding it would forward
        # whatever identifiers it holds.
        raise TransformError(e.message) from None


def _keep(strips: StripSpec) -> frozenset[str] | None:
    """What the identifier scrub leaves alone, or None when the scrub is off."""
    return strips.keep if strips.identifiers else _NO_SCRUB


def _body(facts: Facts, strips: StripSpec, body_kind: BodyKind) -> bytes:
    body = facts.body
    if not body:
        return body
    match body_kind:
        case BodyKind.NONE:
            if strips.touches_body:
                # SECURITY: an unread body could carry the very identifiers being stripped.
                raise TransformError("body of an endpoint declared without a body")
            return body
        case BodyKind.FORM | BodyKind.GA4_BATCH:
            if not (strips.query or strips.url_fields or strips.identifiers):
                return body
            ctype = facts.headers.get("content-type", "").lower()
            if ctype.lstrip().startswith("multipart/"):
                # SECURITY: multipart parts are not `name=value` pairs; stripping would miss them.
                raise TransformError("cannot strip a multipart body")
            plain, codings = _decoded(facts)
            names, urls = _names(strips.query), _names(strips.url_fields)
            keep = _keep(strips)
            if body_kind is BodyKind.FORM:
                out = _strip_form(plain, names, urls, keep)
            else:
                out = _strip_ga4_batch(plain, names, urls, keep)
        case BodyKind.JSON | BodyKind.TEXT:
            if not (strips.json or strips.identifiers):
                return body
            plain, codings = _decoded(facts)
            out = _strip_json_body(plain, strips.json, _keep(strips))
        case BodyKind.FORM_JSON:
            if not (strips.query or strips.json or strips.url_fields or strips.identifiers):
                return body
            plain, codings = _decoded(facts)
            text = plain.decode("utf-8", "surrogateescape")
            # the `data` field first: the pair pass must not drop it as JSON it cannot read
            edited = text
            if strips.json or strips.identifiers:
                edited = _strip_data_field(edited, strips.json, _keep(strips))
            edited = _edit_pairs(
                edited, _names(strips.query), _names(strips.url_fields), _keep(strips)
            )
            out = plain if edited is text else edited.encode("utf-8", "surrogateescape")
    if out is plain:
        return body  # unchanged: the bytes as sent, in the encoding the header names
    # Content-Encoding is forwarded as received, so the body must stay in that encoding.
    return bodies.encode(out, codings) if codings else out


def _set_json(
    body: bytes, body_kind: BodyKind, fields: Mapping[str, object] | None, facts: Facts
) -> bytes:
    """`body` (a JSON object, in the request's content codings) with top-level `fields`
    set, in the same codings; other bodies unchanged."""
    if not fields or not body or body_kind not in (BodyKind.JSON, BodyKind.TEXT):
        return body
    codings = bodies.encodings(facts.headers.items_all())
    if body is facts.body:
        plain = _decoded(facts)[0]
    elif codings:
        # `_body` re-encoded what it stripped: undo that to edit, within the same bound
        plain = _inflated(body, codings)
    else:
        plain = body
    try:
        doc = orjson.loads(plain)
    except orjson.JSONDecodeError:
        raise TransformError("body is not valid UTF-8 JSON") from None
    if not isinstance(doc, dict):
        # SECURITY: a consent flag we cannot set is a claim we cannot correct: fail closed.
        raise TransformError("consent fields need a JSON object body")
    doc.update(fields)
    return bodies.encode(orjson.dumps(doc), codings) if codings else orjson.dumps(doc)


# --- headers -----------------------------------------------------------------------------


def _strip_cookies(values: list[str], strips: StripSpec, own: frozenset[str]) -> str | None:
    """One Cookie header value without the named cookies; None when none remain."""
    names = _names(strips.cookies)
    own_names = _names(own)
    kept: list[str] = []
    removed = False
    for value in values:
        for piece in value.split(";"):
            crumb = piece.strip()
            if not crumb:
                continue
            name = crumb.partition("=")[0].strip()
            if name in names or name in own_names:
                removed = True
            else:
                kept.append(crumb)
    if not kept:
        return None
    if not removed and len(values) == 1:
        return values[0]
    # RFC 6265 §5.4: one Cookie header, crumbs joined with "; " (also how HTTP/2 crumbs merge)
    return "; ".join(kept)


def _referrer_origin(referer: str) -> str | None:
    """`scheme://host[:port]/` of an http(s) URL, or None when it has none."""
    try:
        parts = urlsplit(referer.strip())
        host, port = parts.hostname, parts.port  # `.port` raises on a malformed port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        return None
    # SECURITY: rebuilt from hostname and port, so userinfo (`user:pass@`) cannot survive.
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}/" if port is None else f"{scheme}://{host}:{port}/"


def _referrer(value: str, policy: ReferrerPolicy) -> str | None:
    match policy:
        case ReferrerPolicy.KEEP:
            return value
        case ReferrerPolicy.ORIGIN:
            return _referrer_origin(value)
        case ReferrerPolicy.DROP:
            return None


def truncate_ip(ip: str) -> str | None:
    """`ip` with its host part zeroed: IPv4 to /24, IPv6 to /48; None if not an address.

    An IPv4-mapped (`::ffff:a.b.c.d`) or 6to4 (`2002:aabb:ccdd::/48`) IPv6
    address is truncated as the IPv4 address it carries.
    """
    packed = _packed_ip(ip)
    if packed is None:
        return None
    keep = _V4_KEEP_BYTES if len(packed) == 4 else _V6_KEEP_BYTES
    return _format_ip(packed[:keep] + bytes(len(packed) - keep))


def _packed_ip(ip: str) -> bytes | None:
    """The address as 4 or 16 bytes, an embedded IPv4 address unwrapped; None if invalid.

    inet_pton/inet_ntop are pure conversions (no I/O), strict (no leading zeros,
    no short forms) and several times faster than `ipaddress` on this hot path.
    """
    ip = ip.strip()
    try:
        if ":" not in ip:
            return inet_pton(AF_INET, ip)
        # a zone id (`fe80::1%eth0`) only means something on the visitor's own link
        packed = inet_pton(AF_INET6, ip.partition("%")[0])
    except (OSError, ValueError):
        return None
    # SECURITY: a /48 of a 6to4 address is its whole IPv4 address (2002::/16 + 32 bits),
    # and an IPv4-mapped address is an IPv4 address: reason about the IPv4 inside.
    if packed.startswith(_V4_MAPPED):
        return packed[12:]
    if packed.startswith(_SIX_TO_FOUR):
        return packed[2:6]
    return packed


def _format_ip(packed: bytes) -> str:
    return inet_ntop(AF_INET if len(packed) == 4 else AF_INET6, packed)


def _forwarded_for(client_ip: str | None, policy: IpPolicy) -> str | None:
    if client_ip is None:
        return None
    match policy:
        case IpPolicy.KEEP:
            packed = _packed_ip(client_ip)
            return None if packed is None else _format_ip(packed)
        case IpPolicy.TRUNCATE:
            return truncate_ip(client_ip)
        case IpPolicy.DROP:
            return None


def _headers(
    facts: Facts,
    strips: StripSpec,
    own_cookies: frozenset[str],
    extra: frozenset[str] = frozenset(),
) -> list[tuple[str, str]]:
    drop_ua = strips.user_agent is UserAgentPolicy.DROP
    out: list[tuple[str, str]] = []
    cookies: list[str] = []
    cookie_name, cookie_at = "Cookie", 0
    for name, value in facts.headers.items_all():
        lname = name.lower()
        # SECURITY: an allow-list, never a copy. Authorization (a browser may attach the
        # site's own credentials to a first-party URL), the visitor's X-Forwarded-For /
        # Forwarded / X-Real-IP, CDN and geo headers, Host and hop-by-hop headers all
        # stay behind; content-length is recomputed by the client.
        if lname.startswith(_CLIENT_HINTS):
            if drop_ua:
                continue
        elif lname not in _ALLOWED_HEADERS and lname not in extra:
            continue
        # SECURITY: re-validate before reflecting a value into a sub-request.
        if _UNSAFE_VALUE.search(value):
            continue
        if lname == "cookie":
            if not cookies:
                cookie_name, cookie_at = name, len(out)
            cookies.append(value)
        elif lname == "user-agent" and drop_ua:
            continue
        elif lname == "referer":
            ref = _referrer(value, strips.referrer)
            if ref is not None:
                out.append((name, ref))
        else:
            out.append((name, value))
    if cookies and not strips.all_cookies:
        # SECURITY: own_cookies (the consent cookie) never reach a vendor.
        jar = _strip_cookies(cookies, strips, own_cookies)
        if jar is not None:
            out.insert(cookie_at, (cookie_name, jar))  # where the first one was
    # SECURITY: a fresh X-Forwarded-For from the address seen through trusted proxies only.
    xff = _forwarded_for(facts.client_ip, strips.ip)
    if xff is not None:
        out.append((_XFF, xff))
    if strips.headers:
        # last, so a rule can remove any header, including the ones built here
        drop = _names(strips.headers)
        out = [(n, v) for n, v in out if n.lower() not in drop]
    return out


# --- the stage ---------------------------------------------------------------------------


def transform(
    facts: Facts,
    decision: Decision,
    body_kind: BodyKind,
    *,
    own_cookies: frozenset[str] = frozenset(),
    set_query: Mapping[str, str] | None = None,
    set_json: Mapping[str, object] | None = None,
    forward_headers: frozenset[str] = frozenset(),
) -> Outgoing:
    """The request that leaves for the vendor, with `decision.strips` applied.

    Called for FORWARD and STRIP decisions only. `own_cookies` names cookies
    that are removed whatever the spec says (the gateway's consent cookie).
    `set_query` gives query parameters the vendor must receive with exactly
    these values (a vendor's own consent parameters): every occurrence the tag
    sent is removed and one `name=value` is appended.

    The body is read only when the strips that apply to its kind are non-empty
    (`query` for FORM and GA4_BATCH, `json` for JSON and TEXT, either for NONE);
    otherwise it passes through unchanged, as it does when nothing was removed.
    Strips and `set_json` apply to the decoded body (`Facts.decoded_body`, or the
    body with its Content-Encoding undone here); an edited body leaves in the
    codings it arrived in, so the forwarded Content-Encoding stays true of it
    (Content-Length is never copied: the client computes it).

    Raises `TransformError` (a short message, never a value) when that body
    cannot be read safely: a Content-Encoding the gateway cannot read, a
    compressed body that is corrupt or inflates past MAX_INFLATED_BODY, a
    multipart form, invalid JSON or non-UTF-8 text, or a body on an endpoint
    declared without one. The pipeline then drops the request instead of
    forwarding it.
    """
    strips = decision.strips
    query = strip_query(facts.query, strips.query)
    if strips.url_fields and query:
        query = _scrub_pairs(query, _names(strips.url_fields))
    if strips.identifiers and query:
        query = drop_identifiers(query, strips.keep)
    path = strip_path_params(facts.path, strips.path_params, strips.url_fields)
    if strips.identifiers and ";" in path:
        first, _, params = path.partition(";")
        kept = drop_identifiers(params, strips.keep, ";")
        if kept is not params:
            path = f"{first};{kept}" if kept else first
    if set_query:
        query = strip_query(query, frozenset(set_query))
        extra = urlencode(sorted(set_query.items()))
        query = f"{query}&{extra}" if query else extra
    return Outgoing(
        method=facts.method,
        host=facts.host,
        path=path,
        query=query,
        headers=tuple(_headers(facts, strips, own_cookies, forward_headers)),
        body=_set_json(_body(facts, strips, body_kind), body_kind, set_json, facts),
    )


# --- what was removed, for the decision log -----------------------------------------------

#: the most names `removed_fields` reports (a body can hold thousands of fields)
_MAX_REMOVED: Final = 64


def removed_fields(facts: Facts, out: Outgoing, body_kind: BodyKind) -> tuple[str, ...]:
    """What `transform` actually took out of this request, as `kind:name` (never values):
    `query:gclid`, `path:u1`, `form:email`, `json:user_data.em`, `url:dl` (identifiers
    removed from inside a URL value), `cookie:_ga`, `header:x-…`, and the address, user
    agent and referrer policies that changed something (`ip:truncate`, …). Sorted, at
    most `_MAX_REMOVED` names (then `…`)."""
    names: set[str] = set()
    names |= _pair_changes(facts.path.split(";")[1:], out.path.split(";")[1:], "path")
    names |= _pair_changes(facts.query.split("&"), out.query.split("&"), "query")
    if out.body != facts.body:
        names |= _body_changes(facts, out, body_kind)
    sent = {k.lower(): v for k, v in out.headers}
    before_cookies = set(facts.cookies)
    after_cookies = {c.split("=", 1)[0].strip() for c in sent.get("cookie", "").split(";")}
    names |= {f"cookie:{c}" for c in before_cookies - after_cookies}
    for name in facts.headers:
        lname = name.lower()
        if lname in sent or lname in ("cookie", "host", "content-length"):
            continue
        if lname == "user-agent" or lname.startswith(_CLIENT_HINTS):
            names.add("user_agent:drop")
        elif lname == "referer":
            names.add("referrer:drop")
        elif lname in _ALLOWED_HEADERS:
            names.add(f"header:{lname}")
    if "referer" in sent and sent["referer"] != facts.headers.get("referer"):
        names.add("referrer:origin")
    if facts.client_ip and sent.get(_XFF.lower()) != facts.client_ip:
        names.add("ip:truncate" if sent.get(_XFF.lower()) else "ip:drop")
    ordered = sorted(names)
    return tuple(ordered[:_MAX_REMOVED] + (["…"] if len(ordered) > _MAX_REMOVED else []))


def _pair_changes(before: list[str], after: list[str], where: str) -> set[str]:
    """`where:name` for each pair gone, `url:name` for each whose value was rewritten."""
    if before == after:
        return set()
    b: dict[str, str] = {}
    for pair in before:
        if pair:
            name, _, value = pair.partition("=")
            b.setdefault(decode_name(name), value)
    a: dict[str, str] = {}
    for pair in after:
        if pair:
            name, _, value = pair.partition("=")
            a.setdefault(decode_name(name), value)
    gone = {f"{where}:{n}" for n in b if n not in a}
    rewritten = {f"url:{n}" for n in b if n in a and a[n] != b[n]}
    return gone | rewritten


def _body_changes(facts: Facts, out: Outgoing, body_kind: BodyKind) -> set[str]:
    try:
        before, codings = _decoded(facts)
        after = bodies.decode(out.body, codings, MAX_INFLATED_BODY) if codings else out.body
    except (TransformError, RequestError):
        return {"body"}
    match body_kind:
        case BodyKind.FORM | BodyKind.GA4_BATCH | BodyKind.FORM_JSON:
            b = before.decode("utf-8", "surrogateescape").replace("\n", "&").split("&")
            a = after.decode("utf-8", "surrogateescape").replace("\n", "&").split("&")
            return {n.replace("query:", "form:", 1) for n in _pair_changes(b, a, "query")}
        case BodyKind.JSON | BodyKind.TEXT:
            try:
                gone = json_paths(orjson.loads(before)) - json_paths(orjson.loads(after))
            except orjson.JSONDecodeError:
                return {"body"}
            return {f"json:{p}" for p in gone} or {"body"}
        case _:
            return {"body"}


def json_paths(doc: object, prefix: str = "") -> set[str]:
    """Every key path in a JSON document, arrays as `[]` (`data[].user_data.em`), each
    array itself too (`data[]`): the names `StripSpec.json` entries are written in."""
    out: set[str] = set()
    if isinstance(doc, dict):
        for key, item in doc.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.add(path)
            out |= json_paths(item, path)
    elif isinstance(doc, list):
        for item in doc:
            out.add(prefix + "[]")
            out |= json_paths(item, prefix + "[]")
    return out
