"""Tests for gateway.decision_log: the privacy gate, the queue and batch writer, the sinks,
reading back (`query_records`, `run_logs`), all against real temporary files."""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import pytest

import gateway.decision_log as decision_log
from gateway.config import DecisionLogConfig
from gateway.decision_log import (
    MAX_QUERY_LIMIT,
    DecisionLog,
    DecisionRecord,
    JsonlSink,
    LogQuery,
    SqliteSink,
    UnknownHost,
    count_decisions,
    format_record,
    parse_since,
    query_records,
    record_for,
    record_to_dict,
    run_logs,
    unknown_hosts,
)
from gateway.metrics import Metrics
from gateway.model import (
    Action,
    ConsentState,
    ConsentValue,
    Decision,
    Facts,
    Headers,
    IpPolicy,
    PurposeConsent,
    StripSpec,
)
from gateway.redact import sanitize_path
from tests.conftest import RULES_DIR

T0 = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC).timestamp()

# --- helpers ------------------------------------------------------------------------------


def make_facts(**kw: Any) -> Facts:
    args: dict[str, Any] = {
        "request_id": "req-1",
        "method": "GET",
        "host": "www.google-analytics.com",
        "path": "/g/collect",
        "query": "v=2&tid=G-X",
        "now": T0,
    }
    args.update(kw)
    return Facts(**args)


def make_decision(action: Action = Action.DROP, **kw: Any) -> Decision:
    args: dict[str, Any] = {
        "action": action,
        "vendor": "google-analytics-4",
        "endpoint": "collect",
        "required": frozenset({"analytics"}),
        "missing": frozenset({"analytics"}),
        "strips": StripSpec(),
        "reason": "analytics not granted",
    }
    args.update(kw)
    return Decision(**args)


def make_consent(**states: ConsentValue) -> ConsentState:
    return ConsentState(
        {p: PurposeConsent(v, "cookie") for p, v in states.items()}, regime="opt-in"
    )


def rec(request_id: str, **kw: Any) -> DecisionRecord:
    args: dict[str, Any] = {
        "ts": T0,
        "request_id": request_id,
        "action": "drop",
        "vendor": "google-analytics-4",
        "endpoint": "collect",
        "missing": ("analytics",),
        "sources": {"analytics": "default:opt-in"},
        "regime": "opt-in",
        "method": "GET",
        "host": "www.google-analytics.com",
        "path": "/g/collect",
        "stripped": (),
        "reason": "analytics not granted",
    }
    args.update(kw)
    return DecisionRecord(**args)


def store(db: Path, records: Sequence[DecisionRecord]) -> None:
    sink = SqliteSink(db)
    try:
        sink.write(records)
    finally:
        sink.close()


def log_cfg(tmp_path: Path, **kw: Any) -> DecisionLogConfig:
    args: dict[str, Any] = {
        "sqlite_path": tmp_path / "data" / "decisions.db",
        "jsonl": None,
        "queue_size": 1000,
        "batch_size": 50,
        "flush_interval": 0.01,
    }
    args.update(kw)
    return DecisionLogConfig(**args)


