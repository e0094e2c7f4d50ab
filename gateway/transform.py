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

The strips themselves live by what they edit: `gateway.transform_query` (pairs: the
query, path parameters, and the name sets), `gateway.transform_body` (form, batch and
JSON bodies) and `gateway.transform_headers` (headers, cookies, address, user agent,
referrer). `removed_fields` says what a transform took out, for the decision log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlencode

import orjson

from gateway import bodies
from gateway.errors import RequestError, TransformError
from gateway.identifiers import decode_name, drop_identifiers
from gateway.model import BodyKind, Decision, Facts, Outgoing
from gateway.transform_body import (
    MAX_INFLATED_BODY,
    decoded_body,
    json_paths,
    set_json_fields,
    strip_body,
)
from gateway.transform_headers import ALLOWED_HEADERS, CLIENT_HINTS, XFF, outgoing_headers
from gateway.transform_query import name_set, scrub_pairs, strip_path_params, strip_query

__all__ = ["removed_fields", "transform"]

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
        query = scrub_pairs(query, name_set(strips.url_fields))
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
        headers=tuple(outgoing_headers(facts, strips, own_cookies, forward_headers)),
        body=set_json_fields(strip_body(facts, strips, body_kind), body_kind, set_json, facts),
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
        if lname == "user-agent" or lname.startswith(CLIENT_HINTS):
            names.add("user_agent:drop")
        elif lname == "referer":
            names.add("referrer:drop")
        elif lname in ALLOWED_HEADERS:
            names.add(f"header:{lname}")
    if "referer" in sent and sent["referer"] != facts.headers.get("referer"):
        names.add("referrer:origin")
    if facts.client_ip and sent.get(XFF.lower()) != facts.client_ip:
        names.add("ip:truncate" if sent.get(XFF.lower()) else "ip:drop")
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
        before, codings = decoded_body(facts)
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
