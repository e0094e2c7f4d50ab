"""gateway.admin.api: the JSON API: records and a subject's consent records and
erasure, through the gateway's own app.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from yarl import URL

from gateway.app import GATEWAY
from gateway.decision_log.record import DecisionRecord, record_to_dict
from gateway.store.base import ERASED_PREFIX, ConsentRecord
from tests.admin.conftest import (
    BEARER,
    BYPASS_ROWS,
    NOTICE,
    Client,
    admin_client,
    api,
    consent,
    erase,
    erase_path,
    record,
    records_path,
    seed,
    seed_bypasses,
)

# --- records --------------------------------------------------------------------------


async def test_api_records_shape(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    rec = record("shape", stripped=("query:gclid",))
    seed(client, [rec])
    body = await api(client, "/_admin/api/records")
    assert set(body) == {"records", "next_before_id"} and body["next_before_id"] is None
    [got] = body["records"]
    assert got == orjson.loads(orjson.dumps(record_to_dict(rec))) | {"id": 1}
    assert set(got) == {"ts", "ts_epoch"} | {f.name for f in fields(DecisionRecord)} - {"ts"}


# --- a subject's consent records, and erasure -----------------------------------------

RECORD_KEYS = {"id", "purposes", "source", "policy_version", "at", "time"}
RECORD_KEYS |= {"notice_hash", "request_id", "vendors"}


async def test_subject_records_are_the_proof_of_consent(
    gateway_factory: Callable[..., Any],
) -> None:
    client = await admin_client(gateway_factory)
    first = await consent(client, {"analytics": True}, notice=NOTICE)
    second = await consent(client, {"advertising": False}, source="cmp")
    subject = first["subject"]
    assert second["subject"] == subject  # the cookie names the same visitor
    # an older answer written last (e.g. replayed from a back end) is listed by its time
    book = client.app[GATEWAY].book
    assert book is not None
    old = await book.record(
        ConsentRecord(
            subject, {"analytics": False}, "api", 1, first["record"]["at"] - 3600, None, None
        )
    )
    resp = await client.get(records_path(subject), headers=BEARER)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert resp.headers["Cache-Control"] == "no-store"
    doc = orjson.loads(await resp.read())
    assert doc["subject"] == subject
    assert [r["id"] for r in doc["records"]] == [
        old.id,
        first["record"]["id"],
        second["record"]["id"],
    ]
    assert all(set(r) == RECORD_KEYS for r in doc["records"])
    oldest, banner, cmp = doc["records"]
    assert (oldest["source"], oldest["purposes"], oldest["notice_hash"]) == (
        "api",
        {"analytics": False},
        None,
    )
    assert banner["purposes"] == {"analytics": True}
    assert banner["notice_hash"] == hashlib.sha256(NOTICE.encode()).hexdigest()
    assert banner["policy_version"] == 1 and banner["at"] == first["record"]["at"]
    assert banner["time"].endswith("+00:00") and len(banner["request_id"]) == 16
    assert cmp["purposes"] == {"analytics": True, "advertising": False}  # merged with the first
    assert cmp["source"] == "cmp" and cmp["notice_hash"] is None
    assert doc["current"] == {
        "purposes": {"analytics": True, "advertising": False},
        "vendors": {},
        "policy_version": 1,
        "source": "cmp",
        "at": second["record"]["at"],
        "time": cmp["time"],
    }


async def test_subject_records_of_an_unknown_subject(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    await consent(client, {"analytics": True})
    doc = await api(client, records_path("nobody-at-all"))
    assert doc == {"subject": "nobody-at-all", "current": None, "records": []}


async def test_erase_unlinks_the_subject_and_keeps_the_records(
    gateway_factory: Callable[..., Any],
) -> None:
    client = await admin_client(gateway_factory)
    subject = (await consent(client, {"analytics": True}))["subject"]
    await consent(client, {"advertising": False})
    book = client.app[GATEWAY].book
    assert book is not None
    other = await book.record(
        ConsentRecord("other", {"analytics": True}, "api", 1, 1e9, None, None)
    )
    before = await api(client, records_path(subject))
    answer = await erase(client, subject)
    assert set(answer) == {"erased", "token"} and answer["erased"] is True
    token = answer["token"]
    assert token.startswith(ERASED_PREFIX) and subject not in token
    gone = await api(client, records_path(subject))
    assert gone["records"] == []
    # no consent: an erased subject's state answers nothing, as of the erasure
    assert gone["current"]["purposes"] == {} and gone["current"]["source"] == "erasure"
    assert gone["current"]["at"] > before["current"]["at"]
    after = await api(client, records_path(token))
    assert len(after["records"]) == 2
    assert after["records"] == before["records"] and after["current"] == before["current"]
    # the other subject is untouched
    assert [r["id"] for r in (await api(client, records_path("other")))["records"]] == [other.id]
    # erasing again is harmless: the same token, nothing more to unlink
    assert await erase(client, subject) == {"erased": True, "token": token}
    assert len((await api(client, records_path(token)))["records"]) == 2


async def consent_now(client: Client) -> dict[str, Any]:
    resp = await client.get("/consent")
    assert resp.status == 200
    purposes: dict[str, Any] = orjson.loads(await resp.read())["purposes"]
    return purposes


async def past(at: float) -> None:
    """Wait until the clock is past `at` (a cookie's whole-second time)."""
    while time.time() <= at:
        await asyncio.sleep(0.02)


async def test_after_erasure_the_old_cookie_is_no_consent(
    gateway_factory: Callable[..., Any],
) -> None:
    client = await admin_client(gateway_factory)
    doc = await consent(client, {"analytics": True})
    assert (await consent_now(client))["analytics"]["state"] == "granted"
    await past(doc["record"]["at"])
    await erase(client, doc["subject"])
    # the visitor's browser still holds the signed cookie; it no longer counts
    assert (await consent_now(client))["analytics"] == {
        "state": "denied",
        "source": "default:opt-in",
    }


async def test_erasure_right_after_consent(gateway_factory: Callable[..., Any]) -> None:
    """An erasure in the same second as the cookie still outdates it (cookies carry whole
    seconds)."""
    client = await admin_client(gateway_factory)
    while time.time() % 1 > 0.5:  # early in a second: erasure and cookie share the second
        await asyncio.sleep(0.02)
    subject = (await consent(client, {"analytics": True}))["subject"]
    await erase(client, subject)
    assert (await consent_now(client))["analytics"]["state"] == "denied"


async def test_erasure_outlives_the_cache(gateway_factory: Callable[..., Any]) -> None:
    """The erased state comes from the store too, not only from the cache entry."""
    client = await admin_client(gateway_factory)
    doc = await consent(client, {"analytics": True})
    await past(doc["record"]["at"])
    await erase(client, doc["subject"])
    book = client.app[GATEWAY].book
    assert book is not None
    assert (await consent_now(client))["analytics"]["state"] == "denied"
    book.cache.clear()  # as after cache_ttl, or in a gateway started after the erasure
    assert (await consent_now(client))["analytics"]["state"] == "denied"


@pytest.mark.parametrize(("length", "status"), [(1, 200), (256, 200), (257, 400), (300, 400)])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_subject_length_is_bounded(
    gateway_factory: Callable[..., Any], method: str, length: int, status: int
) -> None:
    client = await admin_client(gateway_factory)
    subject = "s" * length
    path = records_path(subject) if method == "GET" else erase_path(subject)
    resp = await client.request(method, path, headers=BEARER)
    assert resp.status == status, await resp.text()
    doc = orjson.loads(await resp.read())
    if status == 400:
        assert doc == {"error": "subject must be 1-256 characters"}
        assert subject not in (await resp.text())
    elif method == "GET":
        assert doc == {"subject": subject, "current": None, "records": []}
    else:
        assert doc["erased"] is True and doc["token"].startswith(ERASED_PREFIX)


@pytest.mark.parametrize("subject", ["a/b", "a b", "ü-visitor", "a%2Fb", "a?b#c", "erased:x"])
async def test_subjects_are_percent_encoded_in_the_path(
    gateway_factory: Callable[..., Any], subject: str
) -> None:
    """Subjects named by a back end (store.subject_header) may hold any character."""
    client = await admin_client(gateway_factory)
    book = client.app[GATEWAY].book
    assert book is not None
    await book.record(ConsentRecord(subject, {"analytics": True}, "api", 1, 1e9, None, None))
    encoded = quote(subject, safe="")
    resp = await client.get(URL(records_path(encoded), encoded=True), headers=BEARER)
    assert resp.status == 200
    doc = orjson.loads(await resp.read())
    assert doc["subject"] == subject and len(doc["records"]) == 1
    resp = await client.post(URL(erase_path(encoded), encoded=True), headers=BEARER)
    assert resp.status == 200
    token = orjson.loads(await resp.read())["token"]
    assert (await book.store.history(subject)) == []
    assert len(await book.store.history(token)) == 1


async def test_subject_api_answers_503_when_the_store_fails(
    gateway_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await admin_client(gateway_factory)
    subject = (await consent(client, {"analytics": True}))["subject"]
    book = client.app[GATEWAY].book
    assert book is not None
    await book.store.close()  # every call now raises StoreError
    for method, path, message in (
        ("GET", records_path(subject), "the consent store cannot be read"),
        ("POST", erase_path(subject), "the consent store cannot be written"),
    ):
        resp = await client.request(method, path, headers=BEARER)
        assert resp.status == 503
        assert orjson.loads(await resp.read()) == {"error": message}


async def test_erasure_logs_no_subject_id(
    gateway_factory: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = await admin_client(gateway_factory)
    subject = (await consent(client, {"analytics": True}))["subject"]
    caplog.set_level(logging.DEBUG)
    token = (await erase(client, subject))["token"]
    await api(client, records_path(token))
    gateway_logs = [r for r in caplog.records if r.name.startswith("gateway")]
    assert any(r.getMessage() == "admin: a subject was erased" for r in gateway_logs)
    assert not [r.getMessage() for r in gateway_logs if subject in r.getMessage()]


async def test_api_bypasses(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    seed_bypasses(client, BYPASS_ROWS)
    body = await api(client, "/_admin/api/bypasses")
    assert body["since"] == "1w" and body["kind"] is None and body["since_time"].endswith("Z")
    rows = [(b["kind"], b["vendor"], b["host"], b["page"], b["count"]) for b in body["bypasses"]]
    assert rows == [
        ("bypass", "meta-pixel", "www.facebook.com", "/cart", 3),
        ("unlisted", None, "cdn.tracker.example", "/p/{…}", 1),
    ]
    first = body["bypasses"][0]
    assert first["first_seen"] < first["last_seen"] and first["source"] == "csp"
    assert first["first_seen_epoch"] < first["last_seen_epoch"]
    body = await api(client, "/_admin/api/bypasses?since=all&kind=bypass&limit=1")
    assert [b["host"] for b in body["bypasses"]] == ["www.facebook.com"]
    body = await api(client, "/_admin/api/bypasses?since=2d&kind=unlisted")
    assert [b["host"] for b in body["bypasses"]] == ["cdn.tracker.example"]