def written(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("gateway_decision_log_written_total") or 0.0


def lost(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("gateway_decision_log_lost_total", {"reason": reason})
    return value or 0.0


def all_records(db: Path) -> list[DecisionRecord]:
    return query_records(db, LogQuery(limit=MAX_QUERY_LIMIT))


async def eventually(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def test_all_is_exported() -> None:
    for name in decision_log.__all__:
        assert hasattr(decision_log, name), name


# --- record_for: the privacy gate ---------------------------------------------------------

SECRETS = {
    "query value": "QSECRETcid1234",
    "consent string": "CPzHqYAPzHqYAAHABBENBCCsAP_SECRET",
    "cookie value": "CKSECRETga1.2.3",
    "header value": "HDRSECRETagent",
    "body": "BODYSECRETemail",
    "client ip": "203.0.113.77",
    "path parameter value": "U1SECRETxyz",
    "userinfo": "PWSECRET",
}


def secret_facts(host: str = "ad.doubleclick.net") -> Facts:
    s = SECRETS
    return make_facts(
        host=host,
        path=f"/activityi;src=123;u1={s['path parameter value']};ord=1?cid={s['query value']}",
        query=f"cid={s['query value']}&gdpr_consent={s['consent string']}",
        headers=Headers(
            (
                ("User-Agent", s["header value"]),
                ("Cookie", f"_ga={s['cookie value']}"),
                ("X-Forwarded-For", s["client ip"]),
            )
        ),
        cookies={"_ga": s["cookie value"], "euconsent-v2": s["consent string"]},
        body=f'{{"em":"{s["body"]}"}}'.encode(),
        client_ip=s["client ip"],
        country="DE",
    )


PRIVACY_CASES = [
    pytest.param(
        make_decision(Action.FORWARD, missing=frozenset(), report_only=True), "forward-report"
    ),
    pytest.param(
        make_decision(
            Action.STRIP,
            strips=StripSpec(
                query=frozenset({"cid", "gdpr_consent"}),
                cookies=frozenset({"_ga"}),
                headers=frozenset({"user-agent"}),
                ip=IpPolicy.TRUNCATE,
            ),
        ),
        "strip",
    ),
    pytest.param(make_decision(Action.DROP), "drop"),
    pytest.param(
        make_decision(Action.REJECT, vendor=None, endpoint=None, missing=frozenset()), "reject"
    ),
]


@pytest.mark.parametrize(("decision", "name"), PRIVACY_CASES)
def test_record_never_holds_request_values(decision: Decision, name: str) -> None:
    host = f"user:{SECRETS['userinfo']}@evil.example" if name == "reject" else "ad.doubleclick.net"
    consent = None if name == "reject" else make_consent(analytics=ConsentValue.DENIED)
    r = record_for(secret_facts(host), decision, consent)
    rendered = [
        repr(r),
        str(r),
        orjson.dumps(record_to_dict(r)).decode(),
        format_record(r),
    ]
    for what, secret in SECRETS.items():
        for text in rendered:
            assert secret not in text, f"{what} leaked into the {name} record"
    assert r.path == "/activityi;src={…};u1={…};ord={…}"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # plain words stay: the shape of the request
        ("/g/collect", "/g/collect"),
        ("/v1/collect", "/v1/collect"),
        ("/tr/", "/tr/"),
        ("/en_US/fbevents.js", "/en_US/fbevents.js"),
        ("/conversion_events", "/conversion_events"),
        ("/pixel_v2.gif", "/pixel_v2.gif"),
        ("/caf\u00e9", "/caf\u00e9"),
        ("", ""),
        # no query, no fragment
        ("/g/collect?cid=1.2&v=2", "/g/collect"),
        ("/page#frag=1", "/page"),
        # `;` parameters: names stay if plain, values never
        ("/activityi;src=123;u1=abc", "/activityi;src={…};u1={…}"),
        ("/activityi;src=123;type=x;cat=y;ord=1?", "/activityi;src={…};type={…};cat={…};ord={…}"),
        ("/ddm/activity/src=123;type=invmedia;u1=abc", "/ddm/activity/src={…};type={…};u1={…}"),
        ("/a;flag;b=1", "/a;flag;b={…}"),
        ("/a;;b=", "/a;;b={…}"),
        ("/a;alice@example.com=1", "/a;{…}"),
        ("/a;GCLIDLEAK123", "/a;{…}"),
        # segments that look like values
        ("/t/u/alice%40example.com/GCLIDLEAK123", "/t/u/{…}/{…}"),
        ("/u/alice@example.com/x", "/u/{…}/x"),
        ("/u/alice%2540example.com", "/u/{…}"),
        ("/v18.0/1234567890/events", "/v18.0/{…}/events"),
        ("/order/123456", "/order/{…}"),
        ("/order/12345", "/order/12345"),
        ("/h/deadbeef01", "/h/{…}"),
        ("/id/550e8400-e29b-41d4-a716-446655440000/x", "/id/{…}/x"),
        ("/tok/dGhpcyBpcyBhIHRva2VuIQ", "/tok/{…}"),
        ("/tok/abcdefghijklmnopQRST", "/tok/{…}"),
        ("/ip/203.0.113.77", "/ip/{…}"),
        ("/ip/2001:db8::1", "/ip/{…}"),
        ("/u/user1234", "/u/{…}"),
        ("/x/" + "a" * 41, "/x/{…}"),
        ("/a%3Bb=1/c", "/{…}/c"),
        ("/a%3Fgclid%3DX/c", "/{…}/c"),
        ("/a%2Fb/c", "/{…}/c"),
        # control characters would forge log lines; other non-printables become `?`
        ("/a\x00b\x1b[31m\r\n", "/{…}"),
        ("/zero\u200bwidth\u202eltr", "/zero?width?ltr"),
        ("/x\ud800y", "/x?y"),
    ],
)
def test_record_path_is_a_template(path: str, expected: str) -> None:
    assert record_for(make_facts(path=path), make_decision(), None).path == expected
    assert sanitize_path(path) == expected


def test_record_path_of_a_match_is_the_endpoint_pattern() -> None:
    """With a matched endpoint, the path is the rule's own text: nothing the visitor sent."""
    from gateway.config import DEFAULT_PURPOSES
    from gateway.ruleset.load import load_rules

    rules = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))
    cases = [
        ("www.google-analytics.com", "/g/collect", "/g/collect"),
        ("ad.doubleclick.net", "/activityi;src=1;u1=alice@example.com", "~/activityi?(;.*)?"),
        ("graph.facebook.com", "/v18.0/1234567890/events", None),
    ]
    for host, path, expected in cases:
        match = rules.match(host, path, "POST" if "events" in path else "GET")
        assert match is not None, (host, path)
        out = record_for(make_facts(host=host, path=path), make_decision(), None, match).path
        assert out == (expected or match.endpoint.pattern)
        assert "alice" not in out and "1234567890" not in out


