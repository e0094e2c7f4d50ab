"""Presenters: decision-log records, counts, rules and consent records as the admin's
pages and JSON API show them.

Pure functions of plain values (no request, no I/O but the metrics registry the
consent shares are read from): rows and documents for the templates and the API,
the overview's charts, and the CLI line that erases a subject. Times are ISO-8601
UTC with a short display form; a record without a vendor is an unknown destination.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from markupsafe import Markup, escape

from gateway.admin.charts import Bar, Point, bar_chart, share_bar, timeline_chart
from gateway.admin.params import ACTIONS
from gateway.config import ConsentConfig
from gateway.decision_log.bypasses import Bypass
from gateway.decision_log.query import (
    DecisionCounts,
    GroupKey,
    RecordGroup,
    UnknownHost,
    UnknownPath,
)
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.rollups_query import PurposeShare, Timeline, VendorShare
from gateway.model import ConsentValue
from gateway.ruleset.draft import draft_rule, sighting_from_template
from gateway.ruleset.schema import EndpointSpec, VendorRule
from gateway.state import Gateway
from gateway.store.base import ERASURE_SOURCE, ConsentRecord, CurrentConsent

__all__ = [
    "ACTION_CLASSES",
    "ACTION_LABELS",
    "Share",
    "bypass_row",
    "bypasses_doc",
    "charts",
    "consent_row",
    "consent_share_rows",
    "current_view",
    "erase_command",
    "format_time",
    "group_row",
    "groups_doc",
    "host_html",
    "overview_doc",
    "purpose_shares",
    "record_detail",
    "record_row",
    "rollups_doc",
    "rule_matches",
    "rules_doc",
    "timeline_svg",
    "unknown_doc",
    "unknown_draft",
    "vendor_share_rows",
]

_STATES: Final = tuple(s.value for s in ConsentValue)
#: each action's colour class, the same on every page (admin.css: forward grey-blue,
#: strip amber, drop red, reject grey), always next to its name: never colour alone
ACTION_CLASSES: Final = tuple(f"action-{a}" for a in ACTIONS)
#: each action as the charts' legends name it
ACTION_LABELS: Final = MappingProxyType(
    {"forward": "forwarded", "strip": "stripped", "drop": "dropped", "reject": "rejected"}
)
_UNKNOWN_VENDOR: Final = "(unknown destination)"
#: hex digits of a notice hash the Consent records page shows (the full value in a title)
_HASH_SHOWN: Final = 12


def format_time(ts: float) -> tuple[str, str]:
    """(ISO-8601 UTC, short display) of epoch seconds."""
    when = datetime.fromtimestamp(ts, UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z"), when.strftime(
        "%Y-%m-%d %H:%M:%S"
    )


def _iso(ts: float | None) -> str | None:
    return None if ts is None else format_time(ts)[0]


def _target(vendor: str | None, endpoint: str | None) -> str:
    """`vendor/endpoint` as a table cell shows it, or `(unknown destination)`."""
    if not vendor:
        return _UNKNOWN_VENDOR
    return f"{vendor}/{endpoint}" if endpoint else vendor


def record_row(r: DecisionRecord) -> dict[str, object]:
    iso, shown = format_time(r.ts)
    target = _target(r.vendor, r.endpoint)
    return {
        "id": r.id,
        "iso": iso,
        "time": shown,
        "action": r.action,
        "report_only": r.report_only,
        "vendor": target,
        "missing": ", ".join(r.missing),
        "regime": r.regime or "",
        "method": r.method,
        "host": r.host,
        "path": r.path,
        "stripped": ", ".join(r.stripped),
        "reason": r.reason,
    }


def group_row(g: GroupKey) -> dict[str, object]:
    """A group of identical records as the Blocked page's grouped view shows it."""
    return {
        "action": g.action,
        "vendor": _target(g.vendor, g.endpoint),
        "missing": ", ".join(g.missing),
        "reason": g.reason,
    }


def groups_doc(groups: Sequence[RecordGroup]) -> list[dict[str, object]]:
    """The API's groups: each group's key, as records hold it, and its counts."""
    return [
        {
            "vendor": g.key.vendor,
            "endpoint": g.key.endpoint,
            "action": g.key.action,
            "missing": list(g.key.missing),
            "reason": g.key.reason,
            "count": g.count,
            "first_seen": _iso(g.first_seen),
            "last_seen": _iso(g.last_seen),
            "first_seen_epoch": g.first_seen,
            "last_seen_epoch": g.last_seen,
        }
        for g in groups
    ]


