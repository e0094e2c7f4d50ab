"""IAB Global Privacy Platform (GPP) strings and the US Privacy string (DESIGN §2).

A GPP string is `<header>~<section>~…`: the header (Type 3, Version 1, then the
section ids as a Fibonacci range) names the sections, which follow in that order.
Each section decodes to a mapping of its fields, named as in the reference library
iabgpp-es 3.2.0 (`SaleOptOut` -> `sale_opt_out`, `SensitiveDataProcessing` ->
`sensitive_data_processing`, ...), so that `GPPString.to_json()` reads

    {"header": {"version": 1, "section_ids": [7]},
     "sections": {"usnat": {"version": 1, "sharing_notice": 1, ..., "gpc": false}}}

Decoded sections (api prefix, id):

- `tcfeuv2` (2): the TC string, decoded by `gateway.consent.tcf` (its `to_json()`);
- `tcfcav1` (5): IAB Canada TCF, core + publisher purposes + disclosed vendors. Vendor
  lists are OptimizedRanges; iabgpp-es wrote their range form with Int(16) ids before
  it switched to the spec's Fibonacci ids, and both forms are read exactly as es 3.2.0
  reads them (see `_decode_tcfca`);
- `uspv1` (6): the four-character US Privacy string (`decode_us_privacy`);
- `usnat` (7): layout chosen by bit length, not Version: a core of at most 66 bits has
  12 sensitive-data categories and 2 child consents (the Dec 2022 layout), a longer one
  16 and 3. Lists are always returned at 16/3, the missing entries 0 (not applicable);
- every US state section of iabgpp-es 3.2.0, `usca` (8) to `usri` (27), field by field.

Sections with a GPC sub-section (`core.gpc`: SubsectionType Int(2) = 1, then Gpc) report
`gpc_segment_included` and `gpc` (false when not included); `usin`, `usky` and `usri`
report `sensitive_data_consent_segment_included` and `sensitive_data_processing` (all 0
when the optional segment is absent), as es does.

Integer fields are reported as encoded, even a reserved value such as 3: judging them
is `us_opt_outs`'s job, which counts anything it cannot read as an opt-out. Bits after
the last field (base64 padding, or fields of a later minor version) are ignored.

Contracts: `decode_gpp` and `decode_us_privacy` are pure and total: they return or raise
`GPPError` (with a short `reason` naming the section, never quoting the input), whatever
the input. A section id we do not decode is kept, undecoded, under `str(id)` as
`{"undecoded": true, "raw": "<text>"}`; a known section that does not decode fails the
whole string.

Where es 3.2.0 is laxer, we refuse (a signal read wrongly is worse than none): a
sub-section where the section has none, more than one, or a GPC sub-section whose type is
not 1; a uspv1 section other than `1` and three of `Y`/`N`/`-`; a tcfcav1 section with no
core, a repeated segment, ids above 65535 or Fibonacci code words over 32 bits; an empty
string. es reads none of these in a way its own encoder would have written.

Work is linear in the input, which is capped at `MAX_GPP_LENGTH`: each character becomes
6 bits once, every read moves forward and costs what it reads, Fibonacci code words are at
most 32 bits long, header groups are checked against the number of sections before they
expand, and range entries may expand to at most `_MAX_RANGE_IDS` ids per segment reading
(a tcfcav1 segment is read at most three times, see `_either_range_form`).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Final, Literal

from gateway.consent.tcf import decode_tc_string
from gateway.errors import GPPError, TCFError

__all__ = [
    "MAX_GPP_LENGTH",
    "OPT_OUTS",
    "SECTION_NAMES",
    "GPPString",
    "USPrivacy",
    "applicable",
    "decode_gpp",
    "decode_us_privacy",
    "us_opt_outs",
    "usp_opted_out",
]

#: longer values are refused before any work (16 KiB; real strings are well under 1 KiB)
MAX_GPP_LENGTH: Final = 16 * 1024

#: what `us_opt_outs` can report
OPT_OUTS: Final = frozenset({"sale", "sharing", "targeted_advertising"})

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


class _Truncated(GPPError):
    """The bits ran out (internal: a cut-short PubRestrictions field is tolerated)."""


class _Bits:
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
            raise _Truncated(f"{self._where}: truncated")
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
                raise _Truncated(f"{self._where}: truncated")
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


def _fib_range(bits: _Bits, max_value: int) -> tuple[list[int], bool]:
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


def _fixed_range(bits: _Bits) -> tuple[list[int], bool]:
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


def _optimized_range(bits: _Bits, fib: bool) -> tuple[list[int], bool]:
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


def _pub_restrictions(bits: _Bits, fib: bool) -> tuple[list[dict[str, object]], bool]:
    """N-ArrayOfRanges(6, 2): Int(12) count, then key, type and ids per entry."""
    count = bits.uint(12)
    entries: list[dict[str, object]] = []
    canonical = True
    for _ in range(count):
        key = bits.uint(6)
        kind = bits.uint(2)
        # es's legacy encoder wrote plain Int(16) ranges here, not OptimizedRanges
        ids, ok = _optimized_range(bits, True) if fib else _fixed_range(bits)
        canonical = canonical and ok
        entries.append({"key": key, "type": kind, "ids": ids})
    return entries, canonical


# --- field helpers --------------------------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _iso(deciseconds: int) -> str:
    """ISO 8601 UTC, as `tcf` writes times: a tenth only when it is not zero."""
    seconds, tenths = divmod(deciseconds, 10)
    moment = _EPOCH + timedelta(seconds=seconds)
    fraction = f".{tenths}" if tenths else ""
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}{fraction}Z"


def _letters(bits: _Bits) -> tuple[str, bool]:
    """String(2) as es reads it (6-bit letters, 63 = space, trimmed), and if canonical."""
    first, second = bits.uint(6), bits.uint(6)
    text = "".join(" " if code == 63 else chr(code + 65) for code in (first, second))
    # es pads on the right when it encodes: a leading space before a letter is not its own
    return text.strip(" "), not (first == 63 and second != 63)


# --- tcfcav1 --------------------------------------------------------------------------


def _tcfca_core(text: str, fib: bool, lenient: bool) -> tuple[dict[str, object], bool]:
    bits = _Bits(text, "tcfcav1")
    out: dict[str, object] = {"version": bits.uint(6)}
    out["created"] = _iso(bits.uint(36))
    out["last_updated"] = _iso(bits.uint(36))
    out["cmp_id"] = bits.uint(12)
    out["cmp_version"] = bits.uint(12)
    out["consent_screen"] = bits.uint(6)
    out["consent_language"], canonical = _letters(bits)
    out["vendor_list_version"] = bits.uint(12)
    out["tcf_policy_version"] = bits.uint(6)
    out["use_non_standard_stacks"] = bits.flag()
    out["special_feature_express_consent"] = bits.bitfield(12)
    out["purposes_express_consent"] = bits.bitfield(24)
    out["purposes_implied_consent"] = bits.bitfield(24)
    for name in ("vendor_express_consent", "vendor_implied_consent"):
        ids, ok = _optimized_range(bits, fib)
        canonical = canonical and ok
        # es hands legacy values through its setter, which sorts and drops repeats
        out[name] = ids if fib else sorted(set(ids))
    try:
        out["pub_restrictions"], ok = _pub_restrictions(bits, fib)
    except _Truncated:
        # es tolerates a missing or cut-short PubRestrictions (older strings end before it)
        # but never takes such a reading as its own encoder's output
        if not lenient:
            raise
        out["pub_restrictions"], ok = [], False
    return out, canonical and ok


def _tcfca_disclosed(text: str, fib: bool) -> tuple[dict[str, object], bool]:
    bits = _Bits(text, "tcfcav1")
    out: dict[str, object] = {"disclosed_vendors_segment_type": bits.uint(3)}
    ids, canonical = _optimized_range(bits, fib)
    out["disclosed_vendors"] = ids if fib else sorted(set(ids))
    return out, canonical


def _tcfca_pub_purposes(text: str) -> dict[str, object]:
    bits = _Bits(text, "tcfcav1")
    out: dict[str, object] = {"pub_purposes_segment_type": bits.uint(3)}
    out["pub_purposes_express_consent"] = bits.bitfield(24)
    out["pub_purposes_implied_consent"] = bits.bitfield(24)
    custom = bits.uint(6)
    out["num_custom_purposes"] = custom
    out["custom_purposes_express_consent"] = bits.bitfield(custom)
    out["custom_purposes_implied_consent"] = bits.bitfield(custom)
    return out


def _either_range_form(
    read: Callable[[str, bool, bool], tuple[dict[str, object], bool]], text: str
) -> dict[str, object]:
    """es 3.2.0's order: the Fibonacci reading if its encoder would have written these bits,
    else the legacy Int(16) reading if that one would, else the Fibonacci reading anyway."""
    for fib in (True, False):
        try:
            fields, canonical = read(text, fib, False)
        except GPPError:
            continue
        if canonical:
            return fields
    return read(text, True, True)[0]


_TCFCA_DEFAULTS: Final[Mapping[str, Mapping[str, object]]] = {
    "pub_purposes": {
        "pub_purposes_segment_type": 3,
        "pub_purposes_express_consent": (False,) * 24,
        "pub_purposes_implied_consent": (False,) * 24,
        "num_custom_purposes": 0,
        "custom_purposes_express_consent": (),
        "custom_purposes_implied_consent": (),
    },
    "disclosed": {"disclosed_vendors_segment_type": 1, "disclosed_vendors": ()},
}


def _decode_tcfca(text: str) -> dict[str, object]:
    """tcfcav1: segments told apart by their first 3 bits (core 0, disclosed vendors 1,
    publisher purposes 3); the core is required, each segment at most once, empty
    segments (a trailing `.`) are skipped. Absent segments read as es's defaults."""
    found: dict[str, dict[str, object]] = {}
    for segment in text.split("."):
        if not segment:
            continue
        first = segment[0]
        if "A" <= first <= "H":
            kind = "core"
            fields = _either_range_form(_tcfca_core, segment)
        elif "I" <= first <= "P":
            kind = "disclosed"
            fields = _either_range_form(lambda t, fib, _: _tcfca_disclosed(t, fib), segment)
        elif "Y" <= first <= "Z" or "a" <= first <= "f":
            kind = "pub_purposes"
            fields = _tcfca_pub_purposes(segment)
        else:
            raise GPPError("tcfcav1: unknown segment type")
        if kind in found:
            raise GPPError("tcfcav1: repeated segment")
        found[kind] = fields
    if "core" not in found:
        raise GPPError("tcfcav1: no core segment")
    out = dict(found["core"])
    for kind in ("pub_purposes", "disclosed"):
        out.update(found.get(kind, _TCFCA_DEFAULTS[kind]))
    return out