@pytest.mark.parametrize(
    ("path", "absent"),
    [
        ("/" + "a" * 5000, None),
        ("/x;" + ";".join(f"p{i}=SECRET" for i in range(500)), "SECRET"),
        ("/" + "\x07" * 300, None),
        ("/" + "b" * 100_000 + ";u1=SECRET", "SECRET"),
    ],
)
def test_record_path_is_capped(path: str, absent: str | None) -> None:
    out = record_for(make_facts(path=path), make_decision(), None).path
    assert len(out) <= 256
    assert out.isprintable()
    if absent:
        assert absent not in out


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("www.google-analytics.com", "www.google-analytics.com"),
        ("user:pw@evil.example", "evil.example"),
        ("alice@example.com:pw@evil.example", "evil.example"),
        ("a@b@evil.example", "evil.example"),
        ("user%40evil.example", "evil.example"),
        ("evil.example;sid=abc", "evil.example"),
        ("evil.example:8080", "evil.example"),
        ("evil\x07.example\n", "{…}"),
        ("evil%2eexample", "{…}"),
        ("[::1]", "{…}"),
        ("203.0.113.77", "{…}"),
        ("GCLIDLEAK123", "{…}"),
        ("h" * 300 + ".example", "{…}"),
        ("Evil.Example", "evil.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("alice@", ""),
    ],
)
def test_record_host_is_a_name(host: str, expected: str) -> None:
    decision = make_decision(Action.REJECT, vendor=None, endpoint=None)
    assert record_for(make_facts(host=host), decision, None).host == expected


@pytest.mark.parametrize(
    ("method", "expected"),
    [("GET", "GET"), ("POST", "POST"), ("OPTIONS", "OPTIONS"), ("GCLIDLEAK123", "{…}")],
)
def test_record_method_is_standard_or_a_mark(method: str, expected: str) -> None:
    assert record_for(make_facts(method=method), make_decision(), None).method == expected


def test_record_caps_every_string() -> None:
    facts = make_facts(host="h" * 1000, request_id="r" * 1000, method="M" * 100)
    r = record_for(facts, make_decision(reason="why\n" * 200), None)
    assert len(r.host) <= 253
    assert len(r.reason) <= 300
    assert len(r.request_id) <= 128
    assert r.method == "{…}"
    assert "\n" not in r.reason


def test_record_fields() -> None:
    strips = StripSpec(query=frozenset({"gclid", "dclid"}), ip=IpPolicy.TRUNCATE)
    decision = make_decision(
        Action.STRIP,
        required=frozenset({"analytics", "advertising"}),
        missing=frozenset({"personalization", "advertising"}),
        strips=strips,
        reason="advertising denied: stripped",
        report_only=True,
    )
    consent = make_consent(
        analytics=ConsentValue.GRANTED,
        advertising=ConsentValue.DENIED,
    )
    r = record_for(make_facts(method="POST"), decision, consent)
    assert r == DecisionRecord(
        ts=T0,
        request_id="req-1",
        action="strip",
        vendor="google-analytics-4",
        endpoint="collect",
        missing=("advertising", "personalization"),
        sources={"advertising": "cookie", "analytics": "cookie"},
        regime="opt-in",
        method="POST",
        host="www.google-analytics.com",
        path="/g/collect",
        stripped=("query:dclid", "query:gclid", "ip:truncate"),
        reason="advertising denied: stripped",
        report_only=True,
        id=None,
    )
    assert isinstance(r.sources, MappingProxyType)


def test_record_for_reject_without_consent() -> None:
    decision = make_decision(Action.REJECT, vendor=None, endpoint=None, missing=frozenset())
    r = record_for(make_facts(host="unknown.example", now=0.0), decision, None)
    assert (r.action, r.vendor, r.endpoint, r.regime) == ("reject", None, None, None)
    assert dict(r.sources) == {}
    assert abs(r.ts - time.time()) < 60  # a Facts without a time is stamped now


# --- DecisionLog: queue, writer, sinks ----------------------------------------------------


async def test_submitted_records_are_all_written(tmp_path: Path) -> None:
    metrics = Metrics()
    cfg = log_cfg(tmp_path, batch_size=17)
    dlog = DecisionLog(cfg, metrics)
    await dlog.start()
    records = [rec(f"r{i}", ts=T0 + i) for i in range(250)]
    assert all(dlog.submit(r) for r in records)
    await dlog.close()
    assert dlog.depth == 0
    assert cfg.sqlite_path is not None
    stored = all_records(cfg.sqlite_path)
    assert [replace(r, id=None) for r in reversed(stored)] == records
    assert len({r.id for r in stored}) == 250
    assert written(metrics) == 250
    assert lost(metrics, "queue_full") == lost(metrics, "sink_error") == 0


