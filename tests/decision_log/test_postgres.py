"""gateway.decision_log.postgres: the PostgreSQL decision log's writer, against a real server.

Each test in a fresh schema (GATEWAY_TEST_PG_DSN; under CI an unreachable server fails).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import orjson
import pytest

from gateway.decision_log.bypasses import Seen
from gateway.decision_log.postgres import (
    DAY,
    RETENTION_LOCK,
    PostgresHost,
    channel_for,
    describe_error,
    partition_name,
    postgres_host,
)
from gateway.decision_log.rollups import Cutoffs, Pruned, RollupRow
from gateway.violations import Sighting
from tests.conftest import PG_DSN, T0, make_record
from tests.stores import fresh_pg_schema, pg_dsn_in, pg_log_config, pg_partitions, pg_sql

DAY0 = int(T0) // DAY * DAY


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    async with fresh_pg_schema() as name:
        yield name


@pytest.fixture
async def host(schema: str) -> AsyncIterator[PostgresHost]:
    h = PostgresHost(pg_log_config(schema))
    assert [o.failure for o in await h.open()] == [None]
    assert [o.failure for o in await h.open()] == [None]  # opening twice is harmless
    yield h
    await h.close()


async def test_a_batch_is_copied_into_the_partitions_of_its_days(
    host: PostgresHost, schema: str
) -> None:
    records = [
        make_record("a", ts=T0),
        make_record("b", ts=T0 + DAY, sources={"advertising": "cookie", "vendor:x": "denied:k"}),
        make_record("c", ts=T0 - 2 * DAY, missing=(), stripped=("cid", "json:user.email")),
    ]
    assert [o.failure for o in await host.write(records)] == [None]
    assert [o.failure for o in await host.write([])] == [None]
    assert await pg_partitions(schema) == sorted(
        partition_name(d) for d in (DAY0 - 2 * DAY, DAY0, DAY0 + DAY)
    )
    rows = await pg_sql(
        schema,
        "SELECT tableoid::regclass::text AS part, id, request_id, missing, stripped, "
        "sources::text AS sources, instance FROM cg_decisions ORDER BY id",
    )
    assert [(r["part"], r["request_id"]) for r in rows] == [
        (partition_name(DAY0), "a"),
        (partition_name(DAY0 + DAY), "b"),
        (partition_name(DAY0 - 2 * DAY), "c"),
    ]
    assert [r["id"] for r in rows] == [1, 2, 3]  # one sequence, taken in the batch's order
    assert rows[2]["stripped"] == ["cid", "json:user.email"] and rows[2]["missing"] == []
    assert orjson.loads(rows[1]["sources"]) == {"advertising": "cookie", "vendor:x": "denied:k"}
    assert {r["instance"] for r in rows} == {host.instance}


async def test_a_batch_announces_its_id_range_on_the_schemas_channel(
    host: PostgresHost, schema: str
) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(pg_dsn_in(schema))
    try:
        await conn.add_listener(channel_for(schema), lambda *a: heard.put_nowait(a[3]))
        await host.write([make_record("a"), make_record("b")])
        await host.write([make_record("c")])
        assert [await asyncio.wait_for(heard.get(), 5) for _ in range(2)] == ["1,2", "3,3"]
    finally:
        await conn.close()


async def test_two_instances_create_a_new_day_once_and_both_write_it(schema: str) -> None:
    a, b = PostgresHost(pg_log_config(schema)), PostgresHost(pg_log_config(schema))
    try:
        outcomes = await asyncio.gather(
            a.write([make_record(f"a{i}", ts=T0 + 5 * DAY) for i in range(20)]),
            b.write([make_record(f"b{i}", ts=T0 + 5 * DAY) for i in range(20)]),
        )
        assert [o.failure for out in outcomes for o in out] == [None, None]
        assert await pg_partitions(schema) == [partition_name(DAY0 + 5 * DAY)]
        rows = await pg_sql(schema, "SELECT count(*), count(DISTINCT id) FROM cg_decisions")
        assert tuple(rows[0]) == (40, 40)
    finally:
        await a.close()
        await b.close()


async def test_rollups_from_several_instances_add_up(schema: str) -> None:
    a, b = PostgresHost(pg_log_config(schema)), PostgresHost(pg_log_config(schema))
    m = DAY0 + 600
    try:
        rows = [
            RollupRow(m, "ga4", "drop", "analytics", "opt-in", 2),
            RollupRow(m, "", "reject", "", "", 1),
        ]
        outcomes = await asyncio.gather(
            a.write_rollups(rows), b.write_rollups(rows), a.write_rollups(rows[:1])
        )
        assert [o.failure for o in outcomes] == [None, None, None]
        got = await pg_sql(schema, "SELECT vendor, n FROM cg_decision_rollups ORDER BY vendor")
        assert [tuple(r) for r in got] == [("", 2), ("ga4", 6)]
    finally:
        await a.close()
        await b.close()


async def test_sightings_count_up_per_key(host: PostgresHost, schema: str) -> None:
    fb = Sighting("router", "bypass", "meta-pixel", "www.facebook.com", "/shop")
    other = Sighting("csp", "unlisted", None, "cdn.example", "/")
    seen = [Seen(fb, T0 + 2), Seen(fb, T0 + 1), Seen(other, T0)]
    assert (await host.write_sightings(seen)).failure is None
    assert (await host.write_sightings([Seen(fb, T0 + 9)])).failure is None
    rows = await pg_sql(
        schema,
        "SELECT vendor, host, count, first_seen, last_seen FROM cg_decision_bypasses ORDER BY host",
    )
    assert [tuple(r) for r in rows] == [
        ("", "cdn.example", 1, T0, T0),
        ("meta-pixel", "www.facebook.com", 3, T0 + 1, T0 + 9),
    ]


async def test_retention_drops_expired_days_and_keeps_the_rollups(
    host: PostgresHost, schema: str
) -> None:
    old, kept = DAY0 - 40 * DAY, DAY0 - 3 * DAY
    await host.write([make_record(f"o{i}", ts=old + i) for i in range(5)])
    await host.write([make_record("k", ts=kept)])
    await host.write_rollups(
        [
            RollupRow(old, "ga4", "drop", "", "", 5),
            RollupRow(old - 500 * DAY, "ga4", "drop", "", "", 1),
        ]
    )
    # records: 30 days; rollups: 400 days (the defaults)
    outcome, pruned = await host.prune(Cutoffs(DAY0 - 30 * DAY, DAY0 - 400 * DAY, 0))
    assert outcome.failure is None
    assert pruned == Pruned(records=5, rollups=1, partitions=1)
    assert await pg_partitions(schema) == [partition_name(kept)]
    assert [r[0] for r in await pg_sql(schema, "SELECT request_id FROM cg_decisions")] == ["k"]
    minutes = await pg_sql(schema, "SELECT minute, n FROM cg_decision_rollups")
    assert [tuple(r) for r in minutes] == [(old, 5)]  # the dropped day's counts stay
    # the day is written again later (a late batch): its partition comes back
    await host.write([make_record("late", ts=old)])
    assert partition_name(old) in await pg_partitions(schema)


async def test_retention_runs_in_one_instance_at_a_time(host: PostgresHost, schema: str) -> None:
    await host.write([make_record("o", ts=DAY0 - 40 * DAY)])
    holder = await asyncpg.connect(pg_dsn_in(schema))
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", RETENTION_LOCK
        )
        outcome, pruned = await host.prune(Cutoffs(DAY0 - 30 * DAY, 0, 0))
        assert (outcome.failure, pruned) == (None, Pruned(skipped=True))
        assert len(await pg_partitions(schema)) == 1
        await tx.rollback()
        _, pruned = await host.prune(Cutoffs(DAY0 - 30 * DAY, 0, 0))
        assert pruned.partitions == 1
    finally:
        await holder.close()


async def test_another_schemas_lease_is_not_ours(host: PostgresHost, schema: str) -> None:
    await host.write([make_record("o", ts=DAY0 - 40 * DAY)])
    async with fresh_pg_schema() as other:
        holder = await asyncpg.connect(pg_dsn_in(other))
        try:
            async with holder.transaction():
                await holder.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
                    RETENTION_LOCK,
                )
                _, pruned = await host.prune(Cutoffs(DAY0 - 30 * DAY, 0, 0))
                assert pruned.partitions == 1
        finally:
            await holder.close()


async def test_an_unreachable_server_is_an_outage_that_names_no_dsn() -> None:
    dsn = "postgresql://gw:s3cret-pass@127.0.0.1:1/nowhere"
    h = PostgresHost(pg_log_config("x", postgres_dsn=dsn))
    out = await h.open()
    assert out[0].failure is not None and not out[0].unexpected
    assert "s3cret" not in out[0].failure and "nowhere" not in out[0].failure
    [written] = await h.write([make_record("a")])
    assert written.failure == out[0].failure
    assert (await h.write_rollups([RollupRow(0, "", "drop", "", "", 1)])).failure is not None
    outcome, pruned = await h.prune(Cutoffs(0, 0, 0))
    assert outcome.failure is not None and pruned == Pruned()
    await h.close()


def test_errors_are_described_without_their_message() -> None:
    e = asyncpg.UniqueViolationError("Key (host)=(secret.example) already exists")
    assert describe_error(e) == "UniqueViolationError (SQLSTATE 23505)"
    assert describe_error(OSError("refused")) == "OSError"


async def test_json_lines_ride_along_in_a_host_of_their_own(schema: str, tmp_path: Path) -> None:
    jsonl = tmp_path / "decisions.jsonl"
    h = postgres_host(pg_log_config(schema, jsonl=str(jsonl)))
    try:
        assert h.names == ("postgres", "jsonl")
        assert [o.failure for o in await h.open()] == [None, None]
        assert [o.failure for o in await h.write([make_record("a")])] == [None, None]
    finally:
        await h.close()
    assert orjson.loads(jsonl.read_text())["request_id"] == "a"
    assert (await pg_sql(schema, "SELECT request_id FROM cg_decisions"))[0][0] == "a"
    assert postgres_host(replace(pg_log_config(schema), jsonl=None)).names == ("postgres",)
    assert PG_DSN  # the server the other tests reach


async def test_old_minutes_are_summed_into_their_hours(host: PostgresHost, schema: str) -> None:
    hour = DAY0 - 10 * DAY
    await host.write_rollups(
        [
            RollupRow(hour, "ga4", "drop", "analytics", "opt-in", 1),
            RollupRow(hour + 60, "ga4", "drop", "analytics", "opt-in", 2),
            RollupRow(hour + 3540, "ga4", "drop", "analytics", "opt-in", 3),
            RollupRow(hour + 3660, "ga4", "drop", "analytics", "opt-in", 4),  # a recent hour
        ]
    )
    outcome, pruned = await host.prune(Cutoffs(0, 0, hour + 3600))
    assert (outcome.failure, pruned) == (None, Pruned(compacted=2))
    rows = await pg_sql(schema, "SELECT minute, n FROM cg_decision_rollups ORDER BY minute")
    assert [tuple(r) for r in rows] == [(hour, 6), (hour + 3660, 4)]
