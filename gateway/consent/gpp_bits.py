"""The bit-level encoding of GPP sections: the data types the spec and iabgpp-es define.

A section's text is base64url; each character is 6 bits, read forward once by `Bits`
(Int(n), Boolean, Bitfield(n), Fibonacci integers). On top of it, the range types of
tcfcav1 (Fibonacci range, the legacy Int(16) range, OptimizedRange, N-ArrayOfRanges),
String(2) letters and the Datetime (deciseconds) as ISO 8601.

Every read raises `GPPError` (`Truncated` when the bits run out) with a short reason
naming the section, never quoting the input. Work is linear in the input: each character
becomes 6 bits once, every read moves forward and costs what it reads, Fibonacci code
words are at most 32 bits long, and range entries may expand to at most `_MAX_RANGE_IDS`
ids per segment reading.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from gateway.errors import GPPError

__all__ = [
    "Bits",
    "Truncated",
    "iso",
    "letters",
    "optimized_range",
    "pub_restrictions",
]

#: longest Fibonacci code word read, terminator included (values up to about 3.5 million)
_MAX_FIB_BITS: Final = 32
#: vendor ids are Int(16) in every form of OptimizedRange
_MAX_VENDOR_ID: Final = 0xFFFF
#: range entries of one segment may expand to this many ids in all (a few bits can name
#: 65535 ids; this bounds the output, and so the work, per input bit)
_MAX_RANGE_IDS: Final = 1 << 18

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SEXTETS: Final = {c: f"{i:06b}" for i, c in enumerate(_ALPHABET)}
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")


def _fibonacci(n: int) -> tuple[int, ...]:
    numbers = [1, 2]
    while len(numbers) < n:
        numbers.append(numbers[-1] + numbers[-2])
    return tuple(numbers)


#: Fibonacci numbers F(2), F(3), ...: the weight of each bit of a code word
_FIB: Final = _fibonacci(_MAX_FIB_BITS)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# --- bits -----------------------------------------------------------------------------


class Truncated(GPPError):
    """The bits ran out (internal: a cut-short PubRestrictions field is tolerated)."""


class Bits:
    """A forward-only reader over the bits of one base64url segment (6 bits a character)."""

    __slots__ = ("_bits", "_budget", "_where", "pos")

    def __init__(self, text: str, where: str) -> None:
        if not _B64URL_RE.fullmatch(text):
            raise GPPError(f"{where}: not base64url")
        self._bits = "".join([_SEXTETS[c] for c in text])
        self._where = where
        self._budget = _MAX_RANGE_IDS
        self.pos = 0

    @property
    def where(self) -> str:
        return self._where

    def __len__(self) -> int:
        return len(self._bits)

    def take(self, n: int) -> str:
        end = self.pos + n
        if end > len(self._bits):
            raise Truncated(f"{self._where}: truncated")
        bits = self._bits[self.pos : end]
        self.pos = end
        return bits

    def uint(self, n: int) -> int:
        return int(self.take(n), 2)

    def flag(self) -> bool:
        return self.take(1) == "1"

    def bitfield(self, n: int) -> tuple[bool, ...]:
        return tuple(bit == "1" for bit in self.take(n))

    def fib(self) -> int:
        """A Fibonacci code word: Zeckendorf bits, least significant first, then a `1`."""
        # The first `11` ends the word: a Zeckendorf representation has no two 1s in a row.
        end = self._bits.find("11", self.pos, self.pos + _MAX_FIB_BITS)
        if end < 0:
            if len(self._bits) - self.pos <= _MAX_FIB_BITS:
                raise Truncated(f"{self._where}: truncated")
            raise GPPError(f"{self._where}: Fibonacci integer too large")
        value = 0
        for weight, bit in zip(_FIB, self._bits[self.pos : end + 1], strict=False):
            if bit == "1":
                value += weight
        self.pos = end + 2
        return value

    def spend(self, ids: int) -> None:
        """Account for `ids` more ids from range entries; GPPError past the budget."""
        self._budget -= ids
        if self._budget < 0:
            raise GPPError(f"{self._where}: too many ids")


def _fib_len(value: int) -> int:
    """Length of the Fibonacci code word of `value` >= 1, terminator included."""
    return bisect.bisect_right(_FIB, value) + 1


# --- ranges ---------------------------------------------------------------------------
#
# iabgpp-es decodes tcfcav1's vendor fields twice when it must: it takes an interpretation
# only if re-encoding the decoded values reproduces the bits, i.e. if its own encoder could
# have written them. The readers below report that "canonical" property from the structure
# they read, without re-encoding (an encoder merges adjacent ids into one group entry,
# writes groups only for two ids or more, picks the shorter of range and bitfield, and
# writes as MaxId the last id).


def _fib_range(bits: Bits, max_value: int) -> tuple[list[int], bool]:
    """A Fibonacci range (Int(12) count, then entries) and whether it is canonical."""
    count = bits.uint(12)
    ids: list[int] = []
    canonical = True
    previous = 0
    for i in range(count):
        group = bits.flag()
        start = previous + bits.fib()
        if i and start == previous + 1:
            canonical = False  # touches the entry before: an encoder writes one group
        end = start + bits.fib() if group else start
        if end > max_value:
            raise GPPError(f"{bits.where}: id out of range")
        bits.spend(end - start + 1)
        ids.extend(range(start, end + 1))
        previous = end
    return ids, canonical


def _fixed_range(bits: Bits) -> tuple[list[int], bool]:
    """An Int(16) range (the pre-Fibonacci form) as es reads it, and whether it is canonical.

    Entries are taken as written: out of order, repeated, or (end < start) empty.
    """
    count = bits.uint(12)
    ids: list[int] = []
    canonical = True
    previous: int | None = None
    for _ in range(count):
        group = bits.flag()
        start = bits.uint(16)
        end = bits.uint(16) if group else start
        if group and end <= start:
            canonical = False
        # An encoder sorts the ids and splits runs where the next id is not one more: the
        # next entry starts after a gap, or repeats the id it follows.
        if previous is not None and not (start == previous or start >= previous + 2):
            canonical = False
        if end >= start:
            bits.spend(end - start + 1)
            ids.extend(range(start, end + 1))
        previous = end
    return ids, canonical


def _range_length(ids: Sequence[int], fib: bool) -> int:
    """Bits of the range form an encoder would write for ascending, distinct `ids`."""
    length = 12
    previous = 0
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j] + 1 == ids[j + 1]:
            j += 1
        if fib:
            length += 1 + _fib_len(ids[i] - previous)
            if j > i:
                length += _fib_len(ids[j] - ids[i])
        else:
            length += 33 if j > i else 17
        previous = ids[j]
        i = j + 1
    return length


def optimized_range(bits: Bits, fib: bool) -> tuple[list[int], bool]:
    """An OptimizedRange: MaxId Int(16), IsRange, then a range or a MaxId-bit bitfield."""
    max_id = bits.uint(16)
    if bits.flag():
        start = bits.pos
        if fib:
            ids, canonical = _fib_range(bits, _MAX_VENDOR_ID)
        else:
            ids, canonical = _fixed_range(bits)
        last = ids[-1] if ids else 0
        return ids, canonical and max_id == last and bits.pos - start <= max_id
    field = bits.take(max_id)
    ids = [i + 1 for i, bit in enumerate(field) if bit == "1"]
    last = ids[-1] if ids else 0
    return ids, max_id == last and _range_length(ids, fib) > max_id


def pub_restrictions(bits: Bits, fib: bool) -> tuple[list[dict[str, object]], bool]:
    """N-ArrayOfRanges(6, 2): Int(12) count, then key, type and ids per entry."""
    count = bits.uint(12)
    entries: list[dict[str, object]] = []
    canonical = True
    for _ in range(count):
        key = bits.uint(6)
        kind = bits.uint(2)
        # es's legacy encoder wrote plain Int(16) ranges here, not OptimizedRanges
        ids, ok = optimized_range(bits, True) if fib else _fixed_range(bits)
        canonical = canonical and ok
        entries.append({"key": key, "type": kind, "ids": ids})
    return entries, canonical


# --- field helpers --------------------------------------------------------------------


def iso(deciseconds: int) -> str:
    """ISO 8601 UTC, as `tcf` writes times: a tenth only when it is not zero."""
    seconds, tenths = divmod(deciseconds, 10)
    moment = _EPOCH + timedelta(seconds=seconds)
    fraction = f".{tenths}" if tenths else ""
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}{fraction}Z"


def letters(bits: Bits) -> tuple[str, bool]:
    """String(2) as es reads it (6-bit letters, 63 = space, trimmed), and if canonical."""
    first, second = bits.uint(6), bits.uint(6)
    text = "".join(" " if code == 63 else chr(code + 65) for code in (first, second))
    # es pads on the right when it encodes: a leading space before a letter is not its own
    return text.strip(" "), not (first == 63 and second != 63)
