"""`Memo`: a bounded dict for the answers of pure functions on the request path.

A visitor's hits repeat their inputs (the same cookie, the same consent signals, the same
endpoint path), so the hot path keeps what pure functions answered for them: a hit is one
dict lookup. Bounded by entries; when full, the oldest entry goes (first in, first out:
no bookkeeping on a hit, and a hot key that was evicted comes back on its next miss).
Keys hold only what the function reads, so an answer can never be handed to a request
it was not computed for; callers whose answers also depend on time put the time-derived
facts (a cookie expired or not) in the key, never the clock's value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Memo"]

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    __slots__ = ("_data", "get", "maxsize")

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._data: dict[K, V] = {}
        # A hit is the dict's own method, called from C: a request makes about eight,
        # and a Python method around it cost more than the lookup.
        self.get: Callable[[K], V | None] = self._data.get

    def put(self, key: K, value: V) -> V:
        data = self._data
        if key not in data and len(data) >= self.maxsize:
            del data[next(iter(data))]
        data[key] = value
        return value

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
