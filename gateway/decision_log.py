"""The decision log (DESIGN §7): what the gateway decided, and why, off the hot path.

```
record_for(facts, decision, consent) ─▶ DecisionLog.submit ─▶ bounded queue
    ─▶ batch writer task ─▶ executor thread ─▶ SqliteSink / JsonlSink
```

- `record_for` is the privacy gate: a `DecisionRecord` holds names, never values.
  Whatever is not copied here can never reach a sink, the admin page or the CLI.
  Paths are stored as templates (the matched endpoint's pattern, else the path with
  value-like segments as `{…}`), hosts as names, methods only when standard:
  `sanitize_path`, `sanitize_host` and `sanitize_method` are the one definition of
  that, which the access log (`gateway.access_log`) applies as well.
- `DecisionLog.submit` never blocks and never raises: a full queue loses the
  record and counts it (`gateway_decision_log_lost_total{reason="queue_full"}`).
- The writer takes up to `batch_size` records (waiting at most `flush_interval`
  after the first for more) and hands the batch to every sink in one dedicated
  thread, so neither SQLite nor file I/O ever runs on the event loop. A failing
  sink loses that batch, counted (`reason="sink_error"`); the writer carries on.
- `query_records`, `format_record` and `run_logs` read the SQLite file back for
  `consent-gateway logs` and the admin page; `count_decisions` and `unknown_hosts`
  aggregate it for the admin page's overview and unknown-destinations views.

Counting: `log_written` and `log_lost{reason="sink_error"}` count per sink, so with
both sinks configured each record is counted twice (once per sink it reached or
missed). `log_lost{reason="queue_full"}` and `{reason="closed"}` count records that
reached no sink at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Final, Protocol, TextIO

import orjson

from gateway.config import DecisionLogConfig
from gateway.metrics import Metrics
from gateway.model import Action, ConsentState, Decision, Facts
from gateway.redact import (
    RAW_CAP,
    VALUE_MARK,
    clean,
    clean_opt,
    log_path,
    looks_like_value,
    sanitize_host,
    sanitize_method,
)
from gateway.ruleset.match import Match

__all__ = [
    "MAX_QUERY_LIMIT",
    "SCHEMA_VERSION",
    "DecisionCounts",
    "DecisionLog",
    "DecisionRecord",
    "JsonlSink",
    "LogQuery",
    "Sink",
    "SqliteSink",
    "UnknownHost",
    "count_decisions",
    "format_record",
    "log_path",
    "parse_since",
    "query_records",
    "record_for",
    "record_to_dict",
    "run_logs",
    "unknown_hosts",
]

log = logging.getLogger(__name__)

#: `PRAGMA user_version` of the `decisions` table this module writes and reads.
SCHEMA_VERSION: Final = 1
#: the largest `LogQuery.limit` (the admin API passes visitor-chosen limits through).
MAX_QUERY_LIMIT: Final = 10_000

_REASON_CAP: Final = 300
_SHORT_CAP: Final = 128  # request id, vendor, endpoint, regime, purposes, source names
# Raw input beyond this is never looked at: the result is capped far below it anyway.
_WARN_EVERY: Final = 10.0  # seconds between two warnings about lost records


# --- the record ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
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
    sources: Mapping[str, str] = MappingProxyType(
        {
            clean(p, _SHORT_CAP): clean(s, _SHORT_CAP)
            for p, s in (consent.sources() if consent is not None else {}).items()
        }
    )
    return DecisionRecord(
        ts=float(facts.now) if facts.now > 0 else time.time(),
        request_id=clean(facts.request_id, _SHORT_CAP),
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


def _iso(ts: float, timespec: str = "milliseconds") -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def record_to_dict(r: DecisionRecord) -> dict[str, Any]:
    """The JSON shape of a record (JSONL sink, `logs --json`, the admin API).

    Keys are the dataclass fields, with `ts` as an ISO-8601 UTC string
    (`2026-11-29T10:00:00.000Z`) and the epoch seconds in `ts_epoch`.
    """
    out: dict[str, Any] = {"ts": _iso(r.ts), "ts_epoch": r.ts}
    for f in fields(r):
        if f.name != "ts":
            out[f.name] = getattr(r, f.name)
    out["missing"] = list(r.missing)
    out["sources"] = dict(r.sources)
    out["stripped"] = list(r.stripped)
    return out


# --- sinks --------------------------------------------------------------------------------


class Sink(Protocol):
    """Where batches of records go. Every method runs in the log's single writer thread.

    `open` and `write` raise `sqlite3.Error` or `OSError` when the destination is
    unavailable; the log counts the batch as lost and calls `write` again with the
    next batch, so a sink reopens itself once its destination is back.
    """

    #: a short name for warnings and metrics
    name: str

    def open(self) -> None: ...
    def write(self, records: Sequence[DecisionRecord]) -> None: ...
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    action TEXT NOT NULL,
    vendor TEXT,
    endpoint TEXT,
    missing TEXT NOT NULL,   -- JSON array of purposes
    sources TEXT NOT NULL,   -- JSON object: purpose -> source name
    regime TEXT,
    method TEXT NOT NULL,
    host TEXT NOT NULL,
    path TEXT NOT NULL,
    stripped TEXT NOT NULL,  -- JSON array of field names
    reason TEXT NOT NULL,
    report_only INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts);
CREATE INDEX IF NOT EXISTS decisions_vendor ON decisions (vendor, ts);
CREATE INDEX IF NOT EXISTS decisions_action ON decisions (action, ts);
"""