# --- tcfeuv2 --------------------------------------------------------------------------


def _decode_tcfeu(text: str) -> dict[str, object]:
    """The TC string's fields, as `tcf.TCString.to_json()` writes them."""
    try:
        return decode_tc_string(text).to_json()
    except TCFError as e:
        raise GPPError(f"tcfeuv2: {e.reason}") from e


# --- US sections ----------------------------------------------------------------------

#: (field, bits, count): count 0 is a single Int(bits), else a list of `count` Int(2)
_Field = tuple[str, int, int]


def _i(name: str, bits: int = 2) -> _Field:
    return (_snake(name), bits, 0)


def _l(name: str, count: int) -> _Field:
    return (_snake(name), 2, count)


@dataclass(frozen=True, slots=True)
class _USSpec:
    prefix: str
    core: tuple[_Field, ...]
    #: what may follow the core after a `.`
    sub: Literal["gpc", "sensitive"] | None


_MSPA = (_i("MspaCoveredTransaction"), _i("MspaOptOutOptionMode"), _i("MspaServiceProviderMode"))
_OPT = (_i("SaleOptOut"), _i("TargetedAdvertisingOptOut"))
_NOTICES_SHARING = (
    _i("SharingNotice"),
    _i("SaleOptOutNotice"),
    _i("TargetedAdvertisingOptOutNotice"),
)
_NOTICES_PROCESSING = (
    _i("ProcessingNotice"),
    _i("SaleOptOutNotice"),
    _i("TargetedAdvertisingOptOutNotice"),
)
_SDP = "SensitiveDataProcessing"
_KIDS = "KnownChildSensitiveDataConsents"
_ADPC = _i("AdditionalDataProcessingConsent")
_V = _i("Version", 6)


