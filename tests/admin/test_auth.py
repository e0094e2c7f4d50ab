"""gateway.admin.auth: the token, sessions, CSRF and the failure limit, alone and through
the admin sub-app (where a wrong credential must never see any data)."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.admin.answers import ADMIN, AdminState
from gateway.admin.auth import (
    COOKIE_NAME,
    Access,
    AdminAuth,
    FailureLimiter,
    Session,
    Verdict,
    client_key,
)
from gateway.config import AdminConfig
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.sinks import SqliteSink
from tests.conftest import RULES_DIR

Client = TestClient[Any, Any]

TOKEN = "admin-test-token-0123456789"
TOKEN_ENV = "CG_TEST_ADMIN"
NOW = 1_800_000_000.0
API_ROUTES = [
    "/_admin/api/records",
    "/_admin/api/overview",
    "/_admin/api/rules",
    "/_admin/api/unknown",
    "/_admin/api/stream",
]
#: a few shipped rules (all of them take a while to load, for every test)
RULE_FILES = [str(RULES_DIR / f"{v}.yaml") for v in ("google-analytics-4", "meta-pixel")]
PAGES = ["/_admin/", "/_admin/overview", "/_admin/rules", "/_admin/unknown"]


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_auth(token: str | None = TOKEN, clock: Clock | None = None, **kw: Any) -> AdminAuth:
    return AdminAuth(AdminConfig(token=token, **kw), clock or Clock())


async def admin_client(
    gateway_factory: Callable[..., Any], token: str | None = TOKEN, **admin: object
) -> Client:
    settings: dict[str, object] = {"secure_cookie": False, **admin}
    env = {}
    if token is not None:
        settings["token_env"] = TOKEN_ENV
        env[TOKEN_ENV] = token
    extra = {"admin": settings, "rules": {"paths": RULE_FILES}}
    client: Client = await gateway_factory(extra=extra, env=env)
    return client


def admin_state(client: Client) -> AdminState:
    for resource in client.app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            app: web.Application = resource.get_info()["app"]
            return app[ADMIN]
    raise AssertionError("no admin sub-app mounted")


def seed(client: Client) -> None:
    """One stored record, so an answer that leaked data would show it."""
    state = admin_state(client)
    db = state.gw.config.decision_log.sqlite_path
    assert db is not None
    sink = SqliteSink(db)
    try:
        sink.write(
            [
                DecisionRecord(
                    ts=time.time(),
                    request_id="seeded-record",
                    action="drop",
                    vendor="google-analytics-4",
                    endpoint="collect",
                    missing=("analytics",),
                    sources={"analytics": "default:opt-in"},
                    regime="opt-in",
                    method="GET",
                    host="www.google-analytics.com",
                    path="/g/collect",
                    stripped=(),
                    reason="analytics not granted",
                )
            ]
        )
    finally:
        sink.close()


async def login(client: Client, token: str = TOKEN, **headers: str) -> Any:
    return await client.post(
        "/_admin/login", data={"token": token}, headers=headers, allow_redirects=False
    )


def session_cookie(client: Client) -> str:
    for cookie in client.session.cookie_jar:
        if cookie.key == COOKIE_NAME:
            return cookie.value
    raise AssertionError("no session cookie")


# --- the pieces ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (None, "-"),
        ("", "-"),
        ("not-an-address", "-"),
    ],
)
def test_client_key(address: str | None, key: str) -> None:
    assert client_key(address) == key


def test_failure_limiter_window() -> None:
    limiter = FailureLimiter(3)
    for i in range(3):
        assert not limiter.blocked("a", NOW + i)
        limiter.failed("a", NOW + i)
    assert limiter.blocked("a", NOW + 3)
    assert not limiter.blocked("b", NOW + 3)  # per client
    assert limiter.blocked("a", NOW + 59.9)
    assert not limiter.blocked("a", NOW + 60.5)  # the first failure left the window
    limiter.reset("a")
    assert not limiter.blocked("a", NOW + 3)


def test_failure_limiter_memory_is_bounded() -> None:
    limiter = FailureLimiter(1, max_clients=3)
    for i in range(10):
        limiter.failed(f"client-{i}", NOW)
    assert [limiter.blocked(f"client-{i}", NOW) for i in range(10)] == [False] * 7 + [True] * 3


@pytest.mark.parametrize(
    ("candidate", "ok"),
    [(TOKEN, True), (TOKEN + "x", False), (TOKEN[:-1], False), ("", False), ("\ud800", False)],
)
def test_check_token(candidate: str, ok: bool) -> None:
    assert make_auth().check_token(candidate) is ok
    assert make_auth(None).check_token(candidate) is False


def test_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    auth = make_auth()
    assert auth.check_token(TOKEN) and not auth.check_token("wrong")
    value, session = auth.new_session()
    assert auth.read_session(value) == session
    assert auth.check_csrf(session, session.csrf)
    assert len(calls) == 4  # token twice, the session signature, the CSRF token


def test_session_round_trip_and_expiry() -> None:
    clock = Clock()
    auth = make_auth(clock=clock, session_max_age=600)
    value, session = auth.new_session()
    assert session.expires == int(NOW + 600) and len(session.csrf) >= 32
    assert auth.read_session(value) == session
    clock.now = NOW + 599
    assert auth.read_session(value) == session
    clock.now = NOW + 600
    assert auth.read_session(value) is None


def tamper(value: str, index: int, new: str) -> str:
    parts = value.split(".")
    parts[index] = new
    return ".".join(parts)


def test_session_is_refused_when_tampered_with() -> None:
    auth = make_auth()
    value, session = auth.new_session()
    later = str(session.expires + 10_000)
    bad = [
        tamper(value, 0, "2"),  # version
        tamper(value, 1, later),  # a longer life
        tamper(value, 2, "A" * len(session.csrf)),  # another CSRF token
        tamper(value, 3, "A" * len(value.split(".")[3])),  # another signature
        value + ".x",
        value.rsplit(".", 1)[0],
        "",
        "garbage",
        "1.٣٣٣.abc.def",  # non-ASCII digits
        value + "A" * 300,
    ]
    assert [auth.read_session(v) for v in bad] == [None] * len(bad)
    # Another token's key signs differently: a new token ends every session.
    assert make_auth("another-admin-token-0123456789").read_session(value) is None
    assert make_auth(None).read_session(value) is None


def test_revoked_session_is_refused() -> None:
    clock = Clock()
    auth = make_auth(clock=clock, session_max_age=600)
    value, session = auth.new_session()
    other_value, other = auth.new_session()
    auth.revoke(session)
    assert auth.read_session(value) is None
    assert auth.read_session(other_value) == other
    clock.now = NOW + 601
    auth.revoke(other)  # prunes the expired revocation; the expired session is refused anyway
    assert auth.read_session(value) is None and not auth._revoked


def test_new_session_needs_a_token() -> None:
    with pytest.raises(RuntimeError):
        make_auth(None).new_session()


@pytest.mark.parametrize(
    ("submitted", "ok"),
    [("same", True), ("other", False), ("", False), (None, False), (b"same", False)],
)
def test_check_csrf(submitted: object, ok: bool) -> None:
    assert make_auth().check_csrf(Session(expires=int(NOW + 60), csrf="same"), submitted) is ok


def test_authenticate() -> None:
    auth = make_auth(max_failures_per_minute=2)
    value, session = auth.new_session()
    table: list[tuple[str | None, str | None, Access]] = [
        (f"Bearer {TOKEN}", None, Access(Verdict.OK)),
        (f"bearer  {TOKEN} ", None, Access(Verdict.OK)),
        (f"Bearer {TOKEN}", "garbage", Access(Verdict.OK)),  # the bearer decides alone
        (None, value, Access(Verdict.OK, session)),
        (None, None, Access(Verdict.MISSING)),
        (None, "garbage", Access(Verdict.INVALID)),
        (f"Basic {TOKEN}", value, Access(Verdict.INVALID)),
        ("Bearer wrong", value, Access(Verdict.INVALID)),
    ]
    for authorization, cookie, expected in table:
        assert auth.authenticate(authorization, cookie, f"c-{authorization}") == expected


def test_authenticate_counts_wrong_bearer_tokens() -> None:
    auth = make_auth(max_failures_per_minute=2)
    assert auth.authenticate("Bearer a", None, "c").verdict is Verdict.INVALID
    assert auth.authenticate("Bearer b", None, "c").verdict is Verdict.INVALID
    # Beyond the limit even the right token is not looked at.
    assert auth.authenticate(f"Bearer {TOKEN}", None, "c").verdict is Verdict.LIMITED
    assert auth.login(TOKEN, "c") is Verdict.LIMITED
    assert auth.authenticate(f"Bearer {TOKEN}", None, "d").verdict is Verdict.OK


def test_login_verdicts() -> None:
    clock = Clock()
    auth = make_auth(clock=clock, max_failures_per_minute=2)
    assert auth.login("wrong", "c") is Verdict.INVALID
    assert auth.login(None, "c") is Verdict.INVALID
    assert auth.login(TOKEN, "c") is Verdict.LIMITED
    clock.now += 61
    assert auth.login(TOKEN, "c") is Verdict.OK
    assert auth.login("wrong", "c") is Verdict.INVALID  # a success cleared the count
    assert auth.login("wrong", "c") is Verdict.INVALID
    assert make_auth(None).login(TOKEN, "c") is Verdict.DISABLED
    assert make_auth(None).authenticate(f"Bearer {TOKEN}", None, "c").verdict is Verdict.DISABLED


# --- through the sub-app ------------------------------------------------------------------

WRONG_CREDENTIALS: list[tuple[str, dict[str, str]]] = [
    ("none", {}),
    ("wrong bearer", {"Authorization": "Bearer wrong-token-0123456789"}),
    ("empty bearer", {"Authorization": "Bearer "}),
    ("basic", {"Authorization": f"Basic {TOKEN}"}),
    ("garbage cookie", {"Cookie": f"{COOKIE_NAME}=garbage"}),
    ("forged cookie", {"Cookie": f"{COOKIE_NAME}=1.9999999999.abc.def"}),
]


@pytest.mark.parametrize("route", API_ROUTES)
@pytest.mark.parametrize(
    ("_name", "headers"), WRONG_CREDENTIALS, ids=[c[0] for c in WRONG_CREDENTIALS]
)
async def test_api_refuses_wrong_credentials_and_shows_nothing(
    gateway_factory: Callable[..., Any], route: str, _name: str, headers: dict[str, str]
) -> None:
    client = await admin_client(gateway_factory)
    seed(client)
    resp = await client.get(route, headers=headers)
    assert resp.status == 401
    assert resp.content_type == "application/json"
    assert orjson.loads(await resp.read()) == {"error": "unauthorized"}
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize(
    ("_name", "headers"), WRONG_CREDENTIALS, ids=[c[0] for c in WRONG_CREDENTIALS]
)
async def test_pages_redirect_to_login(
    gateway_factory: Callable[..., Any], page: str, _name: str, headers: dict[str, str]
) -> None:
    client = await admin_client(gateway_factory)
    seed(client)
    resp = await client.get(page, headers=headers, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/_admin/login"
    assert "google-analytics" not in await resp.text()


async def test_unknown_admin_paths_need_credentials(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    resp = await client.get("/_admin/api/nothing-here")
    assert resp.status == 401
    resp = await client.get("/_admin/nothing-here", allow_redirects=False)
    assert resp.status == 303


@pytest.mark.parametrize("route", API_ROUTES[:-1] + PAGES)
async def test_bearer_token_works(gateway_factory: Callable[..., Any], route: str) -> None:
    client = await admin_client(gateway_factory)
    resp = await client.get(route, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200


@pytest.mark.parametrize("secure", [False, True])
async def test_login_sets_the_session_cookie(
    gateway_factory: Callable[..., Any], secure: bool
) -> None:
    client = await admin_client(gateway_factory, secure_cookie=secure, session_max_age="2h")
    form = await client.get("/_admin/login")
    assert form.status == 200
    page = await form.text()
    assert '<form id="login" method="post" action="/_admin/login">' in page
    assert 'name="token" type="password"' in page
    resp = await login(client)
    assert resp.status == 303 and resp.headers["Location"] == "/_admin/"
    [header] = resp.headers.getall("Set-Cookie")
    attributes = {a.strip().split("=")[0].lower() for a in header.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "Path=/_admin" in header and "SameSite=Strict" in header and "Max-Age=7200" in header
    assert ("secure" in attributes) is secure
    morsel = resp.cookies[COOKIE_NAME]
    assert admin_state(client).auth.read_session(morsel.value) is not None


async def test_session_cookie_opens_pages_and_api(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    await login(client)
    for route in PAGES + API_ROUTES[:-1]:
        resp = await client.get(route, allow_redirects=False)
        assert resp.status == 200, route
    page = await (await client.get("/_admin/")).text()
    csrf = admin_state(client).auth.read_session(session_cookie(client))
    assert csrf is not None
    assert f'<input type="hidden" name="csrf" value="{csrf.csrf}">' in page


async def test_wrong_login_is_refused(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    resp = await login(client, "not-the-token")
    assert resp.status == 401
    page = await resp.text()
    assert 'id="login-error"' in page and 'id="login"' in page
    assert COOKIE_NAME not in resp.cookies


async def test_login_failures_are_rate_limited(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory, max_failures_per_minute=3)
    for _ in range(3):
        assert (await login(client, "wrong")).status == 401
    limited = await login(client)  # the right token, but not checked any more
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "60"
    assert COOKIE_NAME not in limited.cookies
    api = await client.get("/_admin/api/rules", headers={"Authorization": f"Bearer {TOKEN}"})
    assert api.status == 429
    assert orjson.loads(await api.read()) == {"error": "too many failed attempts; wait a minute"}
    # A minute later the client may try again.
    admin_state(client).auth.clock = lambda: time.time() + 61
    assert (await login(client)).status == 303


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, 403),
        # Chromium, from a page served with Referrer-Policy: no-referrer
        ({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, 303),
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
        ({"Sec-Fetch-Site": "same-origin"}, 303),
        ({"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"}, 403),
        ({}, 303),
    ],
)
async def test_login_checks_origin(
    gateway_factory: Callable[..., Any], headers: dict[str, str], status: int
) -> None:
    client = await admin_client(gateway_factory)
    assert (await login(client, **headers)).status == status


async def test_login_from_the_same_origin(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    origin = str(client.make_url("")).rstrip("/")
    assert (await login(client, Origin=origin)).status == 303


@pytest.mark.parametrize("csrf", [None, "", "wrong"])
async def test_logout_needs_the_csrf_token(
    gateway_factory: Callable[..., Any], csrf: str | None
) -> None:
    client = await admin_client(gateway_factory)
    await login(client)
    data = {} if csrf is None else {"csrf": csrf}
    resp = await client.post("/_admin/logout", data=data, allow_redirects=False)
    assert resp.status == 403
    assert (await client.get("/_admin/", allow_redirects=False)).status == 200  # still in


async def test_logout_ends_the_session(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    await login(client)
    value = session_cookie(client)
    session = admin_state(client).auth.read_session(value)
    assert session is not None
    resp = await client.post("/_admin/logout", data={"csrf": session.csrf}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/_admin/login"
    assert resp.cookies[COOKIE_NAME].value == ""
    # Even a copy of the old cookie no longer opens anything.
    headers = {"Cookie": f"{COOKIE_NAME}={value}"}
    client.session.cookie_jar.clear()
    assert (await client.get("/_admin/", headers=headers, allow_redirects=False)).status == 303
    assert (await client.get("/_admin/api/rules", headers=headers)).status == 401


async def test_logout_without_a_session(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    resp = await client.post("/_admin/logout", data={"csrf": "x"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/_admin/login"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    resp = await client.post("/_admin/logout", data={"csrf": "x"}, headers=bearer)
    assert resp.status == 403  # a bearer has no session to end


async def test_expired_session_is_refused(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory, session_max_age="1h")
    # The same token signs the same way: a session that ended a second ago.
    minted = AdminAuth(AdminConfig(token=TOKEN, session_max_age=3600), lambda: time.time() - 3601)
    expired, _ = minted.new_session()
    headers = {"Cookie": f"{COOKIE_NAME}={expired}"}
    resp = await client.get("/_admin/", headers=headers, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/_admin/login"
    assert resp.cookies[COOKIE_NAME].value == ""  # the stale cookie is cleared
    assert (await client.get("/_admin/api/records", headers=headers)).status == 401
    valid = AdminAuth(AdminConfig(token=TOKEN, session_max_age=3600)).new_session()[0]
    resp = await client.get("/_admin/", headers={"Cookie": f"{COOKIE_NAME}={valid}"})
    assert resp.status == 200


@pytest.mark.parametrize("route", ["/_admin/login", *PAGES, *API_ROUTES, "/_admin/nothing"])
async def test_disabled_admin_answers_401(gateway_factory: Callable[..., Any], route: str) -> None:
    client = await admin_client(gateway_factory, token=None)
    seed(client)
    for headers in ({}, {"Authorization": "Bearer anything-at-all-0123"}):
        resp = await client.get(route, headers=headers, allow_redirects=False)
        assert resp.status == 401
        body = await resp.text()
        assert "google-analytics-4" not in body and "seeded-record" not in body
        if route.startswith("/_admin/api/"):
            assert orjson.loads(body) == {"error": "unauthorized"}
        else:
            assert 'id="admin-disabled"' in body and 'id="login"' not in body
    resp = await client.post("/_admin/login", data={"token": "anything-at-all-0123"})
    assert resp.status == 401 and COOKIE_NAME not in resp.cookies


async def test_secrets_are_never_logged(
    gateway_factory: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await admin_client(gateway_factory, max_failures_per_minute=2)
    await login(client)
    value = session_cookie(client)
    session = admin_state(client).auth.read_session(value)
    assert session is not None
    await client.get("/_admin/api/records", headers={"Authorization": f"Bearer {TOKEN}"})
    await client.post("/_admin/logout", data={"csrf": "wrong"})
    await client.post("/_admin/logout", data={"csrf": session.csrf})
    for _ in range(3):
        await login(client, TOKEN + "-guess")
    text = caplog.text
    assert "failed login" in text  # the events are logged ...
    for secret in (TOKEN, value, session.csrf, value.rsplit(".", 1)[1]):
        assert secret not in text  # ... their secrets never


def test_config_token_is_not_in_repr(tmp_path: Path) -> None:
    assert TOKEN not in repr(AdminConfig(token=TOKEN))