_COLUMNS = (
    "ts, request_id, action, vendor, endpoint, missing, sources, regime, method, host, path, "
    "stripped, reason, report_only"
)
_INSERT = f"INSERT INTO decisions ({_COLUMNS}) VALUES ({', '.join('?' * 14)})"


def _json_text(value: object) -> str:
    return orjson.dumps(value).decode()


def _row(r: DecisionRecord) -> tuple[object, ...]:
    return (
        r.ts,
        r.request_id,
        r.action,
        r.vendor,
        r.endpoint,
        _json_text(list(r.missing)),
        _json_text(dict(r.sources)),
        r.regime,
        r.method,
        r.host,
        r.path,
        _json_text(list(r.stripped)),
        r.reason,
        int(r.report_only),
    )


class SqliteSink:
    """Records as rows of the `decisions` table in one SQLite file (WAL mode).

    Creates the file, its parent folders, the table and its indexes on first use.
    Refuses (`sqlite3.DatabaseError`) a file whose schema version is newer than
    `SCHEMA_VERSION`. Several gateway processes may share one file: WAL and a
    busy timeout serialise their batches. Not thread-safe: one thread owns it.
    """

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        if self._conn is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: opened and used only by the log's one writer thread,
        # which is not necessarily the thread that created this object.
        conn = sqlite3.connect(
            self.path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"{self.path}: decision log schema {version} is newer than {SCHEMA_VERSION}"
                )
            if version < SCHEMA_VERSION:
                conn.executescript(
                    f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def write(self, records: Sequence[DecisionRecord]) -> None:
        """Insert the batch in one transaction: all of it is stored, or (raising) none."""
        self.open()
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT, [_row(r) for r in records])
            conn.execute("COMMIT")
        except BaseException:
            # Start afresh with the next batch: the file may have gone or been replaced.
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # an open transaction is rolled back, never half-committed


class JsonlSink:
    """Records as JSON lines (`record_to_dict`) for log shippers.

    `target` is `-` for standard output, otherwise a file appended to (created, with
    its parent folders, on first use). Each batch is flushed when written.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.name = "jsonl-stdout" if target == "-" else "jsonl"
        self._file: IO[bytes] | None = None

    def open(self) -> None:
        if self.target == "-" or self._file is not None:
            return
        path = Path(self.target)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")

    def write(self, records: Sequence[DecisionRecord]) -> None:
        data = b"".join(orjson.dumps(record_to_dict(r)) + b"\n" for r in records)
        if self.target == "-":
            # Looked up per batch: sys.stdout may have been replaced (tests, daemonisers).
            out = sys.stdout
            try:
                out.flush()
                buffer: IO[bytes] | None = getattr(out, "buffer", None)
                if buffer is not None:
                    buffer.write(data)
                    buffer.flush()
                else:
                    out.write(data.decode())
                    out.flush()
            except ValueError as e:  # stdout closed (daemonised): an outage, not a bug
                raise OSError(str(e)) from e
            return
        self.open()
        f = self._file
        assert f is not None
        try:
            f.write(data)
            f.flush()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()


def _sinks_for(cfg: DecisionLogConfig) -> list[Sink]:
    sinks: list[Sink] = []
    if cfg.sqlite_path is not None:
        sinks.append(SqliteSink(cfg.sqlite_path))
    if cfg.jsonl is not None:
        sinks.append(JsonlSink(cfg.jsonl))
    return sinks


# --- the log ------------------------------------------------------------------------------


class _LossWarning:
    """A warning about lost records, at most once per `_WARN_EVERY` seconds, with the count."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._count = 0
        self._last = -_WARN_EVERY

    def hit(self, n: int, detail: str = "") -> None:
        self._count += n
        now = time.monotonic()
        if now - self._last >= _WARN_EVERY:
            self.flush(detail)
            self._last = now

    def flush(self, detail: str = "") -> None:
        if self._count:
            log.warning("decision log: %d records lost: %s%s", self._count, self._what, detail)
            self._count = 0


