"""The cache in front of the consent store, and the store as the request path sees it.

```
ConsentBook ── the app's one handle on stored consent
├── ConsentCache   bounded TTL cache (cachetools) of subjects' current states
├── ChangeFollower gateway.store.feed: applies every change to the cache as it commits
└── ConsentStore   SQLite or PostgreSQL
```

- `ConsentBook.peek(subject)` never waits: it answers from the cache, or says MISS and
  fetches the state in the background (one fetch per subject at a time), so a request
  with a valid cookie is decided on the cookie now and the next one sees the store.
- Every change (this instance's own writes at once, other instances' through the feed)
  replaces the subject's entry, so an entry is never stale: the TTL bounds memory only.
  A withdrawal recorded after a cookie was issued is therefore in the cache of every
  instance following the feed, and beats the older cookie on the next request.
- An erased subject's entry is a state with no purposes, newer than any cookie issued
  before the erasure: its old cookie counts as unknown, not as consent.
- `lookup` waits (server-to-server events, the consent API); a store that fails reads as
  "no record" (no consent) and is counted, never raised on the request path.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cachetools import TTLCache

from gateway.metrics import Metrics
from gateway.store.base import (
    ERASURE_SOURCE,
    Change,
    ChangeKind,
    ConsentRecord,
    ConsentStore,
    CurrentConsent,
    StoreError,
)

__all__ = ["CLOCK", "MISS", "ConsentBook", "ConsentCache", "Miss"]

#: the caches' clock unless one is given: read when a cache is built, so a test can
#: replace it to move the caches' time forward without waiting for it
CLOCK: Callable[[], float] = time.monotonic

log = logging.getLogger(__name__)


class Miss:
    """The cache does not know this subject (see `MISS`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


MISS: Final = Miss()

#: background fetches in flight at most; beyond it a miss is simply not prefetched
_MAX_PENDING: Final = 1024
#: seconds between two warnings about failing lookups (each failure is counted)
_WARN_EVERY: Final = 10.0


@dataclass(frozen=True, slots=True)
class _Entry:
    state: CurrentConsent | None
    #: the feed seq this entry came from; 0 for a lookup
    seq: int
    #: the cache's clock reading from which the entry is gone
    expires: float


class ConsentCache:
    """Subjects' current states (None: the store has no record), bounded in size and age.

    Changes win over lookups: a lookup that started before a change to its subject was
    applied does not overwrite it (it may have read the older state).

    A looked-up entry lives `ttl` seconds; an entry a change made lives `change_ttl`
    (default: `ttl`). Give changes the consent's `max_age`: a withdrawal must stay known
    for as long as a cookie issued before it could still be presented, or the first
    request after the entry expired would be decided on that cookie. Size is bounded by
    `maxsize`, least recently used first.
    """

    def __init__(
        self,
        maxsize: int,
        ttl: float,
        timer: Callable[[], float] | None = None,
        *,
        change_ttl: float | None = None,
    ) -> None:
        timer = CLOCK if timer is None else timer
        self._timer = timer
        self._maxsize = maxsize
        self._ttl = ttl
        self._long = ttl if change_ttl is None else max(ttl, change_ttl)
        # Least recently used first. An entry is its state, seq and expiry and nothing
        # else: a million subjects must fit (bench/scale.py measures it). Expired entries
        # go when read, or as the oldest when the cache is full.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # subject -> epoch of the last change applied to it; kept as long as the entries
        self._touched: TTLCache[str, int] = TTLCache(maxsize, ttl, timer=timer)
        self._epoch = 0

    def __len__(self) -> int:
        now = self._timer()
        return sum(1 for e in self._entries.values() if now < e.expires)

    def _live(self, subject: str) -> _Entry | None:
        entry = self._entries.get(subject)
        if entry is None:
            return None
        if not self._timer() < entry.expires:
            del self._entries[subject]
            return None
        self._entries.move_to_end(subject)
        return entry

    def _set(self, subject: str, state: CurrentConsent | None, seq: int) -> None:
        expires = self._timer() + (self._long if seq else self._ttl)
        entries = self._entries
        entries[subject] = _Entry(state, seq, expires)
        entries.move_to_end(subject)
        while len(entries) > self._maxsize:
            entries.popitem(last=False)

    def get(self, subject: str) -> CurrentConsent | None | Miss:
        entry = self._live(subject)
        return MISS if entry is None else entry.state

    @property
    def epoch(self) -> int:
        """Take before a lookup; pass to `put` after it."""
        return self._epoch

    def put(self, subject: str, state: CurrentConsent | None, epoch: int) -> bool:
        """Cache a looked-up state, unless a change to the subject was applied since
        `epoch`. Returns whether it was cached."""
        if self._touched.get(subject, -1) > epoch:
            return False
        self._set(subject, state, 0)
        return True

    def apply(self, change: Change) -> bool:
        """Make `change` the subject's entry, unless the entry came from a later change.
        Returns whether it was applied."""
        old = self._live(change.subject)
        if old is not None and old.seq >= change.seq:
            return False
        self._epoch += 1
        self._touched[change.subject] = self._epoch
        self._set(change.subject, _state_after(change), change.seq)
        return True

    def clear(self) -> None:
        self._epoch += 1
        self._entries.clear()
        self._touched.clear()


def _state_after(change: Change) -> CurrentConsent:
    if change.kind is ChangeKind.ERASURE:
        # Newer than any cookie issued before the erasure, and answering nothing: the
        # old cookie no longer counts (unknown, so the regime's default applies).
        return CurrentConsent(change.subject, {}, 0, change.at, ERASURE_SOURCE)
    return CurrentConsent(
        change.subject, change.purposes, change.policy_version, change.at, change.source
    )


class ConsentBook:
    """The consent store behind its cache, for the app (see the module docstring).

    `on_change` callbacks run after each change this instance records or hears of (the
    webhook dispatcher is poked by one).
    """

    def __init__(
        self,
        store: ConsentStore,
        cache: ConsentCache,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.cache = cache
        self.metrics = metrics
        self.on_change: list[Callable[[Change], None]] = []
        # bound once: a labelled child per request would cost a lookup on the hot path
        self._hits = metrics.store_cache.labels("hit")
        self._misses = metrics.store_cache.labels("miss")
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self._last_warning = -math.inf

    # -- reads ----------------------------------------------------------------------------

    def _cached(self, subject: str) -> CurrentConsent | None | Miss:
        state = self.cache.get(subject)
        (self._misses if isinstance(state, Miss) else self._hits).inc()
        return state

    def peek(self, subject: str) -> CurrentConsent | None | Miss:
        """The cached state now (None: no record), or MISS with a fetch started."""
        state = self._cached(subject)
        if isinstance(state, Miss):
            self._prefetch(subject)
        return state

    def state_now(self, subject: str) -> CurrentConsent | None:
        """`peek` for `pipeline.run`, before `core.evaluate`: a miss answers None (the cookie
        stands for this request)."""
        state = self.peek(subject)
        return None if isinstance(state, Miss) else state

    async def lookup(self, subject: str) -> CurrentConsent | None:
        """The subject's state, from the cache or else the store (waiting for it).

        A failing store answers None (no record, so no consent) and is counted."""
        state = self._cached(subject)
        return await self._fetch(subject) if isinstance(state, Miss) else state

    async def _fetch(self, subject: str) -> CurrentConsent | None:
        epoch = self.cache.epoch
        started = time.perf_counter()
        try:
            state = await self.store.current(subject)
        except StoreError as exc:
            self.metrics.store_errors.labels("current").inc()
            # a store that is down fails every miss: say so now and then, not per request
            now = time.monotonic()
            if now - self._last_warning >= _WARN_EVERY:
                self._last_warning = now
                log.warning("consent store lookups failing (answering no record): %s", exc)
            return None
        finally:
            self.metrics.store_seconds.labels("current").observe(time.perf_counter() - started)
        self.cache.put(subject, state, epoch)
        return state

    def _prefetch(self, subject: str) -> None:
        if self._closed or subject in self._pending or len(self._pending) >= _MAX_PENDING:
            return
        task = asyncio.get_running_loop().create_task(self._prefetch_one(subject))
        self._pending[subject] = task

    async def _prefetch_one(self, subject: str) -> None:
        try:
            await self._fetch(subject)
        finally:
            self._pending.pop(subject, None)

    # -- writes ---------------------------------------------------------------------------

    async def record(self, rec: ConsentRecord) -> ConsentRecord:
        """Write `rec` durably (raises StoreError), then make it current in the cache."""
        started = time.perf_counter()
        try:
            written, change = await self.store.record_change(rec)
        except StoreError:
            self.metrics.store_errors.labels("record").inc()
            raise
        finally:
            self.metrics.store_seconds.labels("record").observe(time.perf_counter() - started)
        if change is not None:
            self.changed(change, "own")
        return written

    async def erase(self, subject: str) -> str:
        """Unlink `subject` (raises StoreError); its cached state becomes "erased"."""
        try:
            token, change = await self.store.erase_change(subject)
        except StoreError:
            self.metrics.store_errors.labels("erase").inc()
            raise
        self.changed(change, "own")
        return token

    def changed(self, change: Change, via: str) -> None:
        """Apply a change (own write, or heard through the feed `via` notify/poll/resync)."""
        if self.cache.apply(change):
            self.metrics.store_changes.labels(via).inc()
        for callback in self.on_change:
            callback(change)

    # -- lifecycle ------------------------------------------------------------------------

    async def close(self) -> None:
        """Cancel background fetches (the store is closed by its owner)."""
        self._closed = True
        pending = list(self._pending.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._pending.clear()
