"""Webhook delivery: the store's change feed, POSTed to every endpoint, and its `status`.

The bytes and headers of each POST are `gateway.webhooks.wire`'s (what a receiver
implements); this module decides when and where they go.

Delivery guarantees
-------------------
- At least once, in feed order per endpoint (so in order per subject). A change is retried
  forever with exponential backoff (`backoff_initial` doubling up to `backoff_max`, times a
  jitter in [0.5, 1]); nothing after it is sent meanwhile: order and no loss matter more
  than head-of-line blocking. Any 2xx is success; anything else (other statuses, redirects,
  which are never followed, connection errors, timeouts) is a failed attempt.
- The cursor (last delivered seq, attempts, next attempt) is kept in the store, so a new
  process continues where the old one stopped. A change is delivered twice when the
  process dies between the receiver's 2xx and the cursor's advance, or when a lease is
  lost mid-delivery: receivers MUST deduplicate on the event id.
- One deliverer per endpoint across gateway instances: a dispatcher holds a lease on the
  endpoint's cursor (`ConsentStore.webhook_claim`), renews it as it goes, and releases it on
  `close`. An instance that died keeps it until it expires (`lease` seconds); then another
  takes over. The lease is at least twice the HTTP timeout, so a delivery ends before
  its lease can.
- Erasures: an ERASURE change names the subject until every configured endpoint has
  delivered it; then `scrub_erasures` replaces the subject by its token in the feed. With
  no endpoint configured, erasures are scrubbed on `start` and on every `poke`. Erasing a
  subject also replaces it by its token in its earlier changes, so those of them not yet
  delivered arrive with the token as `subject`: only the erasure event names the subject.

Nothing logged or stored as an error contains a subject id, a secret, a response body or
the endpoint URL (its query may carry credentials): errors are `HTTP <status>` or an
exception class name, and log lines name the endpoint by its configured name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from typing import Final, NamedTuple

import aiohttp
import yarl

from gateway.config import WebhookEndpoint, WebhooksConfig
from gateway.errors import StoreError
from gateway.metrics import Metrics
from gateway.store.base import Change, ConsentStore, WebhookCursor
from gateway.webhooks.wire import EVENT_ID_HEADER, SIGNATURE_HEADER, event_body, sign

__all__ = ["WebhookDispatcher", "backoff", "status"]

log = logging.getLogger(__name__)

#: changes read from the feed per round
BATCH: Final = 100
#: how long `close` waits for cursor advances under way
_ADVANCE_GRACE: Final = 5.0


def backoff(
    cfg: WebhooksConfig, attempts: int, jitter: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after the `attempts`-th failed try (1 = the first):
    `min(backoff_max, backoff_initial * 2**(attempts-1))` times a factor in [0.5, 1]
    (`0.5 + jitter() / 2`, `jitter()` in [0, 1]), so instances retrying together spread out."""
    # the exponent is capped: 2**1100 does not fit in a float, and the cap is reached long before
    exponent = min(max(attempts, 1) - 1, 64)
    base = min(cfg.backoff_max, cfg.backoff_initial * 2.0**exponent)
    return base * (0.5 + min(max(jitter(), 0.0), 1.0) / 2)


def _public_url(url: yarl.URL) -> str:
    """The URL as shown by `status`: no userinfo, query or fragment (they may hold secrets)."""
    # SECURITY: a token in the query or a password in the userinfo is never displayed.
    return str(url.with_user(None).with_query(None).with_fragment(None))


# -- delivery -----------------------------------------------------------------------------


class _LeaseLost(Exception):
    """Another owner took the endpoint's lease (or moved its cursor) during a round."""


class _Pause(NamedTuple):
    """What a round asks of its loop: wait `delay` seconds, ended early by a poke if
    `pokeable`. `idle`: the round sent nothing and had nothing it could send (the feed
    drained, or another owner holds the lease); see `WebhookDispatcher.settled`."""

    delay: float
    pokeable: bool
    idle: bool = False


