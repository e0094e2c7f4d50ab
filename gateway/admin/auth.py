"""Who may use the admin page: the bearer token, login sessions, CSRF, failure limits.

The one secret is `AdminConfig.token` (None: the admin is disabled). Two ways in:

- `Authorization: Bearer <token>` on any request (scripts and the JSON API);
- a login session: `POST /_admin/login` with the token sets the `cg_admin` cookie,
  whose value is signed and carries its expiry and a random CSRF token.

The session cookie's value is `1.<expires>.<csrf>.<signature>`: `expires` in epoch
seconds, `csrf` from `secrets.token_urlsafe`, and the signature base64url
HMAC-SHA256 over `1.<expires>.<csrf>` with the session key HMAC-SHA256(token,
"cg-admin-session"). Changing the token ends every session at once. Logging out
revokes the session in this process (the cookie would otherwise stay valid until
it expires, wherever a copy of it went).

Wrong tokens, presented as a bearer or through the login form, count against the
client's address (IPv6: its /64); beyond `max_failures_per_minute` in the last
minute, `Verdict.LIMITED` is answered without looking at the token.

This module decides; `gateway.admin.app` answers (303, 401, 403, 429). Nothing
here logs, and nothing may log a token, a cookie value or a CSRF token.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from gateway.config import AdminConfig

__all__ = [
    "COOKIE_NAME",
    "COOKIE_PATH",
    "Access",
    "AdminAuth",
    "FailureLimiter",
    "Session",
    "Verdict",
    "client_key",
]

#: the session cookie
COOKIE_NAME: Final = "cg_admin"
#: the session cookie is sent to the admin only
COOKIE_PATH: Final = "/_admin"

_SESSION_VERSION: Final = "1"
_SESSION_KEY_LABEL: Final = b"cg-admin-session"
_EXPIRES = re.compile(r"[0-9]{1,12}")
_B64URL = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: the sliding window of the failure limit (seconds)
_WINDOW: Final = 60.0


class Verdict(enum.StrEnum):
    """What a request's credentials amount to."""

    #: a right bearer token, or a valid, unexpired, unrevoked session
    OK = "ok"
    #: no credentials at all
    MISSING = "missing"
    #: a wrong token, or a session cookie that is forged, malformed, expired or revoked
    INVALID = "invalid"
    #: too many wrong tokens from this client in the last minute: the token was not checked
    LIMITED = "limited"
    #: no token is configured: nobody gets in
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Session:
    """A login session, as its cookie carries it."""

    #: epoch seconds after which the cookie is refused
    expires: int
    #: the value every state-changing form of this session must carry as `csrf`
    csrf: str


@dataclass(frozen=True, slots=True)
class Access:
    """The outcome of `AdminAuth.authenticate`."""

    verdict: Verdict
    #: the session when access came through the login cookie; None for a bearer token
    session: Session | None = None


def client_key(address: str | None) -> str:
    """The key failures are counted under: an IPv4 address, an IPv6 address's /64
    (one host usually holds a whole /64), or `-` when the address is unknown."""
    if not address:
        return "-"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "-"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailureLimiter:
    """Failed attempts per client key in a sliding window of one minute.

    Memory is bounded: at most `max_clients` keys are tracked; beyond that the key
    whose last failure is oldest is forgotten first.
    """

    def __init__(self, max_per_minute: int, *, max_clients: int = 10_000) -> None:
        self.max_per_minute = max_per_minute
        self._max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - _WINDOW:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def blocked(self, key: str, now: float) -> bool:
        """Whether `key` has used up its failures for the last minute."""
        times = self._recent(key, now)
        return times is not None and len(times) >= self.max_per_minute

    def failed(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.max_per_minute)
        times.append(now)
        self._failures.move_to_end(key)
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _digest(text: str) -> bytes:
    # "replace": a lone surrogate from a form must not raise; it cannot match a real token.
    return hashlib.sha256(text.encode("utf-8", "replace")).digest()


