"""gateway.decision_log.pg_query: the PostgreSQL reader answers as the SQLite reader does
(the same records written to both, every query compared), and the tail hears every
instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.decision_log.bypasses import Seen
from gateway.decision_log.pg_query import PgLogReader, PgTail
from gateway.decision_log.postgres import PostgresHost
from gateway.decision_log.query import LogQuery, LogReader
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.rollups import RollupRow
from gateway.decision_log.sinks import SqliteSink
from gateway.errors import LogUnavailable
from gateway.violations import Sighting
from tests.conftest import LOG_ROWS, PATH_ROWS, T0, UNKNOWN_ROWS, make_record, store_records
from tests.stores import fresh_pg_schema, pg_dsn_in, pg_log_config

QUERIES = [
    LogQuery(),
    LogQuery(since=T0 + 20),
    LogQuery(until=T0 + 20),
    LogQuery(since=T0 + 10, until=T0 + 30),
    LogQuery(vendor="ga4"),
    LogQuery(action="drop"),
    LogQuery(purpose="advertising"),
    LogQuery(purpose="advert"),
    LogQuery(regime="us"),
    LogQuery(vendor="meta", action="drop"),
    LogQuery(vendor="%"),
    LogQuery(limit=2),
    LogQuery(after_id=2),
    LogQuery(after_id=2, vendor="meta"),
    LogQuery(after_id=5),
    LogQuery(before_id=4),
    LogQuery(before_id=4, limit=2),
    LogQuery(before_id=99),
    LogQuery(newer_than_id=2),
    LogQuery(newer_than_id=1, action="drop"),
    LogQuery(newer_than_id=99),
]


class Both:
    """The same records in a SQLite file and a PostgreSQL schema, and a reader of each."""

    def __init__(self, db: Path, schema: str) -> None:
        self.sqlite = LogReader(db)
        self.pg = PgLogReader(pg_dsn_in(schema))
        self.db, self.schema = db, schema

    async def write(self, records: Sequence[DecisionRecord]) -> None:
        store_records(self.db, records)
        host = PostgresHost(pg_log_config(self.schema))
        try:
            assert [o.failure for o in await host.write(records)] == [None]
        finally:
            await host.close()


@pytest.fixture
async def both(tmp_path: Path) -> AsyncIterator[Both]:
    async with fresh_pg_schema() as schema:
        b = Both(tmp_path / "decisions.db", schema)
        yield b
        await b.pg.close()


async def test_records_agree_query_by_query(both: Both) -> None:
    await both.write(LOG_ROWS)
    for q in QUERIES:
        assert await both.pg.records(q) == both.sqlite.records(q), q
    assert await both.pg.max_id() == both.sqlite.max_id() == 5


async def test_keyset_paging_follows_time_order(both: Both) -> None:
    await both.write([make_record(r, ts=T0 + t) for r, t in (("x", 5), ("y", 1), ("z", 9))])
    first = await both.pg.records(LogQuery(limit=2))
    second = await both.pg.records(LogQuery(limit=2, before_id=first[-1].id))
    assert [r.request_id for r in first + second] == ["z", "x", "y"]


@pytest.mark.parametrize("since", [None, T0 + 20, T0 + 41])
async def test_counts_agree(both: Both, since: float | None) -> None:
    await both.write(LOG_ROWS)
    assert await both.pg.counts(since) == both.sqlite.counts(since)


@pytest.mark.parametrize(("since", "limit"), [(None, 100), (None, 1), (T0 + 5, 100), (T0 + 31, 9)])
async def test_unknown_destinations_agree(both: Both, since: float | None, limit: int) -> None:
    await both.write(UNKNOWN_ROWS + PATH_ROWS)
    assert await both.pg.unknown_hosts(since, limit) == both.sqlite.unknown_hosts(since, limit)
    for host in ("a.example", "b.example"):
        assert await both.pg.unknown_paths(host, since, limit) == both.sqlite.unknown_paths(
            host, since, limit
        )


async def test_bypasses_are_read_back(both: Both) -> None:
    host = PostgresHost(pg_log_config(both.schema))
    fb = Sighting("router", "bypass", "meta-pixel", "www.facebook.com", "/shop")
    other = Sighting("csp", "unlisted", None, "cdn.example", "/")
    try:
        await host.write_sightings([Seen(fb, T0), Seen(fb, T0 + 5), Seen(other, T0 + 9)])
    finally:
        await host.close()
    got = await both.pg.bypasses()
    assert [(b.vendor, b.host, b.count) for b in got] == [
        ("meta-pixel", "www.facebook.com", 2),
        (None, "cdn.example", 1),
    ]
    assert [b.host for b in await both.pg.bypasses(kind="unlisted")] == ["cdn.example"]
    assert [b.host for b in await both.pg.bypasses(since=T0 + 6)] == ["cdn.example"]
    with pytest.raises(ValueError):
        await both.pg.bypasses(limit=0)


async def test_a_log_nobody_wrote_yet_reads_empty(both: Both) -> None:
    assert await both.pg.records(LogQuery()) == []
    assert (await both.pg.counts()).total == 0
    assert await both.pg.unknown_hosts() == [] and await both.pg.bypasses() == []
    assert await both.pg.max_id() == 0


async def test_an_unreachable_log_is_unavailable_without_its_dsn() -> None:
    reader = PgLogReader("postgresql://gw:s3cret-pass@127.0.0.1:1/nowhere")
    with pytest.raises(LogUnavailable) as e:
        await reader.records(LogQuery())
    assert "s3cret" not in str(e.value) and "nowhere" not in str(e.value)
    await reader.close()


async def test_the_tail_hears_every_instance_once_each(both: Both) -> None:
    tail = PgTail(pg_dsn_in(both.schema))
    heard: asyncio.Queue[DecisionRecord] = asyncio.Queue()
    a = PostgresHost(pg_log_config(both.schema))
    b = PostgresHost(pg_log_config(both.schema))
    try:
        tail.add(heard)
        await asyncio.wait_for(tail.listening.wait(), 10)
        await a.write([make_record("a1"), make_record("a2")])
        await b.write([make_record("b1")])
        got = [await asyncio.wait_for(heard.get(), 10) for _ in range(3)]
        assert sorted(r.request_id for r in got) == ["a1", "a2", "b1"]
        assert {r.id for r in got} == {1, 2, 3}
        tail.discard(heard)
        await a.write([make_record("a3")])
        other: asyncio.Queue[DecisionRecord] = asyncio.Queue()
        tail.add(other)
        await b.write([make_record("b2")])
        # announced in commit order and fetched in turn: b2 is last, whatever came before
        while (await asyncio.wait_for(other.get(), 10)).request_id != "b2":
            pass
        assert heard.empty()  # discarded before a3 was written
    finally:
        await tail.close()
        await a.close()
        await b.close()


@pytest.mark.parametrize(
    "query", [LogQuery(), LogQuery(limit=1), LogQuery(vendor="ga4"), LogQuery(since=T0 + 20)]
)
async def test_groups_and_their_records_agree(both: Both, query: LogQuery) -> None:
    await both.write([*LOG_ROWS, *(replace(r, request_id=r.request_id * 2) for r in LOG_ROWS)])
    groups = both.sqlite.groups(query)
    assert groups and await both.pg.groups(query) == groups
    for g in groups:
        q = LogQuery(group=g.key)
        assert await both.pg.records(q) == both.sqlite.records(q), g.key
        assert len(both.sqlite.records(q)) == g.count


async def test_a_record_by_id(both: Both) -> None:
    await both.write(LOG_ROWS)
    assert await both.pg.record(3) == both.sqlite.record(3) is not None
    assert await both.pg.record(99) is None


async def test_rollup_views_agree(both: Both) -> None:
    minute = int(T0) // 60 * 60
    rows = [
        RollupRow(minute, "ga4", "forward", "", "opt-in", 6),
        RollupRow(minute, "ga4", "drop", "analytics", "opt-in", 2),
        RollupRow(minute + 60, "meta", "strip", "advertising", "us", 3),
        RollupRow(minute + 180, "", "reject", "", "", 2),
    ]
    sink = SqliteSink(both.db)
    sink.write_rollups(rows)
    sink.close()
    host = PostgresHost(pg_log_config(both.schema))
    try:
        assert (await host.write_rollups(rows)).failure is None
    finally:
        await host.close()
    for since, until, buckets in ((minute, minute + 240, 4), (minute + 30, minute + 90, 60)):
        assert await both.pg.timeline(since, until, buckets) == both.sqlite.timeline(
            since, until, buckets
        )
        assert await both.pg.vendor_shares(since, until) == both.sqlite.vendor_shares(since, until)
        purposes = ("analytics", "advertising", "functional")
        assert await both.pg.consent_shares(since, until, purposes) == (
            both.sqlite.consent_shares(since, until, purposes)
        )
    assert (await both.pg.timeline(minute, minute + 240, 4)).total == 13
