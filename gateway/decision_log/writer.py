"""The decision log's queue and batch writer (DESIGN §7), off the hot path.

```
DecisionLog.submit ─▶ bounded queue ─▶ batch writer task ─▶ host ─▶ sinks
                  └─▶ subscribers (the admin page's live tail)
```

- `DecisionLog.submit` never blocks and never raises: a full queue loses the
  record and counts it (`consent_gateway_decision_log_lost_total{reason="queue_full"}`).
- The writer takes up to `batch_size` records (waiting at most `flush_interval`
  after the first for more) and hands the batch to its host (`hosts`): a writer
  process (the default) or one dedicated thread, so neither SQLite nor file I/O ever
  runs on the event loop. A failing sink, or a writer process that died, loses that
  batch, counted (`reason="sink_error"`); the writer carries on.
- `DecisionLog.drain` waits until everything accepted so far is written (or
  counted lost); `close` writes what is queued and closes the sinks.
- `DecisionLog.submit_sighting` queues a report endpoint's sighting (`gateway.reports`)
  the same way, for the SQLite sink's aggregated `bypasses` table only; it is never a
  decision record (no subscriber, no JSON line, not in `log_written`), and it may use
  only half the queue, so a flood of reports never crowds out decision records.

Counting: `log_written` and `log_lost{reason="sink_error"}` count per sink, so with
both sinks configured each record is counted twice (once per sink it reached or
missed). `log_lost{reason="queue_full"}` and `{reason="closed"}` count records that
reached no sink at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Final

from gateway.config import DecisionLogConfig, StoreBackend
from gateway.decision_log.bypasses import Seen
from gateway.decision_log.hosts import Host, Outcome, host_for
from gateway.decision_log.pg_query import PgTail
from gateway.decision_log.postgres import postgres_host
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.rollups import Pruned, Tally, cutoffs
from gateway.decision_log.sinks import sinks_for
from gateway.metrics import Metrics

__all__ = ["DecisionLog"]

log = logging.getLogger(__name__)

_WARN_EVERY: Final = 10.0  # seconds between two warnings about lost records
#: seconds between two writes of the per-minute rollups
ROLLUP_EVERY: Final = 10.0
#: seconds between two retention runs (one at start)
RETENTION_EVERY: Final = 3600.0


class _LossWarning:
    """A warning about lost records, at most once per `_WARN_EVERY` seconds, with the count."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._count = 0
        self._last = -_WARN_EVERY

    def hit(self, n: int, detail: str = "") -> None:
        self._count += n
        now = time.monotonic()
        if now - self._last >= _WARN_EVERY:
            self.flush(detail)
            self._last = now

    def flush(self, detail: str = "") -> None:
        if self._count:
            log.warning("decision log: %d records lost: %s%s", self._count, self._what, detail)
            self._count = 0


_Item = DecisionRecord | Seen | None


class _BatchQueue:
    """A bounded first-in-first-out queue with one consumer that takes batches.

    `put` is on every logged request's path: a deque append and a length check, with the
    writer woken only when it waits and what it waits for has come (its first record,
    a full batch, the stop signal). asyncio.Queue wakes a getter, counts and clears an
    event per item, and the writer then took items one by one: ten times the cost.
    `join` waits until every item put so far was taken and `done`."""

    def __init__(self, maxsize: int) -> None:
        self._items: deque[_Item] = deque()
        self._max = maxsize
        self._unfinished = 0
        self._waiter: asyncio.Future[None] | None = None
        self._want = 1
        self._joiners: list[asyncio.Future[None]] = []

    def qsize(self) -> int:
        return len(self._items)

    def put(self, item: _Item) -> bool:
        """Queue `item`; False when full. The stop signal (None) always fits."""
        items = self._items
        if item is not None and len(items) >= self._max:
            return False
        items.append(item)
        self._unfinished += 1
        waiter = self._waiter
        if waiter is not None and (len(items) >= self._want or item is None):
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return True

    async def wait(self, want: int, timeout: float | None = None) -> None:
        """Until `want` items are queued (or the stop signal), at most `timeout` seconds."""
        if len(self._items) >= want or (self._items and self._items[-1] is None):
            return
        self._want = want
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            pass
        finally:
            self._waiter = None

    def take(self, n: int) -> list[_Item]:
        items = self._items
        return [items.popleft() for _ in range(min(n, len(items)))]

    def done(self, n: int) -> None:
        self._unfinished -= n
        if self._unfinished <= 0:
            self._unfinished = 0
            joiners, self._joiners = self._joiners, []
            for f in joiners:
                if not f.done():
                    f.set_result(None)

    async def join(self) -> None:
        if self._unfinished:
            f = asyncio.get_running_loop().create_future()
            self._joiners.append(f)
            await f