def _state(
    prefix: str,
    notices: tuple[_Field, ...],
    sdp: int,
    kids: int,
    adpc: bool,
    gpc: bool,
) -> _USSpec:
    """The common state layout: Version, notices, opt-outs, SDP×sdp, children (a scalar
    when kids == 0), AdditionalDataProcessingConsent?, the three MSPA fields."""
    children = _l(_KIDS, kids) if kids else _i(_KIDS)
    core = (_V, *notices, *_OPT, _l(_SDP, sdp), children, *((_ADPC,) if adpc else ()), *_MSPA)
    return _USSpec(prefix, core, "gpc" if gpc else None)


def _mspa_first(prefix: str, kids: bool, sub: Literal["gpc", "sensitive"]) -> _USSpec:
    """The 2025 layout (usmd, usin, usky, usri): MSPA fields first, no Version."""
    core = (
        _i("MspaVersion", 6),
        _i("MspaCoveredTransaction"),
        _i("MspaMode"),
        *_NOTICES_PROCESSING,
        *_OPT,
        *((_i(_KIDS),) if kids else ()),
        _ADPC,
    )
    return _USSpec(prefix, core, sub)


_US_SPECS: Final[Mapping[int, _USSpec]] = {
    8: _USSpec(
        "usca",
        (
            _V,
            _i("SaleOptOutNotice"),
            _i("SharingOptOutNotice"),
            _i("SensitiveDataLimitUseNotice"),
            _i("SaleOptOut"),
            _i("SharingOptOut"),
            _l(_SDP, 9),
            _l(_KIDS, 2),
            _i("PersonalDataConsents"),
            *_MSPA,
        ),
        "gpc",
    ),
    9: _state("usva", _NOTICES_SHARING, sdp=8, kids=0, adpc=False, gpc=False),
    10: _state("usco", _NOTICES_SHARING, sdp=7, kids=0, adpc=False, gpc=True),
    11: _state(
        "usut",
        (*_NOTICES_SHARING, _i("SensitiveDataProcessingOptOutNotice")),
        sdp=8,
        kids=0,
        adpc=False,
        gpc=False,
    ),
    12: _state("usct", _NOTICES_SHARING, sdp=8, kids=3, adpc=False, gpc=True),
    13: _state("usfl", _NOTICES_PROCESSING, sdp=8, kids=3, adpc=True, gpc=False),
    14: _state("usmt", _NOTICES_SHARING, sdp=8, kids=3, adpc=True, gpc=True),
    15: _state("usor", _NOTICES_PROCESSING, sdp=11, kids=3, adpc=True, gpc=True),
    16: _state("ustx", _NOTICES_PROCESSING, sdp=8, kids=0, adpc=True, gpc=True),
    17: _state("usde", _NOTICES_PROCESSING, sdp=9, kids=5, adpc=True, gpc=True),
    18: _state(
        "usia",
        (*_NOTICES_PROCESSING, _i("SensitiveDataOptOutNotice")),
        sdp=8,
        kids=0,
        adpc=False,
        gpc=True,
    ),
    19: _state("usne", _NOTICES_PROCESSING, sdp=8, kids=0, adpc=True, gpc=True),
    20: _state("usnh", _NOTICES_PROCESSING, sdp=8, kids=3, adpc=True, gpc=True),
    21: _state("usnj", _NOTICES_PROCESSING, sdp=10, kids=5, adpc=True, gpc=True),
    22: _state("ustn", _NOTICES_PROCESSING, sdp=8, kids=0, adpc=True, gpc=True),
    23: _state("usmn", _NOTICES_PROCESSING, sdp=8, kids=0, adpc=True, gpc=True),
    24: _mspa_first("usmd", kids=False, sub="gpc"),
    25: _mspa_first("usin", kids=True, sub="sensitive"),
    26: _mspa_first("usky", kids=True, sub="sensitive"),
    27: _mspa_first("usri", kids=True, sub="sensitive"),
}

