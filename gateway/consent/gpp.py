"""IAB Global Privacy Platform (GPP) strings (DESIGN §2): the container, and what its US
sections say about opting out.

A GPP string is `<header>~<section>~…`: the header (Type 3, Version 1, then the
section ids as a Fibonacci range) names the sections, which follow in that order.
Each section decodes to a mapping of its fields, named as in the reference library
iabgpp-es 3.2.0 (`SaleOptOut` -> `sale_opt_out`, `SensitiveDataProcessing` ->
`sensitive_data_processing`, ...), so that `GPPString.to_json()` reads

    {"header": {"version": 1, "section_ids": [7]},
     "sections": {"usnat": {"version": 1, "sharing_notice": 1, ..., "gpc": false}}}

Decoded sections (api prefix, id), each by its own module:

- `tcfeuv2` (2) and `tcfcav1` (5): `gateway.consent.gpp_tcf`;
- `uspv1` (6): the four-character US Privacy string, `gateway.consent.usp`;
- `usnat` (7) and every US state section of iabgpp-es 3.2.0, `usca` (8) to `usri` (27):
  `gateway.consent.gpp_us`.

The bits of every section are read by `gateway.consent.gpp_bits`.

Integer fields are reported as encoded, even a reserved value such as 3: judging them
is `us_opt_outs`'s job, which counts anything it cannot read as an opt-out.

Contracts: `decode_gpp` is pure and total: it returns or raises `GPPError` (with a short
`reason` naming the section, never quoting the input), whatever the input. A section id
we do not decode is kept, undecoded, under `str(id)` as
`{"undecoded": true, "raw": "<text>"}`; a known section that does not decode fails the
whole string.

Where es 3.2.0 is laxer, we refuse (a signal read wrongly is worse than none): an empty
string here, and what each section's module names. es reads none of these in a way its
own encoder would have written.

Work is linear in the input, which is capped at `MAX_GPP_LENGTH`: each character becomes
6 bits once, every read moves forward and costs what it reads (`gpp_bits`), and header
groups are checked against the number of sections before they expand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from gateway.consent.gpp_bits import Bits
from gateway.consent.gpp_tcf import decode_tcfca, decode_tcfeu
from gateway.consent.gpp_us import US_SPECS, decode_us, decode_usnat
from gateway.consent.usp import decode_us_privacy
from gateway.errors import GPPError

__all__ = [
    "MAX_GPP_LENGTH",
    "OPT_OUTS",
    "SECTION_NAMES",
    "GPPString",
    "applicable",
    "decode_gpp",
    "us_opt_outs",
]

#: longer values are refused before any work (16 KiB; real strings are well under 1 KiB)
MAX_GPP_LENGTH: Final = 16 * 1024

#: what `us_opt_outs` can report
OPT_OUTS: Final = frozenset({"sale", "sharing", "targeted_advertising"})

#: the API prefix of every section id decoded here
SECTION_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        2: "tcfeuv2",
        5: "tcfcav1",
        6: "uspv1",
        7: "usnat",
        **{sid: spec.prefix for sid, spec in US_SPECS.items()},
    }
)

#: sections whose fields `us_opt_outs` reads
_US_SECTIONS: Final = frozenset({6, 7, *US_SPECS})


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
    if sid in US_SPECS:
        spec = US_SPECS[sid]
        return spec.prefix, decode_us(spec, text)
    if sid == 7:
        return "usnat", decode_usnat(text)
    if sid == 6:
        return "uspv1", decode_us_privacy(text).to_json()
    if sid == 5:
        return "tcfcav1", decode_tcfca(text)
    if sid == 2:
        return "tcfeuv2", decode_tcfeu(text)
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
    header = Bits(header_text, "header")
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


def _header_ids(bits: Bits, sections: int) -> list[int]:
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
