"""The consent store's interface (DESIGN §6): proof of consent and current state per subject.

```
ConsentStore (ABC)
├── SqliteStore    gateway.store.sqlite    one file, WAL, every call in one dedicated thread
└── PostgresStore  gateway.store.postgres  asyncpg pool, for several gateway instances
```

- A `ConsentRecord` is append-only proof of what a subject chose, when, under which
  policy version and from which source. Records are never updated or deleted; the one
  exception is `erase`, which replaces the subject id by a one-way token in place.
- A `CurrentConsent` is the subject's current state: the newest record by `at`
  (ties: the one written last). It is updated in the same transaction as the record.
- No table holds an IP address or a user agent. `notice_hash` is a hash of the notice text
  the site showed (when it supplies one), `request_id` ties a record to the access log.
- Backends map their driver's errors to `StoreError` at their boundary; callers never see
  `sqlite3.Error` or `asyncpg` exceptions. `ping` never raises.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Final

import orjson

if TYPE_CHECKING:
    from gateway.store.migrations import Migration

from gateway.errors import StoreError
from gateway.model import CurrentConsent, check_record_fields, frozen_purposes, frozen_vendors

__all__ = [
    "CURSOR_SELECT",
    "ERASED_PREFIX",
    "ERASURE_SOURCE",
    "Change",
    "ChangeKind",
    "ConsentRecord",
    "ConsentStore",
    "CurrentConsent",
    "StoreError",
    "WebhookCursor",
    "dump_purposes",
    "erasure_time",
    "erasure_token",
    "load_purposes",
    "subject_export",
    "subject_history",
]

#: every erasure token starts with this, so an erased subject is recognisable as such.
ERASED_PREFIX: Final = "erased:"
#: both backends' query for webhook cursors, in `WebhookCursor`'s field order
CURSOR_SELECT: Final = (
    "SELECT endpoint, last_seq, attempts, next_attempt, last_error, last_success, delivered"
    " FROM webhook_cursors"
)
#: the source of an erased subject's state: no purposes, as of the erasure
ERASURE_SOURCE: Final = "erasure"


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One append-only proof of consent.

    `source` says where the answer came from: banner, api, cmp, withdrawal, erasure...
    `at` is seconds since the epoch. `id` is None until the store has written the record;
    `ConsentStore.record` returns a copy with it set. `purposes` is frozen on construction.
    Raises ValueError on a malformed field.
    """

    subject: str
    purposes: Mapping[str, bool]
    source: str
    policy_version: int
    at: float
    notice_hash: str | None
    request_id: str | None
    id: int | None = None
    #: rule vendor id -> may it have what its purposes grant? (the visitor's own answer)
    vendors: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        check_record_fields(self.subject, self.source, self.policy_version, self.at)
        object.__setattr__(self, "purposes", frozen_purposes(self.purposes))
        object.__setattr__(self, "vendors", frozen_vendors(self.vendors))
        if self.notice_hash is not None and not isinstance(self.notice_hash, str):
            raise ValueError("notice_hash must be a string or None")
        if self.request_id is not None and not isinstance(self.request_id, str):
            raise ValueError("request_id must be a string or None")


