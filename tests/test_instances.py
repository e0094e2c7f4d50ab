"""Gateway processes sharing one consent store: what must hold across instances and crashes.

Each test runs real `consent-gateway serve` processes (`python -m gateway.cli`) and talks
to them over HTTP, with a local fake vendor standing in for Meta:

- propagation: two instances on one PostgreSQL; a withdrawal through A makes B drop the
  subject's next advertising request, through LISTEN/NOTIFY (the safety-net poll is set
  far beyond the test's deadline, so only NOTIFY can do it). The delay is printed.
- crash: SIGKILL while consents are being recorded; every consent whose POST /consent
  was answered 2xx is in the store afterwards (both backends).
- webhooks: a receiver that is down for a while and a gateway restart in between; every
  change arrives, in order per subject, exactly once after deduplication by event id.

PostgreSQL comes from GATEWAY_TEST_PG_DSN, each test in a fresh schema; under CI an
unreachable server fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from gateway.decision_log.postgres import DAY, PostgresHost, partition_name
from gateway.decision_log.rollups import RollupRow
from gateway.store.base import ConsentStore
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from gateway.webhooks.wire import verify
from tests.conftest import PG_DSN, RULES_DIR, TEST_KEY, free_port, make_record
from tests.stores import fresh_pg_schema, pg_dsn_in, pg_log_config, pg_partitions, pg_sql

FBEVENTS = "/t/connect.facebook.net/en_US/fbevents.js"
SCRIPT_BODY = b"/* the vendor's script */"
WEBHOOK_SECRET = "w" * 32


def _dsn_in(schema: str) -> str:
    # asyncpg passes unknown DSN parameters on as server settings
    return f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}search_path={schema}"


class GatewayProcess:
    """One `consent-gateway serve` process on a free port, with its own config file."""

    def __init__(self, tmp: Path, name: str, doc: dict[str, Any], env: dict[str, str]) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.name = name
        self.config = tmp / f"{name}.yaml"
        server = {
            # these tests write consent as fast as they can: not the rate limit's business
            "consent_rate_limit": 1_000_000,
            # no load balancer to wait for when stopped
            "drain_delay": 0,
            **doc.get("server", {}),
            "port": self.port,
            "admin_port": self.admin_port,
        }
        doc = {**doc, "server": server}
        self.config.write_text(yaml.safe_dump(doc))
        self.env = {**os.environ, "CG_TEST_KEY": TEST_KEY, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / f"{name}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ops(self) -> str:
        """The operators' listener: /readyz, /metrics."""
        return f"http://127.0.0.1:{self.admin_port}"

    async def start(self, session: aiohttp.ClientSession) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                async with session.get(self.ops + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not start:\n{self.log.read_text()}")
            await asyncio.sleep(0.1)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _base_doc(tmp: Path, vendor: str) -> dict[str, Any]:
    return {
        "data_dir": str(tmp / "data"),
        "rules": {"paths": [str(RULES_DIR)], "watch_interval": 0},
        "cookie": {"keys": [{"id": "k1", "secret_env": "CG_TEST_KEY"}], "secure": False},
        "upstream": {
            "overrides": {"https://connect.facebook.net": vendor},
            "connect_timeout": 1,
            "total_timeout": 3,
        },
        "decision_log": {"sqlite_path": None},
    }


@contextlib.asynccontextmanager
async def _fake_vendor() -> AsyncIterator[str]:
    async def script(request: web.Request) -> web.Response:
        return web.Response(body=SCRIPT_BODY, content_type="text/javascript")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def _consent(
    session: aiohttp.ClientSession,
    gw: GatewayProcess,
    method: str,
    cookie: str | None = None,
    purposes: dict[str, bool] | None = None,
) -> tuple[dict[str, Any], str]:
    """POST (purposes) or DELETE /consent; returns the answer and the new cookie value."""
    headers = {"Cookie": f"cg_consent={cookie}"} if cookie else {}
    body = orjson.dumps({"purposes": purposes or {}}) if method == "POST" else None
    if body is not None:
        headers["Content-Type"] = "application/json"
    async with session.request(method, gw.base + "/consent", data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        doc = await resp.json()
        return doc, resp.cookies["cg_consent"].value


async def _script(session: aiohttp.ClientSession, gw: GatewayProcess, cookie: str) -> bytes:
    async with session.get(gw.base + FBEVENTS, headers={"Cookie": f"cg_consent={cookie}"}) as r:
        assert r.status == 200
        return await r.read()


# -- propagation ---------------------------------------------------------------------------


async def test_withdrawal_through_one_instance_reaches_another_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        fresh_pg_schema() as schema,
        _fake_vendor() as vendor,
        aiohttp.ClientSession() as session,
    ):
        doc = _base_doc(tmp_path, vendor)
        # Poll far beyond the deadline below: only NOTIFY can propagate in time.
        doc["store"] = {"backend": "postgres", "poll_interval": "60s"}
        env = {"CONSENT_GATEWAY_PG_DSN": _dsn_in(schema)}
        a = GatewayProcess(tmp_path, "a", doc, env)
        b = GatewayProcess(tmp_path, "b", doc, env)
        try:
            await a.start(session)
            await b.start(session)
            _, granted = await _consent(session, a, "POST", purposes={"advertising": True})
            # B decides on the cookie at once and caches the subject's stored state; go on
            # once B answers from its cache (a hit), so the withdrawal must replace it.
            deadline = time.monotonic() + 5
            while True:
                assert await _script(session, b, granted) == SCRIPT_BODY
                if await _cache_hits(session, b) > 0:
                    break
                assert time.monotonic() < deadline, "B never cached the subject"
                await asyncio.sleep(0.05)

            await _consent(session, a, "DELETE", cookie=granted)
            withdrawn_at = time.perf_counter()
            # B, given the old cookie that still grants advertising, must drop.
            while (body := await _script(session, b, granted)) == SCRIPT_BODY:
                assert time.perf_counter() - withdrawn_at < 5.0, "withdrawal never reached B"
            delay = time.perf_counter() - withdrawn_at
            assert body == b""
            with capsys.disabled():  # the figure belongs in the CI log
                print(
                    f"\npropagation delay A -> B (withdrawal to first drop): {delay * 1e3:.1f} ms"
                )
        finally:
            a.stop()
            b.stop()


async def _cache_hits(session: aiohttp.ClientSession, gw: GatewayProcess) -> float:
    async with session.get(gw.ops + "/metrics") as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "consent_gateway_consent_cache_total" and sample.labels == {
                "result": "hit"
            }:
                return sample.value
    return 0.0


# -- crash ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _backend(kind: str, tmp: Path) -> AsyncIterator[tuple[dict[str, Any], dict[str, str]]]:
    if kind == "sqlite":
        yield {"backend": "sqlite", "sqlite_path": str(tmp / "consent.db")}, {}
    else:
        async with fresh_pg_schema() as schema:
            yield {"backend": "postgres"}, {"CONSENT_GATEWAY_PG_DSN": _dsn_in(schema)}


def _open(kind: str, store_doc: dict[str, Any], env: dict[str, str]) -> ConsentStore:
    if kind == "sqlite":
        return SqliteStore(store_doc["sqlite_path"])
    return PostgresStore(env["CONSENT_GATEWAY_PG_DSN"])


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_sigkill_loses_no_acknowledged_consent(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        _backend(kind, tmp_path) as (store_doc, env),
        _fake_vendor() as vendor,
        aiohttp.ClientSession() as session,
    ):
        doc = {**_base_doc(tmp_path, vendor), "store": store_doc}
        gw = GatewayProcess(tmp_path, "crash", doc, env)
        acknowledged: dict[str, bool] = {}
        try:
            await gw.start(session)

            async def client(n: int) -> None:
                i = 0
                while True:
                    i += 1
                    granted = (n + i) % 2 == 0
                    try:
                        doc, _ = await _consent(
                            session, gw, "POST", purposes={"analytics": granted}
                        )
                    except (aiohttp.ClientError, AssertionError):
                        return  # the gateway died under this request: not acknowledged
                    acknowledged[doc["subject"]] = granted

            clients = [asyncio.get_running_loop().create_task(client(n)) for n in range(8)]
            deadline = time.monotonic() + 10
            while len(acknowledged) < 150 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            gw.signal(signal.SIGKILL)  # mid-stream: requests are in flight
            await asyncio.gather(*clients)
        finally:
            gw.stop()

        assert len(acknowledged) >= 50, "too few consents recorded to make the point"
        store = _open(kind, store_doc, env)
        await store.open()
        try:
            for subject, granted in acknowledged.items():
                current = await store.current(subject)
                assert current is not None, "an acknowledged consent was lost"
                assert current.purposes == {"analytics": granted}
        finally:
            await store.close()
        with capsys.disabled():
            print(f"\n{kind}: {len(acknowledged)} acknowledged consents, all stored after SIGKILL")


# -- webhooks ------------------------------------------------------------------------------


class Receiver:
    """A webhook receiver that can be down (not listening) and come up on a fixed port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.events: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self._runner: web.AppRunner | None = None

    async def up(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            header = request.headers.get("Consent-Gateway-Signature", "")
            if not verify(WEBHOOK_SECRET.encode(), header, body, time.time()):
                self.bad_signatures += 1
                return web.Response(status=400)
            doc = orjson.loads(body)
            assert request.headers["Consent-Gateway-Event-Id"] == doc["id"]
            self.events.append(doc)
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_webhooks_survive_a_down_receiver_and_a_restart(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver = Receiver()
    async with (
        _backend(kind, tmp_path) as (store_doc, store_env),
        _fake_vendor() as vendor,
        aiohttp.ClientSession() as session,
    ):
        doc = {
            **_base_doc(tmp_path, vendor),
            "store": store_doc,
            "webhooks": {
                "endpoints": [
                    {
                        "name": "crm",
                        "url": f"http://127.0.0.1:{receiver.port}/hook",
                        "secret_env": "CG_TEST_WEBHOOK",
                    }
                ],
                "backoff_initial": "50ms",
                "backoff_max": "300ms",
                "timeout": "2s",
            },
        }
        env = {"CG_TEST_WEBHOOK": WEBHOOK_SECRET, **store_env}
        gw = GatewayProcess(tmp_path, "hooks", doc, env)
        # subject -> the analytics answers it recorded, in order
        sent: dict[str, list[bool]] = {}
        cookies: dict[str, str] = {}

        async def change(n: int, i: int) -> None:
            granted = (n + i) % 2 == 0
            answer, cookie = await _consent(
                session, gw, "POST", cookie=cookies.get(f"v{n}"), purposes={"analytics": granted}
            )
            cookies[f"v{n}"] = cookie
            sent.setdefault(answer["subject"], []).append(granted)

        try:
            await gw.start(session)  # the receiver is down: nothing listens on its port
            for i in range(3):
                for n in range(5):
                    await change(n, i)
            await asyncio.sleep(0.5)  # a few failed attempts
            gw.stop()  # restart with the changes undelivered
            await gw.start(session)
            for i in range(3, 5):
                for n in range(5):
                    await change(n, i)
            await receiver.up()
            total = sum(len(v) for v in sent.values())
            deadline = time.monotonic() + 30
            while len({e["id"] for e in receiver.events}) < total:
                assert time.monotonic() < deadline, (
                    f"{len(receiver.events)} of {total} events arrived:\n{gw.log.read_text()}"
                )
                await asyncio.sleep(0.05)
            async with session.get(gw.ops + "/readyz") as resp:
                assert resp.status == 200
        finally:
            gw.stop()
            await receiver.down()

    assert receiver.bad_signatures == 0
    unique: dict[str, dict[str, Any]] = {}
    for event in receiver.events:
        unique.setdefault(event["id"], event)
    assert len(unique) == total
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for event in unique.values():
        by_subject.setdefault(event["subject"], []).append(event)
    assert set(by_subject) == set(sent)
    for subject, events in by_subject.items():
        # in order per subject: arrival order is seq order, and the answers are the ones sent
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs)
        assert [e["purposes"]["analytics"] for e in events] == sent[subject]
        assert all(e["type"] == "consent.updated" for e in events)
    duplicates = len(receiver.events) - len(unique)
    with capsys.disabled():
        print(
            f"\n{kind} webhooks: {total} changes in order; {duplicates} duplicates (deduplicated)"
        )


# -- one decision log for the fleet --------------------------------------------------------

ADMIN_TOKEN = "fleet-admin-token-0123456789"


async def _blocked_hit(session: aiohttp.ClientSession, gw: GatewayProcess) -> str:
    """A tag hit no consent allows (Meta's script, advertising unknown): its request id."""
    async with session.get(gw.base + FBEVENTS) as resp:
        assert resp.status == 200 and await resp.read() == b""
        return resp.headers["Consent-Gateway-Decision"].rsplit("id=", 1)[1]


async def _metric(
    session: aiohttp.ClientSession, gw: GatewayProcess, name: str, **labels: str
) -> float:
    async with session.get(gw.ops + "/metrics") as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


async def test_a_fleet_shares_one_decision_log_with_retention(tmp_path: Path) -> None:
    """A hit blocked by instance A is in instance B's admin API, live tail and `logs`;
    retention (at an instance's start) drops an expired day and keeps its rollups."""
    async with (
        fresh_pg_schema() as schema,
        _fake_vendor() as vendor,
        aiohttp.ClientSession() as session,
    ):
        doc = _base_doc(tmp_path, vendor)
        doc["decision_log"] = {"backend": "postgres", "flush_interval": "50ms"}
        doc["admin"] = {"token_env": "CONSENT_GATEWAY_ADMIN_TOKEN"}
        env = {
            "CONSENT_GATEWAY_PG_DSN": pg_dsn_in(schema),
            "CONSENT_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        }
        a = GatewayProcess(tmp_path, "a", doc, env)
        b = GatewayProcess(tmp_path, "b", doc, env)
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        try:
            await a.start(session)
            await b.start(session)

            # B's live tail: hits blocked by A arrive once B listens (it connects when the
            # tail opens), so A blocks one every 200 ms until B's tail shows one of them.
            async with session.get(b.ops + "/_admin/api/stream", headers=auth) as stream:
                assert stream.status == 200
                sent: list[str] = []
                heard: dict[str, Any] | None = None
                deadline = time.monotonic() + 15
                while heard is None:
                    assert time.monotonic() < deadline, "B's live tail never showed A's hits"
                    sent.append(await _blocked_hit(session, a))
                    with contextlib.suppress(TimeoutError):
                        while True:
                            line = await asyncio.wait_for(stream.content.readline(), 0.2)
                            if line.startswith(b"data: "):
                                heard = orjson.loads(line[6:])
                                break
                assert heard["request_id"] in sent
                assert (heard["vendor"], heard["action"]) == ("meta-pixel", "drop")

            # B's admin API pages through every instance's records
            async with session.get(b.ops + "/_admin/api/records?limit=100", headers=auth) as r:
                assert r.status == 200
                listed = {rec["request_id"] for rec in (await r.json())["records"]}
            assert set(sent) <= listed

            # `consent-gateway logs` with B's config
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "gateway.cli", "logs", "--config", str(b.config), "--json"],
                capture_output=True,
                env=b.env,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr.decode()
            printed = [orjson.loads(line) for line in done.stdout.splitlines()]
            assert set(sent) <= {rec["request_id"] for rec in printed}

            # An expired day, as an instance running 40 days ago left it ...
            old = (int(time.time()) // DAY - 40) * DAY
            host = PostgresHost(pg_log_config(schema))
            try:
                await host.write([make_record(f"old{i}", ts=old + i) for i in range(3)])
                await host.write_rollups([RollupRow(old, "meta-pixel", "drop", "", "", 3)])
            finally:
                await host.close()
            assert partition_name(old) in await pg_partitions(schema)
            # ... is dropped by the retention run of B's next start; its counts stay.
            b.stop()
            await b.start(session)
            deadline = time.monotonic() + 15
            while partition_name(old) in await pg_partitions(schema):
                assert time.monotonic() < deadline, "retention never dropped the expired day"
                await asyncio.sleep(0.1)
            kept = await pg_sql(schema, "SELECT n FROM cg_decision_rollups WHERE minute = $1", old)
            assert [r[0] for r in kept] == [3]
            dropped = "consent_gateway_decision_log_pruned_total"
            assert await _metric(session, b, dropped, what="partitions") == 1
            assert await _metric(session, b, dropped, what="records") == 3

            # A stopping writes what it counted since its last flush: every blocked hit.
            a.stop()
            counted = await pg_sql(
                schema,
                "SELECT action, sum(n) FROM cg_decision_rollups "
                "WHERE vendor = 'meta-pixel' AND minute > $1 GROUP BY action",
                old,
            )
            assert [tuple(r) for r in counted] == [("drop", len(sent))]
        finally:
            a.stop()
            b.stop()
