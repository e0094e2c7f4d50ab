"""Decision-log benchmark: records per second one instance writes to each backend, and
what four instances write to one PostgreSQL at once.

    python bench/decision_log.py [--records 200000] [--pg-dsn DSN] [--instances 4]
                                 [--backends sqlite,postgres] [--json]

Each instance is a real `DecisionLog` (the gateway's queue and batch writer, default
batch size and queue) fed as fast as its queue takes records: a producer submits while
the queue has room, as a gateway under a flood of blocked hits would. The records are
varied (20 vendors x 3 actions x 2 paths) like a site's. SQLite: the default writer
process and a file in a temporary folder. PostgreSQL: a fresh schema `cg_bench_<random>`
of `--pg-dsn` (default GATEWAY_TEST_PG_DSN or the local test server), dropped afterwards;
the four instances are four processes, each with its own event loop and connections.

Per run it prints records written per second (from the first submit until `drain`
returns), records lost (there should be none: the producer waits for room), and the
event loop's CPU per record (the producer's share included). It prints figures and
asserts nothing about them. Exit status 0 when it ran, 1 when a backend could not be set
up, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from gateway.config import DecisionLogConfig, StoreBackend
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.writer import DecisionLog
from gateway.metrics import Metrics

DEFAULT_DSN = os.environ.get("GATEWAY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _records(n: int, tag: str) -> list[DecisionRecord]:
    now = time.time()
    out = []
    for i in range(n):
        vendor = f"vendor-{i % 20}"
        action = ("drop", "strip", "reject")[i % 3]
        out.append(
            DecisionRecord(
                ts=now + i * 1e-4,
                request_id=f"{tag}-{i:08d}",
                action=action,
                vendor=vendor,
                endpoint="collect",
                missing=("advertising",) if action != "reject" else (),
                sources={"advertising": "default:opt-in", "analytics": "cookie"},
                regime="opt-in",
                method="GET",
                host=f"{vendor}.example",
                path=("/collect", "/pixel")[i % 2],
                stripped=("cid", "uid") if action == "strip" else (),
                reason="advertising not granted",
            )
        )
    return out


async def _feed(cfg: DecisionLogConfig, n: int, tag: str) -> dict[str, float]:
    metrics = Metrics()
    log = DecisionLog(cfg, metrics)
    records = _records(n, tag)
    room = cfg.queue_size - cfg.batch_size
    await log.start()
    cpu, started = time.process_time(), time.perf_counter()
    for r in records:
        while log.depth >= room:
            await asyncio.sleep(0.001)
        log.submit(r)
    await log.drain()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await log.close()
    get = metrics.registry.get_sample_value
    written = get("consent_gateway_decision_log_written_total") or 0.0
    lost = sum(
        get("consent_gateway_decision_log_lost_total", {"reason": r}) or 0.0
        for r in ("queue_full", "sink_error", "closed")
    )
    return {"written": written, "lost": lost, "seconds": elapsed, "loop_cpu": cpu}


def _pg_config(dsn: str) -> DecisionLogConfig:
    return DecisionLogConfig(backend=StoreBackend.POSTGRES, postgres_dsn=dsn, sqlite_path=None)


def _instance(dsn: str, n: int, tag: str) -> dict[str, float]:
    return asyncio.run(_feed(_pg_config(dsn), n, tag))


def _line(name: str, r: dict[str, float]) -> str:
    rate = r["written"] / r["seconds"] if r["seconds"] else 0.0
    cpu = r["loop_cpu"] / r["written"] * 1e6 if r["written"] else 0.0
    return (
        f"{name:<34} {rate:>10,.0f} records/s   {int(r['written']):>9,} written  "
        f"{int(r['lost']):>5} lost   {cpu:>6.1f} us loop CPU/record"
    )


async def _schema(dsn: str, create: bool, name: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(f"CREATE SCHEMA {name}" if create else f"DROP SCHEMA {name} CASCADE")
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--instances", type=int, default=4)
    p.add_argument("--pg-dsn", default=DEFAULT_DSN)
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    backends = set(args.backends.split(","))
    results: dict[str, Any] = {}
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = DecisionLogConfig(sqlite_path=Path(tmp) / "decisions.db")
            results["sqlite, 1 instance"] = asyncio.run(_feed(cfg, args.records, "s"))
    if "postgres" in backends:
        schema = f"cg_bench_{secrets.token_hex(4)}"
        dsn = f"{args.pg_dsn}{'&' if '?' in args.pg_dsn else '?'}search_path={schema}"
        try:
            asyncio.run(_schema(args.pg_dsn, True, schema))
        except (OSError, asyncpg.PostgresError, TimeoutError) as e:
            print(f"PostgreSQL unavailable: {type(e).__name__}", file=sys.stderr)
            return 1
        try:
            results["postgres, 1 instance"] = _instance(dsn, args.records, "p")
            n = args.records // args.instances
            with ProcessPoolExecutor(args.instances) as pool:
                runs = list(
                    pool.map(
                        _instance,
                        [dsn] * args.instances,
                        [n] * args.instances,
                        [f"i{k}" for k in range(args.instances)],
                    )
                )
            results[f"postgres, {args.instances} instances at once"] = {
                "written": sum(r["written"] for r in runs),
                "lost": sum(r["lost"] for r in runs),
                "seconds": max(r["seconds"] for r in runs),
                "loop_cpu": sum(r["loop_cpu"] for r in runs),
            }
        finally:
            asyncio.run(_schema(args.pg_dsn, False, schema))
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"decision log, {args.records:,} records per run, {os.cpu_count()} CPUs")
        for name, r in results.items():
            print(_line(name, r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
