"""The keys of a rule file, each declared once: its type, its grammar, its help.

Every mapping a rule file holds (the rule, an endpoint, its `match`, a strip block, a drop
answer, an example) is a `Block` below (`gateway.ruleset.declare`), its keys in the order
`rules/README.md` documents them. `gateway.ruleset.parse` reads a rule file through these
declarations, and `rule_schema` writes them out as `schemas/rule.schema.json` (JSON Schema
2020-12, `python -m gateway.schemas`), which an editor validates a rule file with as it is
typed: one definition, so the two cannot disagree on a key, its type or its grammar.

What the loader checks across keys, files or the config (a `when_denied` purpose that no
endpoint requires, hosts two rules share, the configured purposes, an example's URL on a
host the rule lists) stays in the parser.

Pure: no I/O.
"""

from __future__ import annotations

from gateway.grammar import VENDOR_ID, Json
from gateway.model import (
    Action,
    BodyKind,
    ConsentValue,
    EndpointKind,
    IpPolicy,
    ReferrerPolicy,
    UserAgentPolicy,
)
from gateway.ruleset.declare import (
    Anything,
    Block,
    Choice,
    Flag,
    Integer,
    Items,
    Key,
    Names,
    Needs,
    Nested,
    PurposeMap,
    Text,
    TextMap,
    When,
)
from gateway.ruleset.grammars import (
    DNS_NAME,
    ENDPOINT_ID,
    EXAMPLE_FIELD,
    EXAMPLE_URL,
    FIELD_NAME,
    FORWARD_HEADER,
    HEADER_NAME,
    HOST_PATTERN,
    JSON_PATH,
    KEEP_NAME,
    MEDIA_TYPE,
    METHOD,
    PURPOSE_NAME,
    RAW_PATH,
    REGEX,
    ROUTE,
)
from gateway.ruleset.schema import DEFAULT_METHODS, ConsentParams, ForwardMode

__all__ = [
    "API_DROP_ANSWER",
    "LIVE_WEBSOCKET",
    "DropAnswerKeys",
    "EndpointKeys",
    "ExampleKeys",
    "MatchKeys",
    "RuleKeys",
    "StripKeys",
    "rule_schema",
]

_PURPOSES = Names(PURPOSE_NAME, empty="at least one purpose is required (use [necessary] if none)")


class StripKeys(Block):
    """What to remove from a forwarded request (`always`, and each `when_denied` entry).

    Names are exact and case-sensitive; a name ending in `*` is a prefix.
    """

    ref = "strip"
    query = Key(
        Names(FIELD_NAME),
        "query-string parameters, and the same names in form and ga4-batch bodies",
    )
    json = Key(
        Names(JSON_PATH),
        "fields of json/text bodies (needs body: json, text or form-json)",
    )
    path_params = Key(Names(FIELD_NAME), "`;name=value` parameters in the path")
    url_fields = Key(
        Names(FIELD_NAME),
        "parameters whose value is a URL: identifiers are removed from inside the URL",
    )
    cookies = Key(
        Names(FIELD_NAME), "cookies removed from the Cookie header; `all` removes the header"
    )
    headers = Key(Names(HEADER_NAME), "other request headers to remove (case-insensitive)")
    ip = Key(
        Choice(IpPolicy, IpPolicy.KEEP),
        "what the vendor learns of the visitor's address: all, /24 (/48), or the gateway's",
    )
    user_agent = Key(
        Choice(UserAgentPolicy, UserAgentPolicy.KEEP),
        "drop also removes the Sec-CH-UA-* client hints",
    )
    referrer = Key(Choice(ReferrerPolicy, ReferrerPolicy.KEEP), "origin keeps scheme://host/ only")
    keep = Key(
        Names(KEEP_NAME),
        "when_denied only: fields the identifier scrub leaves alone for this purpose",
        when_denied_only=True,
    )


class MatchKeys(Block):
    """How an endpoint's requests are recognised: exactly one of path, path_prefix,
    path_regex, each compared with the raw path, and the methods."""

    ref = "match"
    one_of = ("path", "path_prefix", "path_regex")
    path = Key(Text(RAW_PATH), "the raw path equals this (/g/collect)")
    path_prefix = Key(Text(RAW_PATH), "the raw path starts with this (/i18n/pixel/)")
    path_regex = Key(Text(REGEX), "a Python regular expression matching the whole raw path")
    methods = Key(
        Names(
            METHOD,
            empty="at least one method is required",
            default_value=tuple(sorted(DEFAULT_METHODS)),
        ),
        "HTTP methods accepted; HEAD is accepted wherever GET is",
    )


class DropAnswerKeys(Block):
    """How a DROP of an `api` endpoint is answered: its SDK's final success, so the SDK
    does not send the call again once consent arrives."""

    ref = "drop_answer"
    exclusive = ("json", "text")
    rules = (Needs("content_type", "text"),)
    status = Key(Integer(200, 299), "the status, 200-299 (a 204 or 205 has no body)", required=True)
    json = Key(Anything(), "the body, any JSON value, sent as application/json")
    text = Key(Text(), "the body, sent as content_type")
    content_type = Key(Text(MEDIA_TYPE), "for a text body (default text/plain)")
    source = Key(
        Text(), "where the shape comes from: the SDK's file, the vendor's page", required=True
    )


#: only an `api` endpoint has a drop answer
API_DROP_ANSWER = When(
    "kind", tuple(k.value for k in EndpointKind if k is not EndpointKind.API), "drop_answer"
)
#: a websocket endpoint is relayed live
LIVE_WEBSOCKET = When(
    "kind", (EndpointKind.WEBSOCKET.value,), "forward_mode", (ForwardMode.SYNC.value,)
)