class DecisionLog:
    """The queue and batch writer between the pipeline and the sinks.

    Lifecycle: `start()` once the event loop runs, `submit()` from the loop's thread
    (it is not thread-safe), `close()` on shutdown. Records submitted before `start`
    wait in the queue. With no sink configured the log is off and `submit` discards.
    """

    def __init__(self, cfg: DecisionLogConfig, metrics: Metrics) -> None:
        self._cfg = cfg
        self._metrics = metrics
        self._sinks = _sinks_for(cfg)
        #: None is the writer's stop signal, queued by `close` behind every accepted record
        self._queue: asyncio.Queue[DecisionRecord | None] = asyncio.Queue(cfg.queue_size)
        self._executor: ThreadPoolExecutor | None = None
        self._writer: asyncio.Task[None] | None = None
        self._accepting = True
        self._started = False
        self._closed = False
        self._close_lock = asyncio.Lock()
        self._full_warning = _LossWarning("queue full")
        self._subscribers: set[asyncio.Queue[DecisionRecord]] = set()
        self._sink_warnings = {id(s): _LossWarning(f"{s.name} sink failed") for s in self._sinks}

    @property
    def depth(self) -> int:
        """Records waiting in the queue."""
        return self._queue.qsize()

    @property
    def running(self) -> bool:
        """Started and not closed, with its writer alive (for readiness checks).

        A failing sink does not make the log stop running: its losses are counted.
        """
        if not self._started or self._closed:
            return False
        return self._writer is None or not self._writer.done()

    @property
    def enabled(self) -> bool:
        """Whether any sink is configured."""
        return bool(self._sinks)

    async def start(self) -> None:
        """Open the sinks and start the writer; a second call does nothing.

        A sink that cannot open is not an error here: it is logged, and it retries
        with every batch (records meanwhile count as lost). Raises `RuntimeError`
        after `close`.
        """
        if self._closed:
            raise RuntimeError("decision log is closed")
        if self._started:
            return  # started, or starting in another task
        self._started = True
        if not self._sinks:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decision-log")
        loop = asyncio.get_running_loop()
        for sink in self._sinks:
            try:
                await loop.run_in_executor(self._executor, sink.open)
            except (sqlite3.Error, OSError) as e:
                log.warning("decision log: %s sink cannot open yet: %s", sink.name, e)
        self._writer = loop.create_task(self._run(), name="decision-log-writer")

    def subscribe(self, maxsize: int = 256) -> asyncio.Queue[DecisionRecord]:
        """A queue that receives every record submitted from now on (the admin page's
        live tail). A subscriber that falls behind misses records rather than slowing
        the gateway: its queue is bounded and never waited on. `unsubscribe` when done."""
        q: asyncio.Queue[DecisionRecord] = asyncio.Queue(maxsize)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[DecisionRecord]) -> None:
        self._subscribers.discard(q)

    def submit(self, record: DecisionRecord) -> bool:
        """Queue `record` for writing; never blocks, never raises.

        True: accepted (it will be written, or counted lost by the sink that fails it).
        False: lost at once and counted: the queue is full, or the log is closed.
        """
        for sub in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                sub.put_nowait(record)
        if not self._sinks:
            return True
        if not self._accepting:
            self._metrics.log_lost.labels("closed").inc()
            return False
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self._metrics.log_lost.labels("queue_full").inc()
            self._full_warning.hit(1, f" (queue_size={self._cfg.queue_size})")
            return False
        return True

    async def drain(self) -> None:
        """Wait until every record accepted so far is written (or counted lost): what a
        test or an operator's check reads next is complete. Returns at once when the
        log has no writer."""
        if self._writer is not None and not self._writer.done():
            await self._queue.join()

    async def close(self) -> None:
        """Stop accepting, write every accepted record, close the sinks; idempotent.

        A log closed without `start` is started first so its queued records are
        written. If `close` itself is cancelled, what is still queued counts as lost.
        """
        async with self._close_lock:
            if self._closed:
                return
            self._accepting = False
            try:
                if self._writer is None and self._queue.qsize():
                    await self.start()
                if self._writer is not None and not self._writer.done():
                    # Behind every accepted record: nothing submitted later is accepted.
                    await self._queue.put(None)
                    await self._writer
            finally:
                self._closed = True
                self._count_stranded()
                await self._close_sinks()
                self._full_warning.flush()
                for w in self._sink_warnings.values():
                    w.flush()

    def _count_stranded(self) -> None:
        stranded = 0
        while not self._queue.empty():
            if self._queue.get_nowait() is not None:
                stranded += 1
        if stranded:
            self._metrics.log_lost.labels("closed").inc(stranded)
            log.warning("decision log: %d records lost: closed before written", stranded)

    async def _close_sinks(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # Queued behind any write still in flight (one thread, first in first out), and
        # shielded: even if close is cancelled, the connection is closed by its own thread.
        future = executor.submit(self._close_sinks_sync)
        executor.shutdown(wait=False)
        await asyncio.shield(asyncio.wrap_future(future))

    def _close_sinks_sync(self) -> None:
        for sink in self._sinks:
            try:
                sink.close()
            except (sqlite3.Error, OSError) as e:
                log.warning("decision log: %s sink failed to close: %s", sink.name, e)

    async def _run(self) -> None:
        """The writer: batches records until it takes the stop signal. Never raises."""
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                self._queue.task_done()
                break
            batch = [first]
            deadline = loop.time() + self._cfg.flush_interval
            while len(batch) < self._cfg.batch_size:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        async with asyncio.timeout(remaining):
                            item = await self._queue.get()
                    except TimeoutError:
                        break
                if item is None:
                    self._queue.task_done()
                    stop = True
                    break
                batch.append(item)
            await self._write(batch)
            for _ in batch:
                self._queue.task_done()

    async def _write(self, batch: Sequence[DecisionRecord]) -> None:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        n = len(batch)
        for sink in self._sinks:
            try:
                await loop.run_in_executor(self._executor, sink.write, batch)
            except (sqlite3.Error, OSError) as e:
                self._metrics.log_lost.labels("sink_error").inc(n)
                # SECURITY: the error names the sink and its failure, never record contents.
                self._sink_warnings[id(sink)].hit(n, f": {type(e).__name__}: {e}")
            except Exception:
                # A bug, not an outage; the writer must survive it all the same.
                self._metrics.log_lost.labels("sink_error").inc(n)
                log.exception("decision log: %s sink raised unexpectedly", sink.name)
            else:
                self._metrics.log_written.inc(n)


# --- reading back -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogQuery:
    """A filter over stored records.

    `since` is inclusive and `until` exclusive (epoch seconds). `purpose` matches
    records whose `missing` list contains it. `after_id` pages forward for `--follow`.
    `limit` is 1..`MAX_QUERY_LIMIT` (`ValueError` otherwise).

    Keyset paging through the newest-first order (`ts`, then `id`, both descending),
    for the admin page: `before_id` keeps the records that come after record
    `before_id` in that order (older ones: the next page when it is the last id of
    this one); `newer_than_id` keeps those that come before it, nearest first (the
    previous page, read backwards). A cursor id that is not stored matches nothing.
    At most one of `after_id`, `before_id`, `newer_than_id` (`ValueError` otherwise).
    """

    since: float | None = None
    until: float | None = None
    vendor: str | None = None
    action: str | None = None
    purpose: str | None = None
    regime: str | None = None
    limit: int = 100
    after_id: int | None = None
    before_id: int | None = None
    newer_than_id: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_QUERY_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
        cursors = (self.after_id, self.before_id, self.newer_than_id)
        if sum(c is not None for c in cursors) > 1:
            raise ValueError("at most one of after_id, before_id, newer_than_id")


def _connect_ro(db_path: Path) -> sqlite3.Connection | None:
    """A read-only connection, or None when there is no decision log (yet) at `db_path`."""
    if not db_path.is_file():
        return None
    uri = db_path.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5.0)
    except sqlite3.OperationalError:
        return None  # removed between the check and the open
    try:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'decisions'"
        ).fetchone()
    except BaseException:
        conn.close()
        raise
    if found is None:
        conn.close()
        return None
    return conn


