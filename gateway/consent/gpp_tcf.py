"""The TCF sections of a GPP string: `tcfeuv2` (id 2) and `tcfcav1` (id 5).

- `tcfeuv2`: the TC string, decoded by `gateway.consent.tcf` (its `to_json()`);
- `tcfcav1`: IAB Canada TCF, core + publisher purposes + disclosed vendors. Vendor
  lists are OptimizedRanges; iabgpp-es wrote their range form with Int(16) ids before
  it switched to the spec's Fibonacci ids, and both forms are read exactly as es 3.2.0
  reads them (see `decode_tcfca`).

Fields are named as in iabgpp-es 3.2.0, snake case. Both decoders return the section's
fields or raise `GPPError` (reason prefixed with the section's name, never quoting the
input). Where es 3.2.0 is laxer, we refuse: a tcfcav1 section with no core, a repeated
segment, ids above 65535 or Fibonacci code words over 32 bits. A tcfcav1 segment is read
at most three times (see `_either_range_form`), so the work stays linear.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from gateway.consent.gpp_bits import (
    Bits,
    Truncated,
    iso,
    letters,
    optimized_range,
    pub_restrictions,
)
from gateway.consent.tcf import decode_tc_string
from gateway.errors import GPPError, TCFError

__all__ = ["decode_tcfca", "decode_tcfeu"]

# --- tcfcav1 --------------------------------------------------------------------------


def _tcfca_core(text: str, fib: bool, lenient: bool) -> tuple[dict[str, object], bool]:
    bits = Bits(text, "tcfcav1")
    out: dict[str, object] = {"version": bits.uint(6)}
    out["created"] = iso(bits.uint(36))
    out["last_updated"] = iso(bits.uint(36))
    out["cmp_id"] = bits.uint(12)
    out["cmp_version"] = bits.uint(12)
    out["consent_screen"] = bits.uint(6)
    out["consent_language"], canonical = letters(bits)
    out["vendor_list_version"] = bits.uint(12)
    out["tcf_policy_version"] = bits.uint(6)
    out["use_non_standard_stacks"] = bits.flag()
    out["special_feature_express_consent"] = bits.bitfield(12)
    out["purposes_express_consent"] = bits.bitfield(24)
    out["purposes_implied_consent"] = bits.bitfield(24)
    for name in ("vendor_express_consent", "vendor_implied_consent"):
        ids, ok = optimized_range(bits, fib)
        canonical = canonical and ok
        # es hands legacy values through its setter, which sorts and drops repeats
        out[name] = ids if fib else sorted(set(ids))
    try:
        out["pub_restrictions"], ok = pub_restrictions(bits, fib)
    except Truncated:
        # es tolerates a missing or cut-short PubRestrictions (older strings end before it)
        # but never takes such a reading as its own encoder's output
        if not lenient:
            raise
        out["pub_restrictions"], ok = [], False
    return out, canonical and ok


def _tcfca_disclosed(text: str, fib: bool) -> tuple[dict[str, object], bool]:
    bits = Bits(text, "tcfcav1")
    out: dict[str, object] = {"disclosed_vendors_segment_type": bits.uint(3)}
    ids, canonical = optimized_range(bits, fib)
    out["disclosed_vendors"] = ids if fib else sorted(set(ids))
    return out, canonical


def _tcfca_pub_purposes(text: str) -> dict[str, object]:
    bits = Bits(text, "tcfcav1")
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


def decode_tcfca(text: str) -> dict[str, object]:
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


def decode_tcfeu(text: str) -> dict[str, object]:
    """The TC string's fields, as `tcf.TCString.to_json()` writes them."""
    try:
        return decode_tc_string(text).to_json()
    except TCFError as e:
        raise GPPError(f"tcfeuv2: {e.reason}") from e