#: usnat's two core layouts (sensitive-data categories, child consents): chosen by bit length
_USNAT_NOTICES = (
    _V,
    _i("SharingNotice"),
    _i("SaleOptOutNotice"),
    _i("SharingOptOutNotice"),
    _i("TargetedAdvertisingOptOutNotice"),
    _i("SensitiveDataProcessingOptOutNotice"),
    _i("SensitiveDataLimitUseNotice"),
    _i("SaleOptOut"),
    _i("SharingOptOut"),
    _i("TargetedAdvertisingOptOut"),
)
_USNAT_TAIL = (_i("PersonalDataConsents"), *_MSPA)
#: the longest core in the 12/2 layout: 60 bits of fields, padded to 66 (11 characters)
_USNAT_V1_MAX_BITS: Final = 66
_USNAT_SDP, _USNAT_KIDS = 16, 3


def _read_fields(bits: _Bits, fields: Iterable[_Field], out: dict[str, object]) -> None:
    for name, width, count in fields:
        out[name] = bits.uint(width) if not count else tuple(bits.uint(2) for _ in range(count))


def _pad(values: object, size: int) -> tuple[int, ...]:
    assert isinstance(values, tuple)
    return (*values, *(0,) * (size - len(values)))


def _decode_usnat(text: str) -> dict[str, object]:
    core, *subs = text.split(".")
    bits = _Bits(core, "usnat")
    out: dict[str, object] = {}
    _read_fields(bits, _USNAT_NOTICES, out)
    if len(bits) <= _USNAT_V1_MAX_BITS:
        # The Dec 2022 layout (12 categories, 2 child consents), whatever Version says:
        # iabgpp-java writes Version 1 with the 16/3 layout, es writes Version 2.
        _read_fields(bits, (_l(_SDP, 12), _l(_KIDS, 2)), out)
    else:
        _read_fields(bits, (_l(_SDP, _USNAT_SDP), _l(_KIDS, _USNAT_KIDS)), out)
    _read_fields(bits, _USNAT_TAIL, out)
    for name, size in ((_snake(_SDP), _USNAT_SDP), (_snake(_KIDS), _USNAT_KIDS)):
        out[name] = _pad(out[name], size)
    out.update(_gpc("usnat", subs))
    return out