class ChangeKind(enum.StrEnum):
    """What a change did to a subject's current state."""

    #: a record became the subject's current state
    CONSENT = "consent"
    #: the subject was erased: it has no current state any more
    ERASURE = "erasure"


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a subject's current state, in the store's change feed.

    The feed is what instances follow to keep their caches right (PostgreSQL: also
    announced by NOTIFY) and what webhooks deliver. `seq` orders the feed: both
    backends assign it in commit order, so a reader that has seen every change up to
    `seq` and reads those after it misses none. `event_id` is unique and stable: a
    receiver deduplicates on it. For CONSENT, the purposes, policy version, time and
    source are the subject's new current state; for ERASURE they are empty/zero and
    `at` is the time of the erasure. `record_id` is the record that became current.
    """

    seq: int
    event_id: str
    kind: ChangeKind
    subject: str
    purposes: Mapping[str, bool]
    policy_version: int
    at: float
    source: str
    record_id: int | None
    #: the subject's vendor answers in force (`CurrentConsent.vendors`)
    vendors: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "purposes", frozen_purposes(self.purposes))
        object.__setattr__(self, "vendors", frozen_vendors(self.vendors))

    def current(self) -> CurrentConsent | None:
        """The subject's current state after this change (None: erased, no consent)."""
        if self.kind is ChangeKind.ERASURE:
            return None
        return CurrentConsent(
            self.subject, self.purposes, self.policy_version, self.at, self.source, self.vendors
        )

    def to_json(self) -> dict[str, object]:
        """The change as a JSON-ready document (NOTIFY payloads, webhook bodies)."""
        return {
            "seq": self.seq,
            "id": self.event_id,
            "kind": self.kind.value,
            "subject": self.subject,
            "purposes": dict(self.purposes),
            "vendors": dict(self.vendors),
            "policy_version": self.policy_version,
            "at": self.at,
            "source": self.source,
            "record_id": self.record_id,
        }

    @classmethod
    def from_json(cls, doc: object) -> Change:
        """Parse what `to_json` wrote; raises StoreError on anything else."""
        try:
            if not isinstance(doc, dict) or not isinstance(doc.get("purposes"), dict):
                raise TypeError("not an object with purposes")
            return cls(
                seq=int(doc["seq"]),
                event_id=str(doc["id"]),
                kind=ChangeKind(doc["kind"]),
                subject=str(doc["subject"]),
                purposes=doc["purposes"],
                policy_version=int(doc["policy_version"]),
                at=float(doc["at"]),
                source=str(doc["source"]),
                record_id=None if doc["record_id"] is None else int(doc["record_id"]),
                # a change from an instance older than vendor answers has none
                vendors=doc.get("vendors") or {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"malformed change: {type(exc).__name__}") from exc


@dataclass(frozen=True, slots=True)
class WebhookCursor:
    """Where one webhook endpoint's delivery stands.

    Every change with `seq <= last_seq` has been delivered (answered 2xx) or, for an
    endpoint registered later, predates it. `attempts` failed tries of the next change
    so far, the next one not before `next_attempt` (epoch seconds). `last_error` is a
    status code or an exception class, never a response body.
    """

    endpoint: str
    last_seq: int
    attempts: int
    next_attempt: float
    last_error: str | None
    last_success: float | None
    delivered: int


def dump_purposes(purposes: Mapping[str, bool]) -> str:
    """The purposes as canonical JSON text (sorted keys), as both backends store them."""
    return orjson.dumps(dict(purposes), option=orjson.OPT_SORT_KEYS).decode()


def load_purposes(text: str | bytes, what: str = "purposes") -> dict[str, bool]:
    """Parse what `dump_purposes` wrote (`what`: purposes or vendors, as both are stored);
    raises StoreError if the stored value is not an object of booleans (a corrupt row
    must never read as consent)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise StoreError(f"stored {what} are not valid JSON") from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, bool) for k, v in value.items()
    ):
        raise StoreError(f"stored {what} are not an object of booleans")
    return value


def erasure_time(newest_record: float | None) -> float:
    """When an erasure happens: now, but strictly after the subject's newest record (the
    time a cookie was issued with), so the erasure outdates every cookie issued before."""
    now = time.time()
    if newest_record is None:
        return now
    return max(now, math.nextafter(float(newest_record), math.inf))


def erasure_token(subject: str, salt: bytes) -> str:
    """The one-way token that replaces `subject` on erasure: `erased:` + hex HMAC-SHA256 of
    the subject keyed by the store's salt.

    The same subject always yields the same token in one store (erasing twice is harmless),
    and different stores yield different tokens. It is pseudonymisation: someone holding the
    database (and so the salt) can test a guessed subject id against a token, but cannot
    list the subjects that were erased.
    """
    # SECURITY: keyed, so a token cannot be matched against another store's or a plain hash.
    digest = hmac.new(salt, subject.encode(), hashlib.sha256).hexdigest()
    return ERASED_PREFIX + digest


class ConsentStore(ABC):
    """Where consent is kept. Use: `await open()`, then the methods, then `await close()`.

    Every method but `ping` raises StoreError when the store fails or is not open.
    `migrate` (gateway.store.migrations) brings a store's schema up to date; `open` accepts
    an older schema (so that `migrate` can run) but refuses a newer one.
    """

    #: which list of steps in gateway.store.migrations applies ("sqlite" or "postgres").
    backend: ClassVar[str]

    @abstractmethod
    async def open(self) -> None:
        """Connect. Raises StoreError if unreachable or if the schema is newer than this
        code's latest migration (a gateway must not write a schema it does not know)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and threads. Idempotent."""

    async def record(self, rec: ConsentRecord) -> ConsentRecord:
        """Append `rec` and update the subject's current state (when `rec` is not older than
        it) in one transaction, durable before this returns. Returns `rec` with its id."""
        return (await self.record_change(rec))[0]

    @abstractmethod
    async def record_change(self, rec: ConsentRecord) -> tuple[ConsentRecord, Change | None]:
        """`record`, also returning the change it made to the current state (None when `rec`
        is older than the current state, which then stays). The change is in the feed in
        the same transaction (PostgreSQL: and announced by NOTIFY on commit)."""

    @abstractmethod
    async def current(self, subject: str) -> CurrentConsent | None:
        """The subject's current state, or None if it has no record (no consent).

        An erased subject (with no record since) has a state with no purposes, source
        `erasure`, as of the erasure: newer than any cookie issued before it, so such a
        cookie no longer counts, on any instance and after restarts."""

    @abstractmethod
    async def history(self, subject: str) -> list[ConsentRecord]:
        """Every record of `subject`, oldest first (by `at`, then by id)."""

    async def erase(self, subject: str) -> str:
        """Unlink `subject`: replace its id by `erasure_token(subject, salt)` in every record,
        in its current row and in its earlier changes, keeping the records. Returns the
        token; `history(token)` then lists the unlinked records. Idempotent."""
        return (await self.erase_change(subject))[0]

    @abstractmethod
    async def erase_change(self, subject: str) -> tuple[str, Change]:
        """`erase`, also returning the ERASURE change it put in the feed (which names the
        subject until `scrub_erasures` passes it, so webhooks can tell receivers)."""

    @abstractmethod
    async def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """Up to `limit` changes with a seq greater than `seq`, in seq order."""

    @abstractmethod
    async def last_seq(self) -> int:
        """The seq of the newest change (0: none yet)."""

    # -- webhook delivery state (the outbox is the change feed; this is each endpoint's place)

    @abstractmethod
    async def webhook_register(self, endpoint: str) -> WebhookCursor:
        """The endpoint's cursor, created at the current end of the feed if new (an endpoint
        added to config receives the changes made after it was added)."""

    @abstractmethod
    async def webhook_claim(self, endpoint: str, owner: str, lease: float, now: float) -> bool:
        """Take (or renew) the right to deliver to `endpoint` until `now + lease`; False if
        another owner holds an unexpired lease. One deliverer per endpoint keeps order."""

    @abstractmethod
    async def webhook_release(self, endpoint: str, owner: str) -> None:
        """Give up `owner`'s lease on `endpoint` at once (nothing if it does not hold it),
        so another instance, or this one restarted, takes over without waiting."""

    @abstractmethod
    async def webhook_advance(self, endpoint: str, owner: str, seq: int, now: float) -> bool:
        """Record that the change `seq` was delivered (resets attempts). False, doing
        nothing, if `owner` does not hold the lease (another instance took over)."""

    @abstractmethod
    async def webhook_failed(
        self, endpoint: str, owner: str, attempts: int, next_attempt: float, error: str
    ) -> bool:
        """Record a failed attempt at the next change. False if `owner` lost the lease."""

    @abstractmethod
    async def webhook_cursors(self) -> list[WebhookCursor]:
        """Every registered endpoint's cursor, by endpoint name."""

    @abstractmethod
    async def scrub_erasures(self, upto_seq: int) -> int:
        """Replace the subject of erasure changes with `seq <= upto_seq` by its token, once
        every webhook has delivered them; returns how many were scrubbed."""

    @abstractmethod
    async def ping(self) -> bool:
        """True if the store answers a trivial query now; never raises."""

    @abstractmethod
    async def schema_version(self) -> int:
        """The schema version the database holds (0: empty)."""

    @abstractmethod
    async def apply_migration(self, step: Migration) -> bool:
        """Apply `step` in one transaction and record its version, if the database is at
        `step.version - 1`; returns False (doing nothing) if it is already at or past it."""


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