async def test_writer_flushes_without_close(tmp_path: Path) -> None:
    cfg = log_cfg(tmp_path, batch_size=100, flush_interval=0.02)
    dlog = DecisionLog(cfg, Metrics())
    await dlog.start()
    try:
        dlog.submit(rec("lonely"))
        assert cfg.sqlite_path is not None
        db = cfg.sqlite_path
        await eventually(lambda: len(all_records(db)) == 1)
    finally:
        await dlog.close()


async def test_batches_respect_batch_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    original = SqliteSink.write

    def spy(self: SqliteSink, records: Sequence[DecisionRecord]) -> None:
        sizes.append(len(records))
        original(self, records)

    monkeypatch.setattr(SqliteSink, "write", spy)
    dlog = DecisionLog(log_cfg(tmp_path, batch_size=5), Metrics())
    for i in range(23):  # queued before start: the writer finds full batches waiting
        dlog.submit(rec(f"r{i}"))
    await dlog.start()
    await dlog.close()
    assert sizes == [5, 5, 5, 5, 3]


async def test_full_queue_loses_and_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    cfg = log_cfg(tmp_path, queue_size=3)
    dlog = DecisionLog(cfg, metrics)  # not started: nothing drains the queue
    with caplog.at_level(logging.WARNING, logger="gateway.decision_log"):
        results = [dlog.submit(rec(f"r{i}")) for i in range(8)]
        assert results == [True] * 3 + [False] * 5
        assert lost(metrics, "queue_full") == 5
        assert dlog.depth == 3
        warnings = [r for r in caplog.records if "queue full" in r.getMessage()]
        assert len(warnings) == 1, "the warning is rate-limited"
        await dlog.close()  # the accepted three are still written
    assert cfg.sqlite_path is not None
    assert [r.request_id for r in all_records(cfg.sqlite_path)] == ["r2", "r1", "r0"]
    assert written(metrics) == 3
    assert "4 records lost: queue full" in caplog.text  # the rest, reported at close


async def test_submit_never_blocks_on_a_stuck_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    original = SqliteSink.write

    def stuck(self: SqliteSink, records: Sequence[DecisionRecord]) -> None:
        release.wait(10)
        original(self, records)

    monkeypatch.setattr(SqliteSink, "write", stuck)
    metrics = Metrics()
    dlog = DecisionLog(log_cfg(tmp_path, queue_size=2, batch_size=1), metrics)
    await dlog.start()
    try:
        assert dlog.submit(rec("taken"))
        await eventually(lambda: dlog.depth == 0)  # the writer holds it, blocked in its thread
        started = time.monotonic()
        results = [dlog.submit(rec(f"r{i}")) for i in range(5)]
        assert time.monotonic() - started < 0.5
        assert results == [True, True, False, False, False]
        assert lost(metrics, "queue_full") == 3
    finally:
        release.set()
        await dlog.close()
    assert written(metrics) == 3


async def test_submit_after_close_is_counted(tmp_path: Path) -> None:
    metrics = Metrics()
    dlog = DecisionLog(log_cfg(tmp_path), metrics)
    running = [dlog.running]
    await dlog.start()
    running.append(dlog.running)
    await dlog.close()
    running.append(dlog.running)
    assert running == [False, True, False]
    assert not dlog.submit(rec("late"))
    assert lost(metrics, "closed") == 1
    with pytest.raises(RuntimeError):
        await dlog.start()


async def test_close_is_idempotent(tmp_path: Path) -> None:
    metrics = Metrics()
    dlog = DecisionLog(log_cfg(tmp_path), metrics)
    await dlog.start()
    dlog.submit(rec("one"))
    await asyncio.gather(dlog.close(), dlog.close())
    await dlog.close()
    assert written(metrics) == 1


async def test_close_without_start_or_records(tmp_path: Path) -> None:
    cfg = log_cfg(tmp_path)
    dlog = DecisionLog(cfg, Metrics())
    await dlog.close()
    assert cfg.sqlite_path is not None
    assert not cfg.sqlite_path.exists()


async def test_close_drains_records_submitted_just_before(tmp_path: Path) -> None:
    metrics = Metrics()
    # A long flush interval: only close's stop signal can end the writer's wait promptly.
    cfg = log_cfg(tmp_path, batch_size=7, flush_interval=60.0, queue_size=5000)
    dlog = DecisionLog(cfg, metrics)
    await dlog.start()
    await asyncio.sleep(0)  # the writer is now waiting for its first record
    for i in range(1000):
        assert dlog.submit(rec(f"r{i}"))
    started = time.monotonic()
    await dlog.close()
    assert time.monotonic() - started < 30
    assert cfg.sqlite_path is not None
    assert len(all_records(cfg.sqlite_path)) == 1000
    assert written(metrics) == 1000


