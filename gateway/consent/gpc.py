"""Global Privacy Control: the `Sec-GPC` request header (W3C GPC).

`1` is the only value the specification defines; any other value, `0` included,
means the visitor expressed no preference (neither an opt-out nor a consent).
What a signal denies, and where it binds, is the resolver's business (DESIGN §2).
"""

from __future__ import annotations

from gateway.model import Headers

__all__ = ["GPC_HEADER", "gpc_signal"]

GPC_HEADER = "sec-gpc"

# RFC 9110 §5.5: optional whitespace around a field value is space or horizontal tab.
_OWS = " \t"


def gpc_signal(headers: Headers) -> bool:
    """True iff a `Sec-GPC` header's value, without surrounding whitespace, is exactly `1`.

    A repeated header counts as a signal when any copy is `1` (W3C GPC): copies
    appended by intermediaries cannot take the visitor's signal away.
    """
    if GPC_HEADER not in headers:  # the index: most requests carry no signal at all
        return False
    return any(
        name.lower() == GPC_HEADER and value.strip(_OWS) == "1"
        for name, value in headers.items_all()
    )