def _str_tuple(text: str) -> tuple[str, ...]:
    value = orjson.loads(text)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _record_from_row(row: sqlite3.Row) -> DecisionRecord:
    sources = orjson.loads(row["sources"])
    return DecisionRecord(
        ts=float(row["ts"]),
        request_id=row["request_id"],
        action=row["action"],
        vendor=row["vendor"],
        endpoint=row["endpoint"],
        missing=_str_tuple(row["missing"]),
        sources=MappingProxyType(
            {str(k): str(v) for k, v in sources.items()} if isinstance(sources, dict) else {}
        ),
        regime=row["regime"],
        method=row["method"],
        host=row["host"],
        path=row["path"],
        stripped=_str_tuple(row["stripped"]),
        reason=row["reason"],
        report_only=bool(row["report_only"]),
        id=int(row["id"]),
    )


def query_records(db_path: Path, q: LogQuery) -> list[DecisionRecord]:
    """Records matching `q`: newest first; with `q.after_id` oldest first from it
    (by id); with `q.newer_than_id` oldest first from it (by time, then id).

    Synchronous (the CLI calls it directly, the admin page through an executor).
    Opens the file read-only and never creates it: no file or no table yet -> `[]`.
    Raises `sqlite3.Error` for an unreadable or corrupt file.
    """
    conn = _connect_ro(db_path)
    if conn is None:
        return []
    where: list[str] = []
    args: list[object] = []
    for clause, value in (
        ("ts >= ?", q.since),
        ("ts < ?", q.until),
        ("vendor = ?", q.vendor),
        ("action = ?", q.action),
        ("regime = ?", q.regime),
        ("id > ?", q.after_id),
        ("(ts, id) < (SELECT ts, id FROM decisions WHERE id = ?)", q.before_id),
        ("(ts, id) > (SELECT ts, id FROM decisions WHERE id = ?)", q.newer_than_id),
        ("EXISTS (SELECT 1 FROM json_each(decisions.missing) WHERE value = ?)", q.purpose),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    sql = f"SELECT id, {_COLUMNS} FROM decisions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if q.after_id is not None:
        sql += " ORDER BY id ASC"
    elif q.newer_than_id is not None:
        sql += " ORDER BY ts ASC, id ASC"
    else:
        sql += " ORDER BY ts DESC, id DESC"
    sql += " LIMIT ?"
    args.append(q.limit)
    try:
        conn.row_factory = sqlite3.Row
        return [_record_from_row(row) for row in conn.execute(sql, args)]
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class DecisionCounts:
    """How many records a time window holds, for the admin overview."""

    #: (vendor, or None for an unknown destination; action) -> records
    by_vendor_action: Mapping[tuple[str | None, str], int]
    #: purpose -> records that were missing it
    by_purpose: Mapping[str, int]
    #: every record in the window
    total: int


def count_decisions(db_path: Path, since: float | None = None) -> DecisionCounts:
    """Records since `since` (inclusive; None: all), counted by vendor and action, and
    by missing purpose (a record missing two purposes counts once for each).

    Synchronous, read-only, like `query_records`: no file or table yet -> all zero.
    Raises `sqlite3.Error` for an unreadable or corrupt file.
    """
    conn = _connect_ro(db_path)
    if conn is None:
        return DecisionCounts(MappingProxyType({}), MappingProxyType({}), 0)
    where, args = ("WHERE ts >= ?", [since]) if since is not None else ("", [])
    try:
        pairs = conn.execute(
            f"SELECT vendor, action, COUNT(*) FROM decisions {where} GROUP BY vendor, action",
            args,
        ).fetchall()
        purposes = conn.execute(
            "SELECT m.value, COUNT(*) FROM decisions, json_each(decisions.missing) AS m "
            f"{where} GROUP BY m.value",
            args,
        ).fetchall()
    finally:
        conn.close()
    by_pair = {(v, str(a)): int(n) for v, a, n in pairs}
    return DecisionCounts(
        by_vendor_action=MappingProxyType(by_pair),
        by_purpose=MappingProxyType({str(p): int(n) for p, n in purposes}),
        total=sum(by_pair.values()),
    )


@dataclass(frozen=True, slots=True)
class UnknownHost:
    """A destination the gateway rejected because no rule lists it."""

    #: as logged (`sanitize_host`: a name without userinfo, port or parameters, or `{…}`)
    host: str
    count: int
    #: epoch seconds of the first and the last rejected request in the window
    first_seen: float
    last_seen: float


def unknown_hosts(db_path: Path, since: float | None = None, limit: int = 100) -> list[UnknownHost]:
    """Hosts of rejected requests for no vendor (action `reject`, vendor NULL) since
    `since` (inclusive; None: all), grouped by host, most requests first (then the
    most recently seen, then by name), at most `limit` (1..`MAX_QUERY_LIMIT`).

    Synchronous, read-only, like `query_records`: no file or table yet -> `[]`.
    Raises `ValueError` for a bad `limit`, `sqlite3.Error` for an unreadable file.
    """
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_QUERY_LIMIT}")
    conn = _connect_ro(db_path)
    if conn is None:
        return []
    sql = (
        "SELECT host, COUNT(*) AS n, MIN(ts), MAX(ts) AS last FROM decisions"
        " WHERE action = 'reject' AND vendor IS NULL"
    )
    args: list[object] = []
    if since is not None:
        sql += " AND ts >= ?"
        args.append(since)
    sql += " GROUP BY host ORDER BY n DESC, last DESC, host ASC LIMIT ?"
    args.append(limit)
    try:
        rows = conn.execute(sql, args).fetchall()
    finally:
        conn.close()
    return [UnknownHost(str(h), int(n), float(first), float(last)) for h, n, first, last in rows]


