"""Request bodies and their `Content-Encoding`: decoded once, bounded, re-encoded alike.

SDKs compress what they send (PostHog and Amplitude gzip, Segment's batch gzip or
brotli). The gateway's server reads bodies exactly as sent (aiohttp's automatic
decompression is off: see `app.build_app`), so `Facts.body` is what the visitor's
browser sent and `Content-Encoding` still describes it. When a strip must look inside,
`decode` gives the plain bytes; when the strip changed them, `encode` puts them back in
the same encoding, so the body that leaves always agrees with the headers that leave.

- `encodings(headers)`: the codings applied, in order (`identity` and blanks dropped).
- `decode(body, codings, limit)`: undo them, last first. Raises `BodyCorrupt` for a
  body that is not what its header says, `BodyTooLarge` for one that inflates past
  `limit` (a compression bomb: work and memory stay bounded by `limit`), and
  `BodyEncodingUnknown` for a coding the gateway cannot read.
- `encode(plain, codings)`: apply them again.

Supported: `gzip` (and `x-gzip`; one member or several, RFC 1952 §2.2), `deflate`
(zlib-wrapped, and the raw deflate some clients send under that name), `br`. Pure apart
from CPU.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from typing import Final

import brotli

from gateway.errors import BodyCorrupt, BodyEncodingUnknown, BodyTooLarge

__all__ = ["CODINGS", "MAX_DECODED", "decode", "encode", "encodings"]

#: the largest body the gateway decompresses (a compression bomb is refused past it)
MAX_DECODED: Final = 8 * 1024 * 1024
#: the content codings the gateway reads and writes
CODINGS: Final = frozenset({"gzip", "x-gzip", "deflate", "br"})
#: chunk fed to a decompressor at a time: bounds the work between limit checks
_STEP: Final = 64 * 1024


def encodings(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The content codings of a body, in the order they were applied (RFC 9110 8.4)."""
    return tuple(
        t
        for name, value in headers
        if name.lower() == "content-encoding"
        for t in (part.strip().lower() for part in value.split(","))
        if t not in ("", "identity")
    )


def decode(body: bytes, codings: tuple[str, ...], limit: int) -> bytes:
    """`body` with `codings` undone (the last applied first), at most `limit` bytes.

    Raises BodyEncodingUnknown, BodyCorrupt or BodyTooLarge (see the module doc).
    """
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, zlib.MAX_WBITS | 16, limit)
        elif coding == "deflate":
            # RFC 9110 says zlib-wrapped; some clients send raw deflate under this name.
            try:
                body = _inflate(body, zlib.MAX_WBITS, limit)
            except BodyCorrupt:
                body = _inflate(body, -zlib.MAX_WBITS, limit)
        elif coding == "br":
            body = _unbrotli(body, limit)
        else:
            raise BodyEncodingUnknown("a content encoding the gateway cannot read")
    return body


def encode(plain: bytes, codings: tuple[str, ...]) -> bytes:
    """`plain` with `codings` applied in order: what `decode` undoes."""
    for coding in codings:
        if coding in ("gzip", "x-gzip"):
            plain = gzip.compress(plain, mtime=0)
        elif coding == "deflate":
            plain = zlib.compress(plain)
        elif coding == "br":
            plain = brotli.compress(plain)
        else:
            raise BodyEncodingUnknown("a content encoding the gateway cannot write")
    return plain


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    out: list[bytes] = []
    size = 0
    pending = data
    inflater = zlib.decompressobj(wbits)
    try:
        while True:
            # Bounded output per call: a few KiB of deflate can stand for gigabytes.
            chunk = inflater.decompress(pending, limit + 1 - size)
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge("request body too large once decompressed")
            out.append(chunk)
            if inflater.eof:
                pending = inflater.unused_data
                if not pending or wbits < 0 or wbits <= zlib.MAX_WBITS:
                    break
                # RFC 1952 §2.2: a gzip body may be several members one after another
                inflater = zlib.decompressobj(wbits)
                continue
            pending = inflater.unconsumed_tail
            if not pending:
                break  # the input ran out below the cap: all the output there is
    except zlib.error:
        raise BodyCorrupt("request body does not match its Content-Encoding") from None
    if not inflater.eof or inflater.unused_data:
        # truncated, or trailing bytes after the stream: not what the header says
        raise BodyCorrupt("request body does not match its Content-Encoding")
    return b"".join(out)


def _unbrotli(data: bytes, limit: int) -> bytes:
    decompressor = brotli.Decompressor()
    out: list[bytes] = []
    size = 0
    try:
        for start in range(0, len(data), _STEP):
            # Bounded output per call: a few bytes of brotli can stand for gigabytes.
            chunk = decompressor.process(data[start : start + _STEP], output_buffer_limit=_STEP)
            while True:
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge("request body too large once decompressed")
                out.append(chunk)
                if decompressor.can_accept_more_data():
                    break
                chunk = decompressor.process(b"", output_buffer_limit=_STEP)
        finished = decompressor.is_finished()
    except brotli.error:
        raise BodyCorrupt("request body does not match its Content-Encoding") from None
    if not finished:
        raise BodyCorrupt("request body does not match its Content-Encoding")
    return b"".join(out)