def _gpc(where: str, subs: Sequence[str]) -> dict[str, object]:
    if not subs:
        return {"gpc_segment_included": False, "gpc": False}
    if len(subs) > 1:
        raise GPPError(f"{where}: too many subsections")
    bits = _Bits(subs[0], where)
    if bits.uint(2) != 1:
        raise GPPError(f"{where}: unknown subsection type")
    return {"gpc_segment_included": True, "gpc": bits.flag()}


def _decode_us(spec: _USSpec, text: str) -> dict[str, object]:
    core, *subs = text.split(".")
    out: dict[str, object] = {}
    _read_fields(_Bits(core, spec.prefix), spec.core, out)
    if spec.sub == "gpc":
        out.update(_gpc(spec.prefix, subs))
    elif spec.sub == "sensitive":
        if len(subs) > 1:
            raise GPPError(f"{spec.prefix}: too many subsections")
        sdp: tuple[int, ...] = (0,) * 8
        if subs:
            bits = _Bits(subs[0], spec.prefix)
            sdp = tuple(bits.uint(2) for _ in range(8))
        out["sensitive_data_consent_segment_included"] = bool(subs)
        out[_snake(_SDP)] = sdp
    elif subs:
        raise GPPError(f"{spec.prefix}: unexpected subsection")
    return out


