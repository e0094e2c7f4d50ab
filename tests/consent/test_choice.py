"""gateway.consent.choice: what a visitor asks for (a POST body checked, a withdrawal), and
the consent API's choice from the cookie, the store and the purposes given (tables: each
row one situation a banner meets)."""

from __future__ import annotations

import hashlib
from types import MappingProxyType

import pytest

from gateway.config import ConsentConfig
from gateway.consent.choice import Asked, Choice, next_choice, read_posted, withdrawal
from gateway.consent.resolve import CookieOutcome, SourceAnswer
from gateway.errors import RequestError
from gateway.model import ConsentValue, CurrentConsent

G, D, U = ConsentValue.GRANTED, ConsentValue.DENIED, ConsentValue.UNKNOWN
NOW = 1_800_000_000.4
CONSENT = ConsentConfig()
#: the record's time: whole seconds (the cookie's resolution)
SECOND = int(NOW)


def cookie(at: float, subject: str = "s1", **purposes: ConsentValue) -> CookieOutcome:
    answer = SourceAnswer("cookie", MappingProxyType(purposes), at, 1, subject)
    return CookieOutcome(answer, None, subject)


def stored(at: float, subject: str = "s1", **purposes: bool) -> CurrentConsent:
    return CurrentConsent(subject, purposes, 1, at, "api")


NO_COOKIE = CookieOutcome(None, None)
STALE = CookieOutcome(None, "expired", "s1")  # authentic but stale: still names the visitor


@pytest.mark.parametrize(
    ("current", "store", "given", "merge", "expected"),
    [
        # a first choice: a new subject, the purposes given, now in whole seconds
        (NO_COOKIE, None, {"analytics": True}, True, Choice("new", {"analytics": True}, SECOND)),
        # a second choice merges over the cookie's record (unknowns are not recorded)
        (
            cookie(NOW - 60, analytics=G, advertising=D, functional=U),
            None,
            {"advertising": True},
            True,
            Choice("s1", {"analytics": True, "advertising": True}, SECOND),
        ),
        # the store's record is newer than the cookie (a change on another page): it wins
        (
            cookie(NOW - 60, analytics=G),
            stored(NOW - 10, analytics=False, advertising=False),
            {"functional": True},
            True,
            Choice("s1", {"analytics": False, "advertising": False, "functional": True}, SECOND),
        ),
        # an older store record (a write not seen yet) does not
        (
            cookie(NOW - 10, analytics=G),
            stored(NOW - 600, analytics=False),
            {},
            True,
            Choice("s1", {"analytics": True}, SECOND),
        ),
        # a withdrawal: only what is given, whatever was in force
        (
            cookie(NOW - 60, analytics=G, advertising=G),
            stored(NOW - 10, analytics=True),
            {"analytics": False, "advertising": False},
            False,
            Choice("s1", {"analytics": False, "advertising": False}, SECOND),
        ),
        # a stale cookie keeps its subject (re-consent), and merges nothing of its own
        (STALE, None, {"analytics": True}, True, Choice("s1", {"analytics": True}, SECOND)),
        # necessary is never recorded
        (
            NO_COOKIE,
            None,
            {"necessary": True, "ads": False},
            True,
            Choice("new", {"ads": False}, SECOND),
        ),
        # never older than the record in force, even one made later this second or by a
        # clock running ahead
        (
            cookie(NOW - 60, analytics=G),
            stored(NOW + 1.2, analytics=True),
            {"analytics": False},
            True,
            Choice("s1", {"analytics": False}, SECOND + 2),
        ),
        # another subject's stored state never shapes this visitor's choice
        (
            cookie(NOW - 60, analytics=G),
            stored(NOW - 10, subject="someone-else", analytics=False),
            {},
            True,
            Choice("s1", {"analytics": True}, SECOND),
        ),
    ],
    ids=[
        "first",
        "merge-cookie",
        "store-newer-wins",
        "store-older-loses",
        "withdrawal",
        "stale-cookie",
        "necessary",
        "not-older-than-store",
        "other-subject",
    ],
)
def test_next_choice(
    current: CookieOutcome,
    store: CurrentConsent | None,
    given: dict[str, bool],
    merge: bool,
    expected: Choice,
) -> None:
    got = next_choice(current, store, given, CONSENT, NOW, merge=merge, new_subject=lambda: "new")
    assert (got.subject, dict(got.purposes), got.issued_at) == (
        expected.subject,
        dict(expected.purposes),
        expected.issued_at,
    )


