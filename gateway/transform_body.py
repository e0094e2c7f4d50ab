"""The strips on request bodies: form and GA4 batch pairs, JSON paths, and JSON inside
a form's `data` field, applied to the body as decoded and sent back in its codings.

`strip_body` reads the body only when the strips that apply to its kind are non-empty,
and returns the bytes as sent when nothing was removed. Strips apply to the decoded body
(`Facts.decoded_body`, or the body with its Content-Encoding undone here, at most
`MAX_INFLATED_BODY`); an edited body leaves in the codings it arrived in. A body the
strips apply to but that cannot be read safely raises `TransformError` (a short message,
never a value): the pipeline then drops the request (fail closed) rather than forwarding
an identifier it could not remove.

JSON paths (`strip_json`, `json_paths`) are dotted keys, `key[]` for every element of an
array, a bare `[]` for the document itself, a key ending in `*` for a prefix.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final
from urllib.parse import quote, unquote_plus

import orjson

from gateway import bodies
from gateway.errors import RequestError, TransformError
from gateway.identifiers import decode_name, drop_json_identifiers
from gateway.model import BodyKind, Facts, StripSpec
from gateway.transform_query import NO_NAMES, NO_SCRUB, NameSet, edit_pairs, name_set

__all__ = [
    "MAX_INFLATED_BODY",
    "decoded_body",
    "json_paths",
    "set_json_fields",
    "strip_body",
    "strip_json",
]

# --- form and GA4 batch bodies -----------------------------------------------------------


def _strip_form(
    body: bytes, names: NameSet, urls: NameSet = NO_NAMES, keep: frozenset[str] | None = None
) -> bytes:
    # surrogateescape round-trips any bytes exactly, so undecodable bytes in values survive
    text = body.decode("utf-8", "surrogateescape")
    out = edit_pairs(text, names, urls, keep)
    return body if out is text else out.encode("utf-8", "surrogateescape")


def _strip_ga4_batch(
    body: bytes, names: NameSet, urls: NameSet = NO_NAMES, keep: frozenset[str] | None = None
) -> bytes:
    text = body.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    changed = False
    for i, line in enumerate(lines):
        # keep `\r\n` line ends even when a line's last pair is removed
        cr = "\r" if line.endswith("\r") else ""
        hit = line[:-1] if cr else line
        out = edit_pairs(hit, names, urls, keep)
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


def decoded_body(facts: Facts) -> tuple[bytes, tuple[str, ...]]:
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
    """`body` with `codings` undone; TransformError when it cannot be (see `decoded_body`)."""
    try:
        return bodies.decode(body, codings, MAX_INFLATED_BODY)
    except RequestError as e:
        # SECURITY: a body we cannot decode cannot be searched; forwarding it would forward
        # whatever identifiers it holds.
        raise TransformError(e.message) from None


def _keep(strips: StripSpec) -> frozenset[str] | None:
    """What the identifier scrub leaves alone, or None when the scrub is off."""
    return strips.keep if strips.identifiers else NO_SCRUB


def strip_body(facts: Facts, strips: StripSpec, body_kind: BodyKind) -> bytes:
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
            plain, codings = decoded_body(facts)
            names, urls = name_set(strips.query), name_set(strips.url_fields)
            keep = _keep(strips)
            if body_kind is BodyKind.FORM:
                out = _strip_form(plain, names, urls, keep)
            else:
                out = _strip_ga4_batch(plain, names, urls, keep)
        case BodyKind.JSON | BodyKind.TEXT:
            if not (strips.json or strips.identifiers):
                return body
            plain, codings = decoded_body(facts)
            out = _strip_json_body(plain, strips.json, _keep(strips))
        case BodyKind.FORM_JSON:
            if not (strips.query or strips.json or strips.url_fields or strips.identifiers):
                return body
            plain, codings = decoded_body(facts)
            text = plain.decode("utf-8", "surrogateescape")
            # the `data` field first: the pair pass must not drop it as JSON it cannot read
            edited = text
            if strips.json or strips.identifiers:
                edited = _strip_data_field(edited, strips.json, _keep(strips))
            edited = edit_pairs(
                edited, name_set(strips.query), name_set(strips.url_fields), _keep(strips)
            )
            out = plain if edited is text else edited.encode("utf-8", "surrogateescape")
    if out is plain:
        return body  # unchanged: the bytes as sent, in the encoding the header names
    # Content-Encoding is forwarded as received, so the body must stay in that encoding.
    return bodies.encode(out, codings) if codings else out


def set_json_fields(
    body: bytes, body_kind: BodyKind, fields: Mapping[str, object] | None, facts: Facts
) -> bytes:
    """`body` (a JSON object, in the request's content codings) with top-level `fields`
    set, in the same codings; other bodies unchanged."""
    if not fields or not body or body_kind not in (BodyKind.JSON, BodyKind.TEXT):
        return body
    codings = bodies.encodings(facts.headers.items_all())
    if body is facts.body:
        plain = decoded_body(facts)[0]
    elif codings:
        # `strip_body` re-encoded what it stripped: undo that to edit, within the same bound
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


# --- the paths a document has, as `StripSpec.json` names them ----------------------------


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