def record_detail(r: DecisionRecord, purposes: Sequence[str]) -> dict[str, object]:
    """A record in full for its detail view: every field, the consent sources per
    purpose (configured purposes first, then the rest, `vendor:` answers last)."""
    row = record_row(r)
    order = {p: i for i, p in enumerate(purposes)}
    sources = sorted(
        r.sources.items(),
        key=lambda i: (i[0].startswith("vendor:"), order.get(i[0], len(order)), i[0]),
    )
    return {
        **row,
        "request_id": r.request_id,
        "vendor_id": r.vendor,
        "endpoint": r.endpoint,
        "missing_list": list(r.missing),
        "stripped_list": list(r.stripped),
        "sources": [(p, s, p in r.missing) for p, s in sources],
    }


def host_html(host: str) -> Markup:
    """`host` escaped for a page, each dot-separated label kept whole (a nowrap span)
    with a line break allowed only after a dot (`<wbr>`): a host name never wraps
    inside a label, at a hyphen or anywhere else. The text is the host, unchanged."""
    labels = [f'<span class="label">{escape(label)}</span>' for label in host.split(".")]
    return Markup('<span class="host">' + ".<wbr>".join(labels) + "</span>")


def _rule_doc(rule: VendorRule) -> dict[str, object]:
    return {
        "vendor": rule.vendor,
        "name": rule.name,
        "file": rule.file,
        "hosts": [h for h in rule.hosts if h not in rule.added_hosts],
        # rules.vendor_hosts: the site's own hosts for this vendor, with any path prefix
        "added_hosts": [h + rule.mounts.get(h, "") for h in rule.added_hosts],
        "route": rule.route,
        "route_host": rule.route_host,
        "purposes": sorted(rule.purposes),
        "tcf_vendor_id": rule.tcf_vendor_id,
        "report_only": rule.report_only,
        "consent_params": rule.consent_params.value if rule.consent_params else None,
        "endpoints": [_endpoint_doc(e) for e in rule.endpoints],
    }


def _endpoint_doc(e: EndpointSpec) -> dict[str, object]:
    return {
        "id": e.id,
        "match": e.pattern,
        "methods": sorted(e.methods),
        "kind": e.kind.value,
        "body": e.body.value,
        "purposes": sorted(e.purposes),
        "forward_mode": e.forward_mode.value,
        "when_denied": {p: s.field_names() for p, s in sorted(e.when_denied.items())},
        "always": e.always.field_names(),
    }


def rules_doc(gw: Gateway, q: str = "") -> dict[str, object]:
    """The rules in force (those `rule_matches` `q`, when given), the last reload's
    errors, when the rules were loaded and the last reload attempt's time and result."""
    rules = sorted(gw.rules.current.rules, key=lambda r: r.vendor)
    docs = [_rule_doc(r) for r in rules]
    last = gw.rules.last_reload
    return {
        "rules": [d for d in docs if rule_matches(d, q)],
        "load_errors": list(gw.rules.last_error),
        "total": len(docs),
        "loaded_at": _iso(gw.rules.loaded_at),
        "last_reload": None if last is None else {"at": _iso(last[0]), "ok": last[1]},
    }


def rule_matches(doc: Mapping[str, object], q: str) -> bool:
    """Whether a rule's document matches the Rules search `q` (case-insensitive, every
    word somewhere): its vendor id or name, a host (its own or from config), a purpose
    (the rule's or an endpoint's), its route. An empty `q` matches every rule."""
    words = q.lower().split()
    if not words:
        return True
    endpoints = doc.get("endpoints")
    fields: list[object] = [doc.get("vendor"), doc.get("name"), doc.get("route")]
    for key in ("hosts", "added_hosts", "purposes"):
        value = doc.get(key)
        fields += value if isinstance(value, list) else []
    if isinstance(endpoints, list):
        fields += [p for e in endpoints for p in e.get("purposes", ())]
    text = "\n".join(str(f).lower() for f in fields if f)
    return all(w in text for w in words)


@dataclass(frozen=True, slots=True)
class Share:
    purpose: str
    granted: int
    denied: int
    unknown: int

    @property
    def total(self) -> int:
        return self.granted + self.denied + self.unknown

    @property
    def share(self) -> float | None:
        """granted / total, None before the first request."""
        return self.granted / self.total if self.total else None


def purpose_shares(gw: Gateway) -> list[Share]:
    """From `consent_gateway_consent_purpose_total`: this process's counts since it started."""
    registry = gw.metrics.registry

    def count(purpose: str, state: str) -> int:
        labels = {"purpose": purpose, "state": state}
        return int(registry.get_sample_value("consent_gateway_consent_purpose_total", labels) or 0)

    return [Share(p, *(count(p, s) for s in _STATES)) for p in gw.config.consent.purposes]


