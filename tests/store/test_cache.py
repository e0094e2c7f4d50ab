"""The cache in front of the consent store (gateway.store.cache): ConsentCache, ConsentBook."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.metrics import Metrics
from gateway.store.base import (
    Change,
    ChangeKind,
    ConsentRecord,
    ConsentStore,
    CurrentConsent,
    StoreError,
)
from gateway.store.cache import MISS, ConsentBook, ConsentCache
from gateway.store.sqlite import SqliteStore
from tests.stores import rec


def change(
    seq: int, subject: str = "s1", kind: ChangeKind = ChangeKind.CONSENT, **p: bool
) -> Change:
    return Change(
        seq=seq,
        event_id=f"e{seq}",
        kind=kind,
        subject=subject,
        purposes=p if kind is ChangeKind.CONSENT else {},
        policy_version=1,
        at=float(seq),
        source="banner" if kind is ChangeKind.CONSENT else "erasure",
        record_id=seq,
    )


def state(subject: str = "s1", at: float = 1.0, **p: bool) -> CurrentConsent:
    return CurrentConsent(subject, p, 1, at, "banner")


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# -- ConsentCache ---------------------------------------------------------------------------


def test_unknown_subject_is_a_miss_and_none_is_a_known_absence() -> None:
    c = ConsentCache(10, 60)
    assert c.get("s1") is MISS
    assert c.put("s1", None, c.epoch)
    assert c.get("s1") is None
    assert repr(MISS) == "MISS"


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [
        (1, 2, 2),  # a later change replaces
        (2, 1, 2),  # an older change arriving late is ignored
        (3, 3, 3),  # the same change twice is harmless
    ],
)
def test_changes_apply_in_seq_order(first: int, second: int, kept: int) -> None:
    c = ConsentCache(10, 60)
    c.apply(change(first, analytics=first % 2 == 0))
    c.apply(change(second, analytics=second % 2 == 0))
    got = c.get("s1")
    assert isinstance(got, CurrentConsent)
    assert got.at == float(kept)
    assert got.purposes == {"analytics": kept % 2 == 0}


def test_a_lookup_that_raced_a_change_does_not_overwrite_it() -> None:
    c = ConsentCache(10, 60)
    epoch = c.epoch  # a lookup starts and reads the old state...
    c.apply(change(5, analytics=False))  # ...a withdrawal is applied meanwhile...
    assert not c.put("s1", state(analytics=True), epoch)  # ...its late answer is refused
    got = c.get("s1")
    assert isinstance(got, CurrentConsent) and got.purposes == {"analytics": False}
    # a lookup started after the change may cache (another subject's change is no matter)
    c.apply(change(6, subject="s2"))
    assert c.put("s1", state(at=9.0, analytics=True), c.epoch)


def test_erasure_leaves_a_newer_state_that_answers_nothing() -> None:
    c = ConsentCache(10, 60)
    c.apply(change(1, analytics=True))
    c.apply(change(2, kind=ChangeKind.ERASURE))
    got = c.get("s1")
    assert isinstance(got, CurrentConsent)
    assert got.purposes == {} and got.source == "erasure" and got.at == 2.0


def test_bounded_in_size_and_age() -> None:
    now = [0.0]
    c = ConsentCache(3, 10, timer=lambda: now[0])
    for i in range(5):
        c.put(f"s{i}", state(f"s{i}"), c.epoch)
    assert len(c) == 3
    now[0] = 11.0
    assert all(c.get(f"s{i}") is MISS for i in range(5))
    c.put("x", None, c.epoch)
    c.clear()
    assert c.get("x") is MISS


# -- ConsentBook ----------------------------------------------------------------------------


@pytest.fixture
async def book(store: ConsentStore) -> AsyncIterator[ConsentBook]:
    b = ConsentBook(store, ConsentCache(100, 60), Metrics())
    yield b
    await b.close()


async def _until(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


async def test_peek_never_waits_and_prefetches(book: ConsentBook) -> None:
    await book.store.record(rec("s1", analytics=True))
    assert book.peek("s1") is MISS  # decided on the cookie now
    await _until(lambda: book.cache.get("s1") is not MISS)
    got = book.peek("s1")
    assert isinstance(got, CurrentConsent) and got.purposes == {"analytics": True}
    assert sample(book.metrics, "consent_gateway_consent_cache_total", result="miss") == 1
    assert sample(book.metrics, "consent_gateway_consent_cache_total", result="hit") == 1
    # an unknown subject is cached as known-absent
    assert book.state_now("nobody") is None
    await _until(lambda: book.cache.get("nobody") is None)


async def test_lookup_waits_on_a_miss_then_hits(book: ConsentBook) -> None:
    await book.store.record(rec("s1", analytics=False))
    got = await book.lookup("s1")
    assert got is not None and got.purposes == {"analytics": False}
    assert await book.lookup("s1") == got
    assert await book.lookup("unknown") is None
    assert sample(book.metrics, "consent_gateway_consent_cache_total", result="hit") == 1


async def test_record_and_erase_write_through_and_notify(book: ConsentBook) -> None:
    heard: list[Change] = []
    book.on_change.append(heard.append)
    # the cache holds an older state: a new record replaces it at once
    book.cache.put("s1", state(analytics=True), book.cache.epoch)
    written = await book.record(rec("s1", at=2000.0, analytics=False))
    assert written.id is not None
    got = book.peek("s1")
    assert isinstance(got, CurrentConsent) and got.purposes == {"analytics": False}
    token = await book.erase("s1")
    assert token.startswith("erased:")
    got = book.peek("s1")
    assert isinstance(got, CurrentConsent) and got.purposes == {} and got.source == "erasure"
    assert [c.kind for c in heard] == [ChangeKind.CONSENT, ChangeKind.ERASURE]
    assert sample(book.metrics, "consent_gateway_consent_changes_applied_total", via="own") == 2


async def test_an_older_record_changes_nothing(book: ConsentBook) -> None:
    heard: list[Change] = []
    book.on_change.append(heard.append)
    await book.record(rec("s1", at=2000.0, analytics=False))
    await book.record(rec("s1", at=1000.0, analytics=True))  # late, older: proof only
    assert len(heard) == 1
    got = await book.lookup("s1")
    assert got is not None and got.purposes == {"analytics": False}


async def test_a_failing_store_reads_as_no_record_and_is_counted(tmp_path: Path) -> None:
    # a store that is not open fails every call with StoreError
    book = ConsentBook(SqliteStore(tmp_path / "x.db"), ConsentCache(10, 60), Metrics())
    try:
        assert await book.lookup("s1") is None
        assert book.cache.get("s1") is MISS  # a failure is not cached as an answer
        assert (
            sample(book.metrics, "consent_gateway_consent_store_errors_total", operation="current")
            == 1
        )
        with pytest.raises(StoreError):
            await book.record(rec())
        with pytest.raises(StoreError):
            await book.erase("s1")
        assert (
            sample(book.metrics, "consent_gateway_consent_store_errors_total", operation="record")
            == 1
        )
    finally:
        await book.close()


async def test_close_cancels_prefetches(store: ConsentStore) -> None:
    book = ConsentBook(store, ConsentCache(10, 60), Metrics())
    book.peek("s1")
    await book.close()
    book.peek("s2")  # after close, nothing new starts
    assert not book._pending


def test_record_type_is_reexported() -> None:
    assert ConsentRecord is rec().__class__


async def test_a_failing_store_is_logged_now_and_then_not_per_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    book = ConsentBook(SqliteStore(tmp_path / "x.db"), ConsentCache(10, 60), Metrics())
    try:
        for i in range(50):
            assert await book.lookup(f"s{i}") is None
        warnings = [r for r in caplog.records if r.name == "gateway.store.cache"]
        assert len(warnings) == 1
        assert (
            sample(book.metrics, "consent_gateway_consent_store_errors_total", operation="current")
            == 50
        )
    finally:
        await book.close()


def test_a_change_outlives_the_lookup_ttl() -> None:
    """A withdrawal stays known as long as the cookies it outdates (change_ttl)."""
    now = [0.0]
    c = ConsentCache(10, 60, timer=lambda: now[0], change_ttl=3600)
    c.put("looked-up", state("looked-up"), c.epoch)
    c.apply(change(1, subject="withdrawn", analytics=False))
    now[0] = 61.0
    assert c.get("looked-up") is MISS
    assert c.get("withdrawn") is not MISS
    now[0] = 3601.0
    assert c.get("withdrawn") is MISS