class WebhookDispatcher:
    """Delivers the store's change feed to every configured endpoint (see the module doc).

    Use: `await start()`, call `poke()` after recording a change (so delivery starts at
    once rather than at the next poll), `await close()` on shutdown; `await settled()`
    waits until everything recorded before it has been dealt with. One task per
    endpoint; each keeps going through every error (logged, retried after a pause) until
    `close`. `owner` names this dispatcher in the store's leases (default: a random id,
    so a restarted process is a new owner); `lease` seconds is how long a claim lasts
    without renewal (raised to twice `cfg.timeout` if shorter); `poll_interval` is how
    often an idle loop looks at the feed without a poke, and how long it waits after a
    store error or while another owner holds the lease. Raises ValueError on a lease or
    poll interval that is not finite and positive.
    """

    def __init__(
        self,
        store: ConsentStore,
        cfg: WebhooksConfig,
        metrics: Metrics | None = None,
        *,
        owner: str | None = None,
        lease: float = 30.0,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (0 < lease < math.inf and 0 < poll_interval < math.inf):
            raise ValueError("lease and poll_interval must be finite and > 0")
        self._store = store
        self._cfg = cfg
        self._metrics = metrics
        self.owner = owner or uuid.uuid4().hex
        #: the lease in effect: at least twice the HTTP timeout. The lease is renewed when a
        #: third of it has passed, before a POST; that POST must end (timeout) before the
        #: lease can expire, or a second owner could deliver the next change meanwhile.
        self.lease = max(lease, 2 * cfg.timeout)
        self._poll = poll_interval
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: dict[str, asyncio.Event] = {}
        self._scrub_wake = asyncio.Event()
        #: endpoints whose lease this dispatcher believes it holds (released on close)
        self._held: set[str] = set()
        #: cursor advances under way, finished even if their loop is cancelled (see _advance)
        self._advancing: set[asyncio.Task[bool]] = set()
        #: per endpoint: rounds begun, and the number of the latest idle round (`settled`)
        self._rounds: dict[str, int] = {}
        self._idle: dict[str, int] = {}
        #: notified whenever a round ends, and on close
        self._progress = asyncio.Condition()
        self._started = False
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Register every endpoint's cursor (new ones at the end of the feed), scrub the
        erasures every endpoint has delivered, and start delivering. Raises StoreError if
        the store fails here, RuntimeError if started twice or after `close`."""
        if self._started or self._closed:
            raise RuntimeError("a WebhookDispatcher starts once")
        for ep in self._cfg.endpoints:
            await self._store.webhook_register(ep.name)
        await self._scrub()
        # only now: a start that failed on the store may be tried again
        self._started = True
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._cfg.timeout),
            # SECURITY: a receiver's cookies are never kept nor sent to another receiver.
            cookie_jar=aiohttp.DummyCookieJar(),
            # SECURITY: no proxy or netrc credentials from the environment.
            trust_env=False,
            headers={"User-Agent": "consent-gateway-webhooks"},
        )
        loop = asyncio.get_running_loop()
        for ep in self._cfg.endpoints:
            self._wake[ep.name] = asyncio.Event()
            self._rounds[ep.name] = self._idle[ep.name] = 0
            self._tasks.append(loop.create_task(self._loop(ep), name=f"webhook-{ep.name}"))
        if not self._cfg.endpoints:
            self._tasks.append(loop.create_task(self._scrub_loop(), name="webhook-scrub"))

    def poke(self) -> None:
        """A change was just recorded: wake every idle loop now (a loop waiting out a
        backoff keeps waiting). Cheap and synchronous; call it from the event loop."""
        for event in self._wake.values():
            event.set()
        self._scrub_wake.set()

    async def settled(self) -> None:
        """Return once every endpoint's loop has run a whole round, begun after this call,
        that sent nothing and had nothing it could send: its feed drained, or its lease
        held by another owner. So every change recorded before the call has been delivered
        (or is another owner's to deliver), and a delivery that should not happen would
        have happened by then: an exact wait, for tests and negative checks, not a timed
        one. Idle loops are woken at once; one backing off or waiting for the lease is
        not, and this waits as long as deliveries keep failing (bound it with a timeout).
        With no endpoint configured, returns at once. Raises RuntimeError if the
        dispatcher is not started, or is closed (also while waiting)."""
        if not self._started or self._closed:
            raise RuntimeError("settled() needs a running WebhookDispatcher")
        # a round already under way may have read the feed before the caller's change
        begun = dict(self._rounds)
        self.poke()
        async with self._progress:
            await self._progress.wait_for(
                lambda: self._closed or all(self._idle[n] > r for n, r in begun.items())
            )
        if self._closed:
            raise RuntimeError("the WebhookDispatcher closed while settling")

    async def close(self) -> None:
        """Stop every loop (an in-flight POST is abandoned: the change is sent again later,
        by this cursor's next owner), release the leases this dispatcher holds, close the
        HTTP session. Idempotent; the store is not closed (its owner does that)."""
        if self._closed:
            return
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with self._progress:
            self._progress.notify_all()  # a `settled` waiting raises
        if self._advancing:
            done, _ = await asyncio.wait(set(self._advancing), timeout=_ADVANCE_GRACE)
            for adv in done:
                # retrieved here, or asyncio would report it as never retrieved
                if not adv.cancelled() and adv.exception() is not None:
                    log.warning("webhooks: a cursor advance failed during close")
        for name in sorted(self._held):
            try:
                await self._store.webhook_release(name, self.owner)
            except StoreError as exc:
                log.warning("webhook %s: could not release the lease: %s", name, exc)
        self._held.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the per-endpoint loop --------------------------------------------------------------

    async def _loop(self, ep: WebhookEndpoint) -> None:
        wake = self._wake[ep.name]
        while True:
            # cleared before the round reads the feed: a poke during the round is kept
            wake.clear()
            self._rounds[ep.name] += 1
            try:
                pause = await self._round(ep)
            except asyncio.CancelledError:
                raise
            except _LeaseLost:
                self._held.discard(ep.name)
                log.info("webhook %s: lease lost to another instance", ep.name)
                pause = _Pause(self._poll, False)
            except StoreError as exc:
                # StoreError messages never hold subjects or DSNs (gateway.errors)
                log.warning("webhook %s: store error, retrying: %s", ep.name, exc)
                pause = _Pause(self._poll, False)
            except Exception:
                # the loop must outlive any bug: log it and go on after a pause
                log.exception("webhook %s: unexpected error in the delivery loop", ep.name)
                pause = _Pause(self._poll, False)
            async with self._progress:
                if pause.idle:
                    self._idle[ep.name] = self._rounds[ep.name]
                self._progress.notify_all()
            if pause.delay > 0:
                await self._wait(wake if pause.pokeable else None, pause.delay)

    @staticmethod
    async def _wait(event: asyncio.Event | None, delay: float) -> None:
        if event is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await event.wait()

    async def _claim(self, name: str) -> bool:
        ok = await self._store.webhook_claim(name, self.owner, self.lease, self._clock())
        if ok:
            self._held.add(name)
        else:
            self._held.discard(name)
        return ok

    async def _cursor(self, name: str) -> WebhookCursor:
        for cursor in await self._store.webhook_cursors():
            if cursor.endpoint == name:
                return cursor
        # deleted by hand while running: put it back (at the end of the feed)
        return await self._store.webhook_register(name)

    async def _round(self, ep: WebhookEndpoint) -> _Pause:
        """Deliver what is pending, in order, until the feed is drained or a delivery fails.
        Returns the pause before the next round (`_Pause`: how long, whether a poke ends
        it, whether this round was idle)."""
        name = ep.name
        if not await self._claim(name):
            log.debug("webhook %s: another instance delivers", name)
            # the backlog is the deliverer's to report: a stale value here would mislead
            self._drop_backlog(name)
            return _Pause(self._poll, False, idle=True)
        claimed_at = self._clock()
        cursor = await self._cursor(name)
        if cursor.attempts and cursor.next_attempt > claimed_at:
            # backing off (perhaps set by a previous owner); wake up in time to renew the lease
            return _Pause(min(cursor.next_attempt - claimed_at, self.lease / 3), False)
        position, attempts = cursor.last_seq, cursor.attempts
        changes = await self._store.changes_since(position, BATCH)
        if len(changes) == BATCH:
            self._set_backlog(name, await self._store.last_seq() - position)
        else:
            self._set_backlog(name, changes[-1].seq - position if changes else 0)
        if not changes:
            return _Pause(self._poll, True, idle=True)
        advanced = False
        # drained the batch: read the next one at once (there may be more than BATCH)
        result = _Pause(0.0, False)
        for change in changes:
            if self._clock() - claimed_at > self.lease / 3:
                if not await self._claim(name):
                    raise _LeaseLost
                # our lease may have lapsed and come back: make sure nobody moved the
                # cursor meanwhile, or we would send an older change after a newer one
                if (await self._cursor(name)).last_seq != position:
                    raise _LeaseLost
                claimed_at = self._clock()
            error = await self._post(ep, change)
            if error is None:
                self._count(name, "delivered")
                if not await self._advance(name, change.seq):
                    raise _LeaseLost
                advanced = True
                position, attempts = change.seq, 0
                self._set_backlog(name, changes[-1].seq - position)
                continue
            attempts += 1
            self._count(name, "failed")
            delay = backoff(self._cfg, attempts)
            if not await self._store.webhook_failed(
                name, self.owner, attempts, self._clock() + delay, error
            ):
                raise _LeaseLost
            log.warning(
                "webhook %s: delivery of change %d failed (%s), attempt %d, next in %.2fs",
                name,
                change.seq,
                error,
                attempts,
                delay,
            )
            # never skip it: wait, then this same change again (in time to renew the lease)
            result = _Pause(min(delay, self.lease / 3), False)
            break
        if advanced:
            await self._scrub()
        return result

    async def _advance(self, name: str, seq: int) -> bool:
        """`webhook_advance`, shielded: once a receiver acknowledged a change, `close`
        cancelling the loop must not drop the record of it (that would send it again)."""
        task = asyncio.get_running_loop().create_task(
            self._store.webhook_advance(name, self.owner, seq, self._clock()),
            name=f"webhook-advance-{name}",
        )
        self._advancing.add(task)
        task.add_done_callback(self._advancing.discard)
        return await asyncio.shield(task)

    async def _post(self, ep: WebhookEndpoint, change: Change) -> str | None:
        """POST one change; None on 2xx, else a short error: `HTTP <status>` or the
        exception's class name (never a body, a URL or an exception message)."""
        assert self._session is not None, "started"
        body = event_body(change)
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: change.event_id,
            SIGNATURE_HEADER: sign(ep.secret, body, int(self._clock())),
        }
        try:
            # SECURITY: redirects are not followed: the signed event goes to the configured
            # URL only, never to wherever a receiver (or whoever took its name) points.
            async with self._session.post(
                ep.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                # the body is never read: it is not ours to log or keep
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # SECURITY: the class name only; aiohttp's messages quote the URL
            return type(exc).__name__

    # -- erasure scrubbing ------------------------------------------------------------------

    async def _scrub(self) -> None:
        """Scrub erasure changes every configured endpoint has delivered (all of them when
        none is configured)."""
        names = {ep.name for ep in self._cfg.endpoints}
        if names:
            seen = {c.endpoint: c.last_seq for c in await self._store.webhook_cursors()}
            if not names <= seen.keys():
                return  # an endpoint is not registered yet: it has delivered nothing
            upto = min(seen[n] for n in names)
        else:
            upto = await self._store.last_seq()
        scrubbed = await self._store.scrub_erasures(upto)
        if scrubbed:
            log.info("webhooks: scrubbed %d delivered erasure change(s)", scrubbed)

    async def _scrub_loop(self) -> None:
        """With no endpoint configured: scrub on every poke."""
        while True:
            await self._scrub_wake.wait()
            self._scrub_wake.clear()
            try:
                await self._scrub()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, StoreError):
                    log.warning("webhooks: store error while scrubbing, retrying: %s", exc)
                else:
                    log.exception("webhooks: unexpected error while scrubbing")
                self._scrub_wake.set()
                await asyncio.sleep(self._poll)

    # -- metrics ----------------------------------------------------------------------------

    def _count(self, name: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.webhook_deliveries.labels(endpoint=name, outcome=outcome).inc()

    def _set_backlog(self, name: str, backlog: int) -> None:
        if self._metrics is not None:
            self._metrics.webhook_backlog.labels(endpoint=name).set(max(backlog, 0))

    def _drop_backlog(self, name: str) -> None:
        if self._metrics is not None:
            with contextlib.suppress(KeyError):  # not set yet
                self._metrics.webhook_backlog.remove(name)


# -- status (what `consent-gateway webhooks status` prints) ------------------------------


async def status(store: ConsentStore, cfg: WebhooksConfig, now: float) -> list[dict[str, object]]:
    """One row per configured endpoint, then one per registered endpoint no longer
    configured (`configured: False`, url None). Keys: name, url (no userinfo, query or
    fragment), configured, registered, last_seq, backlog (changes not yet delivered),
    delivered, attempts (failed tries of the next change), last_error, next_attempt
    (epoch seconds, None when not failing), retry_in (seconds from `now`, None when not
    failing), last_success (epoch seconds or None). An endpoint configured but never
    registered (no gateway started with it yet) has last_seq and backlog None.
    Raises StoreError."""
    cursors = {c.endpoint: c for c in await store.webhook_cursors()}
    last = await store.last_seq()

    def row(name: str, url: str | None, configured: bool) -> dict[str, object]:
        c = cursors.get(name)
        failing = c is not None and c.attempts > 0
        return {
            "name": name,
            "url": url,
            "configured": configured,
            "registered": c is not None,
            "last_seq": None if c is None else c.last_seq,
            "backlog": None if c is None else max(last - c.last_seq, 0),
            "delivered": 0 if c is None else c.delivered,
            "attempts": 0 if c is None else c.attempts,
            "last_error": None if c is None else c.last_error,
            "next_attempt": c.next_attempt if failing and c is not None else None,
            "retry_in": max(c.next_attempt - now, 0.0) if failing and c is not None else None,
            "last_success": None if c is None else c.last_success,
        }

    rows = [row(ep.name, _public_url(ep.url), True) for ep in cfg.endpoints]
    configured = {ep.name for ep in cfg.endpoints}
    rows += [row(name, None, False) for name in sorted(cursors) if name not in configured]
    return rows
