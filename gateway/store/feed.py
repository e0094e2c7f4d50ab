"""Following the store's change feed, so every instance's cache learns of each change.

- PostgreSQL: a connection of its own LISTENs; each committed change arrives at once
  (NOTIFY carries it whole, so applying it needs no query). If the connection is lost,
  the follower reads the feed by polling meanwhile, reconnects with backoff, LISTENs
  again and then reads every change after the last one it saw: a change committed while
  it was deaf is applied, not lost.
- SQLite: there is no notification between processes (`--workers N` share the file),
  so the feed is read every `poll_interval`; this instance's own writes are applied
  at once by `ConsentBook.record`.

The feed's seq is in commit order on both backends, so "every change after the last one
seen" misses none. Applying a change twice is harmless (the cache keeps the later seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from gateway.store.base import Change, StoreError
from gateway.store.cache import ConsentBook
from gateway.store.postgres import PostgresStore

__all__ = ["ChangeFollower"]

log = logging.getLogger(__name__)

_PAGE: Final = 1000
_BACKOFF_MIN: Final = 0.1
_BACKOFF_MAX: Final = 5.0


class ChangeFollower:
    """Applies the feed's changes to `book`'s cache from `start` to `close`."""

    def __init__(self, book: ConsentBook, poll_interval: float, preload: int = 0) -> None:
        self.book = book
        self.poll_interval = poll_interval
        #: how many of the newest changes `start` puts in the cache
        self.preload = preload
        #: the last seq read from the feed (notify, poll or resync): everything up to it
        #: has been applied
        self.seen = 0
        #: monotonic time the feed was last read to its end (None: not yet)
        self.synced_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._close_listener: Callable[[], Awaitable[None]] | None = None
        self._lost = asyncio.Event()
        self._listening = False

    @property
    def listening(self) -> bool:
        """PostgreSQL: the LISTEN connection is up. Always False for SQLite."""
        return self._listening

    @property
    def healthy(self) -> bool:
        """The follower is running and (PostgreSQL) listening."""
        running = self._task is not None and not self._task.done()
        return running and (self._listening or not self._uses_notify)

    @property
    def lag(self) -> float:
        """Seconds this instance may be behind the store's feed: 0 while LISTEN is up
        (each change arrives as it commits), else since the feed was last read to its end
        (polling, or the store unreachable); infinite before the first read."""
        if self._listening:
            return 0.0
        if self.synced_at is None:
            return float("inf")
        return time.monotonic() - self.synced_at

    @property
    def _uses_notify(self) -> bool:
        return isinstance(self.book.store, PostgresStore)

    async def start(self) -> None:
        """Start at the current end of the feed, with the newest `preload` changes in the
        cache: a withdrawal made before this instance started is known at once, without
        waiting for the subject's next request to miss and look it up.

        LISTEN comes first, so a change committed while starting is heard or read."""
        if self._uses_notify:
            with contextlib.suppress(StoreError):
                await self._listen()
        self.seen = await self.book.store.last_seq()
        self.synced_at = time.monotonic()
        if self.preload > 0:
            for change in await self.book.store.changes_since(
                max(0, self.seen - self.preload), self.preload
            ):
                self.book.changed(change, "preload")
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._unlisten()

    # -- reading the feed -------------------------------------------------------------------

    async def catch_up(self, via: str) -> int:
        """Apply every change after `seen`; returns how many. Raises StoreError."""
        applied = 0
        while True:
            changes = await self.book.store.changes_since(self.seen, _PAGE)
            for change in changes:
                self._apply(change, via)
            applied += len(changes)
            if len(changes) < _PAGE:
                self.synced_at = time.monotonic()
                return applied

    def _apply(self, change: Change, via: str) -> None:
        if change.seq > self.seen:
            self.seen = change.seq
        self.book.changed(change, via)

    def _heard(self, change: Change) -> None:
        if change.seq <= self.seen:
            return
        self._apply(change, "notify")

    # -- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = _BACKOFF_MIN
        while True:
            try:
                if self._uses_notify and not self._listening:
                    # deaf: keep reading by polling while trying to listen again
                    await self._safe_catch_up("poll")
                    try:
                        await self._listen()
                    except StoreError as exc:
                        log.warning("change feed: cannot listen (retrying): %s", exc)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, _BACKOFF_MAX)
                        continue
                    self.book.metrics.store_feed_reconnects.inc()
                    backoff = _BACKOFF_MIN
                    # changes committed while deaf: LISTEN is on, so none falls between
                    await self._safe_catch_up("resync")
                    log.info("change feed: listening again, caught up to %d", self.seen)
                    continue
                if self._uses_notify:
                    # listening: wake when the connection is lost, and now and then
                    # read the feed anyway (a safety net that costs one query)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._lost.wait(), self.poll_interval * 20)
                    if self._lost.is_set():
                        self._lost.clear()
                        await self._unlisten()
                        log.warning("change feed: lost the LISTEN connection; resyncing")
                        continue
                    await self._safe_catch_up("poll")
                else:
                    await asyncio.sleep(self.poll_interval)
                    await self._safe_catch_up("poll")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("change feed: unexpected error; continuing")
                await asyncio.sleep(self.poll_interval)

    async def _safe_catch_up(self, via: str) -> None:
        try:
            await self.catch_up(via)
        except StoreError as exc:
            log.warning("change feed: cannot read the feed: %s", exc)

    async def _listen(self) -> None:
        store = self.book.store
        assert isinstance(store, PostgresStore)
        self._lost.clear()
        self._close_listener = await store.listen(self._heard, self._on_lost)
        self._listening = True

    def _on_lost(self) -> None:
        self._listening = False
        self._lost.set()

    async def _unlisten(self) -> None:
        close, self._close_listener = self._close_listener, None
        self._listening = False
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
