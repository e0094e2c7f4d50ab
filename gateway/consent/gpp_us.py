"""The US sections of a GPP string: `usnat` (id 7) and every state section of iabgpp-es
3.2.0, `usca` (8) to `usri` (27), field by field.

Fields are named as in iabgpp-es (`SaleOptOut` -> `sale_opt_out`,
`SensitiveDataProcessing` -> `sensitive_data_processing`, ...).

- `usnat`: layout chosen by bit length, not Version: a core of at most 66 bits has 12
  sensitive-data categories and 2 child consents (the Dec 2022 layout), a longer one 16
  and 3. Lists are always returned at 16/3, the missing entries 0 (not applicable);
- state sections: one `USSpec` each in `US_SPECS`, read by `decode_us`.

Sections with a GPC sub-section (`core.gpc`: SubsectionType Int(2) = 1, then Gpc) report
`gpc_segment_included` and `gpc` (false when not included); `usin`, `usky` and `usri`
report `sensitive_data_consent_segment_included` and `sensitive_data_processing` (all 0
when the optional segment is absent), as es does.

Integer fields are reported as encoded, even a reserved value such as 3: judging them is
`gpp.us_opt_outs`'s job. Bits after the last field (base64 padding, or fields of a later
minor version) are ignored. Where es 3.2.0 is laxer, we refuse: a sub-section where the
section has none, more than one, or a GPC sub-section whose type is not 1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from gateway.consent.gpp_bits import Bits
from gateway.errors import GPPError

__all__ = ["US_SPECS", "USSpec", "decode_us", "decode_usnat"]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_Field = tuple[str, int, int]


def _i(name: str, bits: int = 2) -> _Field:
    return (_snake(name), bits, 0)


def _l(name: str, count: int) -> _Field:
    return (_snake(name), 2, count)


@dataclass(frozen=True, slots=True)
class USSpec:
    """A state section's layout: its API prefix, its core fields in order, and what may
    follow the core."""

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
) -> USSpec:
    """The common state layout: Version, notices, opt-outs, SDP×sdp, children (a scalar
    when kids == 0), AdditionalDataProcessingConsent?, the three MSPA fields."""
    children = _l(_KIDS, kids) if kids else _i(_KIDS)
    core = (_V, *notices, *_OPT, _l(_SDP, sdp), children, *((_ADPC,) if adpc else ()), *_MSPA)
    return USSpec(prefix, core, "gpc" if gpc else None)


def _mspa_first(prefix: str, kids: bool, sub: Literal["gpc", "sensitive"]) -> USSpec:
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
    return USSpec(prefix, core, sub)


US_SPECS: Final[Mapping[int, USSpec]] = {
    8: USSpec(
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


def _read_fields(bits: Bits, fields: Iterable[_Field], out: dict[str, object]) -> None:
    for name, width, count in fields:
        out[name] = bits.uint(width) if not count else tuple(bits.uint(2) for _ in range(count))


def _pad(values: object, size: int) -> tuple[int, ...]:
    assert isinstance(values, tuple)
    return (*values, *(0,) * (size - len(values)))


def decode_usnat(text: str) -> dict[str, object]:
    core, *subs = text.split(".")
    bits = Bits(core, "usnat")
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
    bits = Bits(subs[0], where)
    if bits.uint(2) != 1:
        raise GPPError(f"{where}: unknown subsection type")
    return {"gpc_segment_included": True, "gpc": bits.flag()}


def decode_us(spec: USSpec, text: str) -> dict[str, object]:
    core, *subs = text.split(".")
    out: dict[str, object] = {}
    _read_fields(Bits(core, spec.prefix), spec.core, out)
    if spec.sub == "gpc":
        out.update(_gpc(spec.prefix, subs))
    elif spec.sub == "sensitive":
        if len(subs) > 1:
            raise GPPError(f"{spec.prefix}: too many subsections")
        sdp: tuple[int, ...] = (0,) * 8
        if subs:
            bits = Bits(subs[0], spec.prefix)
            sdp = tuple(bits.uint(2) for _ in range(8))
        out["sensitive_data_consent_segment_included"] = bool(subs)
        out[_snake(_SDP)] = sdp
    elif subs:
        raise GPPError(f"{spec.prefix}: unexpected subsection")
    return out