class DecisionLog:
    """The queue and batch writer between the pipeline and the sinks.

    Lifecycle: `start()` once the event loop runs, `submit()` from the loop's thread
    (it is not thread-safe), `close()` on shutdown. Records submitted before `start`
    wait in the queue. With no sink configured the log is off and `submit` discards.
    """

    def __init__(self, cfg: DecisionLogConfig, metrics: Metrics) -> None:
        self._cfg = cfg
        self._metrics = metrics
        #: None: no sink configured, the log is off
        self._host: Host | None = None
        if cfg.backend == StoreBackend.POSTGRES:
            self._host = postgres_host(cfg)
        elif sinks_for(cfg):
            self._host = host_for(cfg)
        #: every request, counted per minute (`rollups`); written by `_maintain`
        self.tally = Tally()
        self._maintainer: asyncio.Task[None] | None = None
        self._flush_now = asyncio.Event()
        self._flushed = asyncio.Condition()
        self._flushes = 0
        self._rollups_warned = -_WARN_EVERY
        self._stopping = False
        #: backend postgres: the records of every instance, for `subscribe`
        self._tail: PgTail | None = None
        #: None is the writer's stop signal, queued by `close` behind every accepted record
        self._queue = _BatchQueue(cfg.queue_size)
        self._writer: asyncio.Task[None] | None = None
        self._accepting = True
        self._started = False
        self._closed = False
        self._close_lock = asyncio.Lock()
        self._full_warning = _LossWarning("queue full")
        self._subscribers: set[asyncio.Queue[DecisionRecord]] = set()
        names = self._host.names if self._host is not None else ()
        self._sink_warnings = {n: _LossWarning(f"{n} sink failed") for n in names}
        self._keeps_sightings = self._host is not None and self._host.keeps_sightings

    @property
    def depth(self) -> int:
        """Records waiting in the queue."""
        return self._queue.qsize()

    @property
    def running(self) -> bool:
        """Started and not closed, with its writer alive (for readiness checks).

        A failing sink does not make the log stop running: its losses are counted.
        """
        if not self._started or self._closed:
            return False
        return self._writer is None or not self._writer.done()

    @property
    def enabled(self) -> bool:
        """Whether any sink is configured."""
        return self._host is not None

    @property
    def host(self) -> Host | None:
        """Where the sinks run (`hosts`); None when the log is off."""
        return self._host

    async def start(self) -> None:
        """Open the sinks and start the writer; a second call does nothing.

        A sink that cannot open is not an error here: it is logged, and it retries
        with every batch (records meanwhile count as lost). Raises `RuntimeError`
        after `close`.
        """
        if self._closed:
            raise RuntimeError("decision log is closed")
        if self._started:
            return  # started, or starting in another task
        self._started = True
        if self._host is None:
            return
        for o in await self._host.open():
            if o.failure is not None:
                log.warning("decision log: %s sink cannot open yet: %s", o.sink, o.failure)
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._run(), name="decision-log-writer")
        self._maintainer = loop.create_task(self._maintain(), name="decision-log-maintenance")

    def subscribe(self, maxsize: int = 256) -> asyncio.Queue[DecisionRecord]:
        """A queue that receives every record submitted from now on (the admin page's
        live tail); with backend postgres, every record any instance writes, once it is
        committed. A subscriber that falls behind misses records rather than slowing
        the gateway: its queue is bounded and never waited on. `unsubscribe` when done."""
        q: asyncio.Queue[DecisionRecord] = asyncio.Queue(maxsize)
        if self._cfg.backend == StoreBackend.POSTGRES and self._cfg.postgres_dsn:
            if self._tail is None:
                self._tail = PgTail(self._cfg.postgres_dsn)
            self._tail.add(q)
        else:
            self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[DecisionRecord]) -> None:
        self._subscribers.discard(q)
        if self._tail is not None:
            self._tail.discard(q)

    def count(
        self,
        now: float,
        vendor: str | None,
        action: str,
        missing: frozenset[str],
        regime: str | None,
    ) -> None:
        """Count one request in the per-minute rollups (every request, forwarded too)."""
        if self._host is not None:
            self.tally.count(now, vendor, action, missing, regime)

    def submit(self, record: DecisionRecord) -> bool:
        """Queue `record` for writing; never blocks, never raises.

        True: accepted (it will be written, or counted lost by the sink that fails it).
        False: lost at once and counted: the queue is full, or the log is closed.
        """
        for sub in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                sub.put_nowait(record)
        if self._host is None:
            return True
        return self._put(record)

    def submit_sighting(self, seen: Seen) -> bool:
        """Queue a report's sighting for the `bypasses` table; never blocks, never raises.

        Without a SQLite sink it is discarded (True); a closed log, or a queue half full,
        loses it, counted as a record would be (False).
        """
        if not self._keeps_sightings:
            return True
        # SECURITY: anyone can post reports; however many arrive, half the queue stays
        # for decision records.
        if self._queue.qsize() >= self._cfg.queue_size // 2:
            self._metrics.log_lost.labels("queue_full").inc()
            return False
        return self._put(seen)

    def _put(self, item: DecisionRecord | Seen) -> bool:
        if not self._accepting:
            self._metrics.log_lost.labels("closed").inc()
            return False
        if not self._queue.put(item):
            self._metrics.log_lost.labels("queue_full").inc()
            self._full_warning.hit(1, f" (queue_size={self._cfg.queue_size})")
            return False
        return True

    async def drain(self) -> None:
        """Wait until every record accepted so far is written (or counted lost), and the
        requests counted so far are in the rollups: what a test or an operator's check
        reads next is complete. Returns at once when the log has no writer."""
        if self._writer is not None and not self._writer.done():
            await self._queue.join()
        await self.flush_rollups()

    async def flush_rollups(self) -> None:
        """Have the maintenance task write the rollups counted so far, and wait for it."""
        task = self._maintainer
        if task is None or task.done():
            return
        async with self._flushed:
            target = self._flushes + 1
            self._flush_now.set()
            await self._flushed.wait_for(lambda: self._flushes >= target or task.done())

    async def prune(self, now: float | None = None) -> Pruned:
        """One retention run now (the maintenance task runs one every `RETENTION_EVERY`):
        what it deleted, counted in metrics; `Pruned(skipped=True)` when another
        instance held the lease."""
        if self._host is None:
            return Pruned()
        cut = cutoffs(self._cfg.retention, self._cfg.rollup_retention, now)
        outcome, pruned = await self._host.prune(cut)
        m = self._metrics
        if outcome.failure is not None:
            m.log_retention_runs.labels("failed").inc()
            log.warning("decision log: retention failed: %s", outcome.failure)
        elif pruned.skipped:
            m.log_retention_runs.labels("skipped").inc()
        else:
            m.log_retention_runs.labels("done").inc()
            m.log_pruned.labels("records").inc(pruned.records)
            m.log_pruned.labels("rollups").inc(pruned.rollups)
            m.log_pruned.labels("partitions").inc(pruned.partitions)
            m.log_pruned.labels("compacted").inc(pruned.compacted)
        return pruned

    async def close(self) -> None:
        """Stop accepting, write every accepted record, close the sinks; idempotent.

        A log closed without `start` is started first so its queued records are
        written. If `close` itself is cancelled, what is still queued counts as lost.
        """
        async with self._close_lock:
            if self._closed:
                return
            self._accepting = False
            try:
                if self._writer is None and self._queue.qsize():
                    await self.start()
                if self._writer is not None and not self._writer.done():
                    # Behind every accepted record: nothing submitted later is accepted.
                    self._queue.put(None)
                    await self._writer
            finally:
                self._closed = True
                self._count_stranded()
                await self._close_sinks()
                self._full_warning.flush()
                for w in self._sink_warnings.values():
                    w.flush()

    def _count_stranded(self) -> None:
        left = self._queue.take(self._queue.qsize())
        self._queue.done(len(left))
        stranded = sum(1 for item in left if item is not None)
        if stranded:
            self._metrics.log_lost.labels("closed").inc(stranded)
            log.warning("decision log: %d records lost: closed before written", stranded)

    async def _close_sinks(self) -> None:
        if self._maintainer is not None:
            # Not cancelled: a host answers one call at a time, and a call cut off would
            # leave its answer to the next. Its last round writes what was counted.
            self._stopping = True
            self._flush_now.set()
            await self._maintainer
        if self._tail is not None:
            await self._tail.close()
        if self._host is None or not self._started:
            return
        for o in await self._host.close():
            if o.failure is not None:
                log.warning("decision log: %s sink failed to close: %s", o.sink, o.failure)

    async def _run(self) -> None:
        """The writer: batches records until it takes the stop signal. Never raises."""
        stop = False
        queue, size = self._queue, self._cfg.batch_size
        while not stop:
            await queue.wait(1)
            # up to flush_interval after the first record for the rest of a batch
            await queue.wait(size, self._cfg.flush_interval)
            taken = queue.take(size)
            batch: list[DecisionRecord | Seen] = []
            for item in taken:
                if item is None:  # behind every accepted record
                    stop = True
                    break
                batch.append(item)
            if batch:
                await self._write(batch)
            queue.done(len(taken))

    async def _maintain(self) -> None:
        """Runs retention at start and every `RETENTION_EVERY`, and writes the rollups
        every `ROLLUP_EVERY` seconds or when `flush_rollups` asks (a flush asked during a
        retention run waits for it: the host answers one call at a time). Never raises."""
        next_prune = 0.0
        while True:
            if not self._stopping and time.monotonic() >= next_prune:
                next_prune = time.monotonic() + RETENTION_EVERY
                try:
                    await self.prune()
                except Exception:
                    log.exception("decision log: retention raised")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), ROLLUP_EVERY)
            self._flush_now.clear()
            await self._write_rollups()
            async with self._flushed:
                self._flushes += 1
                self._flushed.notify_all()
            if self._stopping:
                return

    async def _write_rollups(self) -> None:
        tally = self.tally
        if tally.lost:
            self._metrics.rollups_lost.inc(tally.lost)
            tally.lost = 0
        rows = tally.take()
        if not rows or self._host is None:
            return
        outcome = await self._host.write_rollups(rows)
        if outcome.failure is not None:
            tally.give_back(rows)  # tried again with the next flush
            now = time.monotonic()
            if now - self._rollups_warned >= _WARN_EVERY:
                self._rollups_warned = now
                log.warning(
                    "decision log: rollups not written yet (kept for the next try): %s",
                    outcome.failure,
                )

    async def _write(self, batch: Sequence[DecisionRecord | Seen]) -> None:
        assert self._host is not None
        records = [r for r in batch if isinstance(r, DecisionRecord)]
        seen = [s for s in batch if isinstance(s, Seen)]
        if records:
            for o in await self._host.write(records):
                self._count(o, len(records), written=True)
        if seen and self._keeps_sightings:
            self._count(await self._host.write_sightings(seen), len(seen), written=False)

    def _count(self, o: Outcome, n: int, *, written: bool) -> None:
        if o.failure is None:
            if written:
                self._metrics.log_written.inc(n)
            return
        self._metrics.log_lost.labels("sink_error").inc(n)
        if o.unexpected:
            # A bug, not an outage; the writer survives it all the same.
            log.error("decision log: %s sink raised unexpectedly:\n%s", o.sink, o.failure)
        else:
            # SECURITY: the failure names the sink and its error, never record contents.
            self._sink_warnings[o.sink].hit(n, f": {o.failure}")