def overview_doc(
    window: str,
    since: float | None,
    counts: DecisionCounts,
    shares: Sequence[Share],
    started: float,
) -> dict[str, object]:
    return {
        "window": window,
        "since": _iso(since),
        "total": counts.total,
        "by_vendor_action": [
            {"vendor": v, "action": a, "count": n}
            for (v, a), n in sorted(counts.by_vendor_action.items(), key=_pair_order)
        ],
        "by_purpose": [
            {"purpose": p, "count": n}
            for p, n in sorted(counts.by_purpose.items(), key=lambda i: (-i[1], i[0]))
        ],
        "purpose_share": {
            "measured": "tag requests this gateway process handled since it started, "
            "counted once per purpose after consent was resolved",
            "since": _iso(started),
            "purposes": [
                {
                    "purpose": s.purpose,
                    "granted": s.granted,
                    "denied": s.denied,
                    "unknown": s.unknown,
                    "total": s.total,
                    "granted_share": s.share,
                }
                for s in shares
            ],
        },
    }


def _pair_order(item: tuple[tuple[str | None, str], int]) -> tuple[str, str]:
    (vendor, action), _ = item
    return (vendor or "", action)


def charts(counts: DecisionCounts, purposes: Sequence[str]) -> tuple[str, str]:
    vendors: dict[str | None, list[int]] = {}
    for (vendor, action), n in counts.by_vendor_action.items():
        row = vendors.setdefault(vendor, [0] * len(ACTIONS))
        if action in ACTIONS:
            row[ACTIONS.index(action)] += n
    bars = [
        Bar(v if v is not None else _UNKNOWN_VENDOR, tuple(vals))
        for v, vals in sorted(vendors.items(), key=lambda i: (-sum(i[1]), i[0] or ""))
    ]
    by_vendor = bar_chart(
        "chart-vendor-action",
        "Requests by vendor and action",
        ACTIONS,
        bars,
        classes=ACTION_CLASSES,
    )
    names = list(purposes) + sorted(set(counts.by_purpose) - set(purposes))
    purpose_bars = [Bar(p, (counts.by_purpose.get(p, 0),)) for p in names]
    by_purpose = bar_chart(
        "chart-purpose", "Requests by missing purpose", ("requests missing it",), purpose_bars
    )
    return by_vendor, by_purpose


def unknown_doc(
    since: str, since_ts: float | None, hosts: Sequence[UnknownHost]
) -> dict[str, object]:
    return {
        "since": since,
        "since_time": _iso(since_ts),
        "hosts": [
            {
                "host": h.host,
                "count": h.count,
                "first_seen": _iso(h.first_seen),
                "last_seen": _iso(h.last_seen),
                "first_seen_epoch": h.first_seen,
                "last_seen_epoch": h.last_seen,
            }
            for h in hosts
        ],
    }


def unknown_draft(host: str, paths: Sequence[UnknownPath], purposes: Sequence[str]) -> str | None:
    """A rule drafted for an unknown `host` from what the decision log kept of its requests
    (methods and path templates, never a value: `gateway.ruleset.draft`), or None when
    nothing was kept to draft from."""
    sightings = [s for p in paths if (s := sighting_from_template(host, p.method, p.path))]
    if not sightings:
        return None
    return draft_rule(sightings, None, purposes, "request shape(s) the decision log kept")


def bypass_row(b: Bypass) -> dict[str, object]:
    """A Bypasses table row: what was reached, from which page, how often, when."""
    return {
        "source": b.source,
        "kind": b.kind,
        "vendor": b.vendor or "",
        "host": b.host,
        "page": b.page,
        "count": b.count,
        "first": format_time(b.first_seen),
        "last": format_time(b.last_seen),
    }


def bypasses_doc(
    since: str, since_ts: float | None, kind: str | None, rows: Sequence[Bypass]
) -> dict[str, object]:
    return {
        "since": since,
        "since_time": _iso(since_ts),
        "kind": kind,
        "bypasses": [
            {
                "source": b.source,
                "kind": b.kind,
                "vendor": b.vendor,
                "host": b.host,
                "page": b.page,
                "count": b.count,
                "first_seen": _iso(b.first_seen),
                "last_seen": _iso(b.last_seen),
                "first_seen_epoch": b.first_seen,
                "last_seen_epoch": b.last_seen,
            }
            for b in rows
        ],
    }


def erase_command(subject: str) -> str:
    """The CLI line that erases `subject`, quoted for a POSIX shell."""
    # `--`: a subject id may start with `-` (base64url), which argparse takes for an option.
    dashes = "-- " if subject.startswith("-") else ""
    return f"consent-gateway erase {dashes}{shlex.quote(subject)}"