# -- what the visitor asks for ----------------------------------------------------------------

NOTICE = "We and our partners use cookies for analytics."


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"purposes": {"analytics": True}}, Asked({"analytics": True}, "banner")),
        ({"purposes": {}}, Asked({}, "banner")),  # nothing given: the record in force again
        (
            {"purposes": {"analytics": False, "advertising": True}, "source": "cmp"},
            Asked({"analytics": False, "advertising": True}, "cmp"),
        ),
        (
            {"purposes": {"necessary": True}, "source": "api", "notice": NOTICE},
            Asked(
                {"necessary": True}, "api", hashlib.sha256(NOTICE.encode()).hexdigest()
            ),  # necessary is a known purpose; next_choice drops it
        ),
    ],
    ids=["banner", "empty", "cmp", "notice"],
)
def test_read_posted(doc: object, expected: Asked) -> None:
    got = read_posted(doc, CONSENT)
    assert (dict(got.purposes), got.source, got.notice_hash) == (
        dict(expected.purposes),
        expected.source,
        expected.notice_hash,
    )


_KEYS = "expected an object with keys ['notice', 'purposes', 'source', 'vendors']"
_VENDORS = 'expected {"vendors": {"<vendor id>": true|false}}'
_UNKNOWN_VENDOR = "unknown vendor; vendor ids are the rules' `vendor` ids"
_PURPOSES = 'expected {"purposes": {"<purpose>": true|false}}'


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1], _KEYS),
        ("purposes", _KEYS),
        (None, _KEYS),
        ({"purposes": {"analytics": True}, "ip": "1.2.3.4"}, _KEYS),  # nothing else is taken
        ({}, _PURPOSES),
        ({"purposes": ["analytics"]}, _PURPOSES),
        ({"purposes": {"analytics": "yes"}}, _PURPOSES),
        ({"purposes": {"analytics": 1}}, _PURPOSES),
        (
            {"purposes": {"<script>x": True}},
            (
                "unknown purpose; known: advertising, analytics, functional, necessary, "
                "personalization"
            ),
        ),
        (
            {"purposes": {"analytics": True}, "source": "withdrawal"},  # only DELETE withdraws
            "source must be one of ['api', 'banner', 'cmp']",
        ),
        ({"purposes": {}, "source": None}, "source must be one of ['api', 'banner', 'cmp']"),
        ({"purposes": {}, "notice": ""}, "notice must be the notice text shown, a string"),
        ({"purposes": {}, "notice": 5}, "notice must be the notice text shown, a string"),
        ({"purposes": {}, "vendors": ["posthog"]}, _VENDORS),
        ({"purposes": {}, "vendors": {"posthog": 0}}, _VENDORS),
        ({"purposes": {}, "vendors": {"<script>x": False}}, _UNKNOWN_VENDOR),
        ({"purposes": {}, "vendors": {"matomo": False}}, _UNKNOWN_VENDOR),  # not a rule here
    ],
)
def test_read_posted_refuses(doc: object, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        read_posted(doc, CONSENT, RULE_VENDORS)
    assert (caught.value.status, caught.value.message) == (400, message)
    assert "<script>" not in message  # SECURITY: nothing of the body is echoed


RULE_VENDORS = frozenset({"posthog", "google-analytics-4"})


def test_read_posted_takes_vendor_answers_of_the_rules() -> None:
    asked = read_posted(
        {"purposes": {"analytics": True}, "vendors": {"posthog": False}}, CONSENT, RULE_VENDORS
    )
    assert dict(asked.purposes) == {"analytics": True}
    assert dict(asked.vendors) == {"posthog": False}
    assert dict(read_posted({"purposes": {}}, CONSENT, RULE_VENDORS).vendors) == {}


def test_withdrawal_denies_every_purpose_but_necessary() -> None:
    asked = withdrawal(CONSENT)
    assert asked.source == "withdrawal" and asked.notice_hash is None
    assert dict(asked.purposes) == {
        "functional": False,
        "analytics": False,
        "advertising": False,
        "personalization": False,
    }
    custom = ConsentConfig(purposes=("necessary", "stats"))
    assert dict(withdrawal(custom).purposes) == {"stats": False}
