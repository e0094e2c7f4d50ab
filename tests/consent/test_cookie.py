import base64
import dataclasses
import hashlib
import hmac
import json
import string

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import CookieKey
from gateway.consent import cookie as cookie_mod
from gateway.consent.cookie import (
    MAX_COOKIE_LENGTH,
    ConsentCookie,
    keygen,
    new_subject_id,
    sign_cookie,
    verify_cookie,
)
from gateway.errors import ConsentCookieError

K1 = CookieKey("k1", b"k" * 32)
K2 = CookieKey("k2", b"j" * 32)
B64URL = string.ascii_letters + string.digits + "-_"
REASONS = {"malformed", "unknown-key", "bad-signature", "bad-payload"}

COOKIE = ConsentCookie(
    subject="AbCdEfGhIjKlMnOpQrStUv",
    purposes={"analytics": True, "advertising": False},
    issued_at=1_700_000_000,
    policy_version=3,
)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(body: bytes, key: CookieKey = K1) -> str:
    """A value with a valid signature over an arbitrary payload (the module is not used)."""
    payload = b64(body)
    mac = hmac.new(key.secret, f"{key.id}.{payload}".encode(), hashlib.sha256).digest()
    return f"{key.id}.{payload}.{b64(mac)}"


def reason(value: str, keys: tuple[CookieKey, ...] = (K1,)) -> str:
    with pytest.raises(ConsentCookieError) as e:
        verify_cookie(value, keys)
    # SECURITY: the message is the code and nothing of the value
    assert str(e.value) == e.value.reason
    assert e.value.reason in REASONS
    return e.value.reason


def test_exports() -> None:
    assert all(hasattr(cookie_mod, name) for name in cookie_mod.__all__)


def test_round_trip() -> None:
    assert verify_cookie(sign_cookie(COOKIE, [K1]), [K1]) == COOKIE


def test_wire_format() -> None:
    value = sign_cookie(COOKIE, [K1])
    kid, payload, sig = value.split(".")
    assert kid == "k1"
    assert base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)) == (
        b'{"s":"AbCdEfGhIjKlMnOpQrStUv","p":{"advertising":0,"analytics":1},'
        b'"t":1700000000,"v":3,"o":"banner"}'
    )
    assert "=" not in value
    # the full 32-byte HMAC-SHA256 of "<kid>.<payload>", computed independently
    assert value == forge(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert len(sig) == 43


def test_vendor_answers_round_trip_and_are_left_out_when_none() -> None:
    with_vendors = dataclasses.replace(COOKIE, vendors={"posthog": False, "matomo": True})
    value = sign_cookie(with_vendors, [K1])
    assert verify_cookie(value, [K1]) == with_vendors
    payload = value.split(".")[1]
    assert base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).endswith(
        b'"o":"banner","n":{"matomo":1,"posthog":0}}'
    )
    # a cookie without vendor answers is the one this gateway always signed
    assert b'"n"' not in base64.urlsafe_b64decode(sign_cookie(COOKIE, [K1]).split(".")[1] + "==")


def test_signing_is_deterministic() -> None:
    reordered = ConsentCookie(
        COOKIE.subject, {"advertising": False, "analytics": True}, 1_700_000_000, 3
    )
    assert sign_cookie(reordered, [K1]) == sign_cookie(COOKIE, [K1])


@pytest.mark.parametrize(
    ("sign_keys", "verify_keys", "expect"),
    [
        ([K1], [K1], None),
        ([K2, K1], [K2, K1], None),  # new key signs, verifies
        ([K1], [K2, K1], None),  # rotated: the old key is still active
        ([K1], [K1, K2], None),
        ([K1], [K2], "unknown-key"),  # the old key was removed
        ([K1], [], "unknown-key"),
        ([CookieKey("k1", b"x" * 32)], [K1], "bad-signature"),  # same id, other secret
    ],
)
def test_key_rotation(
    sign_keys: list[CookieKey], verify_keys: list[CookieKey], expect: str | None
) -> None:
    value = sign_cookie(COOKIE, sign_keys)
    assert value.startswith(f"{sign_keys[0].id}.")
    if expect is None:
        assert verify_cookie(value, verify_keys) == COOKIE
    else:
        assert reason(value, tuple(verify_keys)) == expect


def test_duplicate_key_ids_all_verify() -> None:
    other = CookieKey("k1", b"x" * 32)
    assert verify_cookie(sign_cookie(COOKIE, [other]), [K1, other]) == COOKIE


def test_sign_needs_a_usable_key() -> None:
    with pytest.raises(ValueError):
        sign_cookie(COOKIE, [])
    with pytest.raises(ValueError):
        sign_cookie(COOKIE, [CookieKey("k.1", b"k" * 32)])


VALUE = sign_cookie(COOKIE, [K1])
_KID, _PAYLOAD, _SIG = VALUE.split(".")
_SIG_START = len(_KID) + 1 + len(_PAYLOAD) + 1


