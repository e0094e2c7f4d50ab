"""The signed consent cookie (DESIGN §3).

A cookie value is `<kid>.<payload>.<sig>`:

- `kid`: the id of the key that signed it (`CookieKey.id`), so keys rotate without
  logging everyone out: the newest key signs, every configured key verifies;
- `payload`: base64url, no padding, of compact JSON
  `{"s": subject, "p": {"analytics": 1, "advertising": 0}, "t": issued_at, "v": policy_version,
  "o": source}`, and `"n": {"posthog": 0}` when the visitor answered vendor by vendor;
- `sig`: base64url, no padding, of the full HMAC-SHA256 digest of `f"{kid}.{payload}"`.

`verify_cookie` raises only `ConsentCookieError`, whose `reason` is one of
`malformed`, `unknown-key`, `bad-signature` or `bad-payload`; a caller treats every
one of them as "no cookie". Neither module nor its errors ever show the value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import orjson

from gateway.config import CookieKey
from gateway.errors import ConsentCookieError
from gateway.model import frozen_vendors

__all__ = [
    "MAX_COOKIE_LENGTH",
    "ConsentCookie",
    "keygen",
    "new_subject_id",
    "sign_cookie",
    "verify_cookie",
]

#: longer values are rejected before any work (a browser keeps at most 4096 bytes per cookie)
MAX_COOKIE_LENGTH = 4096

_MAX_PURPOSES = 32
#: integers stay exact in every JSON reader, JavaScript's included
_MAX_INT = 2**53 - 1

_SUBJECT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PURPOSE_RE = re.compile(r"[\x20-\x7e]{1,32}")
_SOURCE_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_KID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")
# 32 bytes are 43 base64url characters without padding
_SIG_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_PAYLOAD_KEYS = frozenset({"s", "p", "t", "v", "o"})
#: a payload with vendor answers (`n`); without any, the key is left out
_VENDOR_PAYLOAD_KEYS = _PAYLOAD_KEYS | {"n"}


@dataclass(frozen=True, slots=True)
class ConsentCookie:
    """The visitor's recorded choice, as carried by the cookie.

    Construction validates every field (ValueError), with the same rules
    `verify_cookie` applies to a payload, so whatever `sign_cookie` accepts
    verifies again.
    """

    #: random and not personal (`new_subject_id()`): 1-64 characters of [A-Za-z0-9_-]
    subject: str
    #: purpose -> granted?; at most 32 entries, names of 1-32 printable ASCII characters
    purposes: Mapping[str, bool]
    #: when the choice was made, epoch seconds
    issued_at: int
    #: the consent policy version the visitor saw
    policy_version: int
    #: how the choice was recorded: banner | api | cli | withdrawal ...; 1-32 of [A-Za-z0-9_-]
    source: str = "banner"
    #: rule vendor id -> may it have what its purposes grant?; `model.frozen_vendors`
    vendors: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        # The messages name the field, never its value: a cookie's content is not logged.
        if not isinstance(self.subject, str) or not _SUBJECT_RE.fullmatch(self.subject):
            raise ValueError("subject must be 1-64 characters of [A-Za-z0-9_-]")
        if not isinstance(self.source, str) or not _SOURCE_RE.fullmatch(self.source):
            raise ValueError("source must be 1-32 characters of [A-Za-z0-9_-]")
        for name, value in (("issued_at", self.issued_at), ("policy_version", self.policy_version)):
            # bool is an int subclass; a payload `true` must not pass for 1
            if type(value) is not int or not 0 <= value <= _MAX_INT:
                raise ValueError(f"{name} must be an integer in [0, 2**53)")
        if not isinstance(self.purposes, Mapping) or len(self.purposes) > _MAX_PURPOSES:
            raise ValueError(f"purposes must be a mapping of at most {_MAX_PURPOSES} entries")
        for purpose, granted in self.purposes.items():
            # ASCII only: 32 names of 32 characters then always fit in 4096 characters.
            if not isinstance(purpose, str) or not _PURPOSE_RE.fullmatch(purpose):
                raise ValueError("purpose names must be 1-32 printable ASCII characters")
            if type(granted) is not bool:
                raise ValueError("purpose values must be bool")
        object.__setattr__(self, "vendors", frozen_vendors(self.vendors))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _mac(secret: bytes, kid: str, payload: str) -> str:
    return _b64encode(hmac.new(secret, f"{kid}.{payload}".encode("ascii"), hashlib.sha256).digest())


def new_subject_id() -> str:
    """A fresh subject id: 128 random bits, base64url without padding (22 characters)."""
    return secrets.token_urlsafe(16)


def keygen() -> str:
    """A fresh signing key (`consent-gateway keygen`): 32 random bytes, base64url, no padding."""
    return secrets.token_urlsafe(32)


def sign_cookie(cookie: ConsentCookie, keys: Sequence[CookieKey]) -> str:
    """The cookie value for `cookie`, signed with `keys[0]` (the newest key).

    Raises ValueError when `keys` is empty or the first key's id cannot be carried in
    a cookie value (1-64 characters of [A-Za-z0-9_-]): a configuration error, never a
    visitor's.
    """
    if not keys:
        raise ValueError("no signing key")
    key = keys[0]
    if not _KID_RE.fullmatch(key.id):
        raise ValueError("signing key id must be 1-64 characters of [A-Za-z0-9_-]")
    body = {
        "s": cookie.subject,
        # sorted: the same choice always gives the same value
        "p": {name: int(granted) for name, granted in sorted(cookie.purposes.items())},
        "t": cookie.issued_at,
        "v": cookie.policy_version,
        "o": cookie.source,
    }
    if cookie.vendors:
        body["n"] = {name: int(ok) for name, ok in sorted(cookie.vendors.items())}
    payload = _b64encode(orjson.dumps(body))
    return f"{key.id}.{payload}.{_mac(key.secret, key.id, payload)}"


def verify_cookie(value: str, keys: Sequence[CookieKey]) -> ConsentCookie:
    """The cookie carried by `value`, if one of `keys` signed it and its payload is well formed.

    Raises ConsentCookieError, and nothing else whatever `value` holds, with `reason`:

    - `malformed`: not `<kid>.<payload>.<sig>` in base64url, or longer than 4096 characters;
    - `unknown-key`: signed by a key id not in `keys` (retired, or never ours);
    - `bad-signature`: the signature does not match (forged or altered);
    - `bad-payload`: signed by us but not a payload this version reads.

    Freshness (age, policy version) is the caller's to judge: see `resolve.read_cookie`.
    """
    # SECURITY: bound the work an attacker can cause before anything else is done.
    if not isinstance(value, str) or len(value) > MAX_COOKIE_LENGTH or not value.isascii():
        raise ConsentCookieError("malformed")
    parts = value.split(".")
    if len(parts) != 3:
        raise ConsentCookieError("malformed")
    kid, payload, sig = parts
    if not _KID_RE.fullmatch(kid) or not _B64URL_RE.fullmatch(payload):
        raise ConsentCookieError("malformed")
    # Compare the signature as text, not decoded bytes: the 43rd character carries two
    # unused bits, and a changed character must never verify.
    if not _SIG_RE.fullmatch(sig):
        raise ConsentCookieError("malformed")
    candidates = [k for k in keys if k.id == kid]
    if not candidates:
        raise ConsentCookieError("unknown-key")
    expected = sig.encode("ascii")
    # SECURITY: constant-time comparison, so timing reveals nothing about the right signature.
    # Every key with this id is tried: a duplicated id must not hide the other key.
    ok = False
    for key in candidates:
        ok |= hmac.compare_digest(_mac(key.secret, kid, payload).encode("ascii"), expected)
    if not ok:
        raise ConsentCookieError("bad-signature")
    # Only now, with the signature checked, is the payload parsed.
    return _parse_payload(payload)


def _flags(raw: object) -> dict[str, bool]:
    """A payload's `{"name": 0|1}` object, or bad-payload."""
    if not isinstance(raw, dict):
        raise ConsentCookieError("bad-payload")
    flags: dict[str, bool] = {}
    for name, flag in raw.items():
        # exactly 0 or 1: not true/false, not 1.0 (bool and float are not `int` here)
        if type(flag) is not int or flag not in (0, 1):
            raise ConsentCookieError("bad-payload")
        flags[name] = flag == 1
    return flags


def _parse_payload(payload: str) -> ConsentCookie:
    """The cookie in `payload` (base64url characters, signature checked) or bad-payload."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError as e:  # binascii.Error and orjson.JSONDecodeError are ValueErrors
        raise ConsentCookieError("bad-payload") from e
    if not isinstance(data, dict) or data.keys() not in (_PAYLOAD_KEYS, _VENDOR_PAYLOAD_KEYS):
        raise ConsentCookieError("bad-payload")
    try:
        return ConsentCookie(
            subject=data["s"],
            purposes=MappingProxyType(_flags(data["p"])),
            issued_at=data["t"],
            policy_version=data["v"],
            source=data["o"],
            vendors=_flags(data.get("n", {})),
        )
    except ValueError as e:
        raise ConsentCookieError("bad-payload") from e
