"""The grammars of a rule file's strings: each the loader's check and its JSON Schema form.

Each `Grammar` (see `gateway.grammar`) names the check `gateway.ruleset.parse` calls on a
value (most live beside the specs they guard, in `gateway.ruleset.schema`) and the pattern
`schemas/rule.schema.json` gives editors for it; `gateway.ruleset.keys` says which key has
which. tests/ruleset/test_grammars.py holds each pattern to its check.

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlsplit

from gateway.config.consent import DEFAULT_PURPOSES
from gateway.grammar import DNS_NAME_PATTERN, PURPOSE, VENDOR_ID, Grammar, alternatives, ci
from gateway.ruleset.match import is_safe_path
from gateway.ruleset.schema import (
    HTTP_METHODS,
    NEVER_FORWARDED,
    NEVER_FORWARDED_PREFIXES,
    RESERVED_ROUTES,
    check_endpoint_id,
    check_field_name,
    check_forward_header,
    check_header_name,
    check_host_pattern,
    check_json_path,
    check_route,
    is_dns_name,
)

__all__ = [
    "DNS_NAME",
    "ENDPOINT_ID",
    "EXAMPLE_FIELD",
    "EXAMPLE_URL",
    "FIELD_NAME",
    "FORWARD_HEADER",
    "GRAMMARS",
    "HEADER_NAME",
    "HOST_PATTERN",
    "JSON_PATH",
    "KEEP_NAME",
    "MEDIA_TYPE",
    "METHOD",
    "PURPOSE_NAME",
    "RAW_PATH",
    "REGEX",
    "ROUTE",
    "VENDOR_ID",
]


def _dns_name_error(name: str) -> str | None:
    return None if is_dns_name(name) else "not a plain lower-case DNS host name"


def _raw_path_error(path: str) -> str | None:
    if is_safe_path(path):
        return None
    # A path the request gate refuses could never match: say so at load time.
    return (
        "must be a raw URL path starting with '/' (no query, fragment, whitespace, "
        "backslash or dot segments)"
    )


def _regex_error(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as e:
        return f"not a regular expression: {e.msg}"
    return None


def _keep_name_error(name: str) -> str | None:
    # a bare `*` keeps every field: allowed here, where it removes nothing
    return None if name == "*" else check_field_name(name)


_JSON_PREFIX = "json:"


def _example_field_error(name: str) -> str | None:
    if name.startswith(_JSON_PREFIX):
        return check_json_path(name[len(_JSON_PREFIX) :])
    return check_field_name(name)


def _strip_header_error(name: str) -> str | None:
    return check_header_name(name.lower())


def _method_error(method: str) -> str | None:
    if method.upper() in HTTP_METHODS:
        return None
    return f"must be one of: {', '.join(sorted(HTTP_METHODS))}"


_MEDIA_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")


def _media_type_error(content_type: str) -> str | None:
    if _MEDIA_TYPE_RE.fullmatch(content_type) and len(content_type) <= 100:
        return None
    return "must be a media type such as text/plain"


def _example_url_error(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a URL"
    if (
        parts.scheme != "https"
        or not parts.hostname
        or parts.username is not None
        or port is not None
    ):
        return "must be an https:// URL with a host name, and no userinfo or port"
    return None


_DNS = DNS_NAME_PATTERN
_FIELD = r"[^\s*\x00-\x1f\x7f]+\*?"
_JSON_SEGMENT = r"[^.\[\]*\s]+(?:\[\])*"
_JSON_PATH = rf"(?:{_JSON_SEGMENT}|(?:\[\])+(?=\.))(?:\.{_JSON_SEGMENT})*(?<!\[\])\*?"
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_NEVER = "|".join(ci(h) for h in sorted(NEVER_FORWARDED))
_NEVER_PREFIX = "|".join(ci(p) for p in NEVER_FORWARDED_PREFIXES)

HOST_PATTERN = Grammar(
    "a lower-case DNS name (www.example.com), or *.suffix: every subdomain of suffix",
    rf"^(?:\*\.)?{_DNS}$",
    check_host_pattern,
)
DNS_NAME = Grammar("a lower-case DNS host name", rf"^{_DNS}$", _dns_name_error)
ROUTE = Grammar(
    "a first-party path prefix such as /ga4: segments of letters, digits, '.', '_', '~', "
    "'-', no trailing '/', not a path the gateway serves itself",
    rf"^(?!(?:{alternatives(sorted(RESERVED_ROUTES))})(?:/|$))(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)+$",
    check_route,
)
RAW_PATH = Grammar(
    "a raw URL path starting with '/' (no query, fragment, whitespace, backslash or dot "
    "segments, also percent-encoded)",
    r'^(?!.*/\.\.?(?:/|$))/[!"$->@-\[\]-~]*$',
    _raw_path_error,
    exact=False,  # a percent-encoded dot segment (%2e%2e, ..%2f) is the loader's to find
)
REGEX = Grammar(
    "a Python regular expression, matched against the whole raw path (quote it in YAML)",
    None,
    _regex_error,
    exact=False,
)
ENDPOINT_ID = Grammar(
    "an endpoint id: lower-case letters, digits and single '-' (e.g. collect)",
    VENDOR_ID.pattern,
    check_endpoint_id,
    max_length=64,
)
FIELD_NAME = Grammar(
    "a parameter, form field or cookie name, exact; a trailing * makes it a prefix (up.*)",
    rf"^{_FIELD}$",
    check_field_name,
)
JSON_PATH = Grammar(
    "a JSON path: dotted keys, key[] for every element of an array (data[].user_data.em), "
    "a leading [] when the body is an array; a trailing * makes the last key a prefix",
    rf"^{_JSON_PATH}$",
    check_json_path,
)
KEEP_NAME = Grammar(
    "a field kept from the identifier scrub (case-blind, whole or last segment), a prefix "
    "(u*), or * for every field",
    rf"^(?:\*|{_FIELD})$",
    _keep_name_error,
)
EXAMPLE_FIELD = Grammar(
    "a query or form field name, or json: and a JSON path (json:user_data.em)",
    rf"^(?:json:{_JSON_PATH}|(?!json:){_FIELD})$",
    _example_field_error,
)
HEADER_NAME = Grammar("a request header name (any case)", rf"^{_TOKEN}$", _strip_header_error)
FORWARD_HEADER = Grammar(
    "a request header forwarded beyond the gateway's allow-list (never a hop-by-hop, "
    "framing, address or cookie header)",
    rf"^(?!(?:{_NEVER})$)(?!{_NEVER_PREFIX}){_TOKEN}$",
    check_forward_header,
)
METHOD = Grammar(
    "an HTTP method (any case); HEAD is accepted wherever GET is",
    rf"^(?:{'|'.join(ci(m) for m in sorted(HTTP_METHODS))})$",
    _method_error,
    examples=tuple(sorted(HTTP_METHODS)),
)
MEDIA_TYPE = Grammar(
    "a media type such as text/plain",
    rf"^{_MEDIA_TYPE_RE.pattern}$",
    _media_type_error,
    max_length=100,
)
EXAMPLE_URL = Grammar(
    "an https:// URL, raw as the tag sends it, on a host this rule covers",
    rf"^{ci('https')}://[^/?#@\s]+(?:[/?#]|$)",
    _example_url_error,
    exact=False,  # whether the rule covers its host is the loader's to say
)
PURPOSE_NAME = dataclasses.replace(PURPOSE, examples=DEFAULT_PURPOSES)

#: every grammar of a rule file, by the name tests and messages use
GRAMMARS: dict[str, Grammar] = {
    "vendor_id": VENDOR_ID,
    "purpose": PURPOSE_NAME,
    "host_pattern": HOST_PATTERN,
    "dns_name": DNS_NAME,
    "route": ROUTE,
    "raw_path": RAW_PATH,
    "regex": REGEX,
    "endpoint_id": ENDPOINT_ID,
    "field_name": FIELD_NAME,
    "json_path": JSON_PATH,
    "keep_name": KEEP_NAME,
    "example_field": EXAMPLE_FIELD,
    "header_name": HEADER_NAME,
    "forward_header": FORWARD_HEADER,
    "method": METHOD,
    "media_type": MEDIA_TYPE,
    "example_url": EXAMPLE_URL,
}
