"""gateway.webhooks.dispatch: backoff, `status`, and the dispatcher against a local receiver
(an aiohttp TestServer on 127.0.0.1, never the network), on both store backends.

Every dispatcher test is parametrized over SQLite and PostgreSQL by the store suite's
`backend` fixture. Waits poll a condition with a deadline instead of sleeping; a check
that something did NOT happen waits on `WebhookDispatcher.settled()`, never on a sleep.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import WebhookEndpoint, WebhooksConfig
from gateway.metrics import Metrics
from gateway.store.base import (
    ERASED_PREFIX,
    Change,
    ChangeKind,
    ConsentStore,
    StoreError,
    WebhookCursor,
)
from gateway.store.migrations import migrate
from gateway.webhooks.dispatch import WebhookDispatcher, backoff, status
from gateway.webhooks.wire import EVENT_ID_HEADER, SIGNATURE_HEADER, event_body, verify
from tests.stores import Backend, rec

SECRET = b"whsec-" + secrets.token_hex(16).encode()

# -- backoff ----------------------------------------------------------------------------------

_CFG = WebhooksConfig(backoff_initial=1.0, backoff_max=60.0)


@pytest.mark.parametrize(
    ("attempts", "jitter", "expected"),
    [
        (1, 1.0, 1.0),
        (1, 0.0, 0.5),
        (2, 1.0, 2.0),
        (3, 1.0, 4.0),
        (6, 1.0, 32.0),
        (7, 1.0, 60.0),  # capped at backoff_max
        (7, 0.0, 30.0),
        (10_000, 1.0, 60.0),  # no float overflow, ever
        (0, 1.0, 1.0),
    ],
)
def test_backoff_table(attempts: int, jitter: float, expected: float) -> None:
    assert backoff(_CFG, attempts, lambda: jitter) == pytest.approx(expected)


def test_backoff_jitter_in_half_to_full() -> None:
    for _ in range(200):
        assert 2.0 <= backoff(_CFG, 3) <= 4.0


# -- a local receiver -------------------------------------------------------------------------


@dataclass
class Got:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # loop.time() on arrival
    status: int

    @property
    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(self.body)
        return doc


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 recording every request. `mode` makes it fail;
    `hang` (while unset) holds every answer back; `stop`/`start` take it off its port
    (connection refused) and back on the same port."""

    port: int = 0
    got: list[Got] = field(default_factory=list)
    #: while set: how to answer ("503", "500-echo", "302", "slow"); None: 200
    mode: str | None = None
    hang: asyncio.Event | None = None
    server: TestServer | None = None

    def url(self, path: str = "/hook") -> yarl.URL:
        return yarl.URL(f"http://127.0.0.1:{self.port}{path}")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, port=self.port)
        await self.server.start_server()
        self.port = self.server.port or 0

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        got = Got(request.path, dict(request.headers), body, asyncio.get_running_loop().time(), 0)
        self.got.append(got)
        if self.hang is not None:
            await self.hang.wait()
        status = 200
        if request.path != "/hook":
            status = 404
        elif self.mode == "503":
            status = 503
        elif self.mode == "500-echo":
            # a hostile receiver echoing what it got: never to reach a log or the store
            got.status = 500
            return web.Response(status=500, body=body)
        elif self.mode == "302":
            got.status = 302
            raise web.HTTPFound(str(self.url("/elsewhere")))
        elif self.mode == "slow":
            await asyncio.sleep(0.4)  # past the client's timeout
            got.status = -1  # nobody is listening for this answer any more
            return web.Response(status=200)
        got.status = status
        return web.Response(status=status, text="ok")

    def accepted(self) -> list[Got]:
        """Deliveries it acknowledged (2xx) at /hook, in arrival order."""
        return [g for g in self.got if g.status == 200 and g.path == "/hook"]

    def accepted_ids(self) -> list[str]:
        return [g.doc["id"] for g in self.accepted()]


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[[], Awaitable[Receiver]]]:
    made: list[Receiver] = []

    async def make() -> Receiver:
        r = Receiver()
        await r.start()
        made.append(r)
        return r

    yield make
    for r in made:
        if r.hang is not None:
            r.hang.set()
        await r.stop()


