"""gateway.consent.tcf_bits: the fields of one base64url segment."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.consent import tcf_bits
from gateway.consent.tcf_bits import BitReader, IdSet, id_range, ids_of, letters, split_fields
from gateway.errors import TCFError


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _bits_of(segment: str) -> str:
    """The segment's bits as '0'/'1' text, 6 per character (the reference reading)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(format(alphabet.index(c), "06b") for c in segment)


@given(st.binary(min_size=1, max_size=900), st.lists(st.integers(0, 40), max_size=200))
def test_fields_are_the_segments_bits_read_in_order(data: bytes, widths: list[int]) -> None:
    """Read as one int (segments up to ONE_INT_BITS) or byte by byte (longer ones): each
    field is the next `width` bits, and reading past the end is "truncated"."""
    segment = _segment(data)
    bits = _bits_of(segment)
    reader, pos = BitReader(segment), 0
    for width in widths:
        if pos + width > len(bits):
            with pytest.raises(TCFError, match="truncated"):
                reader.read(width)
            break
        assert reader.read(width) == int(bits[pos : pos + width] or "0", 2)
        pos += width
        assert reader.left == len(bits) - pos


@given(st.binary(min_size=1, max_size=300), st.lists(st.integers(0, 40), max_size=60))
def test_the_one_int_and_the_byte_readings_agree(data: bytes, widths: list[int]) -> None:
    segment = _segment(data)
    as_int = BitReader(segment)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(tcf_bits, "ONE_INT_BITS", 0)
        by_bytes = BitReader(segment)
    assert as_int._int is not None and by_bytes._int is None
    for width in widths:
        try:
            expected = as_int.read(width)
        except TCFError:
            with pytest.raises(TCFError):
                by_bytes.read(width)
            break
        assert by_bytes.read(width) == expected


@pytest.mark.parametrize(
    ("segment", "error"),
    [
        ("", "empty segment"),
        ("AA=", "bad padding"),  # padding that does not complete a 4-character group
        ("AAAA=", "bad padding"),
        ("A===", "bad padding"),
        ("==", "bad padding"),
        ("AA+A", "not base64url"),  # standard base64's letters are not base64url's
        ("AA/A", "not base64url"),
        ("AAé", "not base64url"),
        ("AA A", "not base64url"),
    ],
)
def test_malformed_segments_are_refused(segment: str, error: str) -> None:
    with pytest.raises(TCFError, match=error):
        BitReader(segment)


def test_padding_is_accepted_and_not_read() -> None:
    assert BitReader("AAA=").left == 18
    assert BitReader("AA==").left == 12


@pytest.mark.parametrize(
    ("value", "width", "ids"),
    [
        (0, 24, frozenset()),
        (0b1, 24, frozenset({24})),
        (0b1 << 23, 24, frozenset({1})),
        (0b101, 3, frozenset({1, 3})),
        ((1 << 12) - 1, 12, frozenset(range(1, 13))),
    ],
)
def test_ids_of_a_bitfield(value: int, width: int, ids: frozenset[int]) -> None:
    assert ids_of(value, width) == ids


def test_letters() -> None:
    assert letters(4, 13) == "EN"
    assert letters(0, 25) == "AZ"
    with pytest.raises(TCFError, match="letter out of range"):
        letters(26, 0)


def test_split_fields() -> None:
    assert split_fields(0b101_0001_1, (3, 4, 1)) == [0b101, 0b0001, 0b1]
    assert split_fields(0, (6, 6)) == [0, 0]


# --- IdSet: ids as the bits of an int, a set like any other ----------------------------------

_IDS = st.frozensets(st.integers(1, 70_000), max_size=60)


@given(_IDS, _IDS)
def test_an_id_set_is_the_set_of_its_ids(a: frozenset[int], b: frozenset[int]) -> None:
    ia, ib = IdSet._from_iterable(a), IdSet._from_iterable(b)
    assert list(ia) == sorted(a) and len(ia) == len(a) and bool(ia) == bool(a)
    assert ia == a and a == ia and (ia == ib) == (a == b)
    assert hash(ia) == hash(a)  # usable beside frozensets as keys
    assert all(i in ia for i in a) and 0 not in ia and -1 not in ia
    assert (ia & ib) == (a & b) and (ia | ib) == (a | b) and (ia - ib) == (a - b)
    assert (ia <= ib) == (a <= b)


@given(st.integers(1, 64), st.data())
def test_ids_of_a_field_are_its_set_bits_first_bit_first(width: int, data: st.DataObject) -> None:
    value = data.draw(st.integers(0, (1 << width) - 1))
    expected = {k for k in range(1, width + 1) if format(value, f"0{width}b")[k - 1] == "1"}
    assert ids_of(value, width) == expected


@given(st.integers(1, 65535), st.integers(0, 300))
def test_id_range(start: int, extra: int) -> None:
    end = min(65535, start + extra)
    assert IdSet(id_range(start, end)) == set(range(start, end + 1))


def test_an_id_set_has_no_id_zero_and_shows_its_ids() -> None:
    assert IdSet(0b111) == {1, 2}
    assert repr(IdSet(0b110)) == "IdSet([1, 2])"
