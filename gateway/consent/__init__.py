"""The consent core (DESIGN §2, §3): pure functions from a request's facts to a ConsentState.

- `cookie`: the signed consent cookie (sign, verify, ids, keys);
- `gpc`: the `Sec-GPC` header;
- `regimes`: country from the trusted geo header, regime from the country;
- `resolve`: explicit answers + regime defaults + GPC -> ConsentState.

No I/O and no aiohttp here: the app reads the request into `Facts`, looks up the
store, and calls `resolve_request`.

The function `resolve.resolve` is deliberately not re-exported: bound here it would
shadow the submodule `gateway.consent.resolve` (`import ... as`, `mock.patch` targets).
"""

from gateway.consent.cookie import (
    ConsentCookie,
    keygen,
    new_subject_id,
    sign_cookie,
    verify_cookie,
)
from gateway.consent.gpc import gpc_signal
from gateway.consent.regimes import country_from, parse_country, regime_for
from gateway.consent.resolve import (
    CookieOutcome,
    SourceAnswer,
    read_cookie,
    resolve_request,
)

__all__ = [
    "ConsentCookie",
    "CookieOutcome",
    "SourceAnswer",
    "country_from",
    "gpc_signal",
    "keygen",
    "new_subject_id",
    "parse_country",
    "read_cookie",
    "regime_for",
    "resolve_request",
    "sign_cookie",
    "verify_cookie",
]