async def test_sink_failure_is_counted_and_the_writer_survives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the database folder should be")
    db = blocker / "decisions.db"
    jsonl = tmp_path / "decisions.jsonl"
    metrics = Metrics()
    dlog = DecisionLog(log_cfg(tmp_path, sqlite_path=db, jsonl=str(jsonl)), metrics)

    def lines() -> int:
        return len(jsonl.read_bytes().splitlines()) if jsonl.exists() else 0

    with caplog.at_level(logging.WARNING, logger="gateway.decision_log"):
        await dlog.start()  # the SQLite sink cannot open: logged, not raised
        try:
            for i in range(3):
                assert dlog.submit(rec(f"first{i}", path="/p;u1=CONTENT"))
            await eventually(lambda: lines() == 3)
            assert lost(metrics, "sink_error") == 3
            blocker.unlink()  # the destination comes back: the next batch reopens it
            for i in range(2):
                assert dlog.submit(rec(f"second{i}"))
        finally:
            await dlog.close()
    assert lines() == 5
    assert lost(metrics, "sink_error") == 3
    assert written(metrics) == 5 + 2  # counted per sink: JSONL got 5, SQLite 2
    assert [r.request_id for r in all_records(db)] == ["second1", "second0"]
    assert "sqlite sink failed" in caplog.text
    assert "first" not in caplog.text and "CONTENT" not in caplog.text