@pytest.mark.parametrize("index", range(len(VALUE)))
def test_every_single_character_change_is_rejected(index: int) -> None:
    for c in B64URL + ".=+/ ~":
        if c == VALUE[index]:
            continue
        tampered = VALUE[:index] + c + VALUE[index + 1 :]
        got = reason(tampered)
        if c in B64URL and VALUE[index] != "." and index > len(_KID):
            # a well-formed change in payload or signature: the signature no longer holds
            assert got == "bad-signature", (index, c)


def test_last_signature_character_spare_bits_are_not_ignored() -> None:
    # 43 characters carry 258 bits for a 256-bit digest: decoding would make several
    # last characters equivalent; comparing the text must not.
    last = VALUE[-1]
    for c in B64URL:
        if c != last:
            assert reason(VALUE[:-1] + c) == "bad-signature"


@pytest.mark.parametrize("length", range(len(VALUE)))
def test_every_truncation_is_rejected(length: int) -> None:
    reason(VALUE[:length])
    reason(VALUE[len(VALUE) - length :] if length else "")


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        ("", "malformed"),
        (".", "malformed"),
        ("..", "malformed"),
        ("...", "malformed"),
        ("k1", "malformed"),
        ("k1.", "malformed"),
        ("k1..", "malformed"),
        (f"k1.{_PAYLOAD}.", "malformed"),
        (f".{_PAYLOAD}.{_SIG}", "malformed"),
        (f"{VALUE}.", "malformed"),
        (f"{VALUE}.extra", "malformed"),
        (f"{VALUE}=", "malformed"),
        (f" {VALUE}", "malformed"),
        (f"{VALUE} ", "malformed"),
        (f"k1.{_PAYLOAD}=.{_SIG}", "malformed"),
        (f"k1.{_PAYLOAD}.{_SIG}A", "malformed"),
        (f"k1.{_PAYLOAD}.{_SIG[:-1]}", "malformed"),
        (f"k1.{_PAYLOAD}.{_SIG[:-1]}+", "malformed"),  # standard, not URL-safe, alphabet
        (f"k1.{_PAYLOAD}.{_SIG[:-1]}/", "malformed"),
        (f"k\u00e9.{_PAYLOAD}.{_SIG}", "malformed"),
        (f"k1.{_PAYLOAD}\u00e9.{_SIG}", "malformed"),
        ("k1.\x00.\x00", "malformed"),
        (f"{'k' * 65}.{_PAYLOAD}.{_SIG}", "malformed"),
        ("x" * (MAX_COOKIE_LENGTH + 1), "malformed"),
        ("k1." + "A" * MAX_COOKIE_LENGTH + "." + _SIG, "malformed"),
        (f"k9.{_PAYLOAD}.{_SIG}", "unknown-key"),
        (f"K1.{_PAYLOAD}.{_SIG}", "unknown-key"),
        (f"k1.{_PAYLOAD}.{b64(b'x' * 32)}", "bad-signature"),
        (f"k1.{_PAYLOAD}A.{_SIG}", "bad-signature"),
        (f"k2.{_PAYLOAD}.{_SIG}", "unknown-key"),
        (VALUE.replace("k1.", "k1.e30", 1), "bad-signature"),
        (sign_cookie(COOKIE, [K2]), "unknown-key"),
    ],
)
def test_garbage(value: str, expect: str) -> None:
    assert reason(value) == expect


def _body(**change: object) -> bytes:
    body: dict[str, object] = {
        "s": "abc",
        "p": {"analytics": 1},
        "t": 1_700_000_000,
        "v": 1,
        "o": "banner",
    }
    body.update(change)
    return orjson.dumps({k: v for k, v in body.items() if v is not _DROP})


_DROP = object()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"null",
        b'"s"',
        b'{"s":"abc","p":{},"t":1,"v":1,"o":"banner"',
        b'{"s":"abc","p":{},"t":1e3,"v":1,"o":"banner"}',
        _body(s=_DROP),
        _body(p=_DROP),
        _body(t=_DROP),
        _body(v=_DROP),
        _body(o=_DROP),
        _body(x=1),
        _body(s=""),
        _body(s="a" * 65),
        _body(s="a b"),
        _body(s="ab=="),
        _body(s="\u00e9"),
        _body(s=1),
        _body(s=None),
        _body(p=[]),
        _body(p=None),
        _body(p={"analytics": True}),
        _body(p={"analytics": False}),
        _body(p={"analytics": 2}),
        _body(p={"analytics": -1}),
        _body(p={"analytics": 1.0}),
        _body(p={"analytics": "1"}),
        _body(p={"analytics": None}),
        _body(p={"": 1}),
        _body(p={"a" * 33: 1}),
        _body(p={"a\nb": 1}),
        _body(p={"\u00e9": 1}),
        _body(p={f"p{i}": 1 for i in range(33)}),
        _body(t=-1),
        _body(t=True),
        _body(t=1.5),
        _body(t="1"),
        _body(t=2**53),
        _body(t=2**64 - 1),
        _body(v=-1),
        _body(v=False),
        _body(v=None),
        _body(o=""),
        _body(o="a" * 33),
        _body(o="with space"),
        _body(o=1),
        # vendor answers: rule vendor ids -> 0 or 1, and never an empty object (left out)
        _body(n=None),
        _body(n=[]),
        _body(n={"posthog": True}),
        _body(n={"posthog": 2}),
        _body(n={"PostHog": 1}),
        _body(n={"": 0}),
        _body(n={f"v{i}": 1 for i in range(65)}),
    ],
)
def test_signed_but_bad_payload(body: bytes) -> None:
    assert reason(forge(body)) == "bad-payload"