class EndpointKeys(Block):
    """One vendor endpoint: how its requests are recognised and what they need. The first
    endpoint whose match accepts a request's raw path and method wins."""

    ref = "endpoint"
    rules = (API_DROP_ANSWER, LIVE_WEBSOCKET)
    id = Key(Text(ENDPOINT_ID), "unique within the rule; logged with every decision", required=True)
    match = Key(Nested(MatchKeys), "exactly one of path, path_prefix, path_regex", required=True)
    kind = Key(
        Choice(EndpointKind),
        "what the endpoint is: decides the local answer on DROP and the default forward_mode",
        required=True,
    )
    body = Key(Choice(BodyKind, BodyKind.NONE), "how to read the body to strip fields from it")
    purposes = Key(_PURPOSES, "needed to forward untouched (default: the rule's purposes)")
    when_denied = Key(
        PurposeMap(Nested(StripKeys, when_denied=True), necessary=False),
        "per purpose this endpoint requires: what to remove so a request may still go when "
        "it is not granted; merged with the rule's",
    )
    always = Key(Nested(StripKeys), "merged with the rule's always (the stricter wins)")
    forward_mode = Key(
        Choice(ForwardMode),
        "async: answer at once, forward in the background (beacon, pixel); sync: stream the "
        "vendor's answer back (script, api, websocket)",
    )
    forward_headers = Key(
        Names(FORWARD_HEADER),
        "request headers forwarded beyond the allow-list: a server-to-server API's credential",
    )
    retired = Key(Flag(), "the vendor retired this service: recognised, and always dropped")
    drop_answer = Key(Nested(DropAnswerKeys), "api endpoints only: how a DROP is answered")
    notes = Key(Text(), "free text for rule authors; ignored")


class ExampleKeys(Block):
    """One request of the rule's acceptance table, and what the gateway must decide."""

    ref = "example"
    url = Key(Text(EXAMPLE_URL), "the request's URL, raw as the tag sends it", required=True)
    method = Key(Text(METHOD, default_value="GET"), "the request's method")
    body = Key(Text(), "the request body (not for GET or HEAD)")
    content_type = Key(Text(), "the request's Content-Type")
    headers = Key(TextMap(), "other request headers")
    consent = Key(
        PurposeMap(Choice(ConsentValue)), "the visitor's consent; a purpose not named is unknown"
    )
    expect = Key(Choice(Action), "the decision the gateway must take", required=True)
    removed = Key(
        Names(EXAMPLE_FIELD),
        "fields that must not reach the vendor (json:path for a JSON body's)",
    )
    kept = Key(
        Names(EXAMPLE_FIELD),
        "fields that must reach the vendor (json:path for a JSON body's); not with drop or reject",
    )
    notes = Key(Text(), "free text for rule authors; ignored")


class RuleKeys(Block):
    """One vendor's rule (`rules/*.yaml`): its hosts, the purposes its endpoints need,
    what is removed on the way, and its own acceptance table."""

    ref = "rule"
    rules = (Needs("route_host", "route"),)
    vendor = Key(
        Text(VENDOR_ID), "the rule's id, unique across all files (meta-pixel)", required=True
    )
    name = Key(Text(), "the vendor's name, for people", required=True)
    tcf_vendor_id = Key(Integer(1, 65535), "the vendor's IAB TCF Global Vendor List id")
    hosts = Key(
        Names(HOST_PATTERN, empty="at least one host is required", unique=True),
        "host names this rule owns; no two rules may overlap",
        required=True,
    )
    route = Key(Text(ROUTE), "a first-party prefix: https://<site>/ga4/... -> route_host")
    route_host = Key(
        Text(DNS_NAME),
        "where the route forwards to, a host the rule covers (default: the first exact host)",
    )
    purposes = Key(_PURPOSES, "purposes an endpoint needs, unless it names its own", required=True)
    report_only = Key(Flag(), "log decisions, forward everything with the always strips")
    consent_params = Key(
        Choice(ConsentParams),
        "the vendor's own consent parameters, rewritten to agree with the resolved consent",
    )
    always = Key(Nested(StripKeys), "removed from every forwarded request, whatever the consent")
    when_denied = Key(
        PurposeMap(Nested(StripKeys, when_denied=True), necessary=False),
        "per purpose: what to remove so a request may still go when it is not granted; a "
        "purpose with no entry means DROP",
    )
    endpoints = Key(
        Items(Nested(EndpointKeys), empty="at least one endpoint is required"),
        "in order; the first match wins",
        required=True,
    )
    examples = Key(
        Items(Nested(ExampleKeys), empty="at least one example is required"),
        "the rule's acceptance table, run by `consent-gateway check`",
        required=True,
    )
    notes = Key(Text(), "free text for rule authors; ignored")


def rule_schema() -> Json:
    """The body of `schemas/rule.schema.json`: `RuleKeys` and every block it holds."""
    defs: Json = {}

    def define(nested: Nested) -> None:
        if nested.ref in defs:
            return
        defs[nested.ref] = {}  # placeholder: a block that holds itself stops here
        defs[nested.ref] = nested.block.schema(when_denied=nested.when_denied)
        for key in nested.block.keys():
            for inner in key.type.nested():
                define(inner)

    for key in RuleKeys.keys():
        for inner in key.type.nested():
            define(inner)
    return {**RuleKeys.schema(), "$defs": dict(sorted(defs.items()))}