async def test_unexpected_sink_error_does_not_kill_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0
    original = SqliteSink.write

    def flaky(self: SqliteSink, records: Sequence[DecisionRecord]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        original(self, records)

    monkeypatch.setattr(SqliteSink, "write", flaky)
    metrics = Metrics()
    cfg = log_cfg(tmp_path)
    dlog = DecisionLog(cfg, metrics)
    await dlog.start()
    with caplog.at_level(logging.ERROR, logger="gateway.decision_log"):
        dlog.submit(rec("lost"))
        await eventually(lambda: lost(metrics, "sink_error") == 1)
        dlog.submit(rec("kept"))
        await dlog.close()
    assert cfg.sqlite_path is not None
    assert [r.request_id for r in all_records(cfg.sqlite_path)] == ["kept"]
    assert "raised unexpectedly" in caplog.text


async def test_jsonl_file_sink(tmp_path: Path) -> None:
    target = tmp_path / "logs" / "decisions.jsonl"
    metrics = Metrics()
    records = [
        rec("a", ts=T0 + 0.25),
        rec("b", action="strip", stripped=("query:gclid",), report_only=True),
        rec("c", action="reject", vendor=None, endpoint=None, regime=None, sources={}),
    ]
    for _ in range(2):  # a second run appends
        dlog = DecisionLog(log_cfg(tmp_path, sqlite_path=None, jsonl=str(target)), metrics)
        await dlog.start()
        for r in records:
            dlog.submit(r)
        await dlog.close()
    lines = target.read_bytes().splitlines()
    assert len(lines) == 6
    keys = {"ts_epoch"} | {f.name for f in fields(DecisionRecord)}
    for line, r in zip(lines, records * 2, strict=True):
        obj = orjson.loads(line)
        assert isinstance(obj, dict)
        assert set(obj) == keys
        assert obj["ts_epoch"] == r.ts
        assert obj["ts"].endswith("Z")
        assert datetime.fromisoformat(obj["ts"]).timestamp() == r.ts
        assert obj["request_id"] == r.request_id
        assert obj["stripped"] == list(r.stripped)
        assert obj["sources"] == dict(r.sources)
        assert obj["report_only"] is r.report_only
    assert written(metrics) == 6


async def test_jsonl_stdout_sink(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dlog = DecisionLog(log_cfg(tmp_path, sqlite_path=None, jsonl="-"), Metrics())
    await dlog.start()
    dlog.submit(rec("a"))
    dlog.submit(rec("b"))
    await dlog.close()
    out = capsys.readouterr().out.splitlines()
    assert [orjson.loads(line)["request_id"] for line in out] == ["a", "b"]


async def test_no_sinks_means_off(tmp_path: Path) -> None:
    metrics = Metrics()
    dlog = DecisionLog(log_cfg(tmp_path, sqlite_path=None, jsonl=None), metrics)
    assert not dlog.enabled
    await dlog.start()
    assert dlog.running
    assert dlog.submit(rec("a"))
    assert dlog.depth == 0
    await dlog.close()
    assert written(metrics) == 0
    assert lost(metrics, "closed") == 0


async def test_nothing_secret_reaches_the_files(tmp_path: Path) -> None:
    db = tmp_path / "data" / "decisions.db"
    jsonl = tmp_path / "data" / "decisions.jsonl"
    dlog = DecisionLog(log_cfg(tmp_path, sqlite_path=db, jsonl=str(jsonl)), Metrics())
    await dlog.start()
    for case in PRIVACY_CASES:
        decision = case.values[0]
        assert isinstance(decision, Decision)
        dlog.submit(
            record_for(secret_facts(), decision, make_consent(analytics=ConsentValue.DENIED))
        )
    await dlog.close()
    assert len(all_records(db)) == len(PRIVACY_CASES)
    for f in db.parent.iterdir():
        data = f.read_bytes()
        for what, secret in SECRETS.items():
            assert secret.encode() not in data, f"{what} reached {f.name}"


def test_sqlite_schema(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    store(db, [rec("a")])
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(decisions)")}
        assert {"decisions_ts", "decisions_vendor", "decisions_action"} <= indexes
        row = conn.execute("SELECT missing, sources, stripped FROM decisions").fetchone()
        assert row == ('["analytics"]', '{"analytics":"default:opt-in"}', "[]")
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
    finally:
        conn.close()
    sink = SqliteSink(db)
    with pytest.raises(sqlite3.DatabaseError, match="newer"):
        sink.open()
    sink.close()


# --- reading back -------------------------------------------------------------------------

ROWS = [
    rec("a", ts=T0, vendor="ga4", action="drop", missing=("analytics",)),
    rec("b", ts=T0 + 10, vendor="ga4", action="strip", missing=("advertising",)),
    rec("c", ts=T0 + 20, vendor="meta", missing=("advertising", "analytics"), regime="us"),
    rec("d", ts=T0 + 30, vendor=None, endpoint=None, action="reject", missing=(), regime=None),
    rec("e", ts=T0 + 40, vendor="meta", action="forward", missing=("advertising",), regime="us"),
]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "decisions.db"
    store(path, ROWS)
    return path


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (LogQuery(), "edcba"),
        (LogQuery(since=T0 + 20), "edc"),
        (LogQuery(until=T0 + 20), "ba"),
        (LogQuery(since=T0 + 10, until=T0 + 30), "cb"),
        (LogQuery(vendor="ga4"), "ba"),
        (LogQuery(action="drop"), "ca"),
        (LogQuery(purpose="advertising"), "ecb"),
        (LogQuery(purpose="analytics"), "ca"),
        (LogQuery(purpose="advert"), ""),
        (LogQuery(regime="us"), "ec"),
        (LogQuery(vendor="meta", action="drop"), "c"),
        (LogQuery(vendor="%"), ""),
        (LogQuery(limit=2), "ed"),
        (LogQuery(after_id=2), "cde"),
        (LogQuery(after_id=2, limit=1), "c"),
        (LogQuery(after_id=2, vendor="meta"), "ce"),
        (LogQuery(after_id=5), ""),
        (LogQuery(before_id=4), "cba"),
        (LogQuery(before_id=4, limit=2), "cb"),
        (LogQuery(before_id=1), ""),
        (LogQuery(before_id=5, vendor="meta"), "c"),
        (LogQuery(before_id=99), ""),
        (LogQuery(newer_than_id=2), "cde"),
        (LogQuery(newer_than_id=2, limit=2), "cd"),
        (LogQuery(newer_than_id=5), ""),
        (LogQuery(newer_than_id=1, action="drop"), "c"),
        (LogQuery(newer_than_id=99), ""),
    ],
)
def test_query_records(db: Path, query: LogQuery, expected: str) -> None:
    assert "".join(r.request_id for r in query_records(db, query)) == expected


def test_keyset_paging_follows_time_order_not_insertion_order(tmp_path: Path) -> None:
    # Written out of time order (a slow request, or two processes sharing the file):
    # pages follow the newest-first order (ts, then id), so nothing is skipped or repeated.
    db = tmp_path / "decisions.db"
    store(db, [rec("x", ts=T0 + 5), rec("y", ts=T0 + 1), rec("z", ts=T0 + 9), rec("w", ts=T0 + 5)])
    assert "".join(r.request_id for r in query_records(db, LogQuery())) == "zwxy"
    first = query_records(db, LogQuery(limit=2))
    second = query_records(db, LogQuery(limit=2, before_id=first[-1].id))
    assert [r.request_id for r in first + second] == ["z", "w", "x", "y"]
    back = query_records(db, LogQuery(limit=2, newer_than_id=second[0].id))
    assert [r.request_id for r in back] == ["w", "z"]


@pytest.mark.parametrize(
    "kw",
    [
        {"after_id": 1, "before_id": 2},
        {"after_id": 1, "newer_than_id": 2},
        {"before_id": 1, "newer_than_id": 2},
    ],
)
def test_query_takes_one_cursor(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at most one"):
        LogQuery(**kw)  # type: ignore[arg-type]  # only the cursor keys: ints


def test_query_round_trips_records(db: Path) -> None:
    stored = query_records(db, LogQuery())[::-1]
    assert [r.id for r in stored] == [1, 2, 3, 4, 5]
    assert [replace(r, id=None) for r in stored] == ROWS


def test_query_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "decisions.db"
    assert query_records(missing, LogQuery()) == []
    assert not missing.parent.exists()  # read-only: never creates anything
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert query_records(empty, LogQuery()) == []


@pytest.mark.parametrize("limit", [0, -1, MAX_QUERY_LIMIT + 1])
def test_query_limit_is_bounded(limit: int) -> None:
    with pytest.raises(ValueError):
        LogQuery(limit=limit)


# --- aggregations for the admin page -------------------------------------------------------


def test_count_decisions(db: Path) -> None:
    counts = count_decisions(db)
    assert counts.total == 5
    assert dict(counts.by_vendor_action) == {
        ("ga4", "drop"): 1,
        ("ga4", "strip"): 1,
        ("meta", "drop"): 1,
        ("meta", "forward"): 1,
        (None, "reject"): 1,
    }
    assert dict(counts.by_purpose) == {"analytics": 2, "advertising": 3}


@pytest.mark.parametrize(
    ("since", "total", "by_purpose"),
    [
        (T0 + 20, 3, {"advertising": 2, "analytics": 1}),
        (T0 + 40, 1, {"advertising": 1}),
        (T0 + 41, 0, {}),
    ],
)
def test_count_decisions_since(
    db: Path, since: float, total: int, by_purpose: dict[str, int]
) -> None:
    counts = count_decisions(db, since)
    assert counts.total == total == sum(counts.by_vendor_action.values())
    assert dict(counts.by_purpose) == by_purpose


def test_count_decisions_without_database(tmp_path: Path) -> None:
    counts = count_decisions(tmp_path / "none.db")
    assert counts.total == 0 and not counts.by_vendor_action and not counts.by_purpose
    assert not (tmp_path / "none.db").exists()


UNKNOWN_ROWS = [
    rec("1", ts=T0, vendor=None, endpoint=None, action="reject", host="a.example"),
    rec("2", ts=T0 + 10, vendor=None, endpoint=None, action="reject", host="b.example"),
    rec("3", ts=T0 + 20, vendor=None, endpoint=None, action="reject", host="a.example"),
    rec("4", ts=T0 + 30, vendor=None, endpoint=None, action="reject", host="c.example"),
    # a known vendor's rejected request (bad request), and a dropped one: not unknown hosts
    rec("5", ts=T0 + 40, vendor="ga4", action="reject", host="d.example"),
    rec("6", ts=T0 + 50, vendor=None, endpoint=None, action="drop", host="e.example"),
]


@pytest.mark.parametrize(
    ("since", "limit", "expected"),
    [
        # most requests first, then the most recently seen, then by name
        (
            None,
            100,
            [
                ("a.example", 2, T0, T0 + 20),
                ("c.example", 1, T0 + 30, T0 + 30),
                ("b.example", 1, T0 + 10, T0 + 10),
            ],
        ),
        (None, 1, [("a.example", 2, T0, T0 + 20)]),
        (
            T0 + 5,
            100,
            [
                ("c.example", 1, T0 + 30, T0 + 30),
                ("a.example", 1, T0 + 20, T0 + 20),
                ("b.example", 1, T0 + 10, T0 + 10),
            ],
        ),
        (T0 + 31, 100, []),
    ],
)
def test_unknown_hosts(
    tmp_path: Path,
    since: float | None,
    limit: int,
    expected: list[tuple[str, int, float, float]],
) -> None:
    db = tmp_path / "decisions.db"
    store(db, UNKNOWN_ROWS)
    got = unknown_hosts(db, since, limit)
    assert [(u.host, u.count, u.first_seen, u.last_seen) for u in got] == expected
    assert all(isinstance(u, UnknownHost) for u in got)


def test_unknown_hosts_without_database_and_bad_limit(tmp_path: Path) -> None:
    assert unknown_hosts(tmp_path / "none.db") == []
    for limit in (0, MAX_QUERY_LIMIT + 1):
        with pytest.raises(ValueError):
            unknown_hosts(tmp_path / "none.db", limit=limit)


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - 90),
        ("30m", NOW - 1800),
        ("1h", NOW - 3600),
        ("2d", NOW - 2 * 86400),
        ("1w", NOW - 7 * 86400),
        ("1.5h", NOW - 5400),
        (" 1h ", NOW - 3600),
        ("0s", NOW),
        ("2026-11-29T10:00:00Z", T0),
        ("2026-11-29T11:00:00+01:00", T0),
        ("2026-11-29T10:00:00", T0),
        ("2026-11-29 10:00", T0),
        ("2026-11-29", T0 - 10 * 3600),
    ],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "h",
        "1y",
        "-1h",
        "1 h",
        "1H",
        "1h30m",
        "nan",
        "inf",
        "yesterday",
        "2026-13-01",
        "1000000000000d",  # accepted by the admin API before: a bound is a clear error
        "36501d",
        "1969-12-31T00:00:00Z",
    ],
)
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_since(text, NOW)