def test_signed_empty_payload_is_malformed() -> None:
    assert reason(forge(b"")) == "malformed"


@pytest.mark.parametrize(
    "body",
    [
        _body(),
        _body(p={}),
        _body(p={f"p{i}": i % 2 for i in range(32)}),
        _body(p={"a" * 32: 0}),
        _body(s="a" * 64, o="a" * 32, t=0, v=0),
        _body(t=2**53 - 1),
    ],
)
def test_signed_payload_at_the_limits(body: bytes) -> None:
    verify_cookie(forge(body), [K1])


@pytest.mark.parametrize(
    "change",
    [
        {"subject": ""},
        {"subject": "a" * 65},
        {"subject": "a.b"},
        {"source": ""},
        {"source": "a b"},
        {"issued_at": -1},
        {"issued_at": 1.5},
        {"issued_at": True},
        {"policy_version": -1},
        {"purposes": {"analytics": 1}},
        {"purposes": {"": True}},
        {"purposes": {"\u00e9": True}},
        {"purposes": {f"p{i}": True for i in range(33)}},
        {"purposes": ["analytics"]},
    ],
)
def test_consent_cookie_validates(change: dict[str, object]) -> None:
    args: dict[str, object] = {
        "subject": "abc",
        "purposes": {},
        "issued_at": 1,
        "policy_version": 1,
        "source": "api",
    }
    args.update(change)
    with pytest.raises(ValueError):
        ConsentCookie(**args)  # type: ignore[arg-type]


def test_new_subject_id() -> None:
    ids = {new_subject_id() for _ in range(1000)}
    assert len(ids) == 1000
    for s in ids:
        assert len(s) == 22 and set(s) <= set(B64URL)
        assert len(base64.urlsafe_b64decode(s + "==")) == 16
        ConsentCookie(s, {}, 0, 0)  # usable as a subject


def test_keygen() -> None:
    keys = {keygen() for _ in range(100)}
    assert len(keys) == 100
    for k in keys:
        assert "=" not in k and set(k) <= set(B64URL)
        assert len(base64.urlsafe_b64decode(k + "=")) == 32


@given(st.text(max_size=5000))
def test_verify_arbitrary_text_raises_only_cookie_errors(value: str) -> None:
    reason(value)


@given(st.text(alphabet=B64URL + ".", max_size=200))
def test_verify_near_miss_text_raises_only_cookie_errors(value: str) -> None:
    reason(value, (K1, CookieKey("", b"k" * 32), CookieKey("A", b"k" * 32)))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@given(
    st.fixed_dictionaries(
        {
            "s": _JSON,
            # near-valid purposes, so the per-entry checks are reached
            "p": st.dictionaries(
                st.text(max_size=34),
                st.sampled_from([0, 1, 2, -1, True, 1.0, None, "1"]),
                max_size=34,
            ),
        },
        optional={"t": _JSON, "v": _JSON, "o": _JSON, "x": _JSON},
    )
)
def test_verify_any_signed_json_returns_or_raises_cookie_error(body: dict[str, object]) -> None:
    # the stdlib encoder: it writes what orjson would refuse (huge ints, lone surrogates)
    value = forge(json.dumps(body).encode())
    try:
        verify_cookie(value, [K1])
    except ConsentCookieError as e:
        assert e.reason == ("malformed" if len(value) > MAX_COOKIE_LENGTH else "bad-payload")


_PURPOSE_NAME = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=32
)


@given(
    subject=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    purposes=st.dictionaries(_PURPOSE_NAME, st.booleans(), max_size=32),
    issued_at=st.integers(0, 2**53 - 1),
    policy_version=st.integers(0, 2**53 - 1),
    source=st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True),
)
def test_round_trip_property(
    subject: str, purposes: dict[str, bool], issued_at: int, policy_version: int, source: str
) -> None:
    c = ConsentCookie(subject, purposes, issued_at, policy_version, source)
    value = sign_cookie(c, [K2, K1])
    assert len(value) <= MAX_COOKIE_LENGTH
    assert verify_cookie(value, [K1, K2]) == c