# --- US Privacy -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class USPrivacy:
    """A US Privacy (CCPA) string: `1` then three of `Y`, `N`, `-` (not applicable)."""

    #: always 1
    version: int
    #: explicit notice / opportunity to opt out given
    notice: str
    #: `Y`: the visitor opted out of the sale of personal information
    opt_out_sale: str
    #: the publisher is a signatory of the IAB Limited Service Provider Agreement
    lspa_covered: str

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "notice": self.notice,
            "opt_out_sale": self.opt_out_sale,
            "lspa_covered": self.lspa_covered,
        }


_USP_RE = re.compile(r"1[YN-]{3}")


def decode_us_privacy(value: str) -> USPrivacy:
    """The US Privacy string in `value` (stand-alone, or GPP section 6).

    Exactly four characters: version `1`, then notice, opt-out-of-sale and LSPA, each
    `Y`, `N` or `-` (upper case). Anything else raises GPPError, and nothing else does.
    """
    if not isinstance(value, str) or not _USP_RE.fullmatch(value):
        raise GPPError("uspv1: not a US Privacy string")
    return USPrivacy(1, value[1], value[2], value[3])


def usp_opted_out(usp: USPrivacy) -> bool:
    """True when the visitor opted out of the sale of personal information (`1?Y?`)."""
    return usp.opt_out_sale == "Y"


# --- GPP ------------------------------------------------------------------------------

#: the API prefix of every section id decoded here
SECTION_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        2: "tcfeuv2",
        5: "tcfcav1",
        6: "uspv1",
        7: "usnat",
        **{sid: spec.prefix for sid, spec in _US_SPECS.items()},
    }
)

#: sections whose fields `us_opt_outs` reads
_US_SECTIONS: Final = frozenset({6, 7, *_US_SPECS})


def _freeze(value: object) -> object:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: object) -> object:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class GPPString:
    """A decoded GPP string.

    `sections` maps each section's API prefix (`usnat`, `usca`, `tcfcav1`...) to its
    fields, lists as tuples; a section id not decoded here maps as `str(id)` to
    `{"undecoded": True, "raw": <text>}`. `raw_sections` keeps every section's encoded
    text by id.
    """

    #: the header's Version (always 1)
    version: int
    #: the header's SectionIds, ascending; the sections came in this order
    section_ids: tuple[int, ...]
    sections: Mapping[str, Mapping[str, object]]
    raw_sections: Mapping[int, str]

    def to_json(self) -> dict[str, object]:
        """`{"header": {"version", "section_ids"}, "sections": {prefix: {fields}}}`, JSON-ready."""
        return {
            "header": {"version": self.version, "section_ids": list(self.section_ids)},
            "sections": _thaw(self.sections),
        }


def _decode_section(sid: int, text: str) -> tuple[str, dict[str, object]]:
    if sid in _US_SPECS:
        spec = _US_SPECS[sid]
        return spec.prefix, _decode_us(spec, text)
    if sid == 7:
        return "usnat", _decode_usnat(text)
    if sid == 6:
        return "uspv1", decode_us_privacy(text).to_json()
    if sid == 5:
        return "tcfcav1", _decode_tcfca(text)
    if sid == 2:
        return "tcfeuv2", _decode_tcfeu(text)
    return str(sid), {"undecoded": True, "raw": text}


