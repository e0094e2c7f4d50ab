"""`consent-gateway logs`: the decision log, printed.

`run_logs` reads the SQLite file back (`gateway.decision_log.query.LogReader`) and
prints matching records oldest to newest, one `format_record` line each or
`record_to_dict` JSON lines; with `--follow` it polls for newer rows. `run_pg_logs` does
the same for the PostgreSQL log, every instance's records, following by LISTEN. Exit codes:
0, or 2 with a message on stderr for a bad `--since`, `--action` or `--limit`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import orjson

from gateway.decision_log.pg_query import PgLogReader, PgTail
from gateway.decision_log.query import MAX_QUERY_LIMIT, LogQuery, LogReader, parse_since
from gateway.decision_log.record import DecisionRecord, iso_utc, record_to_dict
from gateway.errors import LogUnavailable
from gateway.model import Action
from gateway.redact import RAW_CAP, clean

__all__ = ["format_record", "run_logs", "run_pg_logs"]


def format_record(r: DecisionRecord) -> str:
    """One human-readable line, e.g.

    `2026-11-29T10:00:00Z drop google-analytics-4/collect missing=analytics GET
    www.google-analytics.com/g/collect (regime=opt-in) analytics not granted`

    Report-only records show `[report-only]` after the action; stripped field names
    follow `missing=`. Safe to print to a terminal: control characters become `?`.
    """
    parts = [iso_utc(r.ts, "seconds"), r.action]
    if r.report_only:
        parts.append("[report-only]")
    target = r.vendor or "-"
    if r.endpoint:
        target += f"/{r.endpoint}"
    parts.append(target)
    if r.missing:
        parts.append("missing=" + ",".join(r.missing))
    if r.stripped:
        parts.append("stripped=" + ",".join(r.stripped))
    parts.append(f"{r.method} {r.host}{r.path}")
    if r.regime:
        parts.append(f"(regime={r.regime})")
    if r.reason:
        parts.append(r.reason)
    # SECURITY: rows may come from a file someone else wrote; never emit control characters.
    return clean(" ".join(parts), RAW_CAP)


def run_logs(
    db_path: Path,
    *,
    since: str | None,
    vendor: str | None,
    action: str | None,
    purpose: str | None,
    as_json: bool,
    follow: bool,
    limit: int,
    out: TextIO,
    poll_interval: float = 1.0,
    max_polls: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """`consent-gateway logs`: print matching records, oldest to newest, to `out`.

    Shows the newest `limit` matches (the newest at the bottom), one `format_record`
    line each, or `record_to_dict` JSON lines with `as_json`. With `follow`, polls
    every `poll_interval` seconds for newer rows until interrupted (`max_polls`
    bounds the polls, `sleep` waits between them: both for tests). Returns the exit
    code: 0, or 2 with a message on stderr for a bad `since`, `action` or `limit`, or 1
    with one line on stderr naming the file and the failure when it cannot be read.
    """
    query = _query(since, vendor, action, purpose, limit)
    if query is None:
        return 2
    since_ts = query.since
    if not db_path.is_file():
        print(f"consent-gateway logs: no decision log at {db_path} (yet)", file=sys.stderr)
    reader = LogReader(db_path)

    def emit(records: Sequence[DecisionRecord]) -> None:
        _emit(records, out, as_json)

    try:
        # Read before the first query: a row committed in between is either in the
        # first page or above this mark, so following neither repeats nor skips it.
        last_id = reader.max_id() if follow else 0
        records = reader.records(query)[::-1]
        emit(records)
        if not follow:
            return 0
        last_id = max([last_id, *(r.id or 0 for r in records)])
        polls = 0
        while max_polls is None or polls < max_polls:
            sleep(poll_interval)
            polls += 1
            while True:
                page = reader.records(
                    LogQuery(
                        since=since_ts,
                        vendor=vendor,
                        action=action,
                        purpose=purpose,
                        limit=MAX_QUERY_LIMIT,
                        after_id=last_id,
                    ),
                )
                emit(page)
                if page:
                    last_id = page[-1].id or last_id
                if len(page) < MAX_QUERY_LIMIT:
                    break
    except KeyboardInterrupt:
        pass
    except LogUnavailable as e:
        print(f"consent-gateway logs: cannot read the decision log: {e}", file=sys.stderr)
        return 1
    return 0


def _query(
    since: str | None, vendor: str | None, action: str | None, purpose: str | None, limit: int
) -> LogQuery | None:
    """The filters as a query; None, with the message on stderr, for a bad one."""
    try:
        if action is not None and action not in {a.value for a in Action}:
            raise ValueError(f"action must be one of {', '.join(a.value for a in Action)}")
        since_ts = parse_since(since, time.time()) if since is not None else None
        return LogQuery(since=since_ts, vendor=vendor, action=action, purpose=purpose, limit=limit)
    except ValueError as e:
        print(f"consent-gateway logs: {e}", file=sys.stderr)
        return None


def _emit(records: Sequence[DecisionRecord], out: TextIO, as_json: bool) -> None:
    for r in records:
        out.write(orjson.dumps(record_to_dict(r)).decode() if as_json else format_record(r))
        out.write("\n")
    out.flush()


def _matches(q: LogQuery, r: DecisionRecord) -> bool:
    return (
        (q.since is None or r.ts >= q.since)
        and (q.vendor is None or r.vendor == q.vendor)
        and (q.action is None or r.action == q.action)
        and (q.purpose is None or q.purpose in r.missing)
    )


def run_pg_logs(
    dsn: str,
    *,
    since: str | None,
    vendor: str | None,
    action: str | None,
    purpose: str | None,
    as_json: bool,
    follow: bool,
    limit: int,
    out: TextIO,
    max_follow: int | None = None,
) -> int:
    """`run_logs` for `decision_log.backend: postgres`: every instance's records. With
    `follow`, new records arrive as any instance commits them (LISTEN, not polling by
    id: batches of several instances commit out of id order); `max_follow` stops after
    that many (tests)."""
    query = _query(since, vendor, action, purpose, limit)
    if query is None:
        return 2
    try:
        return asyncio.run(_pg_logs(dsn, query, as_json, follow, out, max_follow))
    except LogUnavailable as e:
        print(f"consent-gateway logs: cannot read the decision log: {e}", file=sys.stderr)
        return 1


async def _pg_logs(
    dsn: str, query: LogQuery, as_json: bool, follow: bool, out: TextIO, max_follow: int | None
) -> int:
    reader, tail = PgLogReader(dsn), PgTail(dsn)
    arrived: asyncio.Queue[DecisionRecord] = asyncio.Queue(10_000)
    try:
        if follow:
            # Listening before the first query: a record committed in between comes both
            # ways, and is printed once (by id).
            tail.add(arrived)
            await asyncio.wait_for(tail.listening.wait(), 10)
        records = (await reader.records(query))[::-1]
        _emit(records, out, as_json)
        seen = {r.id for r in records}
        followed = 0
        while follow and (max_follow is None or followed < max_follow):
            r = await arrived.get()
            if r.id not in seen and _matches(query, r):
                _emit([r], out, as_json)
                followed += 1
    except TimeoutError:
        raise LogUnavailable("postgres decision log: cannot listen for new records") from None
    finally:
        await tail.close()
        await reader.close()
    return 0