async def eventually(
    cond: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 10.0
) -> None:
    """Poll `cond` until true, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


# -- stores and dispatchers -------------------------------------------------------------------


async def open_store(backend: Backend) -> ConsentStore:
    s = backend.make()
    await s.open()
    await migrate(s)
    return s


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[ConsentStore]:
    s = await open_store(backend)
    try:
        yield s
    finally:
        await s.close()


def endpoint(receiver: Receiver, name: str = "crm", path: str = "/hook") -> WebhookEndpoint:
    # the query stands for a credential in the URL: never shown or logged
    return WebhookEndpoint(name, receiver.url(path).with_query(token="query-secret"), SECRET)


def webhooks(*endpoints: WebhookEndpoint, timeout: float = 1.0) -> WebhooksConfig:
    return WebhooksConfig(
        endpoints=endpoints, timeout=timeout, backoff_initial=0.01, backoff_max=0.05
    )


Make = Callable[..., WebhookDispatcher]


@pytest.fixture
async def dispatchers() -> AsyncIterator[Make]:
    """`make(store, cfg, **kw)`: a dispatcher with test-friendly timings, closed at the end
    (before the stores, which the fixtures above close later)."""
    made: list[WebhookDispatcher] = []

    def make(
        store: ConsentStore, cfg: WebhooksConfig, metrics: Metrics | None = None, **kw: Any
    ) -> WebhookDispatcher:
        kw.setdefault("poll_interval", 0.05)
        kw.setdefault("lease", 5.0)
        d = WebhookDispatcher(store, cfg, metrics, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        await d.close()


async def cursor_of(store: ConsentStore, name: str) -> WebhookCursor:
    return next(c for c in await store.webhook_cursors() if c.endpoint == name)


def new_subject() -> str:
    return f"subject-{secrets.token_hex(6)}"


async def record(store: ConsentStore, subject: str, at: float, **purposes: bool) -> Change:
    _, change = await store.record_change(rec(subject, at=at, **purposes))
    assert change is not None
    return change


def gateway_logs(caplog: pytest.LogCaptureFixture) -> str:
    """What the gateway logged, formatted with tracebacks (the test receiver's own access
    log, which prints the URL it was called with, is not the gateway's)."""
    return "\n".join(
        caplog.handler.format(r) for r in caplog.records if r.name.startswith("gateway")
    )


def delivered_metric(metrics: Metrics, name: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "consent_gateway_webhook_deliveries_total", {"endpoint": name, "outcome": outcome}
    )
    return value or 0.0


def assert_in_order_once(receiver: Receiver, expected: list[Change]) -> None:
    """After dedupe by event id: exactly the expected changes, in seq order (so in order per
    subject), each signed and carrying its event id."""
    seen: dict[str, Got] = {}
    for g in receiver.accepted():
        seen.setdefault(g.doc["id"], g)
    assert list(seen) == [c.event_id for c in sorted(expected, key=lambda c: c.seq)]
    seqs = [g.doc["seq"] for g in seen.values()]
    assert seqs == sorted(seqs)
    by_subject: dict[str, list[int]] = {}
    for g in seen.values():
        by_subject.setdefault(g.doc["subject"], []).append(g.doc["seq"])
    assert all(s == sorted(s) for s in by_subject.values())
    for g in receiver.accepted():
        assert g.headers[EVENT_ID_HEADER] == g.doc["id"]
        assert verify(SECRET, g.headers[SIGNATURE_HEADER], g.body, time.time())


# -- delivery ---------------------------------------------------------------------------------


async def test_delivers_every_change_in_order_signed(
    store: ConsentStore, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    r = await receivers()
    metrics = Metrics()
    d = dispatchers(store, webhooks(endpoint(r)), metrics)
    # registered first, so every change below is pending before delivery starts
    await store.webhook_register("crm")
    a, b = new_subject(), new_subject()
    changes = [
        await record(store, a, 1000, analytics=True),
        await record(store, b, 1001, analytics=False),
        await record(store, a, 1002, analytics=False, advertising=True),
    ]
    token, erasure = await store.erase_change(b)
    changes.append(erasure)
    await d.start()
    await eventually(lambda: len(r.accepted()) >= 4, "4 deliveries")
    await asyncio.wait_for(d.settled(), 10)

    assert_in_order_once(r, changes)
    assert len(r.accepted()) == 4  # no failure, so no duplicate either
    for g, c in zip(r.accepted(), changes, strict=True):
        assert g.headers["Content-Type"] == "application/json"
        # the feed's bytes, except that b's pending consent change got b's token on erasure
        subject = token if c.subject == b and c.kind is ChangeKind.CONSENT else c.subject
        assert g.doc == orjson.loads(event_body(c)) | {"subject": subject}
        assert g.doc["type"] == (
            "consent.erased" if c.kind is ChangeKind.ERASURE else "consent.updated"
        )
    assert r.accepted()[0].doc["purposes"] == {"analytics": True}
    # erased before its consent change was sent: that change already carries the token
    assert r.accepted()[1].doc["subject"] == token
    assert r.accepted()[3].doc | {"at": 0} == {
        "id": erasure.event_id,
        "type": "consent.erased",
        "seq": erasure.seq,
        "subject": b,  # the receiver learns whom to erase
        "purposes": {},
        "vendors": {},
        "policy_version": 0,
        "source": erasure.source,
        "at": 0,
        "record_id": None,
    }
    assert r.got[0].path == "/hook"
    await eventually(lambda: delivered_metric(metrics, "crm", "delivered") == 4, "delivered metric")
    assert delivered_metric(metrics, "crm", "failed") == 0
    await eventually(
        lambda: (
            metrics.registry.get_sample_value(
                "consent_gateway_webhook_backlog", {"endpoint": "crm"}
            )
            == 0
        ),
        "backlog gauge back to 0",
    )
    cursor = await cursor_of(store, "crm")
    assert (cursor.last_seq, cursor.delivered, cursor.attempts) == (erasure.seq, 4, 0)


async def test_new_endpoint_starts_at_end_of_feed(
    store: ConsentStore, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    old = await record(store, new_subject(), 1000)
    r = await receivers()
    d = dispatchers(store, webhooks(endpoint(r)))
    await d.start()
    new = await record(store, new_subject(), 1001)
    d.poke()
    await eventually(lambda: len(r.accepted()) >= 1, "one delivery")
    assert r.accepted_ids() == [new.event_id]
    assert old.event_id not in r.accepted_ids()


async def test_poke_wakes_an_idle_loop(
    store: ConsentStore, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    r = await receivers()
    metrics = Metrics()
    d = dispatchers(store, webhooks(endpoint(r)), metrics, poll_interval=60.0, lease=30.0)
    await d.start()
    # the first round sets the backlog gauge, then waits (up to 60 s) for a poke
    await eventually(
        lambda: (
            metrics.registry.get_sample_value(
                "consent_gateway_webhook_backlog", {"endpoint": "crm"}
            )
            is not None
        ),
        "first round done",
        timeout=5,
    )
    change = await record(store, new_subject(), 1000)
    d.poke()
    # without the poke this would wait out the 60 s poll
    await eventually(lambda: len(r.accepted()) == 1, "delivery after poke", timeout=5)
    assert r.accepted_ids() == [change.event_id]


# A table: each way a receiver can fail, and the error the cursor records meanwhile.
FAILURES = [
    ("503", "HTTP 503"),
    ("500-echo", "HTTP 500"),
    ("302", "HTTP 302"),  # redirects are not followed: a failure
    ("slow", "TimeoutError"),
    ("refused", "ClientConnectorError"),  # nothing listening
]


@pytest.mark.parametrize(("mode", "error"), FAILURES, ids=[m for m, _ in FAILURES])
async def test_failing_receiver_is_retried_until_everything_arrives(
    store: ConsentStore,
    receivers: Callable[[], Awaitable[Receiver]],
    dispatchers: Make,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    error: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    r = await receivers()
    metrics = Metrics()
    cfg = webhooks(endpoint(r), timeout=0.1 if mode == "slow" else 1.0)
    if mode == "refused":
        await r.stop()
    else:
        r.mode = mode
    d = dispatchers(store, cfg, metrics)
    await d.start()
    subjects = [new_subject() for _ in range(3)]
    changes = [
        await record(store, subjects[i % 3], 1000 + i, analytics=i % 2 == 0) for i in range(7)
    ]
    d.poke()

    async def failing() -> bool:
        return (await cursor_of(store, "crm")).attempts >= 3

    await eventually(failing, "3 failed attempts")
    cursor = await cursor_of(store, "crm")
    assert cursor.last_error == error
    assert cursor.last_seq < changes[0].seq  # nothing skipped past the failing change
    rows = await status(store, cfg, time.time())
    assert rows[0]["backlog"] == 7
    assert rows[0]["last_error"] == error

    # heal the receiver
    if mode == "refused":
        await r.start()
    else:
        r.mode = None
    await eventually(lambda: len(set(r.accepted_ids())) == 7, "all 7 delivered")
    assert_in_order_once(r, changes)
    assert all(g.path == "/hook" for g in r.got)  # the redirect was never followed
    assert delivered_metric(metrics, "crm", "failed") >= 3

    async def caught_up() -> bool:
        return (await cursor_of(store, "crm")).last_seq == changes[-1].seq

    await eventually(caught_up, "the cursor at the last change")
    cursor = await cursor_of(store, "crm")
    assert (cursor.attempts, cursor.last_error, cursor.delivered) == (0, None, 7)
    assert delivered_metric(metrics, "crm", "delivered") == 7

    # SECURITY: no log line holds the secret, a subject, the URL's query or a body
    text = gateway_logs(caplog)
    assert "failed" in text  # the failures were logged...
    for needle in [SECRET.decode(), "query-secret", *subjects]:
        assert needle not in text  # ...without anything sensitive


async def test_retries_back_off_exponentially(
    store: ConsentStore, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    r = await receivers()
    r.mode = "503"
    cfg = WebhooksConfig(
        endpoints=(endpoint(r),), timeout=1.0, backoff_initial=0.02, backoff_max=0.08
    )
    d = dispatchers(store, cfg)
    await d.start()
    change = await record(store, new_subject(), 1000)
    d.poke()
    await eventually(lambda: len(r.got) >= 6, "6 attempts")
    r.mode = None
    await eventually(lambda: r.accepted_ids() == [change.event_id], "delivery")
    times = [g.at for g in r.got[:6]]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # each wait is at least half of min(max, initial * 2**(n-1)) (the jitter's floor)
    floors = [0.5 * min(0.08, 0.02 * 2**n) for n in range(5)]
    assert all(gap >= floor - 0.005 for gap, floor in zip(gaps, floors, strict=True)), gaps
    assert all(g.doc["id"] == change.event_id for g in r.got)  # only ever the head change


async def test_restart_resumes_from_the_stored_cursor(
    backend: Backend, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    r = await receivers()
    cfg = webhooks(endpoint(r))
    await r.stop()  # the receiver is down: changes pile up
    a, b = new_subject(), new_subject()

    store1 = await open_store(backend)
    try:
        d1 = dispatchers(store1, cfg)
        await d1.start()
        changes = [
            await record(store1, a, 1000),
            await record(store1, b, 1001),
            await record(store1, a, 1002, analytics=False),
        ]
        d1.poke()

        async def failing() -> bool:
            return (await cursor_of(store1, "crm")).attempts >= 1

        await eventually(failing, "a failed attempt")
        await d1.close()
    finally:
        await store1.close()

    store2 = await open_store(backend)
    try:
        changes += [await record(store2, b, 1003, advertising=True)]
        changes.append((await store2.erase_change(a))[1])
        await r.start()
        d2 = dispatchers(store2, cfg)  # a new owner; the old one released its lease
        assert d2.owner != d1.owner
        await d2.start()
        await eventually(lambda: len(set(r.accepted_ids())) == 5, "5 delivered")
        assert_in_order_once(r, changes)

        async def acknowledged() -> bool:
            return (await cursor_of(store2, "crm")).last_seq == changes[-1].seq

        # a 2xx not yet recorded when the process stops is sent again (at least once);
        # a clean restart is one after the cursor moved
        await eventually(acknowledged, "the cursor at the last change")
        await d2.close()
    finally:
        await store2.close()

    # a clean restart: nothing acknowledged is sent again
    before = len(r.accepted())
    store3 = await open_store(backend)
    try:
        d3 = dispatchers(store3, cfg)
        await d3.start()
        last = await record(store3, b, 1004)
        d3.poke()
        await eventually(lambda: len(r.accepted()) > before, "the new change")
        assert r.accepted_ids()[before:] == [last.event_id]
        assert_in_order_once(r, [*changes, last])
        await d3.close()
    finally:
        await store3.close()


async def test_lease_of_a_dead_instance_expires(
    store: ConsentStore, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    r = await receivers()
    await store.webhook_register("crm")
    # an instance that died holding the lease: it never renews nor releases it
    t0 = time.time()
    assert await store.webhook_claim("crm", "dead-instance", 1.5, t0)
    change = await record(store, new_subject(), 1000)
    d = dispatchers(store, webhooks(endpoint(r)))
    await d.start()
    d.poke()
    await eventually(lambda: len(r.accepted()) == 1, "delivery after the lease expired")
    assert time.time() - t0 >= 1.4
    assert r.accepted_ids() == [change.event_id]


async def test_two_dispatchers_one_deliverer_in_order(
    store: ConsentStore, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    r = await receivers()
    cfg = webhooks(endpoint(r))
    m1, m2 = Metrics(), Metrics()
    # a long lease: only the release on close may hand delivery over, never a lease
    # that lapsed because a loaded machine starved the loop
    d1 = dispatchers(store, cfg, m1, owner="instance-1", lease=30.0)
    d2 = dispatchers(store, cfg, m2, owner="instance-2", lease=30.0)
    await asyncio.gather(d1.start(), d2.start())
    subjects = [new_subject() for _ in range(4)]
    changes = []
    for i in range(30):
        changes.append(await record(store, subjects[i % 4], 1000 + i, analytics=i % 3 == 0))
        d1.poke()
        d2.poke()
    await eventually(lambda: len(r.accepted()) >= 30, "30 delivered")
    await asyncio.wait_for(asyncio.gather(d1.settled(), d2.settled()), 10)
    assert_in_order_once(r, changes)
    assert len(r.accepted()) == 30  # exactly once: never two deliverers at a time
    counts = {d: delivered_metric(m, "crm", "delivered") for d, m in ((d1, m1), (d2, m2))}
    assert sorted(counts.values()) == [0, 30]

    # only the deliverer reports a backlog (0 once it recorded the last delivery)
    def backlogs() -> list[float | None]:
        return [
            m.registry.get_sample_value("consent_gateway_webhook_backlog", {"endpoint": "crm"})
            for m in (m1, m2)
        ]

    await eventually(lambda: sorted(backlogs(), key=lambda v: v is None) == [0.0, None], "gauge")

    # the deliverer stops (releasing its lease): the other takes over, in order
    deliverer, other = (d1, d2) if counts[d1] else (d2, d1)
    await deliverer.close()
    more = [await record(store, subjects[i % 4], 2000 + i) for i in range(5)]
    other.poke()
    await eventually(lambda: len(r.accepted()) >= 35, "5 more delivered")
    await asyncio.wait_for(other.settled(), 10)
    assert_in_order_once(r, changes + more)
    assert len(r.accepted()) == 35


async def test_lease_taken_by_another_owner_stops_delivery(
    store: ConsentStore,
    receivers: Callable[[], Awaitable[Receiver]],
    dispatchers: Make,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    r = await receivers()
    r.mode = "503"
    d = dispatchers(store, webhooks(endpoint(r)))
    await d.start()
    first = await record(store, new_subject(), 1000)
    d.poke()
    await eventually(lambda: len(r.got) >= 1, "a failing attempt")
    # another owner takes over (as if our lease had expired): our next write or claim is
    # refused, depending on whether a round was under way
    assert await store.webhook_claim("crm", "intruder", 60.0, time.time() + 3600)
    await eventually(
        lambda: (
            "lease lost" in gateway_logs(caplog)
            or "another instance delivers" in gateway_logs(caplog)
        ),
        "the loss noticed",
    )
    r.mode = None
    # a whole round since the receiver healed, and it sent nothing: the lease is not ours
    await asyncio.wait_for(d.settled(), 10)
    assert r.accepted() == []
    # the other owner goes away (releases): delivery resumes where the cursor stands
    assert await store.webhook_claim("crm", "intruder", 0.0, time.time() - 1)
    second = await record(store, new_subject(), 1001)
    await eventually(lambda: len(r.accepted()) == 2, "both delivered")
    assert_in_order_once(r, [first, second])


async def test_more_than_a_batch_is_delivered_in_order(
    store: ConsentStore, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    r = await receivers()
    await store.webhook_register("crm")
    subjects = [new_subject() for _ in range(5)]
    changes = [await record(store, subjects[i % 5], 1000 + i) for i in range(130)]
    d = dispatchers(store, webhooks(endpoint(r)))
    await d.start()
    await eventually(lambda: len(r.accepted()) >= 130, "130 delivered", timeout=30)
    await asyncio.wait_for(d.settled(), 10)
    assert_in_order_once(r, changes)
    assert len(r.accepted()) == 130


# -- settled: an exact wait -------------------------------------------------------------------


async def test_settled_returns_once_everything_recorded_is_delivered(
    store: ConsentStore, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    r = await receivers()
    # a 60 s poll: settled wakes the idle loop itself instead of waiting for it
    d = dispatchers(store, webhooks(endpoint(r)), poll_interval=60.0, lease=30.0)
    await d.start()
    changes = [await record(store, new_subject(), 1000 + i) for i in range(3)]
    await asyncio.wait_for(d.settled(), 10)  # no poke, no polling: nothing else to wait on
    assert r.accepted_ids() == [c.event_id for c in changes]
    await asyncio.wait_for(d.settled(), 10)  # nothing new: one idle round
    assert len(r.got) == 3


async def test_settled_waits_while_a_delivery_fails(
    store: ConsentStore, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    r = await receivers()
    r.mode = "503"
    d = dispatchers(store, webhooks(endpoint(r)))
    await d.start()
    change = await record(store, new_subject(), 1000)
    waiting = asyncio.get_running_loop().create_task(d.settled())

    async def failing() -> bool:
        return (await cursor_of(store, "crm")).attempts >= 3

    await eventually(failing, "3 failed attempts")
    # every round so far tried to send: none was idle, so settled cannot have returned
    assert not waiting.done()
    r.mode = None
    await asyncio.wait_for(waiting, 10)
    assert r.accepted_ids() == [change.event_id]


async def test_settled_needs_a_running_dispatcher(
    store: ConsentStore, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    r = await receivers()
    r.mode = "503"  # never settles
    d = dispatchers(store, webhooks(endpoint(r)))
    with pytest.raises(RuntimeError):
        await d.settled()  # not started
    await d.start()
    await record(store, new_subject(), 1000)
    waiting = asyncio.get_running_loop().create_task(d.settled())
    await eventually(lambda: len(r.got) >= 1, "a failing attempt")
    await d.close()
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(waiting, 10)  # closed while waiting: not left hanging
    with pytest.raises(RuntimeError):
        await d.settled()


async def test_settled_without_endpoints_returns_at_once(
    store: ConsentStore, dispatchers: Make
) -> None:
    d = dispatchers(store, webhooks())
    await d.start()
    await asyncio.wait_for(d.settled(), 1)


# -- erasure scrubbing ------------------------------------------------------------------------


async def feed_subject(store: ConsentStore, seq: int) -> str:
    return next(c.subject for c in await store.changes_since(0) if c.seq == seq)


async def test_erasure_scrubbed_once_every_endpoint_delivered_it(
    store: ConsentStore, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    up, down = await receivers(), await receivers()
    await down.stop()
    d = dispatchers(store, webhooks(endpoint(up, "a"), endpoint(down, "b")))
    await d.start()
    subject = new_subject()
    await record(store, subject, 1000)
    token, erasure = await store.erase_change(subject)
    assert token.startswith(ERASED_PREFIX)
    d.poke()
    await eventually(lambda: erasure.event_id in up.accepted_ids(), "erasure delivered to a")
    erased = next(g for g in up.accepted() if g.doc["id"] == erasure.event_id)
    assert erased.doc["subject"] == subject
    # b has not delivered it: the feed still names the subject
    assert await feed_subject(store, erasure.seq) == subject

    await down.start()
    await eventually(lambda: erasure.event_id in down.accepted_ids(), "erasure delivered to b")

    async def scrubbed() -> bool:
        return await feed_subject(store, erasure.seq) == token

    await eventually(scrubbed, "the erasure change scrubbed")
    assert all(c.subject != subject for c in await store.changes_since(0))


async def test_no_endpoints_scrub_on_start_and_poke(store: ConsentStore, dispatchers: Make) -> None:
    first = new_subject()
    await record(store, first, 1000)
    token1, e1 = await store.erase_change(first)
    assert await feed_subject(store, e1.seq) == first

    d = dispatchers(store, webhooks())
    await d.start()
    assert await feed_subject(store, e1.seq) == token1  # on start

    second = new_subject()
    token2, e2 = await store.erase_change(second)
    assert await feed_subject(store, e2.seq) == second
    d.poke()

    async def scrubbed() -> bool:
        return await feed_subject(store, e2.seq) == token2

    await eventually(scrubbed, "scrubbed after a poke")


# -- status -----------------------------------------------------------------------------------


async def test_status_reflects_a_down_receiver(
    store: ConsentStore, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    r = await receivers()
    await r.stop()
    ep = endpoint(r)
    ep = WebhookEndpoint(ep.name, ep.url.with_user("user").with_password("url-pw"), SECRET)
    cfg = webhooks(ep)

    rows = await status(store, cfg, time.time())
    assert rows == [
        {
            "name": "crm",
            "url": f"http://127.0.0.1:{r.port}/hook",
            "configured": True,
            "registered": False,
            "last_seq": None,
            "backlog": None,
            "delivered": 0,
            "attempts": 0,
            "last_error": None,
            "next_attempt": None,
            "retry_in": None,
            "last_success": None,
        }
    ]

    await store.webhook_register("legacy")  # registered once, since removed from config
    d = dispatchers(store, cfg)
    await d.start()
    for i in range(3):
        await record(store, new_subject(), 1000 + i)
    d.poke()

    async def failing() -> bool:
        return (await cursor_of(store, "crm")).attempts >= 2

    await eventually(failing, "2 failed attempts")
    now = time.time()
    crm, legacy = await status(store, cfg, now)
    assert crm["url"] == f"http://127.0.0.1:{r.port}/hook"  # no userinfo, no query
    assert (crm["configured"], crm["registered"], crm["backlog"]) == (True, True, 3)
    assert (crm["last_error"], crm["delivered"], crm["last_success"]) == (
        "ClientConnectorError",
        0,
        None,
    )
    assert cast(int, crm["attempts"]) >= 2
    assert isinstance(crm["next_attempt"], float)
    assert isinstance(crm["retry_in"], float) and crm["retry_in"] >= 0
    assert (legacy["name"], legacy["configured"], legacy["url"], legacy["backlog"]) == (
        "legacy",
        False,
        None,
        3,
    )
    for needle in [SECRET.decode(), "query-secret", "url-pw", "user@"]:
        assert needle not in repr([crm, legacy])

    await r.start()

    async def caught_up() -> bool:
        row = (await status(store, cfg, time.time()))[0]
        return row["backlog"] == 0 and row["last_error"] is None

    await eventually(caught_up, "backlog 0 after the receiver came back")
    row = (await status(store, cfg, time.time()))[0]
    assert (row["delivered"], row["attempts"], row["retry_in"]) == (3, 0, None)
    assert isinstance(row["last_success"], float)


# -- robustness -------------------------------------------------------------------------------


class FlakyStore:
    """Delegates to a real store; `changes_since` raises `errors` in turn first."""

    def __init__(self, inner: ConsentStore, errors: list[Exception]) -> None:
        self._inner = inner
        self._errors = list(errors)

    async def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        if self._errors:
            raise self._errors.pop(0)
        return await self._inner.changes_since(seq, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize(
    ("exc", "logged"),
    [
        (StoreError("postgres: connection lost"), "store error, retrying"),
        (RuntimeError("a bug"), "unexpected error in the delivery loop"),
    ],
)
async def test_loop_survives_errors(
    store: ConsentStore,
    receivers: Callable[[], Awaitable[Receiver]],
    dispatchers: Make,
    caplog: pytest.LogCaptureFixture,
    exc: Exception,
    logged: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    r = await receivers()
    subject = new_subject()
    change = await record(store, subject, 1000)  # before registration: never sent
    flaky = cast(ConsentStore, FlakyStore(store, [exc, exc, exc]))
    d = dispatchers(flaky, webhooks(endpoint(r)))
    await d.start()
    later = await record(store, subject, 1001, analytics=False)
    d.poke()
    await eventually(lambda: len(r.accepted()) == 1, "delivered after 3 errors")
    assert r.accepted_ids() == [later.event_id]
    assert change.event_id not in r.accepted_ids()
    text = gateway_logs(caplog)
    assert text.count(logged) == 3
    for needle in [SECRET.decode(), subject, "query-secret"]:
        assert needle not in text


async def test_close_is_prompt_and_idempotent(
    store: ConsentStore, receivers: Callable[[], Awaitable[Receiver]], dispatchers: Make
) -> None:
    r = await receivers()
    r.hang = asyncio.Event()  # the receiver never answers
    d = dispatchers(store, webhooks(endpoint(r), timeout=20.0), lease=30.0)
    await d.start()
    await record(store, new_subject(), 1000)
    d.poke()
    await eventually(lambda: len(r.got) == 1, "a request in flight")
    t0 = time.monotonic()
    await d.close()
    assert time.monotonic() - t0 < 2.0
    await d.close()
    r.hang.set()
    with pytest.raises(RuntimeError):
        await d.start()
    # the lease was released: another dispatcher can claim at once
    assert await store.webhook_claim("crm", "next-instance", 5.0, time.time())


@pytest.mark.parametrize(
    ("lease", "timeout", "effective"),
    [(30.0, 5.0, 30.0), (5.0, 5.0, 10.0), (1.0, 20.0, 40.0)],
)
def test_lease_outlasts_two_timeouts(lease: float, timeout: float, effective: float) -> None:
    store = cast(ConsentStore, None)  # not touched before start()
    d = WebhookDispatcher(store, WebhooksConfig(timeout=timeout), lease=lease)
    assert d.lease == effective


@pytest.mark.parametrize(
    "kw",
    [{"lease": 0.0}, {"poll_interval": -1.0}, {"lease": float("nan")}, {"lease": float("inf")}],
)
def test_dispatcher_refuses_bad_timings(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WebhookDispatcher(cast(ConsentStore, None), WebhooksConfig(), **kw)  # type: ignore[arg-type]
