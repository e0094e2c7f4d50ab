"""The admin's reads of the decision log, shared by the pages and the JSON API.

Through the admin's one `Reader` (`gateway.decision_log.readers`): SQLite read in the
default executor, never on the event loop, or PostgreSQL, where every instance's records
are. Without a stored log (`decision_log.sqlite_path` unset with backend sqlite) every
read is empty. A log that cannot be read raises `LogUnavailable`, which the sub-app's
middleware answers with a 503.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType

from aiohttp import web

from gateway.admin.answers import ADMIN
from gateway.admin.params import Filters
from gateway.decision_log.bypasses import Bypass
from gateway.decision_log.query import (
    DecisionCounts,
    LogQuery,
    RecordGroup,
    UnknownHost,
    UnknownPath,
)
from gateway.decision_log.readers import Reader
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.rollups_query import PurposeShare, Timeline, VendorShare, timeline

__all__ = [
    "Page",
    "Rollups",
    "load_page",
    "log_off",
    "log_reader",
    "read_bypasses",
    "read_counts",
    "read_groups",
    "read_hosts",
    "read_paths",
    "read_record",
    "read_rollups",
]


def log_reader(request: web.Request) -> Reader | None:
    """The admin's reader of the decision log (None: nothing stored to read back)."""
    return request.app[ADMIN].reader


def log_off(request: web.Request) -> bool:
    """Whether no log is stored to read back (the pages say so instead of "nothing")."""
    return log_reader(request) is None


@dataclass(frozen=True, slots=True)
class Page:
    records: list[DecisionRecord]
    #: the cursor of the next (older) page; None on the last page
    next_before_id: int | None
    #: whether there is a previous (newer) page, and its cursor (None: the first page)
    has_prev: bool = False
    prev_before_id: int | None = None


async def load_page(
    reader: Reader | None, f: Filters, limit: int, before_id: int | None, with_prev: bool
) -> Page:
    """One page of records (newest first) and the cursors around it."""
    if reader is None:
        return Page([], None)
    rows = await reader.records(f.query(limit + 1, before_id=before_id))
    more = len(rows) > limit
    rows = rows[:limit]
    page = Page(rows, rows[-1].id if more and rows else None)
    if not with_prev or before_id is None:
        return page
    # The previous page ends with record `before_id`: it starts `limit` records above it.
    newer = await reader.records(f.query(limit, newer_than_id=before_id))
    prev = newer[-1].id if len(newer) == limit else None
    return replace(page, has_prev=True, prev_before_id=prev)


async def read_counts(request: web.Request, since: float | None) -> DecisionCounts:
    reader = log_reader(request)
    if reader is None:
        return DecisionCounts(MappingProxyType({}), MappingProxyType({}), 0)
    return await reader.counts(since)


async def read_hosts(request: web.Request, since: float | None, limit: int) -> list[UnknownHost]:
    reader = log_reader(request)
    return [] if reader is None else await reader.unknown_hosts(since, limit)


async def read_paths(
    request: web.Request, host: str, since: float | None, limit: int
) -> list[UnknownPath]:
    reader = log_reader(request)
    return [] if reader is None else await reader.unknown_paths(host, since, limit)


async def read_bypasses(
    request: web.Request, since: float | None, limit: int, kind: str | None
) -> list[Bypass]:
    reader = log_reader(request)
    return [] if reader is None else await reader.bypasses(since, limit, kind)


@dataclass(frozen=True, slots=True)
class Rollups:
    """What the overview shows from the rollups over one window."""

    timeline: Timeline
    vendors: list[VendorShare]
    consent: list[PurposeShare]


async def read_rollups(request: web.Request, since: float, until: float, buckets: int) -> Rollups:
    reader = log_reader(request)
    if reader is None:
        return Rollups(timeline(None, since, until, buckets), [], [])
    purposes = tuple(request.app[ADMIN].gw.config.consent.purposes)
    return Rollups(
        await reader.timeline(since, until, buckets),
        await reader.vendor_shares(since, until),
        await reader.consent_shares(since, until, purposes),
    )


async def read_groups(request: web.Request, q: LogQuery) -> list[RecordGroup]:
    reader = log_reader(request)
    return [] if reader is None else await reader.groups(q)


async def read_record(request: web.Request, record_id: int) -> DecisionRecord | None:
    reader = log_reader(request)
    return None if reader is None else await reader.record(record_id)
