"""gateway.reload: a bad edit keeps the last good rules; a good one applies without a restart,
without failing a request in flight."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import GATEWAY, RELOADER, build_app
from gateway.reload import quiet_collector, snapshot
from tests.conftest import BOMB, RULES_DIR, FakeVendor, make_config, overrides_for

HIT = "/t/www.google-analytics.com/g/collect?v=2&tid=G-1&cid=1.2&en=x"


async def _gateway(
    tmp_path: Path, fake: FakeVendor, aiohttp_client: Callable[..., Any], watch: float = 0
) -> tuple[TestClient[Any, Any], Path]:
    rules = tmp_path / "rules"
    rules.mkdir()
    # One rule file is enough, and keeps the test independent of the rest of the catalogue.
    shutil.copy(RULES_DIR / "google-analytics-4.yaml", rules)
    cfg = make_config(
        tmp_path,
        overrides_for(fake, ["www.google-analytics.com"]),
        {"rules": {"paths": [str(rules)], "watch_interval": watch}},
    )
    client: TestClient[Any, Any] = await aiohttp_client(build_app(cfg))
    return client, rules / "google-analytics-4.yaml"


def _make_collect_a_pixel(path: Path) -> None:
    """An edit with a visible effect: a dropped GA4 hit is answered with the GIF (200)
    instead of 204."""
    path.write_text(path.read_text().replace("kind: beacon", "kind: pixel", 1))


def _metric(client: TestClient[Any, Any], result: str) -> float:
    v = client.app[GATEWAY].metrics.registry.get_sample_value(
        "consent_gateway_rule_reloads_total", {"result": result}
    )
    return v or 0.0


def _gauge(client: TestClient[Any, Any], name: str) -> float:
    """A gauge as a scrape reads it (state gauges are read from the app when collected)."""
    v: float | None = client.app[GATEWAY].metrics.registry.get_sample_value(name)
    assert v is not None, name
    return v


async def test_broken_rule_file_keeps_the_old_rules(
    tmp_path: Path, fake_vendor: FakeVendor, aiohttp_client: Callable[..., Any]
) -> None:
    client, ga4 = await _gateway(tmp_path, fake_vendor, aiohttp_client)
    gw = client.app[GATEWAY]
    before = gw.rules.current
    loaded_at = _gauge(client, "consent_gateway_rules_loaded_timestamp_seconds")
    assert _gauge(client, "consent_gateway_rules_last_reload_ok") == 1
    assert _gauge(client, "consent_gateway_rules_loaded") == 1
    ga4.write_text(ga4.read_text().replace("kind: beacon", "knid: beacon", 1))
    assert await client.app[RELOADER].reload() is False
    assert gw.rules.current is before
    assert any("knid" in line and "unknown key" in line for line in gw.rules.last_error)
    assert _metric(client, "failed") == 1
    assert _gauge(client, "consent_gateway_rules_last_reload_ok") == 0
    assert _gauge(client, "consent_gateway_rules_loaded_timestamp_seconds") == loaded_at
    # Still serving, with the old rules: no consent -> dropped locally.
    resp = await client.get(HIT)
    assert resp.status == 204
    # Fixed: the next reload succeeds and clears the error.
    ga4.write_text(ga4.read_text().replace("knid: beacon", "kind: beacon", 1))
    before_reload = time.time()
    assert await client.app[RELOADER].reload() is True
    assert gw.rules.last_error == [] and _metric(client, "ok") == 1
    assert _gauge(client, "consent_gateway_rules_last_reload_ok") == 1
    assert _gauge(client, "consent_gateway_rules_loaded_timestamp_seconds") >= loaded_at
    assert gw.rules.loaded_at >= before_reload


async def test_good_edit_applies_under_concurrent_load_without_failing_a_request(
    tmp_path: Path, fake_vendor: FakeVendor, aiohttp_client: Callable[..., Any]
) -> None:
    client, ga4 = await _gateway(tmp_path, fake_vendor, aiohttp_client)
    statuses: list[int] = []
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            resp = await client.get(HIT)
            await resp.read()
            statuses.append(resp.status)

    workers = [asyncio.ensure_future(load()) for _ in range(20)]
    await asyncio.sleep(0.2)
    _make_collect_a_pixel(ga4)
    assert await client.app[RELOADER].reload() is True
    swapped_at = len(statuses)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*workers)
    assert swapped_at > 20 and len(statuses) > swapped_at + 20
    # Every request answered, by the old rules (204) or the new (GIF, 200); none failed.
    assert set(statuses) == {204, 200}
    assert set(statuses[swapped_at + 20 :]) == {200}
    assert fake_vendor.seen == []


async def test_file_change_is_picked_up_by_the_watcher(
    tmp_path: Path, fake_vendor: FakeVendor, aiohttp_client: Callable[..., Any]
) -> None:
    client, ga4 = await _gateway(tmp_path, fake_vendor, aiohttp_client, watch=0.05)
    before = client.app[GATEWAY].rules.current
    _make_collect_a_pixel(ga4)
    os.utime(ga4, ns=(1, 1))  # a different mtime even on coarse file systems
    for _ in range(100):
        if client.app[GATEWAY].rules.current is not before:
            break
        await asyncio.sleep(0.05)
    assert client.app[GATEWAY].rules.current is not before
    assert (await client.get(HIT)).status == 200


async def test_sighup_reloads(
    tmp_path: Path, fake_vendor: FakeVendor, aiohttp_client: Callable[..., Any]
) -> None:
    client, ga4 = await _gateway(tmp_path, fake_vendor, aiohttp_client)
    before = client.app[GATEWAY].rules.current
    _make_collect_a_pixel(ga4)
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(100):
        if client.app[GATEWAY].rules.current is not before:
            break
        await asyncio.sleep(0.05)
    assert client.app[GATEWAY].rules.current is not before


def test_snapshot_sees_edits(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("x")
    first = snapshot([tmp_path])
    (tmp_path / "a.yaml").write_text("xy")
    assert snapshot([tmp_path]) != first
    assert snapshot([tmp_path / "missing.yaml"]) == ()


async def test_an_alias_bomb_is_refused_and_the_next_reload_still_applies(
    tmp_path: Path, fake_vendor: FakeVendor, aiohttp_client: Callable[..., Any]
) -> None:
    client, ga4 = await _gateway(tmp_path, fake_vendor, aiohttp_client)
    gw = client.app[GATEWAY]
    bomb = ga4.parent / "bomb.yaml"
    bomb.write_text(BOMB)
    # Bounded: the reload answers (a failure) instead of expanding 9**9 strings forever.
    assert await asyncio.wait_for(client.app[RELOADER].reload(), timeout=30) is False
    assert gw.rules.last_error == [f"{bomb}:1: YAML anchors and aliases (& and *) are not allowed"]
    bomb.unlink()
    _make_collect_a_pixel(ga4)
    assert await client.app[RELOADER].reload() is True
    assert (await client.get(HIT)).status == 200  # the edit after the bomb is in force


def test_a_compiled_rule_set_is_acyclic() -> None:
    """quiet_collector freezes what a compile built: that is safe only because a replaced
    rule set is freed by reference counting alone, with no cycle for a collection to find."""
    from gateway.config import DEFAULT_PURPOSES
    from gateway.ruleset.load import load_rules

    was = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        rules = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))
        assert rules.rules
        del rules
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()


def test_quiet_collector_restores_the_collector_and_the_switch_interval() -> None:
    interval = sys.getswitchinterval()
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        with quiet_collector():
            assert not gc.isenabled()
            assert sys.getswitchinterval() <= 0.001
            kept = [[i] for i in range(1000)]  # built during the block: frozen after it
            with quiet_collector():  # nested: the outer block decides
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled()
        assert sys.getswitchinterval() == interval
        assert gc.get_freeze_count() >= frozen + len(kept)
        with pytest.raises(RuntimeError), quiet_collector():
            raise RuntimeError("a failed compile restores them too")
        assert gc.isenabled() and sys.getswitchinterval() == interval
    finally:
        gc.unfreeze()


async def test_a_replaced_rule_set_is_freed_a_few_rules_at_a_time() -> None:
    """Freeing a thousand rules at once held the loop 16-17 ms: they are dropped in slices,
    the loop running other work in between."""
    from gateway.reload import _RELEASE, _release

    rules: list[Any] = [object() for _ in range(2 * _RELEASE + 50)]
    seen: list[int] = []

    async def watch() -> None:
        while rules:
            seen.append(len(rules))
            await asyncio.sleep(0)

    watcher = asyncio.get_running_loop().create_task(watch())
    await asyncio.sleep(0)  # the watcher sees the whole list first
    await _release(rules)
    await watcher
    assert rules == []
    assert seen[:3] == [2 * _RELEASE + 50, 2 * _RELEASE + 50 - _RELEASE, 50]