async def subject_history(
    store: ConsentStore, subject: str
) -> tuple[CurrentConsent | None, list[ConsentRecord]]:
    """A subject's current state and every record, oldest first: what an export shows.
    Raises StoreError."""
    return await store.current(subject), await store.history(subject)


async def subject_export(store: ConsentStore, subject: str) -> dict[str, object]:
    """A subject's current state and full history as one JSON-ready document: the proof
    of consent, for audits and access requests. Raises StoreError.

    An erased subject has no history under its old id; its records are under the token
    `erase` returned. Each time is given as epoch seconds (`at`) and ISO 8601 UTC.
    """
    current, records = await subject_history(store, subject)
    return {
        "subject": subject,
        "current": None
        if current is None
        else {
            "purposes": dict(current.purposes),
            "vendors": dict(current.vendors),
            "policy_version": current.policy_version,
            "source": current.source,
            "at": current.at,
            "time": _iso(current.at),
        },
        "records": [
            {
                "id": r.id,
                "purposes": dict(r.purposes),
                "vendors": dict(r.vendors),
                "source": r.source,
                "policy_version": r.policy_version,
                "at": r.at,
                "time": _iso(r.at),
                "notice_hash": r.notice_hash,
                "request_id": r.request_id,
            }
            for r in records
        ],
    }
