"""Consent-store benchmark: what stored consent costs a decision, for both backends.

    python bench/store.py [--backends sqlite,postgres] [--subjects 20000] [--duration 3]
                          [--concurrency 32] [--pg-dsn DSN] [--pg-pool-size 10]
                          [--quick] [--json]

In-process, on one event loop (uvloop when installed), with no server and no network
but the PostgreSQL connection: `gateway.core.evaluate` is called directly on
prepared facts of a GA4 collect hit, as `pipeline.run` calls it for a request. For each
backend (SQLite in a temporary file; PostgreSQL in a fresh schema `cg_bench_<random>`,
dropped afterwards) it seeds `--subjects` subjects with a stored consent, then measures:

- `cookie-only`: a valid signed cookie, no stored state: the baseline;
- `cookie+cache warm`: the same with the subject's state peeked by `book.state_now`
  (as `pipeline.run` does), every subject cached;
- `cookie+cache cold`: the same on an empty cache: each decision is a miss, decided on
  the cookie at once while the state is prefetched in the background;
- `store lookup cold` / `warm`: server-to-server, `await book.lookup(subject)` then
  `evaluate(..., server=(subject, state))`, one at a time and with `--concurrency`
  concurrent lookers (`xN`).

Each decision uses a different subject's cookie, cycling through the seeded subjects.
Each scenario runs for `--duration` seconds; the cold ones also stop once every subject
was decided once (a second decision for a subject would no longer be cold).

It prints figures and asserts nothing about them. Exit status: 0 when it ran (whatever
the numbers), 1 when setup failed (the config or rules did not load, SQLite failed, or
only PostgreSQL was asked for and it is unreachable), 2 for bad usage, 130 when
interrupted. An unreachable PostgreSQL is reported and skipped when SQLite runs too.
See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import logging
import math
import os
import platform
import secrets
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
import yaml

from gateway.config import GatewayConfig, parse_config
from gateway.consent.cookie import ConsentCookie, new_subject_id, sign_cookie
from gateway.consent.resolve import read_cookie
from gateway.core import Evaluation, evaluate
from gateway.metrics import Metrics
from gateway.model import Facts, Headers
from gateway.ruleset.load import load_rules
from gateway.ruleset.match import RuleSet
from gateway.store.base import ConsentRecord, ConsentStore, StoreError, dump_purposes
from gateway.store.cache import ConsentBook, ConsentCache
from gateway.store.migrations import migrate, open_store
from gateway.store.postgres import PostgresStore

ROOT = Path(__file__).resolve().parent.parent
KEY_ENV = "CG_BENCH_COOKIE_KEY"
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"

GA4_HOST = "www.google-analytics.com"
GA4_PATH = "/g/collect"
GA4_QUERY = "v=2&tid=G-X&cid=1.2&en=page_view"
#: GA4 collect forwards untouched only with both (analytics alone is a STRIP)
GRANTED = {"analytics": True, "advertising": True}
#: headers a browser sends with the hit (the transform strips some of them)
BROWSER_HEADERS = (
    ("Host", "gateway.example"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"),
    ("Accept", "*/*"),
    ("Accept-Language", "en-GB,en;q=0.9"),
    ("Referer", "https://shop.example/products/42?utm_source=news"),
)

#: subjects seeded through `ConsentBook.record` (one durable transaction each, timed);
#: the rest are written in one bulk transaction
RECORDED_SUBJECTS = 200
WARMUP_DECISIONS = 2_000
DRAIN_TIMEOUT = 60.0  # seconds the cold scenario's background prefetches get to finish
PG_CONNECT_TIMEOUT = 5.0
_PG_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

QUICK = {"subjects": 1_000, "duration": 0.5, "concurrency": 8}


class SetupError(Exception):
    """Something the benchmark needs could not be set up; the message says what."""


# ---------------------------------------------------------------------------
# Results


@dataclass
class Result:
    scenario: str
    description: str
    #: decisions timed
    decisions: int
    #: wall seconds of the timed loop (yields to the event loop included)
    seconds: float
    decisions_per_s: float
    #: per decision: evaluate(), plus the awaited lookup for the store-lookup scenarios
    mean_us: float | None
    p50_us: float | None
    p99_us: float | None
    max_us: float | None
    #: decisions by action (all `forward` when the setup is right)
    actions: dict[str, int]
    #: concurrent lookers (1: one at a time; 0: not a lookup scenario)
    concurrency: int = 0
    #: scenario-specific figures (cache misses, prefetch drain, ...)
    extra: dict[str, float | int | str] = field(default_factory=dict)


@dataclass
class BackendRun:
    backend: str
    #: where the data lives (file path, or DSN without password and the schema)
    target: str
    version: str
    pool_size: int | None
    seed: dict[str, float | int]
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Timed:
    latencies_ns: list[int]
    seconds: float
    actions: Counter[str]


def _percentile(ordered: Sequence[int], q: float) -> int | None:
    """Nearest-rank percentile of an ascending sequence (None if empty)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _us(ns: float | None) -> float | None:
    return None if ns is None else round(ns / 1000, 2)


