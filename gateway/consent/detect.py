"""Recognise and decode any consent value a person pastes (`consent-gateway decode`).

`decode_any(value)` tells TCF, GPP, us_privacy, gcs, gcd and known CMP cookie
values apart by their shape, decodes with the matching decoder and returns
`(kind, fields)` with JSON-ready fields. `render_table(fields)` prints them for
people. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from gateway.consent import cmp, gcm, gpp, tcf
from gateway.consent.usp import decode_us_privacy
from gateway.errors import SignalError
from gateway.model import ConsentValue

__all__ = ["decode_any", "render_table"]

_USP: Final = re.compile(r"1[YNyn-]{3}")
_GCS: Final = re.compile(r"G1[01-]{2}")
_GCD: Final = re.compile(r"1[0-9A-Za-z_-]{9}(?:[0-9A-Za-z_-]{2})?")
_CMP_LABELS: Final = ", ".join(f.label for f in cmp.FORMATS.values() if f.detect is not None)


def _states(states: Mapping[str, ConsentValue]) -> dict[str, object]:
    return {k: v.value for k, v in states.items()}


def decode_any(value: str) -> tuple[str, dict[str, object]]:
    """The kind of `value` and its decoded fields.

    Raises SignalError (of the kind recognised, with its reason) when the value
    looks like a known kind but does not decode, or when no kind fits.
    """
    v = value.strip()
    if _USP.fullmatch(v):
        usp = decode_us_privacy(v)
        return "us_privacy", usp.to_json()
    if _GCS.fullmatch(v):
        return "gcs", _states(gcm.decode_gcs(v))
    if _GCD.fullmatch(v):
        state = gcm.decode_gcd(v)
        return "gcd", {
            t: {
                "default": s.default.value,
                "update": s.update.value,
                "effective": s.effective.value,
            }
            for t, s in state.types.items()
        }
    if v[:1] in ("B", "C"):
        return "tcf", tcf.decode_tc_string(v).to_json()
    if v[:1] == "D":
        return "gpp", gpp.decode_gpp(v).to_json()
    c = cmp.detect_cmp(v)
    if c is not None:
        return c.cmp, {
            "categories": dict(c.categories),
            "interacted": c.interacted,
            "at": c.at,
            **({"others": c.others} if c.others is not None else {}),
            **({"no_consent_required": True} if c.no_consent_required else {}),
        }
    raise SignalError(
        "not a consent value the gateway knows (TCF, GPP, us_privacy, gcs, gcd, "
        f"or a cookie of {_CMP_LABELS})"
    )


def render_table(fields: Mapping[str, object], indent: str = "") -> list[str]:
    """`fields` as aligned `name  value` lines; nested mappings are indented below
    their name, lists are joined with commas."""
    width = max((len(k) for k in fields), default=0)
    lines: list[str] = []
    for key, val in fields.items():
        if isinstance(val, Mapping):
            lines.append(f"{indent}{key}")
            lines += render_table(val, indent + "  ")
            continue
        if isinstance(val, list | tuple):
            if val and all(isinstance(x, Mapping) for x in val):
                lines.append(f"{indent}{key}")
                for i, item in enumerate(val):
                    lines.append(f"{indent}  [{i}]")
                    lines += render_table(item, indent + "    ")
                continue
            shown = ", ".join(str(x) for x in val) or "-"
        elif val is None:
            shown = "-"
        else:
            shown = str(val).lower() if isinstance(val, bool) else str(val)
        lines.append(f"{indent}{key.ljust(width)}  {shown}")
    return lines
