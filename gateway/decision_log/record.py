"""The decision record and its privacy gate: what one logged decision holds.

- `record_for` is the privacy gate: a `DecisionRecord` holds names, never values.
  Whatever is not copied here can never reach a sink, the admin page or the CLI.
  Paths are stored as templates (the matched endpoint's pattern, else the path with
  value-like segments as `{…}`), hosts as names, methods only when standard:
  `sanitize_path`, `sanitize_host` and `sanitize_method` (`gateway.redact`) are the
  one definition of that, which the access log (`gateway.access_log`) applies as well.
- `record_to_dict` is the record's one JSON shape (the JSONL sink, `logs --json`, the
  admin API and its live stream); `iso_utc` is its time format.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from gateway.memo import Memo
from gateway.model import ConsentState, Decision, Facts, request_record
from gateway.redact import (
    VALUE_MARK,
    clean,
    clean_opt,
    log_path,
    looks_like_value,
    sanitize_host,
    sanitize_method,
)
from gateway.ruleset.match import Match

__all__ = ["DecisionRecord", "iso_utc", "record_for", "record_to_dict"]

_REASON_CAP: Final = 300
_SHORT_CAP: Final = 128  # request id, vendor, endpoint, regime, purposes, source names


@request_record
class DecisionRecord:
    """One logged decision: names and outcomes only, never request contents.

    Build it with `record_for` (the privacy gate); sinks and readers trust it.
    """

    #: seconds since the epoch when the request arrived
    ts: float
    request_id: str
    #: `forward | strip | drop | reject` (`Action` values)
    action: str
    vendor: str | None
    endpoint: str | None
    #: purposes the request needed but the visitor had not granted, sorted
    missing: tuple[str, ...]
    #: purpose -> name of the consent source that answered ("cookie", "gpc", "default:opt-in")
    sources: Mapping[str, str]
    regime: str | None
    method: str
    host: str
    #: a template, never the path as sent (`log_path`): the endpoint's pattern, or the
    #: path with every value-like segment and parameter value as `{…}`, no query
    path: str
    #: NAMES of what was removed (`StripSpec.field_names()`), never values
    stripped: tuple[str, ...]
    reason: str
    report_only: bool = False
    #: the SQLite row id once stored; None for a record not read back from the database
    id: int | None = None


def record_for(
    facts: Facts,
    decision: Decision,
    consent: ConsentState | None,
    match: Match | None = None,
    removed: Sequence[str] | None = None,
) -> DecisionRecord:
    """The log record of one decision; the only way request data enters the decision log.

    Copies names and outcomes only. Never the query string, cookies, consent strings,
    bodies, header values or the client address: `facts.query`, `facts.cookies`,
    `facts.body`, `facts.headers` and `facts.client_ip` are not read at all. The path
    is a template (`log_path`: the matched endpoint's pattern, else `sanitize_path`),
    the host a name (`sanitize_host`). Every string is capped and has non-printable
    characters replaced by `?`. `consent` is None where the pipeline stopped before
    resolving it (e.g. an unknown host); `match` is None where no endpoint matched.
    Records every decision given; which ones to log is the pipeline's choice.
    `removed` is what the transform actually took out (`transform.removed_fields`);
    without it (report-only: nothing was removed) `stripped` names what the decision's
    strips would remove.
    """
    rid = clean(facts.request_id, _SHORT_CAP)
    ts = float(facts.now) if facts.now > 0 else time.time()
    key = None
    if match is not None:
        # With a match, everything but the time and the id is a function of the decision,
        # consent and match objects (cached upstream), the method and host: kept per set.
        names = None if removed is None else tuple(removed)
        key = (id(decision), id(consent), id(match), facts.method, facts.host, names)
        kept = _KEPT.get(key)
        if kept is not None and kept[0] is decision and kept[1] is consent and kept[2] is match:
            return _stamped(kept[3], ts, rid)
    record = _record(facts, decision, consent, match, removed, ts, rid)
    if key is not None and match is not None:
        _KEPT.put(key, (decision, consent, match, record))
    return record


#: see record_for; an entry holds its objects, so their ids are not reused meanwhile
_KEPT: Memo[tuple[object, ...], tuple[Decision, ConsentState | None, Match, DecisionRecord]] = Memo(
    4096
)


def _stamped(t: DecisionRecord, ts: float, request_id: str) -> DecisionRecord:
    return DecisionRecord(
        ts,
        request_id,
        t.action,
        t.vendor,
        t.endpoint,
        t.missing,
        t.sources,
        t.regime,
        t.method,
        t.host,
        t.path,
        t.stripped,
        t.reason,
        t.report_only,
    )


def _record(
    facts: Facts,
    decision: Decision,
    consent: ConsentState | None,
    match: Match | None,
    removed: Sequence[str] | None,
    ts: float,
    rid: str,
) -> DecisionRecord:
    named = consent.sources() if consent is not None else {}
    choice = None
    if consent is not None and decision.vendor is not None:
        choice = consent.vendor_choices.get(decision.vendor)
    if choice is not None:
        # the vendor's own answer decided too: `vendor:<id>` -> `denied:klaro`
        named[f"vendor:{decision.vendor}"] = f"{choice.state}:{choice.source}"
    sources: Mapping[str, str] = MappingProxyType(
        {clean(p, _SHORT_CAP): clean(s, _SHORT_CAP) for p, s in named.items()}
    )
    return DecisionRecord(
        ts=ts,
        request_id=rid,
        action=str(decision.action),
        vendor=clean_opt(decision.vendor, _SHORT_CAP),
        endpoint=clean_opt(decision.endpoint, _SHORT_CAP),
        missing=tuple(sorted(clean(p, _SHORT_CAP) for p in decision.missing)),
        sources=sources,
        regime=clean_opt(consent.regime if consent is not None else None, _SHORT_CAP),
        method=sanitize_method(facts.method),
        host=sanitize_host(facts.host),
        path=log_path(facts.path, match),
        # SECURITY: names of what was removed, never values; a name a visitor chose that
        # looks like a value (`;alice@example.com=1`) is itself replaced.
        stripped=tuple(
            _stripped_name(n)
            for n in (decision.strips.field_names() if removed is None else removed)
        ),
        reason=clean(decision.reason, _REASON_CAP),
        report_only=decision.report_only,
    )


def _stripped_name(name: str) -> str:
    kind, sep, field = name.partition(":")
    if sep and looks_like_value(field):
        return f"{clean(kind, _SHORT_CAP)}:{VALUE_MARK}"
    return clean(name, _SHORT_CAP)


def iso_utc(ts: float, timespec: str = "milliseconds") -> str:
    """Epoch seconds as ISO-8601 UTC with a `Z` (`2026-11-29T10:00:00.000Z`)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def record_to_dict(r: DecisionRecord) -> dict[str, Any]:
    """The JSON shape of a record (JSONL sink, `logs --json`, the admin API).

    Keys are the dataclass fields, with `ts` as an ISO-8601 UTC string
    (`2026-11-29T10:00:00.000Z`) and the epoch seconds in `ts_epoch`.
    """
    out: dict[str, Any] = {"ts": iso_utc(r.ts), "ts_epoch": r.ts}
    for f in fields(r):
        if f.name != "ts":
            out[f.name] = getattr(r, f.name)
    out["missing"] = list(r.missing)
    out["sources"] = dict(r.sources)
    out["stripped"] = list(r.stripped)
    return out
