"""gateway.bodies: content codings decoded once, bounded, and written back alike."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import brotli
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.bodies import MAX_DECODED, decode, encode, encodings
from gateway.errors import BodyCorrupt, BodyEncodingUnknown, BodyTooLarge

DOC = b'{"events":[{"device_id":"d1","event_type":"Search","ip":"203.0.113.7"}]}'


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("header", "codings"),
    [
        ("gzip", ("gzip",)),
        ("GZip", ("gzip",)),
        ("identity", ()),
        ("", ()),
        ("gzip, br", ("gzip", "br")),
        ("deflate,identity", ("deflate",)),
    ],
)
def test_encodings(header: str, codings: tuple[str, ...]) -> None:
    assert encodings([("Content-Type", "x"), ("Content-Encoding", header)]) == codings


@pytest.mark.parametrize(
    ("codings", "body"),
    [
        (("gzip",), gzip.compress(DOC)),
        (("x-gzip",), gzip.compress(DOC)),
        (("deflate",), zlib.compress(DOC)),
        (("deflate",), raw_deflate(DOC)),  # what some clients send as "deflate"
        (("br",), brotli.compress(DOC)),
        (("gzip", "br"), brotli.compress(gzip.compress(DOC))),
        (("gzip",), gzip.compress(DOC[:20]) + gzip.compress(DOC[20:])),  # RFC 1952 members
    ],
    ids=["gzip", "x-gzip", "deflate-zlib", "deflate-raw", "br", "gzip-then-br", "gzip-members"],
)
def test_decode(codings: tuple[str, ...], body: bytes) -> None:
    assert decode(body, codings, MAX_DECODED) == DOC


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_the_limit_is_exact(coding: str) -> None:
    body = encode(bytes(1000), (coding,))
    assert decode(body, (coding,), 1000) == bytes(1000)
    with pytest.raises(BodyTooLarge):
        decode(body, (coding,), 999)


@pytest.mark.parametrize("codings", [("gzip",), ("deflate",), ("br",), ("gzip", "br")])
def test_encode_is_what_decode_undoes(codings: tuple[str, ...]) -> None:
    assert decode(encode(DOC, codings), codings, MAX_DECODED) == DOC


@pytest.mark.parametrize(
    ("codings", "body"),
    [
        (("gzip",), DOC),  # the bug of issue 10: already plain, labelled gzip
        (("gzip",), gzip.compress(DOC)[:-6]),  # truncated
        (("gzip",), gzip.compress(DOC) + b"trailing"),
        (("deflate",), b"\x00not deflate at all"),
        (("br",), b"\xff\xff\xff\xff"),
        (("br",), brotli.compress(DOC)[:-2]),
    ],
    ids=["plain-as-gzip", "truncated", "trailing", "bad-deflate", "bad-br", "truncated-br"],
)
def test_corrupt_bodies_are_refused(codings: tuple[str, ...], body: bytes) -> None:
    with pytest.raises(BodyCorrupt):
        decode(body, codings, MAX_DECODED)


def test_an_unknown_coding_is_refused() -> None:
    with pytest.raises(BodyEncodingUnknown):
        decode(b"x", ("zstd",), MAX_DECODED)
    with pytest.raises(BodyEncodingUnknown):
        encode(b"x", ("compress",))


BOMB = 64 * 1024 * 1024  # 64 MiB of zeros: a few KiB compressed


@pytest.mark.parametrize(
    ("codings", "body"),
    [
        (("gzip",), gzip.compress(bytes(BOMB))),
        (("deflate",), zlib.compress(bytes(BOMB))),
        (("br",), brotli.compress(bytes(BOMB))),
    ],
    ids=["gzip", "deflate", "br"],
)
def test_a_compression_bomb_stops_at_the_limit(codings: tuple[str, ...], body: bytes) -> None:
    assert len(body) < 256 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge):
            decode(body, codings, 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # bounded memory: it stopped near the 1 MiB limit instead of inflating 64 MiB first
    assert peak < 8 * 1024 * 1024


@given(st.binary(max_size=2000), st.sampled_from([("gzip",), ("deflate",), ("br",)]))
def test_round_trip(data: bytes, codings: tuple[str, ...]) -> None:
    assert decode(encode(data, codings), codings, MAX_DECODED) == data


@given(st.binary(max_size=300), st.sampled_from([("gzip",), ("deflate",), ("br",), ("x",)]))
def test_decode_raises_only_its_own_errors(data: bytes, codings: tuple[str, ...]) -> None:
    try:
        decode(data, codings, 4096)
    except (BodyCorrupt, BodyTooLarge, BodyEncodingUnknown):
        pass