def _max_id(db_path: Path) -> int:
    conn = _connect_ro(db_path)
    if conn is None:
        return 0
    try:
        value = conn.execute("SELECT MAX(id) FROM decisions").fetchone()[0]
    finally:
        conn.close()
    return int(value) if value is not None else 0


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_since(text: str, now: float) -> float:
    """Epoch seconds for `--since`: a duration back from `now` or an ISO-8601 time.

    Durations: a number and one of `s m h d w` (`90s`, `30m`, `1h`, `2d`, `1.5h`).
    A timestamp without a UTC offset is taken as UTC. Anything else: `ValueError`.
    """
    text = text.strip()[:64]
    m = _DURATION.fullmatch(text)
    if m is not None:
        back = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        if back > _MAX_SINCE:
            # A bound keeps every query's time arithmetic finite (1000000000000d is not).
            raise ValueError(f"{text!r} is too far back: at most {_MAX_SINCE // 86400}d")
        return now - back
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (90s, 30m, 1h, 2d) nor an ISO-8601 time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ts = when.timestamp()
    if ts < 0:
        raise ValueError(f"{text!r} is before 1970")
    return ts


#: the furthest back `parse_since` goes: a century, longer than any log is kept
_MAX_SINCE: Final = 100 * 365 * 86400


def format_record(r: DecisionRecord) -> str:
    """One human-readable line, e.g.

    `2026-11-29T10:00:00Z drop google-analytics-4/collect missing=analytics GET
    www.google-analytics.com/g/collect (regime=opt-in) analytics not granted`

    Report-only records show `[report-only]` after the action; stripped field names
    follow `missing=`. Safe to print to a terminal: control characters become `?`.
    """
    parts = [_iso(r.ts, "seconds"), r.action]
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
    code: 0, or 2 with a message on stderr for a bad `since`, `action` or `limit`.
    """
    try:
        if action is not None and action not in {a.value for a in Action}:
            raise ValueError(f"action must be one of {', '.join(a.value for a in Action)}")
        since_ts = parse_since(since, time.time()) if since is not None else None
        query = LogQuery(since=since_ts, vendor=vendor, action=action, purpose=purpose, limit=limit)
    except ValueError as e:
        print(f"consent-gateway logs: {e}", file=sys.stderr)
        return 2
    if not db_path.is_file():
        print(f"consent-gateway logs: no decision log at {db_path} (yet)", file=sys.stderr)

    def emit(records: Sequence[DecisionRecord]) -> None:
        for r in records:
            out.write(orjson.dumps(record_to_dict(r)).decode() if as_json else format_record(r))
            out.write("\n")
        out.flush()

    try:
        # Read before the first query: a row committed in between is either in the
        # first page or above this mark, so following neither repeats nor skips it.
        last_id = _max_id(db_path) if follow else 0
        records = query_records(db_path, query)[::-1]
        emit(records)
        if not follow:
            return 0
        last_id = max([last_id, *(r.id or 0 for r in records)])
        polls = 0
        while max_polls is None or polls < max_polls:
            sleep(poll_interval)
            polls += 1
            while True:
                page = query_records(
                    db_path,
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
    return 0