def decode_gpp(value: str) -> GPPString:
    """The GPP string in `value`, every section we know decoded.

    Raises GPPError, and nothing else whatever `value` holds, when: the value is empty,
    longer than `MAX_GPP_LENGTH` or not base64url where bits are expected; the header is
    not Type 3, Version 1; the number of sections differs from the number of section ids;
    a section is empty; or a known section does not decode (truncated, a subsection where
    none or only GPC may be, an unknown segment...). Linear time in `len(value)`.
    """
    # SECURITY: bound the work an attacker can cause before anything else is done.
    if not isinstance(value, str):
        raise GPPError("not a string")
    if len(value) > MAX_GPP_LENGTH:
        raise GPPError("too long")
    if not value:
        raise GPPError("empty")
    header_text, *texts = value.split("~")
    header = _Bits(header_text, "header")
    if header.uint(6) != 3 or header.uint(6) != 1:
        raise GPPError("header: not a GPP v1 header")
    section_ids = _header_ids(header, len(texts))
    if len(section_ids) != len(texts):
        raise GPPError("header: section count does not match")
    sections: dict[str, object] = {}
    raw: dict[int, str] = {}
    for sid, text in zip(section_ids, texts, strict=True):
        if not text:
            raise GPPError(f"section {sid}: empty")
        name, fields = _decode_section(sid, text)
        sections[name] = fields
        raw[sid] = text
    frozen = _freeze(sections)
    assert isinstance(frozen, Mapping)
    return GPPString(1, tuple(section_ids), frozen, MappingProxyType(raw))


def _header_ids(bits: _Bits, sections: int) -> list[int]:
    """SectionIds: a Fibonacci range; never more ids than there are sections."""
    count = bits.uint(12)
    if count > sections:
        raise GPPError("header: section count does not match")
    ids: list[int] = []
    previous = 0
    for _ in range(count):
        group = bits.flag()
        start = previous + bits.fib()
        end = start + bits.fib() if group else start
        # checked before the ids exist: a group may name millions of them
        if len(ids) + end - start + 1 > sections:
            raise GPPError("header: section count does not match")
        ids.extend(range(start, end + 1))
        previous = end
    return ids


def applicable(gpp: GPPString, gpp_sid: Iterable[int] | None) -> tuple[int, ...]:
    """The section ids in force: those present that `gpp_sid` lists, in string order.

    `gpp_sid` is the request's `gpp_sid` parameter, parsed; None (absent) means every
    section present applies, an empty list means none does.
    """
    if gpp_sid is None:
        return gpp.section_ids
    wanted = set(gpp_sid)
    return tuple(sid for sid in gpp.section_ids if sid in wanted)


# Values counted as opted out. Fail closed: 3 is reserved in every Int(2) field, and a
# value that cannot be read never grants anything.
_OPTED_OUT = frozenset({1, 3})  # 1 = opted out
_NO_NOTICE = frozenset({2, 3})  # 2 = notice not provided: no right to sell/share/target
_OPT_OUT_FIELDS: Final = (
    ("sale", "sale_opt_out", "sale_opt_out_notice"),
    ("sharing", "sharing_opt_out", "sharing_opt_out_notice"),
    ("targeted_advertising", "targeted_advertising_opt_out", "targeted_advertising_opt_out_notice"),
)


def us_opt_outs(gpp: GPPString, section_ids: Iterable[int] | None = None) -> frozenset[str]:
    """Which of `OPT_OUTS` the visitor opted out of, across the US sections present.

    Only sections in `section_ids` are read (all present when None; pass
    `applicable(gpp, gpp_sid)`). Per section: SaleOptOut, SharingOptOut and
    TargetedAdvertisingOptOut of 1 (or the reserved 3) opt out of sale, sharing and
    targeted advertising; so does the matching opt-out notice at 2, "not provided"
    (consent-signals §2.4: without notice there is no right to do it), or 3; Gpc true
    opts out of all three; uspv1 OptOutSale `Y` opts out of sale and sharing. Sections
    that are not US sections (tcfeuv2, tcfcav1, unknown ids) are ignored.
    """
    scope = gpp.section_ids if section_ids is None else set(section_ids)
    out: set[str] = set()
    for sid in gpp.section_ids:
        if sid not in scope or sid not in _US_SECTIONS:
            continue
        fields = gpp.sections[SECTION_NAMES[sid]]
        if sid == 6:
            if fields.get("opt_out_sale") == "Y":
                out |= {"sale", "sharing"}
            continue
        if fields.get("gpc") is True:
            return OPT_OUTS
        for opt_out, choice, notice in _OPT_OUT_FIELDS:
            if fields.get(choice) in _OPTED_OUT or fields.get(notice) in _NO_NOTICE:
                out.add(opt_out)
    return frozenset(out)