class AdminAuth:
    """The admin's credentials check, sessions and failure limit (one per admin app).

    `clock` gives epoch seconds (tests pass a fake one).
    """

    def __init__(self, cfg: AdminConfig, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self.limiter = FailureLimiter(cfg.max_failures_per_minute)
        token = cfg.token
        # Digests, compared in constant time: neither content nor length leaks by timing.
        self._token_digest = _digest(token) if token is not None else None
        self._session_key = (
            hmac.new(token.encode(), _SESSION_KEY_LABEL, hashlib.sha256).digest()
            if token is not None
            else None
        )
        #: csrf token of each session logged out -> its expiry (pruned once expired)
        self._revoked: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return self._token_digest is not None

    def check_token(self, candidate: str) -> bool:
        """Whether `candidate` is the admin token (constant time). False when disabled."""
        if self._token_digest is None:
            return False
        # SECURITY: constant-time comparison; never `==` on secrets.
        return hmac.compare_digest(_digest(candidate), self._token_digest)

    def _sign(self, payload: str) -> str:
        assert self._session_key is not None
        return _b64(hmac.new(self._session_key, payload.encode("ascii"), hashlib.sha256).digest())

    def new_session(self) -> tuple[str, Session]:
        """A fresh session and its cookie value. Only call once the token was checked."""
        if self._session_key is None:
            raise RuntimeError("the admin is disabled: no sessions")
        session = Session(
            expires=int(self.clock() + self.cfg.session_max_age), csrf=secrets.token_urlsafe(24)
        )
        payload = f"{_SESSION_VERSION}.{session.expires}.{session.csrf}"
        return f"{payload}.{self._sign(payload)}", session

    def read_session(self, value: str | None) -> Session | None:
        """The session a cookie value carries, or None: absent, malformed, badly signed,
        expired or revoked (all alike: the caller must not tell them apart)."""
        if value is None or self._session_key is None or len(value) > 256:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != _SESSION_VERSION:
            return None
        _, expires, csrf, signature = parts
        if not (_EXPIRES.fullmatch(expires) and _B64URL.fullmatch(csrf)):
            return None
        if not _B64URL.fullmatch(signature):
            return None
        expected = self._sign(f"{_SESSION_VERSION}.{expires}.{csrf}")
        if not hmac.compare_digest(signature.encode("ascii"), expected.encode("ascii")):
            return None
        session = Session(int(expires), csrf)
        if session.expires <= self.clock() or csrf in self._revoked:
            return None
        return session

    def revoke(self, session: Session) -> None:
        """Refuse `session` from now on, in this process (logout)."""
        now = self.clock()
        self._revoked = {c: e for c, e in self._revoked.items() if e > now}
        if session.expires > now:
            self._revoked[session.csrf] = session.expires

    def check_csrf(self, session: Session, submitted: object) -> bool:
        """Whether a form's `csrf` field is this session's token (constant time)."""
        if not isinstance(submitted, str):
            return False
        return hmac.compare_digest(submitted.encode("utf-8", "replace"), session.csrf.encode())

    def login(self, candidate: object, client: str) -> Verdict:
        """A login form's token: OK, INVALID (counted against `client`), LIMITED (not
        checked) or DISABLED. A success clears `client`'s failures."""
        if not self.enabled:
            return Verdict.DISABLED
        now = self.clock()
        if self.limiter.blocked(client, now):
            return Verdict.LIMITED
        if isinstance(candidate, str) and candidate and self.check_token(candidate):
            self.limiter.reset(client)
            return Verdict.OK
        self.limiter.failed(client, now)
        return Verdict.INVALID

    def authenticate(self, authorization: str | None, cookie: str | None, client: str) -> Access:
        """A request's access from its `Authorization` header and `cg_admin` cookie.

        A bearer token, when sent, decides alone (a wrong one counts as a failure
        against `client`); otherwise the session cookie does.
        """
        if not self.enabled:
            return Access(Verdict.DISABLED)
        if authorization is not None:
            scheme, _, credentials = authorization.strip().partition(" ")
            if scheme.lower() != "bearer":
                return Access(Verdict.INVALID)
            now = self.clock()
            if self.limiter.blocked(client, now):
                return Access(Verdict.LIMITED)
            if self.check_token(credentials.strip()):
                return Access(Verdict.OK)
            self.limiter.failed(client, now)
            return Access(Verdict.INVALID)
        if cookie is None:
            return Access(Verdict.MISSING)
        session = self.read_session(cookie)
        return Access(Verdict.OK, session) if session is not None else Access(Verdict.INVALID)
