"""The admin's reads of the decision log, shared by the pages and the JSON API.

SQLite is read in the default executor, never on the event loop. Without a SQLite log
(`decision_log.sqlite_path` unset) every read is empty. A log that cannot be read
raises `LogUnavailable`, which the sub-app's middleware answers with a 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from aiohttp import web

from gateway.admin.answers import ADMIN
from gateway.admin.params import Filters
from gateway.decision_log.bypasses import Bypass
from gateway.decision_log.query import (
    DecisionCounts,
    LogQuery,
    LogReader,
    RecordGroup,
    UnknownHost,
    UnknownPath,
)
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.rollups_query import PurposeShare, Timeline, VendorShare, timeline

__all__ = [
    "Page",
    "Rollups",
    "db_path",
    "load_page",
    "read",
    "read_bypasses",
    "read_counts",
    "read_groups",
    "read_hosts",
    "read_paths",
    "read_record",
    "read_rollups",
]

T = TypeVar("T")


async def read(fn: Callable[..., T], *args: object) -> T:
    """Run a synchronous decision-log read in the default executor."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def db_path(request: web.Request) -> Path | None:
    return request.app[ADMIN].gw.config.decision_log.sqlite_path


@dataclass(frozen=True, slots=True)
class Page:
    records: list[DecisionRecord]
    #: the cursor of the next (older) page; None on the last page
    next_before_id: int | None
    #: whether there is a previous (newer) page, and its cursor (None: the first page)
    has_prev: bool = False
    prev_before_id: int | None = None


def load_page(
    db: Path | None, f: Filters, limit: int, before_id: int | None, with_prev: bool
) -> Page:
    """One page of records (newest first) and the cursors around it; synchronous."""
    if db is None:
        return Page([], None)
    reader = LogReader(db)
    rows = reader.records(f.query(limit + 1, before_id=before_id))
    more = len(rows) > limit
    rows = rows[:limit]
    page = Page(rows, rows[-1].id if more and rows else None)
    if not with_prev or before_id is None:
        return page
    # The previous page ends with record `before_id`: it starts `limit` records above it.
    newer = reader.records(f.query(limit, newer_than_id=before_id))
    prev = newer[-1].id if len(newer) == limit else None
    return replace(page, has_prev=True, prev_before_id=prev)


async def read_counts(request: web.Request, since: float | None) -> DecisionCounts:
    db = db_path(request)
    if db is None:
        return DecisionCounts(MappingProxyType({}), MappingProxyType({}), 0)
    return await read(LogReader(db).counts, since)


async def read_hosts(request: web.Request, since: float | None, limit: int) -> list[UnknownHost]:
    db = db_path(request)
    if db is None:
        return []
    return await read(LogReader(db).unknown_hosts, since, limit)


async def read_paths(
    request: web.Request, host: str, since: float | None, limit: int
) -> list[UnknownPath]:
    db = db_path(request)
    if db is None:
        return []
    return await read(LogReader(db).unknown_paths, host, since, limit)


async def read_bypasses(
    request: web.Request, since: float | None, limit: int, kind: str | None
) -> list[Bypass]:
    db = db_path(request)
    if db is None:
        return []
    return await read(LogReader(db).bypasses, since, limit, kind)


@dataclass(frozen=True, slots=True)
class Rollups:
    """What the overview shows from the rollups over one window."""

    timeline: Timeline
    vendors: list[VendorShare]
    consent: list[PurposeShare]


def _rollups(
    db: Path | None, since: float, until: float, buckets: int, purposes: tuple[str, ...]
) -> Rollups:
    if db is None:
        return Rollups(timeline(None, since, until, buckets), [], [])
    reader = LogReader(db)
    return Rollups(
        reader.timeline(since, until, buckets),
        reader.vendor_shares(since, until),
        reader.consent_shares(since, until, purposes),
    )


async def read_rollups(request: web.Request, since: float, until: float, buckets: int) -> Rollups:
    purposes = tuple(request.app[ADMIN].gw.config.consent.purposes)
    return await read(_rollups, db_path(request), since, until, buckets, purposes)


async def read_groups(request: web.Request, q: LogQuery) -> list[RecordGroup]:
    db = db_path(request)
    if db is None:
        return []
    return await read(LogReader(db).groups, q)


async def read_record(request: web.Request, record_id: int) -> DecisionRecord | None:
    db = db_path(request)
    if db is None:
        return None
    return await read(LogReader(db).record, record_id)
