"""The consent store's contract (gateway.store.base), and the behavioural suite that runs
unchanged against both backends (the `backend` and `store` fixtures of tests/stores.py
are parametrized over them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.store.base import (
    ERASED_PREFIX,
    Change,
    ChangeKind,
    ConsentRecord,
    ConsentStore,
    CurrentConsent,
    StoreError,
    dump_purposes,
    erasure_time,
    erasure_token,
    load_purposes,
)
from tests.stores import Backend, rec

# -- the record types ------------------------------------------------------------------------


def test_record_freezes_purposes() -> None:
    src = {"analytics": True}
    r = ConsentRecord("s1", src, "banner", 3, 1.0, None, None)
    src["analytics"] = False
    assert r.purposes == {"analytics": True}
    with pytest.raises(TypeError):
        r.purposes["analytics"] = False  # type: ignore[index]


@pytest.mark.parametrize(
    "change",
    [
        {"subject": ""},
        {"subject": "x" * 257},
        {"source": ""},
        {"policy_version": -1},
        {"policy_version": True},
        {"at": float("nan")},
        {"purposes": {"analytics": 1}},
        {"purposes": {"": True}},
    ],
)
def test_record_rejects_malformed_fields(change: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "subject": "s",
        "purposes": {"a": True},
        "source": "api",
        "policy_version": 1,
        "at": 1.0,
        "notice_hash": None,
        "request_id": None,
    }
    with pytest.raises(ValueError):
        ConsentRecord(**(fields | change))


def test_current_consent_validates() -> None:
    assert CurrentConsent("s", {"a": False}, 1, 2.0, "api").purposes == {"a": False}
    with pytest.raises(ValueError):
        CurrentConsent("", {}, 1, 2.0, "api")


def test_purposes_round_trip_and_reject_corruption() -> None:
    text = dump_purposes({"b": True, "a": False})
    assert text == '{"a":false,"b":true}'
    assert load_purposes(text) == {"a": False, "b": True}
    for bad in ("not json", "[1]", '{"a": 1}'):
        with pytest.raises(StoreError):
            load_purposes(bad)


def test_erasure_token_is_keyed_and_stable() -> None:
    a = erasure_token("visitor-1", b"salt-a")
    assert a == erasure_token("visitor-1", b"salt-a")
    assert a.startswith(ERASED_PREFIX) and "visitor-1" not in a
    assert a != erasure_token("visitor-1", b"salt-b")
    assert a != erasure_token("visitor-2", b"salt-a")


# -- the behavioural suite, against both backends -------------------------------------------


async def test_record_current_history_round_trip(store: ConsentStore) -> None:
    assert await store.current("s1") is None
    assert await store.history("s1") == []
    r = rec(at=1000.5)
    written = await store.record(r)
    assert written.id is not None
    assert written == ConsentRecord(**{**_as_dict(r), "id": written.id})
    assert await store.history("s1") == [written]
    assert await store.current("s1") == CurrentConsent(
        "s1", {"analytics": True, "advertising": False}, 3, 1000.5, "banner"
    )
    assert await store.current("s2") is None


async def test_vendor_answers_are_kept_with_the_record_its_state_and_its_change(
    store: ConsentStore,
) -> None:
    """The visitor's vendor-by-vendor answers are part of the proof: in the record, in the
    current state, and in the change other instances and webhooks follow."""
    r = dataclasses.replace(rec(at=10.0), vendors={"posthog": False, "matomo": True})
    written, change = await store.record_change(r)
    assert dict(written.vendors) == {"posthog": False, "matomo": True}
    [kept] = await store.history("s1")
    assert kept == written
    current = await store.current("s1")
    assert current is not None and dict(current.vendors) == {"posthog": False, "matomo": True}
    assert change is not None and change.current() == current
    assert await store.changes_since(0) == [change]
    # a later record without vendor answers is the state in force: it has none
    await store.record(rec(at=20.0))
    later = await store.current("s1")
    assert later is not None and dict(later.vendors) == {}


async def test_append_only_current_follows_newest(store: ConsentStore) -> None:
    first = await store.record(rec(at=100.0, analytics=True))
    second = await store.record(rec(at=200.0, analytics=False))
    # an older record written late (a delayed request) is kept but does not become current
    late = await store.record(rec(at=150.0, ads=True))
    history = await store.history("s1")
    assert history == [first, late, second]  # oldest first
    assert len({r.id for r in history}) == 3
    current = await store.current("s1")
    assert current is not None and current.at == 200.0 and current.purposes == {"analytics": False}
    withdrawal = await store.record(
        ConsentRecord("s1", {"analytics": False}, "withdrawal", 3, 300.0, None, None)
    )
    assert (await store.history("s1"))[-1] == withdrawal
    current = await store.current("s1")
    assert current is not None and current.source == "withdrawal"


async def test_erase_unlinks_subject_and_keeps_records(
    store: ConsentStore, backend: Backend
) -> None:
    for i in range(3):
        await store.record(rec("victim", at=10.0 + i))
    await store.record(rec("other", at=5.0))
    (before,) = await backend.sql("SELECT count(*) FROM consent_records")
    token = await store.erase("victim")
    assert token.startswith(ERASED_PREFIX) and "victim" not in token
    assert await store.history("victim") == []
    # what stays under the old id: the fact of an erasure, answering nothing, newer than
    # any cookie issued before it (so such a cookie no longer counts anywhere)
    erased = await store.current("victim")
    assert erased is not None
    assert (erased.purposes, erased.source, erased.policy_version) == ({}, "erasure", 0)
    assert erased.at > 12.0
    assert await store.current("never-seen") is None
    (after,) = await backend.sql("SELECT count(*) FROM consent_records")
    assert after[0] == before[0] == 4
    for table in ("consent_records", "current_consent"):
        rows = await backend.sql(
            backend.q(f"SELECT count(*) FROM {table} WHERE subject = ?"), "victim"
        )
        assert rows[0][0] == 0
    unlinked = await store.history(token)
    assert [r.at for r in unlinked] == [10.0, 11.0, 12.0]
    assert (await store.current(token)) is not None
    assert len(await store.history("other")) == 1  # others untouched
    assert await store.erase("victim") == token  # idempotent: same token, nothing left


async def test_erase_after_the_subject_returns(store: ConsentStore) -> None:
    await store.record(rec("back", at=10.0))
    token = await store.erase("back")
    await store.record(rec("back", at=20.0))
    assert await store.erase("back") == token
    current = await store.current(token)
    assert current is not None and current.at == 20.0
    assert [r.at for r in await store.history(token)] == [10.0, 20.0]
    await store.record(rec("back", at=30.0, analytics=True))
    current = await store.current("back")  # a new record after the erasure stands
    assert current is not None and current.purposes == {"analytics": True}


async def test_concurrent_records_all_land(store: ConsentStore) -> None:
    ats = [1000.0 + i for i in range(50)]
    order = ats[:]
    random.Random(5).shuffle(order)
    written = await asyncio.gather(*(store.record(rec("busy", at=a)) for a in order))
    assert len({w.id for w in written}) == 50
    history = await store.history("busy")
    assert [r.at for r in history] == ats
    current = await store.current("busy")
    assert current is not None and current.at == max(ats)


async def test_ping_and_closed_store(backend: Backend) -> None:
    s = backend.make()
    with pytest.raises(StoreError):
        await s.record(rec())
    assert await s.ping() is False
    await s.open()
    try:
        assert await s.ping() is True
        await s.open()  # idempotent
    finally:
        await s.close()
    await s.close()  # idempotent
    assert await s.ping() is False
    with pytest.raises(StoreError):
        await s.current("s1")


async def test_records_survive_reopening(store: ConsentStore, backend: Backend) -> None:
    written = await store.record(rec(at=42.0))
    other = backend.make()
    await other.open()
    try:
        assert await other.history("s1") == [written]
    finally:
        await other.close()


async def test_no_ip_address_or_user_agent_column(store: ConsentStore, backend: Backend) -> None:
    if backend.name == "sqlite":
        rows = await backend.sql(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p"
            " WHERE m.type = 'table'"
        )
    else:
        rows = await backend.sql(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
        )
    columns = {str(r[1]).lower() for r in rows}
    assert "subject" in columns
    for column in columns:
        assert not any(bad in column for bad in ("ip", "addr", "agent", "ua"))


def _as_dict(r: ConsentRecord) -> dict[str, Any]:
    return {f: getattr(r, f) for f in ConsentRecord.__slots__}


def _json_children(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner) | st.dictionaries(
        st.sampled_from(
            [
                "seq",
                "id",
                "kind",
                "subject",
                "purposes",
                "policy_version",
                "at",
                "source",
                "record_id",
                "x",
            ]
        ),
        inner,
    )


# -- the change feed -------------------------------------------------------------------------


async def test_each_change_of_current_state_is_in_the_feed_in_order(store: ConsentStore) -> None:
    assert await store.last_seq() == 0
    _, c1 = await store.record_change(rec("a", at=10.0, analytics=True))
    _, c2 = await store.record_change(rec("b", at=10.0, analytics=False))
    # an older record is proof only: the current state, and so the feed, do not change
    _, none = await store.record_change(rec("a", at=5.0, analytics=False))
    _, c3 = await store.record_change(rec("a", at=20.0, analytics=False))
    assert none is None
    assert c1 is not None and c2 is not None and c3 is not None
    assert c1.seq < c2.seq < c3.seq
    feed = await store.changes_since(0)
    assert feed == [c1, c2, c3]
    assert await store.changes_since(c1.seq) == [c2, c3]
    assert await store.changes_since(0, limit=1) == [c1]
    assert await store.last_seq() == c3.seq
    assert c3.kind is ChangeKind.CONSENT and c3.purposes == {"analytics": False}
    assert c3.current() == await store.current("a")
    assert len({c.event_id for c in feed}) == 3


async def test_erasure_is_a_change_and_unlinks_the_earlier_ones(store: ConsentStore) -> None:
    await store.record(rec("a", at=10.0))
    token, change = await store.erase_change("a")
    assert change.kind is ChangeKind.ERASURE and change.subject == "a"
    assert change.current() is None and change.purposes == {}
    feed = await store.changes_since(0)
    assert [c.subject for c in feed] == [token, "a"]
    # once every webhook has delivered it, the erasure change keeps only the token
    assert await store.scrub_erasures(change.seq) == 1
    assert [c.subject for c in await store.changes_since(0)] == [token, token]
    assert await store.scrub_erasures(change.seq) == 0


async def test_webhook_cursor_lease_and_progress(store: ConsentStore) -> None:
    _, before = await store.record_change(rec("a", at=1.0))
    cursor = await store.webhook_register("crm")
    # a new endpoint starts at the end of the feed: it gets changes made after it was added
    assert before is not None and cursor.last_seq == before.seq
    assert (await store.webhook_register("crm")) == cursor  # idempotent
    _, after = await store.record_change(rec("a", at=2.0))
    assert after is not None
    assert await store.webhook_claim("crm", "one", 30.0, now=100.0)
    assert not await store.webhook_claim("crm", "two", 30.0, now=110.0)  # held
    assert not await store.webhook_advance("crm", "two", after.seq, now=110.0)
    assert await store.webhook_failed("crm", "one", 1, 120.0, "HTTP 503")
    [c] = await store.webhook_cursors()
    assert (c.attempts, c.next_attempt, c.last_error) == (1, 120.0, "HTTP 503")
    assert await store.webhook_advance("crm", "one", after.seq, now=121.0)
    [c] = await store.webhook_cursors()
    assert (c.last_seq, c.attempts, c.last_error, c.delivered) == (after.seq, 0, None, 1)
    assert c.last_success == 121.0
    # a cursor never moves back
    assert not await store.webhook_advance("crm", "one", before.seq, now=122.0)
    # an expired lease can be taken over
    assert await store.webhook_claim("crm", "two", 30.0, now=200.0)
    assert not await store.webhook_failed("crm", "one", 1, 0.0, "x")


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
_ANY_JSON = st.recursive(_SCALARS, _json_children, max_leaves=8)


_VALID_CHANGE = Change(1, "e1", ChangeKind.CONSENT, "s", {"a": True}, 1, 1.0, "api", 1).to_json()


@st.composite
def _damaged_changes(draw: st.DrawFn) -> object:
    """A valid change document with some fields replaced, dropped or added."""
    doc = dict(_VALID_CHANGE)
    for key in draw(st.lists(st.sampled_from([*_VALID_CHANGE, "x"]), max_size=3)):
        if draw(st.booleans()):
            doc[key] = draw(_ANY_JSON)
        else:
            doc.pop(key, None)
    return doc


@given(_ANY_JSON | _damaged_changes())
def test_change_from_json_raises_only_store_error(doc: object) -> None:
    try:
        Change.from_json(doc)
    except StoreError:
        pass


def test_change_json_round_trip() -> None:
    change = Change(7, "e7", ChangeKind.CONSENT, "s", {"analytics": True}, 2, 3.5, "api", 9)
    assert Change.from_json(orjson.loads(orjson.dumps(change.to_json()))) == change
    with_vendors = dataclasses.replace(change, vendors={"posthog": False})
    doc = orjson.loads(orjson.dumps(with_vendors.to_json()))
    assert Change.from_json(doc) == with_vendors
    # a change announced by an instance older than vendor answers has none
    del doc["vendors"]
    assert Change.from_json(doc) == change


@pytest.mark.parametrize(
    "vendors",
    [{"Posthog": True}, {"": True}, {"posthog": 1}, {f"v{i}": True for i in range(65)}],
)
def test_records_refuse_malformed_vendor_answers(vendors: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="vendor"):
        dataclasses.replace(rec(), vendors=vendors)


@pytest.mark.parametrize(
    ("newest", "now_before"),
    [
        (None, True),  # no record: now
        (10.0, True),  # an old record: now
        (4e12, False),  # a record "in the future" (a clock ahead): just after it
    ],
)
def test_erasure_time_is_after_the_newest_record(newest: float | None, now_before: bool) -> None:
    before = time.time()
    at = erasure_time(newest)
    assert at >= before if now_before else at > (newest or 0)
    if newest is not None:
        assert at > newest


async def test_webhook_lease_release(store: ConsentStore) -> None:
    await store.webhook_register("crm")
    assert await store.webhook_claim("crm", "one", 30.0, now=100.0)
    await store.webhook_release("crm", "two")  # not the holder: nothing happens
    assert not await store.webhook_claim("crm", "two", 30.0, now=101.0)
    await store.webhook_release("crm", "one")
    assert await store.webhook_claim("crm", "two", 30.0, now=102.0)  # at once