@pytest.mark.parametrize(
    ("record", "line"),
    [
        (
            rec("x", regime="opt-in"),
            (
                "2026-11-29T10:00:00Z drop google-analytics-4/collect missing=analytics "
                "GET www.google-analytics.com/g/collect (regime=opt-in) analytics not granted"
            ),
        ),
        (
            rec(
                "x",
                action="strip",
                missing=("advertising",),
                stripped=("query:gclid", "ip:truncate"),
                report_only=True,
                reason="r",
            ),
            (
                "2026-11-29T10:00:00Z strip [report-only] google-analytics-4/collect "
                "missing=advertising stripped=query:gclid,ip:truncate "
                "GET www.google-analytics.com/g/collect (regime=opt-in) r"
            ),
        ),
        (
            rec(
                "x",
                action="reject",
                vendor=None,
                endpoint=None,
                missing=(),
                regime=None,
                host="evil.example",
                path="/x",
                reason="unknown destination",
            ),
            "2026-11-29T10:00:00Z reject - GET evil.example/x unknown destination",
        ),
        (
            rec("x", endpoint=None, reason="bad\x1b[2Jline\n"),
            (
                "2026-11-29T10:00:00Z drop google-analytics-4 missing=analytics "
                "GET www.google-analytics.com/g/collect (regime=opt-in) bad?[2Jline?"
            ),
        ),
    ],
)
def test_format_record(record: DecisionRecord, line: str) -> None:
    assert format_record(record) == line


