"""A visitor's new choice (`POST`/`DELETE /consent`), worked out from what is in force.

The consent API's business logic, pure (`gateway.consent_api` does the HTTP):

- `read_posted`: what a `POST /consent` body may ask for (its purposes, the source it
  claims, the notice shown), checked; `withdrawal`: what a `DELETE` asks for.
- `next_choice`: which subject the record and the cookie belong to, which purposes they
  hold, and when they are dated. The API records the result in the store before it
  answers, then signs it into the cookie.

How `next_choice` decides:

- An authentic cookie, even a stale one, still names the visitor: re-consent keeps
  its subject; without one a new subject is made.
- With `merge` (a `POST`), the purposes given win over the own record in force: the
  cookie's, or the store's when it is newer. Without (a withdrawal), only the purposes
  given count.
- `necessary` is never recorded: it is always granted.
- The record is dated in whole seconds (the cookie's resolution) and never older than
  the stored record in force, so the new choice becomes the subject's current state
  even if that record was made earlier in the same second, or by an instance whose
  clock runs a little ahead.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from gateway.config import ConsentConfig
from gateway.consent.cookie import new_subject_id
from gateway.consent.resolve import CookieOutcome, stored_answer
from gateway.errors import RequestError
from gateway.model import MAX_VENDOR_ANSWERS, NECESSARY, ConsentValue, CurrentConsent

__all__ = [
    "POST_KEYS",
    "POST_SOURCES",
    "Asked",
    "Choice",
    "next_choice",
    "read_posted",
    "withdrawal",
]

#: what a POST /consent body may hold, and the sources it may claim
POST_KEYS: Final = frozenset({"purposes", "vendors", "source", "notice"})
POST_SOURCES: Final = frozenset({"banner", "api", "cmp"})


@dataclass(frozen=True, slots=True)
class Asked:
    """What the visitor asks for: the purposes given, the source of the choice, and the
    hash of the notice shown (None without one)."""

    purposes: Mapping[str, bool]
    source: str
    notice_hash: str | None = None
    #: rule vendor id -> may it have what its purposes grant? (`model.VendorChoice`)
    vendors: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))


def read_posted(doc: object, consent: ConsentConfig, vendors: Collection[str] = ()) -> Asked:
    """A `POST /consent` body (parsed JSON), checked: `{"purposes": {"<purpose>": bool},
    "vendors": {"<rule vendor id>": bool}, "source": "banner"|"api"|"cmp" (default banner),
    "notice": "<the text shown>"}`, every purpose one of `consent.purposes`, every vendor
    one of `vendors` (the loaded rules' ids; `vendors` is optional). Raises RequestError
    (400) on anything else; its message never repeats what the body holds."""
    if not isinstance(doc, dict) or not set(doc) <= POST_KEYS:
        raise RequestError(f"expected an object with keys {sorted(POST_KEYS)}")
    purposes_in = doc.get("purposes")
    if not isinstance(purposes_in, dict) or not all(
        isinstance(v, bool) for v in purposes_in.values()
    ):
        raise RequestError('expected {"purposes": {"<purpose>": true|false}}')
    known = set(consent.purposes)
    if not set(purposes_in) <= known:
        # SECURITY: the unknown names are not echoed back.
        raise RequestError(f"unknown purpose; known: {', '.join(sorted(known))}")
    source = doc.get("source", "banner")
    if source not in POST_SOURCES:
        raise RequestError(f"source must be one of {sorted(POST_SOURCES)}")
    notice = doc.get("notice")
    if notice is not None and (not isinstance(notice, str) or not notice):
        raise RequestError("notice must be the notice text shown, a string")
    # Only a hash of the notice is kept: enough to prove which text was shown.
    notice_hash = None if notice is None else hashlib.sha256(notice.encode()).hexdigest()
    purposes = {k: bool(v) for k, v in purposes_in.items()}
    vendors_in = doc.get("vendors", {})
    if not isinstance(vendors_in, dict) or not all(
        isinstance(v, bool) for v in vendors_in.values()
    ):
        raise RequestError('expected {"vendors": {"<vendor id>": true|false}}')
    if not set(vendors_in) <= set(vendors):
        # SECURITY: the unknown names are not echoed back.
        raise RequestError("unknown vendor; vendor ids are the rules' `vendor` ids")
    if len(vendors_in) > MAX_VENDOR_ANSWERS:
        raise RequestError(f"at most {MAX_VENDOR_ANSWERS} vendor answers")
    return Asked(MappingProxyType(purposes), source, notice_hash, MappingProxyType(vendors_in))


def withdrawal(consent: ConsentConfig) -> Asked:
    """What a `DELETE /consent` asks for: every purpose denied but `necessary` (which is
    never recorded)."""
    withdrawn = {p: False for p in consent.purposes if p != NECESSARY}
    return Asked(MappingProxyType(withdrawn), "withdrawal")


@dataclass(frozen=True, slots=True)
class Choice:
    """What to record and sign: the subject, its purposes, and the record's time."""

    subject: str
    purposes: Mapping[str, bool]
    #: whole seconds since the epoch: the cookie's `issued_at` and the record's `at`
    issued_at: int
    vendors: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))


def next_choice(
    current: CookieOutcome,
    stored: CurrentConsent | None,
    purposes: Mapping[str, bool],
    consent: ConsentConfig,
    now: float,
    *,
    merge: bool,
    vendors: Mapping[str, bool] = MappingProxyType({}),
    new_subject: Callable[[], str] = new_subject_id,
) -> Choice:
    """The choice to record, from the cookie read (`current`), the store's state for its
    subject (`stored`, None when it has none) and the purposes and vendor answers given
    (see module doc; vendor answers merge as purposes do)."""
    subject = current.subject or new_subject()
    if stored is not None and stored.subject != current.subject:
        stored = None  # another subject's state never shapes this visitor's choice
    issued_at = max(math.floor(now), math.ceil(stored.at) if stored is not None else 0)
    merged: dict[str, bool] = {}
    merged_vendors: dict[str, bool] = {}
    if merge:
        own = [a for a in (current.answer,) if a is not None]
        if stored is not None:
            own.append(stored_answer(stored, consent, now))
        if own:
            newest = max(own, key=lambda a: a.at or 0.0)
            merged = {
                p: v is ConsentValue.GRANTED
                for p, v in newest.purposes.items()
                if v is not ConsentValue.UNKNOWN
            }
            merged_vendors = {v: a is ConsentValue.GRANTED for v, (a, _) in newest.vendors.items()}
    merged.update(purposes)
    merged.pop(NECESSARY, None)
    merged_vendors.update(vendors)
    return Choice(subject, MappingProxyType(merged), issued_at, MappingProxyType(merged_vendors))
