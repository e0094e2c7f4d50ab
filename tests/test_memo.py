"""gateway.memo: bounded, first in first out, a plain lookup on a hit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.memo import Memo


def test_hit_miss_and_replace() -> None:
    m: Memo[str, int] = Memo(2)
    assert m.get("a") is None
    assert m.put("a", 1) == 1 and m.get("a") == 1
    m.put("a", 2)
    assert m.get("a") == 2 and len(m) == 1


def test_the_oldest_entry_goes_when_full() -> None:
    m: Memo[str, int] = Memo(2)
    m.put("a", 1)
    m.put("b", 2)
    m.put("c", 3)
    assert (m.get("a"), m.get("b"), m.get("c")) == (None, 2, 3)
    m.clear()
    assert len(m) == 0


@given(st.lists(st.integers(0, 50)), st.integers(1, 8))
def test_never_more_than_maxsize(keys: list[int], size: int) -> None:
    m: Memo[int, int] = Memo(size)
    for k in keys:
        m.put(k, k * 2)
        assert len(m) <= size and m.get(k) == k * 2


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Memo(0)