def _result(
    scenario: str,
    description: str,
    timed: Timed,
    concurrency: int = 0,
    extra: dict[str, float | int | str] | None = None,
) -> Result:
    lat = sorted(timed.latencies_ns)
    n = len(lat)
    return Result(
        scenario=scenario,
        description=description,
        decisions=n,
        seconds=round(timed.seconds, 3),
        decisions_per_s=round(n / timed.seconds, 1) if timed.seconds > 0 else 0.0,
        mean_us=_us(sum(lat) / n) if n else None,
        p50_us=_us(_percentile(lat, 0.50)),
        p99_us=_us(_percentile(lat, 0.99)),
        max_us=_us(lat[-1] if lat else None),
        actions=dict(sorted(timed.actions.items())),
        concurrency=concurrency,
        extra=extra or {},
    )


# ---------------------------------------------------------------------------
# Setup: config, rules, subjects, cookies, facts


@dataclass
class Bench:
    config: GatewayConfig
    rules: RuleSet
    own_cookies: frozenset[str]
    subjects: list[str]
    #: one GA4 hit per subject, each with that subject's signed cookie
    cookie_facts: list[Facts]
    #: the same hit without cookie, as a back end would send it server-to-server
    server_facts: Facts
    #: seconds since the epoch the seeded records are dated
    recorded_at: float


def _config(tmp: Path, key: str) -> GatewayConfig:
    doc = {
        "data_dir": str(tmp / "data"),
        "server": {"host": "127.0.0.1", "log_level": "WARNING"},
        "rules": {"paths": [str(ROOT / "rules")]},
        "cookie": {"keys": [{"id": "bench", "secret_env": KEY_ENV}], "secure": False},
        "decision_log": {"sqlite_path": str(tmp / "data" / "decisions.db")},
        "store": {"backend": "sqlite", "sqlite_path": str(tmp / "data" / "consent.db")},
    }
    return parse_config(
        yaml.safe_dump(doc, sort_keys=False), str(tmp / "config.yaml"), env={KEY_ENV: key}
    )


def _prepare(tmp: Path, subjects: int) -> Bench:
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    try:
        cfg = _config(tmp, key)
        rules = load_rules(cfg.rules.paths, frozenset(cfg.consent.purposes))
    except Exception as e:
        raise SetupError(f"gateway config or rules: {type(e).__name__}: {e}") from e
    if rules.match(GA4_HOST, GA4_PATH, "GET") is None:
        raise SetupError(f"no rule in {ROOT / 'rules'} matches GET {GA4_HOST}{GA4_PATH}")
    now = time.time()
    ids = [new_subject_id() for _ in range(subjects)]
    facts: list[Facts] = []
    for i, subject in enumerate(ids):
        cookie = ConsentCookie(
            subject=subject,
            purposes=GRANTED,
            issued_at=int(now),
            policy_version=cfg.consent.policy_version,
            source="bench",
        )
        value = sign_cookie(cookie, cfg.cookie.keys)
        facts.append(_facts(f"bench-{i}", {cfg.cookie.name: value}, now))
    return Bench(
        config=cfg,
        rules=rules,
        own_cookies=frozenset({cfg.cookie.name}),
        subjects=ids,
        cookie_facts=facts,
        server_facts=_facts("bench-s2s", {}, now),
        # older than the cookies, fresh for consent.max_age: both answers stand
        recorded_at=now - 60.0,
    )


