"""The bits of one base64url segment of a TC string, read front to back.

A TCF v2 string is dot-separated segments of base64url text, each a run of big-endian
unsigned fields (IAB TCF v2 "Consent string and vendor list formats"). `BitReader` reads
them; the helpers turn fields into what `gateway.consent.tcf` returns: id sets, the two
letters of a language or country code, and a run of fields read at once and split.
Every malformed input is a `TCFError`.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from itertools import compress
from typing import Final

from gateway.errors import TCFError

__all__ = [
    "EPOCH",
    "ONE_INT_BITS",
    "BitReader",
    "IdSet",
    "id_range",
    "ids_of",
    "letters",
    "split_fields",
]

_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
#: base64url's two letters as standard base64's
_TO_STD: Final = str.maketrans("-_", "+/")
_BIT_FLAGS: Final = bytes.maketrans(b"01", b"\x00\x01")
#: TCF times count deciseconds from here
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

#: segments up to this many bits are read as one int (about 680 base64 characters)
ONE_INT_BITS = 4096


class BitReader:
    """Reads big-endian unsigned fields from one segment, front to back, never twice."""

    __slots__ = ("_data", "_int", "_size", "_total", "pos")

    def __init__(self, segment: str) -> None:
        if not segment:
            raise TCFError("empty segment")
        chars = segment.rstrip("=")
        padding = len(segment) - len(chars)
        # `=` only as base64 padding: 1 or 2 of them, completing a 4-character group.
        if padding and (padding > 2 or len(segment) % 4 or not chars):
            raise TCFError("bad padding")
        # ASCII only: [0-9] and [A-Za-z] do not match other scripts' letters or digits.
        if not _B64URL_RE.fullmatch(chars):
            raise TCFError("not base64url")
        # 6 bits per character whatever the length: fill to whole 4-character groups with
        # `A` (zero bits), which are not counted in `_size`, so reading them is "truncated".
        # (binascii directly: base64.urlsafe_b64decode's wrappers cost more than decoding)
        self._data = binascii.a2b_base64((chars + "A" * (-len(chars) % 4)).translate(_TO_STD))
        self._size = 6 * len(chars)
        self._total = 8 * len(self._data)
        # A segment as one int: a field is then one shift and one mask. Only for segments
        # of real-world size; a shift costs O(segment), so a huge one keeps reading bytes.
        self._int = int.from_bytes(self._data, "big") if self._total <= ONE_INT_BITS else None
        self.pos = 0

    def read(self, width: int) -> int:
        """The next `width` bits as an unsigned int; TCFError("truncated") past the end."""
        start = self.pos
        end = start + width
        if end > self._size:
            raise TCFError("truncated")
        self.pos = end
        whole = self._int
        if whole is not None:
            return (whole >> (self._total - end)) & ((1 << width) - 1)
        last = (end + 7) >> 3
        # Only the bytes holding these bits are touched: O(width), not O(segment).
        chunk = int.from_bytes(self._data[start >> 3 : last], "big")
        return (chunk >> ((last << 3) - end)) & ((1 << width) - 1)

    @property
    def left(self) -> int:
        """Bits not read yet."""
        return self._size - self.pos

    def read_bool(self) -> bool:
        return self.read(1) == 1

    def read_ids(self, width: int) -> IdSet:
        """A `width`-bit field where bit k-1 set means id k is in the set."""
        # '0'/'1' text -> 0/1 bytes -> the ids whose byte is 1: O(width), in C.
        return ids_of(self.read(width), width)

    def read_letters(self) -> str:
        """Two 6-bit letters, A=0 ... Z=25 (ConsentLanguage, PublisherCC)."""
        first, second = self.read(6), self.read(6)
        return letters(first, second)

    def read_time(self) -> datetime:
        """A 36-bit count of deciseconds since the Unix epoch, as a UTC datetime."""
        return EPOCH + timedelta(milliseconds=100 * self.read(36))


def split_fields(value: int, widths: tuple[int, ...]) -> list[int]:
    """`value`, `sum(widths)` bits wide, cut into fields of `widths`, first field first."""
    out = []
    for width in reversed(widths):
        out.append(value & ((1 << width) - 1))
        value >>= width
    out.reverse()
    return out


def letters(first: int, second: int) -> str:
    if first > 25 or second > 25:
        raise TCFError("letter out of range")
    return chr(65 + first) + chr(65 + second)


class IdSet(AbstractSet[int]):
    """A set of 1-based ids as the bits of one int (bit k: id k), as TC strings carry them.

    A vendor section is a bitfield or ranges over up to 65,535 ids: kept as bits it is
    built with a few big-int operations and asked about by a shift, where a frozenset
    was built id by id (IAB's own decoder keeps bit vectors too). Iterates in ascending
    order; equal to (and hashed as) any set of the same ids, a frozenset included.
    """

    __slots__ = ("_bits", "_hash_value")

    def __init__(self, bits: int = 0) -> None:
        self._bits = bits & ~1  # id 0 does not exist
        self._hash_value: int | None = None

    @classmethod
    def _from_iterable(cls, ids: Iterable[int]) -> IdSet:  # type: ignore[override]
        # (the results of &, |, - between id sets: sets of ints again)
        bits = 0
        for i in ids:
            bits |= 1 << i
        return cls(bits)

    @property
    def bits(self) -> int:
        return self._bits

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and value > 0 and (self._bits >> value) & 1 == 1

    def __iter__(self) -> Iterator[int]:
        if not self._bits:
            return iter(())
        flags = format(self._bits, "b")[::-1].encode("ascii").translate(_BIT_FLAGS)
        return compress(range(len(flags)), flags)

    def __len__(self) -> int:
        return self._bits.bit_count()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IdSet):
            return self._bits == other._bits
        return super().__eq__(other)

    def __hash__(self) -> int:
        if self._hash_value is None:
            self._hash_value = self._hash()
        return self._hash_value

    def __repr__(self) -> str:
        return f"IdSet({sorted(self)!r})"


def ids_of(value: int, width: int) -> IdSet:
    """The ids of a `width`-bit field whose first (most significant) bit is id 1."""
    if not value:
        return IdSet()
    # reversed, the field's first bit is bit 0; shifted once, id k is bit k
    return IdSet(int(format(value, f"0{width}b")[::-1], 2) << 1)


def id_range(start: int, end: int) -> int:
    """The bits of ids `start` to `end`, both included."""
    return ((1 << (end - start + 1)) - 1) << start
