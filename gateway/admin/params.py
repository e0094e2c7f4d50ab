"""The admin's query parameters: parsed, checked, and turned into decision-log filters.

Pages take the windows they offer (`1h`, `1d`, `1w`, `all`); the API also takes any
duration or ISO-8601 time `parse_since` understands. A value the admin cannot use
raises `BadParameter`, whose message names the parameter and what it takes, never
the value sent (pages answer it with a 400 page, the API with 400 JSON).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from aiohttp import web

from gateway.admin.answers import ADMIN
from gateway.decision_log.query import GroupKey, LogQuery, parse_since
from gateway.decision_log.record import DecisionRecord
from gateway.explain import ExplainRequest, parse_consent, parse_header
from gateway.model import Action
from gateway.ruleset.schema import check_vendor_id, is_dns_name

__all__ = [
    "ACTIONS",
    "API_MAX_LIMIT",
    "BYPASS_KINDS",
    "BYPASS_LIMIT",
    "DRAFT_PATHS",
    "GROUP_LIMIT",
    "GROUP_PARAMS",
    "MAX_ID",
    "MAX_SUBJECT",
    "OVERVIEW_WINDOWS",
    "PAGE_SIZE",
    "TIMELINE_POINTS",
    "UNKNOWN_LIMIT",
    "VIEWS",
    "WINDOWS",
    "WINDOW_NAMES",
    "EXPLAIN_FIELDS",
    "EXPLAIN_METHODS",
    "BadParameter",
    "Filters",
    "explain_form",
    "group_params",
    "host_param",
    "int_param",
    "kind_param",
    "record_filters",
    "record_id_param",
    "search_param",
    "since_param",
    "view_param",
    "window_param",
]

#: records per page on the Blocked page (and the API's default `limit`)
PAGE_SIZE: Final = 50
API_MAX_LIMIT: Final = 1000
UNKNOWN_LIMIT: Final = 200
#: request shapes (method, path template) of one unknown host a rule is drafted from
DRAFT_PATHS: Final = 100
#: rows the Bypasses page shows (and the API's default `limit`)
BYPASS_LIMIT: Final = 200
#: what a Bypasses row is: a listed vendor host reached directly, or a host no rule lists
BYPASS_KINDS: Final = ("bypass", "unlisted")
#: about how many points the overview's time series has over its window
TIMELINE_POINTS: Final = 60
#: groups the Blocked page shows (and the API's default `limit` for groups)
GROUP_LIMIT: Final = 200
#: the Blocked page's views: identical records grouped, or the records themselves
VIEWS: Final = ("groups", "records")
#: the query parameters naming one group exactly (`Filters.group`)
GROUP_PARAMS: Final = ("group_vendor", "group_endpoint", "group_action", "group_missing")
_GROUP_REASON: Final = "group_reason"
_REASON_CAP: Final = 300
_NAME_CAP: Final = 128
#: time windows offered by the pages (the API also takes any `parse_since` value)
WINDOWS: Final = MappingProxyType({"1h": 3600.0, "1d": 86400.0, "1w": 604800.0})
#: the overview's windows: also a month and a year, which the rollups answer (kept
#: `decision_log.rollup_retention`, 400 days by default, where records go after 30)
OVERVIEW_WINDOWS: Final = MappingProxyType({**WINDOWS, "30d": 30 * 86400.0, "1y": 365 * 86400.0})
WINDOW_NAMES: Final = MappingProxyType(
    {
        "1h": "last hour",
        "1d": "last day",
        "1w": "last week",
        "30d": "last 30 days",
        "1y": "last year",
        "all": "all time",
    }
)
ACTIONS: Final = tuple(a.value for a in Action)
MAX_ID: Final = 2**63 - 1
MAX_SUBJECT: Final = 256


class BadParameter(ValueError):
    """A query parameter the admin cannot use; its message names the parameter only."""


def since_param(
    value: str | None, default: str, *, any_time: bool, name: str = "since"
) -> tuple[str, float | None]:
    """A `since`/`window` value and the epoch seconds it starts at (None: all time).

    Pages take the offered windows (`1h`, `1d`, `1w`, `all`); the API (`any_time`) also
    takes any duration or ISO-8601 time `parse_since` understands.
    """
    text = value or default
    if text == "all":
        return text, None
    now = time.time()
    if text in WINDOWS:
        return text, now - WINDOWS[text]
    if any_time:
        try:
            return text, parse_since(text, now)
        except ValueError:
            pass
    also = ", a duration (90m) or an ISO-8601 time" if any_time else ""
    raise BadParameter(f"{name}: use 1h, 1d, 1w, all{also}")


def window_param(request: web.Request) -> tuple[str, float, float]:
    """The overview's `window` (`1h`, `1d`: the default, `1w`, `30d` or `1y`) and the epoch
    seconds it starts and ends at (now)."""
    window = request.query.get("window") or "1d"
    if window not in OVERVIEW_WINDOWS:
        raise BadParameter("window: use 1h, 1d, 1w, 30d or 1y")
    until = time.time()
    return window, until - OVERVIEW_WINDOWS[window], until


def int_param(query: Mapping[str, str], name: str, lo: int, hi: int) -> int | None:
    value = query.get(name) or None
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or not lo <= int(value) <= hi:
        raise BadParameter(f"{name}: a whole number from {lo} to {hi}")
    return int(value)


#: the Explain form's fields, each a string (empty when not given)
EXPLAIN_FIELDS: Final = ("url", "method", "consent", "cookie", "headers", "body")
EXPLAIN_METHODS: Final = ("GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS")
#: the longest value the Explain form takes, per field (a URL, a cookie, a body)
_EXPLAIN_CAP: Final = 64 * 1024
_EXPLAIN_HEADERS: Final = 50


def explain_form(
    form: Mapping[str, object], purposes: Sequence[str]
) -> tuple[dict[str, str], ExplainRequest]:
    """The Explain form's fields (to show again) and the request they describe.

    `consent` is `PURPOSE=granted|denied,…` (signed into a gateway cookie) and `cookie` a
    consent cookie's value: at most one of them. `headers` holds one `Name: value` a line.
    """
    fields = {}
    for name in EXPLAIN_FIELDS:
        value = form.get(name, "")
        if not isinstance(value, str) or len(value) > _EXPLAIN_CAP:
            raise BadParameter(f"{name}: text of at most {_EXPLAIN_CAP} characters")
        fields[name] = value.strip() if name != "body" else value
    fields["method"] = fields["method"] or "GET"
    if not fields["url"]:
        raise BadParameter("url: the vendor URL the tag calls (https://…)")
    if fields["method"] not in EXPLAIN_METHODS:
        raise BadParameter("method: one of " + ", ".join(EXPLAIN_METHODS))
    if fields["consent"] and fields["cookie"]:
        raise BadParameter("consent, cookie: give one of them, not both")
    try:
        consent = parse_consent(fields["consent"], purposes) if fields["consent"] else None
    except ValueError:
        raise BadParameter(
            "consent: PURPOSE=granted|denied, separated by commas, for configured purposes"
        ) from None
    lines = [line for line in fields["headers"].splitlines() if line.strip()]
    if len(lines) > _EXPLAIN_HEADERS:
        raise BadParameter(f"headers: at most {_EXPLAIN_HEADERS} lines")
    try:
        headers = [parse_header(line) for line in lines]
    except ValueError:
        raise BadParameter("headers: one 'Name: value' a line") from None
    req = ExplainRequest(
        fields["url"],
        fields["method"],
        fields["body"].encode(),
        consent,
        fields["cookie"] or None,
        headers,
    )
    return fields, req


def host_param(query: Mapping[str, str]) -> str:
    """The `host` an Unknown destinations draft is for: a DNS name, as the log keeps it."""
    host = query.get("host", "")
    if not is_dns_name(host):
        raise BadParameter("host: a host name as the Unknown destinations page lists it")
    return host


def kind_param(query: Mapping[str, str]) -> str | None:
    """The Bypasses filter `kind`: `bypass`, `unlisted`, or none (both)."""
    kind = query.get("kind") or None
    if kind is not None and kind not in BYPASS_KINDS:
        raise BadParameter("kind: bypass or unlisted")
    return kind


@dataclass(frozen=True, slots=True)
class Filters:
    """The record filters of the Blocked page and `api/records` (and the stream's)."""

    since: str
    since_ts: float | None
    vendor: str | None
    purpose: str | None
    action: str | None
    regime: str | None
    #: one group's records only (the Blocked page's link from a group to its rows)
    group: GroupKey | None = None

    def query(
        self, limit: int, *, before_id: int | None = None, newer_than_id: int | None = None
    ) -> LogQuery:
        return LogQuery(
            since=self.since_ts,
            vendor=self.vendor,
            purpose=self.purpose,
            action=self.action,
            regime=self.regime,
            limit=limit,
            before_id=before_id,
            newer_than_id=newer_than_id,
            group=self.group,
        )

    def matches(self, r: DecisionRecord) -> bool:
        g = self.group
        return (
            (self.vendor is None or r.vendor == self.vendor)
            and (self.action is None or r.action == self.action)
            and (self.purpose is None or self.purpose in r.missing)
            and (self.regime is None or r.regime == self.regime)
            and (
                g is None
                or (r.vendor, r.endpoint, r.action, r.missing, r.reason)
                == (g.vendor, g.endpoint, g.action, g.missing, g.reason)
            )
        )

    def params(self) -> dict[str, str]:
        """The query parameters that reproduce these filters (for page links)."""
        out = {"since": self.since}
        for key in ("vendor", "purpose", "action", "regime"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.group is not None:
            out.update(group_params(self.group))
        return out


def group_params(g: GroupKey) -> dict[str, str]:
    """The query parameters naming group `g` (`record_filters` reads them back)."""
    return {
        "group_vendor": g.vendor or "",
        "group_endpoint": g.endpoint or "",
        "group_action": g.action,
        "group_missing": ",".join(g.missing),
        _GROUP_REASON: g.reason,
    }


def _group(q: Mapping[str, str]) -> GroupKey | None:
    """The group `group_*` parameters name, None without `group_action`. An empty vendor
    or endpoint is none (an unknown destination); `group_missing` is comma-joined."""
    action = q.get("group_action")
    if action is None:
        return None
    if action not in ACTIONS:
        raise BadParameter("group_action: one of " + ", ".join(ACTIONS))
    vendor = q.get("group_vendor") or None
    if vendor is not None and check_vendor_id(vendor) is not None:
        raise BadParameter("group_vendor: a vendor id (lower-case slug)")
    endpoint = q.get("group_endpoint") or None
    missing = tuple(p for p in q.get("group_missing", "").split(",") if p)
    if endpoint is not None and len(endpoint) > _NAME_CAP:
        raise BadParameter(f"group_endpoint: at most {_NAME_CAP} characters")
    if any(len(p) > _NAME_CAP for p in missing) or list(missing) != sorted(missing):
        raise BadParameter("group_missing: purposes, sorted, separated by commas")
    reason = q.get(_GROUP_REASON, "")
    if len(reason) > _REASON_CAP:
        raise BadParameter(f"{_GROUP_REASON}: at most {_REASON_CAP} characters")
    return GroupKey(vendor, endpoint, action, missing, reason)


#: the longest Rules search
_SEARCH_CAP: Final = 200


def search_param(query: Mapping[str, str]) -> str:
    """The Rules search `q`: words to find in a rule's vendor, hosts or purposes."""
    q = query.get("q", "").strip()
    if len(q) > _SEARCH_CAP:
        raise BadParameter(f"q: at most {_SEARCH_CAP} characters")
    return q


def view_param(query: Mapping[str, str]) -> str:
    """The Blocked page's `view`: `groups` (the default) or `records`."""
    view = query.get("view") or VIEWS[0]
    if view not in VIEWS:
        raise BadParameter("view: groups or records")
    return view


def record_id_param(query: Mapping[str, str]) -> int:
    """The `id` of the record a detail view shows."""
    found = int_param(query, "id", 1, MAX_ID)
    if found is None:
        raise BadParameter(f"id: a whole number from 1 to {MAX_ID}")
    return found


def record_filters(request: web.Request, *, any_time: bool) -> Filters:
    q = request.query
    cfg = request.app[ADMIN].gw.config
    since, since_ts = since_param(q.get("since"), "1d", any_time=any_time)
    vendor = q.get("vendor") or None
    if vendor is not None and check_vendor_id(vendor) is not None:
        raise BadParameter("vendor: a vendor id (lower-case slug)")
    purpose = q.get("purpose") or None
    if purpose is not None and purpose not in cfg.consent.purposes:
        raise BadParameter("purpose: one of the configured purposes")
    action = q.get("action") or None
    if action is not None and action not in ACTIONS:
        raise BadParameter("action: one of " + ", ".join(ACTIONS))
    regime = q.get("regime") or None
    if regime is not None and regime not in {r.name for r in cfg.consent.regimes}:
        raise BadParameter("regime: one of the configured regimes")
    return Filters(since, since_ts, vendor, purpose, action, regime, _group(q))
