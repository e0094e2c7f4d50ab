"""A visitor's new choice (`POST`/`DELETE /consent`), worked out from what is in force.

`next_choice` is the consent API's business logic, pure: which subject the record and
the cookie belong to, which purposes they hold, and when they are dated. The app
records the result in the store before it answers, then signs it into the cookie.

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

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.config import ConsentConfig
from gateway.consent.cookie import new_subject_id
from gateway.consent.resolve import CookieOutcome, stored_answer
from gateway.model import NECESSARY, ConsentValue, CurrentConsent

__all__ = ["Choice", "next_choice"]


@dataclass(frozen=True, slots=True)
class Choice:
    """What to record and sign: the subject, its purposes, and the record's time."""

    subject: str
    purposes: Mapping[str, bool]
    #: whole seconds since the epoch: the cookie's `issued_at` and the record's `at`
    issued_at: int


def next_choice(
    current: CookieOutcome,
    stored: CurrentConsent | None,
    purposes: Mapping[str, bool],
    consent: ConsentConfig,
    now: float,
    *,
    merge: bool,
    new_subject: Callable[[], str] = new_subject_id,
) -> Choice:
    """The choice to record, from the cookie read (`current`), the store's state for its
    subject (`stored`, None when it has none) and the purposes given (see module doc)."""
    subject = current.subject or new_subject()
    if stored is not None and stored.subject != current.subject:
        stored = None  # another subject's state never shapes this visitor's choice
    issued_at = max(math.floor(now), math.ceil(stored.at) if stored is not None else 0)
    merged: dict[str, bool] = {}
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
    merged.update(purposes)
    merged.pop(NECESSARY, None)
    return Choice(subject, MappingProxyType(merged), issued_at)