def _facts(request_id: str, cookies: Mapping[str, str], now: float) -> Facts:
    headers = list(BROWSER_HEADERS)
    if cookies:
        headers.append(("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())))
    return Facts(
        request_id=request_id,
        method="GET",
        host=GA4_HOST,
        path=GA4_PATH,
        query=GA4_QUERY,
        headers=Headers(tuple(headers)),
        cookies=dict(cookies),
        client_ip="203.0.113.77",
        now=now,
    )


# ---------------------------------------------------------------------------
# Backends: open, seed, close


async def _open_sqlite(bench: Bench) -> tuple[ConsentStore, BackendRun]:
    cfg = bench.config.store
    try:
        store = await open_store(cfg)
    except StoreError as e:
        raise SetupError(f"sqlite store: {e}") from e
    return store, BackendRun(
        backend="sqlite",
        target=str(cfg.sqlite_path),
        version=f"SQLite {sqlite3.sqlite_version}",
        pool_size=None,
        seed={},
    )


def _redact(dsn: str) -> str:
    """The DSN without its password (it is printed)."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


@contextlib.asynccontextmanager
async def _pg_schema(dsn: str) -> AsyncIterator[tuple[str, str]]:
    """A fresh schema on the server at `dsn`, dropped on exit. Yields (schema, version)."""
    conn = await asyncpg.connect(dsn, timeout=PG_CONNECT_TIMEOUT)
    schema = f"cg_bench_{secrets.token_hex(6)}"
    try:
        version = str(await conn.fetchval("SHOW server_version"))
        await conn.execute(f"CREATE SCHEMA {schema}")
        try:
            yield schema, version
        finally:
            with contextlib.suppress(*_PG_ERRORS):
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


async def _open_postgres(
    dsn: str, schema: str, version: str, pool_size: int
) -> tuple[ConsentStore, BackendRun]:
    # `new_store`/`open_store` take no server_settings: build the store directly, so its
    # tables live in the bench's own schema, and migrate it as `open_store` would.
    store = PostgresStore(dsn, max_size=pool_size, server_settings={"search_path": schema})
    await store.open()
    try:
        await migrate(store)
    except BaseException:
        await store.close()
        raise
    return store, BackendRun(
        backend="postgres",
        target=f"{_redact(dsn)} schema {schema}",
        version=f"PostgreSQL {version}, asyncpg {asyncpg.__version__}",
        pool_size=pool_size,
        seed={},
    )


async def _seed(store: ConsentStore, bench: Bench, pg: tuple[str, str] | None) -> dict[str, Any]:
    """Give every subject a stored consent: the first few through `ConsentBook.record`
    (timed: one durable transaction each), the rest in one bulk transaction."""
    version = bench.config.consent.policy_version
    book = ConsentBook(store, ConsentCache(len(bench.subjects) + 1, 3600.0), Metrics())
    recorded = bench.subjects[:RECORDED_SUBJECTS]
    started = time.perf_counter()
    for subject in recorded:
        await book.record(
            ConsentRecord(subject, GRANTED, "banner", version, bench.recorded_at, None, None)
        )
    record_s = time.perf_counter() - started
    await book.close()
    rest = bench.subjects[RECORDED_SUBJECTS:]
    started = time.perf_counter()
    if rest:
        if pg is None:
            await asyncio.to_thread(_bulk_sqlite, bench.config.store.sqlite_path, rest, bench)
        else:
            await _bulk_postgres(pg[0], pg[1], rest, bench)
    bulk_s = time.perf_counter() - started
    # the bulk rows must read back as what `record` writes
    for subject in (bench.subjects[0], bench.subjects[-1]):
        state = await store.current(subject)
        if state is None or dict(state.purposes) != GRANTED:
            raise SetupError(f"seeding failed: {subject} reads back as {state}")
    return {
        "subjects": len(bench.subjects),
        "recorded": len(recorded),
        "record_s": round(record_s, 3),
        "records_per_s": round(len(recorded) / record_s, 1) if record_s > 0 else 0.0,
        "bulk": len(rest),
        "bulk_s": round(bulk_s, 3),
    }


def _bulk_sqlite(path: Path, subjects: Sequence[str], bench: Bench) -> None:
    """Insert records and current rows for `subjects` in one transaction, through a
    connection of its own (WAL: the store's connection stays open)."""
    purposes = dump_purposes(GRANTED)
    version = bench.config.consent.policy_version
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        before = conn.execute("SELECT coalesce(max(id), 0) FROM consent_records").fetchone()[0]
        conn.executemany(
            "INSERT INTO consent_records (subject, purposes, source, policy_version, at)"
            " VALUES (?, ?, 'banner', ?, ?)",
            [(s, purposes, version, bench.recorded_at) for s in subjects],
        )
        conn.execute(
            "INSERT INTO current_consent (subject, purposes, policy_version, at, source,"
            " record_id) SELECT subject, purposes, policy_version, at, source, id"
            " FROM consent_records WHERE id > ?",
            (before,),
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()


async def _bulk_postgres(dsn: str, schema: str, subjects: Sequence[str], bench: Bench) -> None:
    conn = await asyncpg.connect(
        dsn, server_settings={"search_path": schema}, timeout=PG_CONNECT_TIMEOUT
    )
    try:
        async with conn.transaction():
            before = await conn.fetchval("SELECT coalesce(max(id), 0) FROM consent_records")
            await conn.execute(
                "INSERT INTO consent_records (subject, purposes, source, policy_version, at)"
                " SELECT s, $2::jsonb, 'banner', $3, $4 FROM unnest($1::text[]) AS s",
                list(subjects),
                dump_purposes(GRANTED),
                bench.config.consent.policy_version,
                bench.recorded_at,
            )
            await conn.execute(
                "INSERT INTO current_consent (subject, purposes, policy_version, at, source,"
                " record_id) SELECT subject, purposes, policy_version, at, source, id"
                " FROM consent_records WHERE id > $1",
                before,
            )
        await conn.execute("ANALYZE consent_records")
        await conn.execute("ANALYZE current_consent")
    finally:
        await conn.close()


# ---------------------------------------------------------------------------
# Timed loops


async def _decide_loop(
    facts: Sequence[Facts], decide: Callable[[Facts], Evaluation], duration: float, limit: int
) -> Timed:
    """Decide `facts` in turn (cycling) for `duration` seconds or `limit` decisions.

    Only `decide` is timed per decision; after each one the loop yields to the event
    loop, as a server does between requests, so background prefetches run (and their
    cost shows in the wall time, hence in decisions/s).
    """
    lat: list[int] = []
    actions: Counter[str] = Counter()
    n = len(facts)
    clock = time.perf_counter_ns
    start = clock()
    deadline = start + int(duration * 1e9)
    i = 0
    while i < limit:
        f = facts[i % n]
        t0 = clock()
        ev = decide(f)
        t1 = clock()
        lat.append(t1 - t0)
        actions[ev.decision.action.value] += 1
        i += 1
        await asyncio.sleep(0)
        if t1 >= deadline:
            break
    return Timed(lat, (clock() - start) / 1e9, actions)


async def _lookup_loop(
    bench: Bench, book: ConsentBook, workers: int, duration: float, limit: int
) -> Timed:
    """Server-to-server decisions: `await book.lookup(subject)`, then `evaluate` with
    `server=(subject, state)`; `workers` of them at once, each taking the next subject.
    The time per decision includes waiting for the store (and for a free connection)."""
    lat: list[int] = []
    actions: Counter[str] = Counter()
    subjects, n = bench.subjects, len(bench.subjects)
    cfg, rules, own, facts = bench.config, bench.rules, bench.own_cookies, bench.server_facts
    clock = time.perf_counter_ns
    start = clock()
    deadline = start + int(duration * 1e9)
    taken = 0

    async def worker() -> None:
        nonlocal taken
        while taken < limit and clock() < deadline:
            subject = subjects[taken % n]
            taken += 1
            t0 = clock()
            state = await book.lookup(subject)
            ev = evaluate(facts, cfg, rules, own, server=(subject, state))
            lat.append(clock() - t0)
            actions[ev.decision.action.value] += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return Timed(lat, (clock() - start) / 1e9, actions)


async def _drain_background() -> float:
    """Wait for every other task (the cache's prefetches) to finish; seconds waited."""
    started = time.perf_counter()
    me = asyncio.current_task()
    while True:
        others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not others:
            break
        await asyncio.wait(others, timeout=DRAIN_TIMEOUT)
        if time.perf_counter() - started > DRAIN_TIMEOUT:
            break
    return time.perf_counter() - started


def _cache_count(metrics: Metrics, result: str) -> int:
    value = metrics.registry.get_sample_value(
        "consent_gateway_consent_cache_total", {"result": result}
    )
    return int(value or 0)


def _new_book(store: ConsentStore, bench: Bench) -> ConsentBook:
    cfg = bench.config.store
    return ConsentBook(store, ConsentCache(cfg.cache_size, cfg.cache_ttl), Metrics())


# ---------------------------------------------------------------------------
# One backend


Progress = Callable[[str], None]


async def _run_backend(
    store: ConsentStore, run: BackendRun, bench: Bench, args: argparse.Namespace, say: Progress
) -> None:
    cfg, rules, own = bench.config, bench.rules, bench.own_cookies
    n = len(bench.subjects)
    facts = bench.cookie_facts
    dur, conc = args.duration, args.concurrency
    endless = 10**9
    books: list[ConsentBook] = []

    def book_for() -> ConsentBook:
        books.append(_new_book(store, bench))
        return books[-1]

    def cookie_only(f: Facts) -> Evaluation:
        return evaluate(f, cfg, rules, own)

    def with_book(book: ConsentBook) -> Callable[[Facts], Evaluation]:
        # as pipeline.run does: read the cookie, peek its subject's state, evaluate
        def decide(f: Facts) -> Evaluation:
            cookie = read_cookie(f, cfg.consent, cfg.cookie)
            stored = book.state_now(cookie.subject) if cookie.subject else None
            return evaluate(f, cfg, rules, own, cookie=cookie, stored=stored)

        return decide

    if n > cfg.store.cache_size:
        run.notes.append(
            f"{n} subjects exceed store.cache_size {cfg.store.cache_size}: warm is not all warm"
        )
    results: dict[str, Result] = {}
    try:
        gc.collect()
        await _decide_loop(facts, cookie_only, 60.0, WARMUP_DECISIONS)  # unreported warm-up
        say("cookie-only")
        results["cookie-only"] = _result(
            "cookie-only",
            "valid signed cookie, no stored state: the baseline",
            await _decide_loop(facts, cookie_only, dur, endless),
        )

        # the warm cache, filled the way server-to-server lookups fill it
        warm = book_for()
        say(f"filling a cache with {n} subjects ({conc} concurrent lookups)")
        fill = await _lookup_loop(bench, warm, conc, endless, n)
        run.seed["cache_fill_s"] = round(fill.seconds, 3)
        run.seed["cache_fill_per_s"] = round(n / fill.seconds, 1) if fill.seconds > 0 else 0.0

        say("cookie+cache warm")
        hits_before = _cache_count(warm.metrics, "hit")
        misses_before = _cache_count(warm.metrics, "miss")
        timed = await _decide_loop(facts, with_book(warm), dur, endless)
        results["cookie+cache warm"] = _result(
            "cookie+cache warm",
            "the cookie and its subject's state peeked with book.state_now, every subject cached",
            timed,
            extra={
                "cache_hits": _cache_count(warm.metrics, "hit") - hits_before,
                "cache_misses": _cache_count(warm.metrics, "miss") - misses_before,
            },
        )

        say("cookie+cache cold")
        cold = book_for()
        gc.collect()
        timed = await _decide_loop(facts, with_book(cold), dur, n)
        misses = _cache_count(cold.metrics, "miss")
        pending = sum(1 for t in asyncio.all_tasks() if not t.done()) - 1
        drain_s = await _drain_background()
        filled = len(cold.cache)
        results["cookie+cache cold"] = _result(
            "cookie+cache cold",
            "book.state_now on an empty cache: decided on the cookie, state prefetched",
            timed,
            extra={
                "cache_misses": misses,
                "prefetches_pending_at_end": pending,
                "prefetch_drain_s": round(drain_s, 3),
                "cached_after": filled,
                "hit_ratio_after": round(filled / len(timed.latencies_ns), 3)
                if timed.latencies_ns
                else 0.0,
            },
        )

        for workers in dict.fromkeys((1, conc)):
            name = "store lookup cold" + ("" if workers == 1 else f" x{workers}")
            say(name)
            book = book_for()
            gc.collect()
            timed = await _lookup_loop(bench, book, workers, dur, n)
            results[name] = _result(
                name,
                "server-to-server: await book.lookup(subject) on an empty cache, then evaluate"
                + ("" if workers == 1 else f", {workers} at once"),
                timed,
                workers,
                extra={"cache_misses": _cache_count(book.metrics, "miss")},
            )
        for workers in dict.fromkeys((1, conc)):
            name = "store lookup warm" + ("" if workers == 1 else f" x{workers}")
            say(name)
            gc.collect()
            hits_before = _cache_count(warm.metrics, "hit")
            misses_before = _cache_count(warm.metrics, "miss")
            timed = await _lookup_loop(bench, warm, workers, dur, endless)
            results[name] = _result(
                name,
                "server-to-server: await book.lookup(subject), every subject cached"
                + ("" if workers == 1 else f", {workers} at once"),
                timed,
                workers,
                extra={
                    "cache_hits": _cache_count(warm.metrics, "hit") - hits_before,
                    "cache_misses": _cache_count(warm.metrics, "miss") - misses_before,
                },
            )
    finally:
        for book in books:
            await book.close()
    order = ["cookie-only", "cookie+cache warm", "cookie+cache cold"]
    order += [f"store lookup {t}{s}" for t in ("cold", "warm") for s in ("", f" x{conc}")]
    run.results = [results[k] for k in order if k in results]


async def _bench_backends(
    args: argparse.Namespace, bench: Bench, say: Progress
) -> tuple[list[BackendRun], list[str]]:
    """Run every asked-for backend; notes on those that could not run."""
    runs: list[BackendRun] = []
    notes: list[str] = []
    for backend in args.backends:
        async with contextlib.AsyncExitStack() as stack:
            say(f"{backend}: opening and seeding {len(bench.subjects)} subjects")
            pg: tuple[str, str] | None = None
            if backend == "sqlite":
                store, run = await _open_sqlite(bench)
            else:
                try:
                    schema, version = await stack.enter_async_context(_pg_schema(args.pg_dsn))
                    store, run = await _open_postgres(
                        args.pg_dsn, schema, version, args.pg_pool_size
                    )
                except (*_PG_ERRORS, StoreError) as e:
                    notes.append(
                        f"postgres skipped: {_redact(args.pg_dsn)} unreachable or unusable"
                        f" ({type(e).__name__}: {e})"
                    )
                    say(notes[-1])
                    continue
                pg = (args.pg_dsn, schema)
            stack.push_async_callback(store.close)
            try:
                run.seed.update(await _seed(store, bench, pg))
                await _run_backend(store, run, bench, args, _prefixed(say, backend))
            except (*_PG_ERRORS, StoreError) as e:
                if backend == "sqlite":
                    raise SetupError(f"sqlite: {type(e).__name__}: {e}") from e
                notes.append(f"postgres failed mid-run: {type(e).__name__}: {e}")
                say(notes[-1])
                continue
            runs.append(run)
    return runs, notes


def _prefixed(say: Progress, prefix: str) -> Progress:
    return lambda text: say(f"{prefix}: {text}")


# ---------------------------------------------------------------------------
# Output


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _table(runs: list[BackendRun], settings: Mapping[str, object], notes: list[str]) -> str:
    lines = ["consent store benchmark: " + ", ".join(f"{k}={v}" for k, v in settings.items())]
    head = ("scenario", "decisions", "decisions/s", "mean µs", "p50 µs", "p99 µs", "max µs")
    for run in runs:
        seed = run.seed
        pool = f"; pool max {run.pool_size}" if run.pool_size else ""
        seeded = (
            f"  seeded {seed['subjects']} subjects: {seed['recorded']} through"
            f" ConsentBook.record in {seed['record_s']:.2f} s ({seed['records_per_s']:g}"
            f" records/s, one at a time), {seed['bulk']} in one bulk transaction in"
            f" {seed['bulk_s']:.2f} s"
        )
        filled = (
            f"  warm cache filled by lookups in {seed['cache_fill_s']:.2f} s"
            f" ({seed['cache_fill_per_s']:g} lookups/s)"
        )
        lines += ["", f"{run.backend}: {run.version}; {run.target}{pool}", seeded, filled, ""]
        rows = [
            (
                r.scenario,
                str(r.decisions),
                _fmt(r.decisions_per_s, 0),
                _fmt(r.mean_us),
                _fmt(r.p50_us),
                _fmt(r.p99_us),
                _fmt(r.max_us, 0),
            )
            for r in run.results
        ]
        widths = [max(len(c) for c in col) for col in zip(head, *rows, strict=True)]
        for row in (head, *rows):
            cells = [row[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  " + "  ".join(cells).rstrip())
        lines.append("")
        for r in run.results:
            actions = ", ".join(f"{k}={v}" for k, v in r.actions.items())
            extra = ", ".join(
                f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.extra.items()
            )
            lines.append(
                f"  {r.scenario.ljust(widths[0])}  {r.seconds:.2f} s; {actions}"
                + (f"; {extra}" if extra else "")
            )
        for note in run.notes:
            lines.append(f"  note: {note}")
    if notes:
        lines.append("")
    for note in notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Main


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--backends",
        default="sqlite,postgres",
        help="comma-separated: sqlite, postgres (sqlite,postgres)",
    )
    p.add_argument("--subjects", type=int, help="subjects seeded with a consent (20000)")
    p.add_argument("--duration", type=float, help="seconds per scenario (3)")
    p.add_argument(
        "--concurrency", type=int, help="concurrent lookers in the xN lookup scenarios (32)"
    )
    p.add_argument(
        "--pg-dsn",
        default=os.environ.get("GATEWAY_TEST_PG_DSN", DEFAULT_PG_DSN),
        help="PostgreSQL server to use (env GATEWAY_TEST_PG_DSN, else %(default)s);"
        " the bench works in a fresh schema it drops afterwards",
    )
    p.add_argument(
        "--pg-pool-size",
        type=int,
        default=10,
        help="PostgreSQL pool size, as store.postgres_pool_size (10)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: " + ", ".join(f"--{k} {v}" for k, v in QUICK.items()) + " unless given",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args(argv)
    defaults = {"subjects": 20_000, "duration": 3.0, "concurrency": 32}
    for key, value in (QUICK if args.quick else defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or any(b not in ("sqlite", "postgres") for b in backends):
        p.error("--backends takes sqlite, postgres or both, comma-separated")
    args.backends = list(dict.fromkeys(backends))
    if not 1 <= args.subjects <= 10_000_000:
        p.error("--subjects must be in [1, 10000000]")
    if not 0 < args.duration <= 600:
        p.error("--duration must be in (0, 600] seconds")
    if not 1 <= args.concurrency <= 1000:
        p.error("--concurrency must be in [1, 1000]")
    if not 1 <= args.pg_pool_size <= 1000:
        p.error("--pg-pool-size must be in [1, 1000]")
    return args


def _machine() -> dict[str, object]:
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "asyncpg": asyncpg.__version__,
        # other work on the machine skews every figure: shown so a reader can tell
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    loop_name = "asyncio"
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
        loop_name = "uvloop"
    # the cache logs failing lookups; the figures go to stdout
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def say(text: str) -> None:
        if not args.json:
            print(f"  {text} ...", file=sys.stderr, flush=True)

    settings: dict[str, object] = {
        "backends": ",".join(args.backends),
        "subjects": args.subjects,
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "loop": loop_name,
        **_machine(),
    }
    try:
        with tempfile.TemporaryDirectory(prefix="cg-bench-store-") as tmpdir:
            say(f"signing {args.subjects} cookies")
            bench = _prepare(Path(tmpdir), args.subjects)
            runs, notes = asyncio.run(_bench_backends(args, bench, say))
    except SetupError as e:
        print(f"bench setup failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if not runs:
        print("bench failed: no backend could run", file=sys.stderr)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        return 1
    if args.json:
        doc = {"settings": settings, "notes": notes, "backends": [asdict(r) for r in runs]}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(_table(runs, settings, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