def logs(db: Path, **kw: Any) -> tuple[int, list[str]]:
    args: dict[str, Any] = {
        "since": None,
        "vendor": None,
        "action": None,
        "purpose": None,
        "as_json": False,
        "follow": False,
        "limit": 100,
    }
    args.update(kw)
    out = io.StringIO()
    code = run_logs(db, out=out, **args)
    return code, out.getvalue().splitlines()


def test_run_logs_prints_newest_at_the_bottom(db: Path) -> None:
    code, lines = logs(db, limit=3)
    assert code == 0
    assert lines == [format_record(r) for r in ROWS[2:]]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"vendor": "ga4"}, "ab"),
        ({"action": "drop"}, "ac"),
        ({"purpose": "analytics"}, "ac"),
        ({"since": "2026-11-29T10:00:20Z"}, "cde"),
    ],
)
def test_run_logs_json(db: Path, kw: dict[str, Any], expected: str) -> None:
    code, lines = logs(db, as_json=True, **kw)
    assert code == 0
    objs = [orjson.loads(line) for line in lines]
    assert "".join(o["request_id"] for o in objs) == expected
    assert all(isinstance(o["id"], int) and o["ts"].endswith("Z") for o in objs)


def test_run_logs_relative_since(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    now = time.time()
    store(db, [rec("old", ts=now - 7200), rec("new", ts=now - 60)])
    code, lines = logs(db, since="1h", as_json=True)
    assert code == 0
    assert [orjson.loads(line)["request_id"] for line in lines] == ["new"]


def test_run_logs_follow(db: Path) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:  # a record arrives between the first and second poll
            store(db, [rec("f", vendor="meta", ts=T0 + 50), rec("g", vendor="ga4")])

    code, lines = logs(
        db, vendor="meta", follow=True, poll_interval=0.25, max_polls=3, sleep=sleep, as_json=True
    )
    assert code == 0
    assert [orjson.loads(line)["request_id"] for line in lines] == ["c", "e", "f"]
    assert sleeps == [0.25, 0.25, 0.25]


def test_run_logs_follow_waits_for_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "later.db"

    def sleep(seconds: float) -> None:
        if not db.exists():
            store(db, [rec("first")])

    code, lines = logs(db, follow=True, max_polls=2, sleep=sleep)
    assert code == 0
    assert lines == [format_record(rec("first"))]
    assert "no decision log" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"since": "yesterday"}, "yesterday"),
        ({"action": "block"}, "action"),
        ({"limit": 0}, "limit"),
    ],
)
def test_run_logs_bad_arguments(
    db: Path, capsys: pytest.CaptureFixture[str], kw: dict[str, Any], message: str
) -> None:
    code, lines = logs(db, **kw)
    assert code == 2
    assert lines == []
    assert message in capsys.readouterr().err


def test_sinks_are_reusable_directly(tmp_path: Path) -> None:
    target = tmp_path / "x.jsonl"
    sink = JsonlSink(str(target))
    sink.open()
    sink.write([rec("a")])
    sink.close()
    sink.close()
    assert orjson.loads(target.read_bytes())["request_id"] == "a"
