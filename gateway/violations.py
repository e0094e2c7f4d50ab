"""What a CSP violation report or a router report says, reduced to names.

Three shapes arrive at the gateway's report endpoints (`gateway.reports`), all of them
visitor input (anyone can post anything):

- `application/csp-report`: a browser's legacy `report-uri` report,
  `{"csp-report": {"document-uri": …, "blocked-uri": …, …}}`;
- `application/reports+json`: the Reporting API's `report-to` batch, an array of
  `{"type": "csp-violation", "body": {"documentURL": …, "blockedURL": …, …}}`;
- the router's own report (`/cg-report`, `navigator.sendBeacon`, `text/plain`):
  `{"kind": "unlisted", "host": "<host>", "page": "<page path>"}`.

`parse_reports` reads any of them totally: it raises `BadReport` (answered 400) and
nothing else, whatever the bytes. Of each report only two names are kept: the blocked
host (`normalize_host`: a plain DNS name, or the report is ignored) and the page's path
as `sanitize_path` templates it. Queries, fragments, script samples, policies, source
files, referrers and everything else are never read past the parse. A host a rule
lists is a `bypass` of that rule's vendor; any other host is `unlisted`.

Pure: the routes, limits and storage are `gateway.reports`'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

import orjson

from gateway.redact import RAW_CAP, sanitize_path
from gateway.ruleset.match import RuleSet, normalize_host

__all__ = [
    "MAX_REPORTS",
    "BadReport",
    "Sighting",
    "classify",
    "parse_reports",
]

Source = Literal["csp", "router"]
Kind = Literal["bypass", "unlisted"]

#: reports read from one body; a Reporting API batch past it is cut (not refused)
MAX_REPORTS: Final = 32
#: the content types each endpoint reads
CSP_TYPES: Final = frozenset({"application/csp-report", "application/json"})
BATCH_TYPE: Final = "application/reports+json"
ROUTER_TYPES: Final = frozenset({"text/plain", "application/json"})


class BadReport(ValueError):
    """A body that is not a report this endpoint reads; the message never quotes it."""


@dataclass(frozen=True, slots=True)
class Sighting:
    """One request a page tried to make to a host outside the gateway, as names."""

    source: Source
    kind: Kind
    #: the vendor whose rule lists `host`, for a bypass; None for an unlisted host
    vendor: str | None
    #: a plain DNS name (`normalize_host`)
    host: str
    #: the page's path, templated (`sanitize_path`): no query, no values
    page: str


def _host_of_url(text: str) -> str | None:
    """The DNS host of an absolute http(s) URL, or None (a keyword like `inline`, a
    `data:` URL, an address, anything unparseable)."""
    try:
        parts = urlsplit(text[:RAW_CAP])
    except ValueError:
        return None
    if parts.scheme not in ("http", "https", "ws", "wss"):
        return None
    netloc = parts.netloc.rpartition("@")[2]
    host, _, port = netloc.partition(":")
    if port and not port.isdigit():
        return None
    return normalize_host(host)


def _host_name(text: str) -> str | None:
    """A host as the router names it (`www.facebook.com`, with a port at most)."""
    host, _, port = text[:RAW_CAP].partition(":")
    if port and not port.isdigit():
        return None
    return normalize_host(host)


def _page_of(text: str) -> str:
    """The templated path of a page URL (or of a path): never its query or fragment."""
    raw = text[:RAW_CAP]
    if "://" in raw:
        try:
            raw = urlsplit(raw).path
        except ValueError:
            return "/"
    if not raw.startswith("/"):
        return "/"
    return sanitize_path(raw) or "/"


def _text(doc: dict[str, object], *names: str) -> str | None:
    for name in names:
        value = doc.get(name)
        if isinstance(value, str):
            return value
    return None


def _loads(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadReport("the body is not JSON") from None


def _csp_one(body: object) -> tuple[str, str] | None:
    """(blocked host, page) of one CSP violation's body (either spelling), or None."""
    if not isinstance(body, dict):
        return None
    blocked = _text(body, "blocked-uri", "blockedURL")
    host = _host_of_url(blocked) if blocked is not None else None
    if host is None:
        return None
    return host, _page_of(_text(body, "document-uri", "documentURL") or "/")


def _csp_reports(doc: object, content_type: str) -> list[tuple[str, str]]:
    if content_type == BATCH_TYPE:
        if not isinstance(doc, list):
            raise BadReport("a Reporting API batch is a JSON array")
        found = []
        for item in doc[:MAX_REPORTS]:
            if isinstance(item, dict) and item.get("type") == "csp-violation":
                one = _csp_one(item.get("body"))
                if one is not None:
                    found.append(one)
        return found
    if not isinstance(doc, dict) or not isinstance(doc.get("csp-report"), dict):
        raise BadReport('a CSP report is a JSON object with a "csp-report" object')
    one = _csp_one(doc["csp-report"])
    return [] if one is None else [one]


def _router_report(doc: object) -> list[tuple[str, str]]:
    if not isinstance(doc, dict):
        raise BadReport("a router report is a JSON object")
    if doc.get("kind") != "unlisted":
        return []  # a kind this gateway does not know yet: ignored, not an error
    host_text, page = doc.get("host"), doc.get("page")
    host = _host_name(host_text) if isinstance(host_text, str) else None
    if host is None:
        return []
    return [(host, _page_of(page if isinstance(page, str) else "/"))]


def parse_reports(source: Source, content_type: str, body: bytes) -> list[tuple[str, str]]:
    """The (blocked host, page path) pairs of one posted body: `source` `csp` reads the
    legacy and the Reporting API shapes, `router` the router's report.

    Reports without a DNS host (inline code, `data:`, an address) are left out. Raises
    `BadReport` for a content type or body the endpoint does not read, and nothing else.
    """
    if source == "csp":
        if content_type != BATCH_TYPE and content_type not in CSP_TYPES:
            raise BadReport("send application/csp-report or application/reports+json")
        return _csp_reports(_loads(body), content_type)
    if content_type not in ROUTER_TYPES:
        raise BadReport("send text/plain or application/json")
    return _router_report(_loads(body))


def classify(source: Source, host: str, page: str, rules: RuleSet) -> Sighting:
    """A host a rule lists is a bypass of its vendor; any other is unlisted."""
    rule = rules.vendor_for_host(host)
    if rule is None:
        return Sighting(source, "unlisted", None, host, page)
    return Sighting(source, "bypass", rule.vendor, host, page)