def _exact_time(ts: float) -> str:
    """ISO-8601 UTC to the millisecond: a consent record's time as stored."""
    when = datetime.fromtimestamp(ts, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _answered(purposes: Mapping[str, bool], configured: Sequence[str]) -> list[str]:
    """The answered purposes: configured ones in config order, then the rest sorted (a
    purpose since dropped from the config is still part of the proof)."""
    return [p for p in configured if p in purposes] + sorted(set(purposes) - set(configured))


def current_view(current: CurrentConsent | None, cfg: ConsentConfig) -> dict[str, object] | None:
    """The current state for the page (None: no record, no consent), with the reasons the
    gateway no longer applies it, as `consent.resolve.stored_answer` decides them."""
    if current is None:
        return None
    erased = current.source == ERASURE_SOURCE and not current.purposes
    stale: list[str] = []
    if not erased and current.policy_version < cfg.policy_version:
        stale.append(
            f"it was given under policy version {current.policy_version} and version "
            f"{cfg.policy_version} is in force"
        )
    if not erased and time.time() - current.at > cfg.max_age:
        stale.append("it is older than consent.max_age")
    return {
        "erased": erased,
        "purposes": [(p, current.purposes[p]) for p in _answered(current.purposes, cfg.purposes)],
        "policy_version": current.policy_version,
        "source": current.source,
        "iso": _exact_time(current.at),
        "time": format_time(current.at)[1],
        "stale": stale,
    }


def consent_row(r: ConsentRecord, configured: Sequence[str]) -> dict[str, object]:
    names = _answered(r.purposes, configured)
    notice = r.notice_hash
    short = None
    if notice:
        short = notice if len(notice) <= _HASH_SHOWN else notice[:_HASH_SHOWN] + "…"
    return {
        "id": r.id,
        "iso": _exact_time(r.at),
        "time": format_time(r.at)[1],
        "source": r.source,
        "policy_version": r.policy_version,
        "granted": [p for p in names if r.purposes[p]],
        "denied": [p for p in names if not r.purposes[p]],
        "notice_hash": notice or None,
        "notice_short": short,
        "request_id": r.request_id or None,
    }


def _tick_format(width: int, count: int) -> str:
    return "%H:%M" if width * count <= 86400 else "%m-%d %H:%M"


def timeline_svg(t: Timeline) -> Markup:
    """The overview's time series: requests by action per bucket, stacked columns."""
    n = len(t.buckets)
    every = max(1, n // 6)
    fmt = _tick_format(t.width, n)
    points = []
    for i, b in enumerate(t.buckets):
        when = datetime.fromtimestamp(b.start, UTC)
        points.append(
            Point(
                f"{when:%Y-%m-%d %H:%M} UTC, {t.width // 60} min",
                # no tick in the last half step: it would be cut at the chart's edge
                when.strftime(fmt) if i % every == 0 and i + every // 2 < n else "",
                tuple(b.counts.get(a, 0) for a in ACTIONS),
            )
        )
    return timeline_chart(
        "chart-timeline",
        "Tag requests by action over time",
        [ACTION_LABELS[a] for a in ACTIONS],
        points,
        classes=ACTION_CLASSES,
    )


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.1f} %"


def vendor_share_rows(shares: Sequence[VendorShare]) -> list[dict[str, object]]:
    """The overview's blocked-share table: a row per vendor, its bar in action colours."""
    series = ("forwarded", "stripped", "blocked")
    classes = ("action-forward", "action-strip", "action-drop")
    rows = []
    for v in shares:
        forwarded = v.total - v.blocked - v.stripped
        name = v.vendor or _UNKNOWN_VENDOR
        rows.append(
            {
                "vendor": name,
                "total": v.total,
                "blocked": v.blocked,
                "stripped": v.stripped,
                "share": _pct(v.blocked_share),
                "bar": share_bar(
                    f"{name}: {_pct(v.blocked_share)} blocked",
                    series,
                    (max(forwarded, 0), v.stripped, v.blocked),
                    classes,
                ),
            }
        )
    return rows


def consent_share_rows(shares: Sequence[PurposeShare]) -> list[dict[str, object]]:
    return [
        {
            "purpose": s.purpose,
            "total": s.total,
            "missing": s.missing,
            "with_consent": s.total - s.missing,
            "share": _pct(s.share),
        }
        for s in shares
    ]


def rollups_doc(
    since: float,
    until: float,
    t: Timeline,
    vendors: Sequence[VendorShare],
    consent: Sequence[PurposeShare],
) -> dict[str, object]:
    """The overview API's `rollups`: every tag request over the window (forwards too)."""
    return {
        "since": _iso(since),
        "until": _iso(until),
        "total": t.total,
        "bucket_seconds": t.width,
        "timeline": [
            {"start": _iso(b.start), "counts": {a: b.counts.get(a, 0) for a in ACTIONS}}
            for b in t.buckets
        ],
        "vendors": [
            {
                "vendor": v.vendor or None,
                "total": v.total,
                "blocked": v.blocked,
                "stripped": v.stripped,
                "blocked_share": v.blocked_share,
            }
            for v in vendors
        ],
        "consent_share": [
            {"purpose": s.purpose, "total": s.total, "missing": s.missing, "share": s.share}
            for s in consent
        ],
    }
