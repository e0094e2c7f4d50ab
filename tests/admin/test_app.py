"""gateway.admin.app: the sub-app's wiring and its guard: credentials on every route
but the login form and the static files, the 303/401 answers, the decision log's 503,
templates and static files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from yarl import URL

import gateway.admin.app as wiring
from gateway.access_log import access_logger_for
from gateway.app import GATEWAY, build_app
from tests.admin.conftest import (
    BEARER,
    RULE_FILES,
    TOKEN,
    TOKEN_ENV,
    Client,
    admin_client,
    api,
    consent,
    erase,
    erase_path,
    history_rows,
    page,
    parse,
    records_path,
    state_of,
    subjects_path,
)
from tests.conftest import make_config

# --- the guard ------------------------------------------------------------------------


async def test_admin_root_without_slash_redirects(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    resp = await client.get("/_admin", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/_admin/"


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong-bearer", "not-bearer"],
)
async def test_subject_api_refuses_wrong_credentials(
    gateway_factory: Callable[..., Any], method: str, headers: dict[str, str]
) -> None:
    client = await admin_client(gateway_factory)
    subject = (await consent(client, {"analytics": True}))["subject"]
    path = records_path(subject) if method == "GET" else erase_path(subject)
    resp = await client.request(method, path, headers=headers)
    assert resp.status == 401
    assert orjson.loads(await resp.read()) == {"error": "unauthorized"}
    assert len((await api(client, records_path(subject)))["records"]) == 1  # not erased


async def test_subject_api_without_an_admin_token_is_closed(
    gateway_factory: Callable[..., Any],
) -> None:
    client = await gateway_factory(extra={"rules": {"paths": RULE_FILES}})
    subject = (await consent(client, {"analytics": True}))["subject"]
    for method, path in (("GET", records_path(subject)), ("POST", erase_path(subject))):
        resp = await client.request(method, path, headers=BEARER)
        assert resp.status == 401
        assert orjson.loads(await resp.read()) == {"error": "unauthorized"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong-bearer", "not-bearer"],
)
async def test_consent_records_page_needs_login(
    gateway_factory: Callable[..., Any], headers: dict[str, str]
) -> None:
    client = await admin_client(gateway_factory)
    subject = (await consent(client, {"analytics": True}))["subject"]
    resp = await client.get(subjects_path(subject), headers=headers, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/_admin/login"
    assert subject not in await resp.text()
    # with a login session it answers, and its only POST form is the logout
    await client.post("/_admin/login", data={"token": TOKEN})
    resp = await client.get(subjects_path(subject), allow_redirects=False)
    assert resp.status == 200
    doc = parse(await resp.text())
    assert len(history_rows(doc)) == 1
    posts = [f.attrs["action"] for f in doc.all("form") if f.attrs["method"] == "post"]
    assert posts == ["/_admin/logout"]


async def test_consent_records_page_without_an_admin_token_is_closed(
    gateway_factory: Callable[..., Any],
) -> None:
    client = await gateway_factory(extra={"rules": {"paths": RULE_FILES}})
    subject = (await consent(client, {"analytics": True}))["subject"]
    resp = await client.get(subjects_path(subject), headers=BEARER)
    assert resp.status == 401
    html = await resp.text()
    assert parse(html).one(id="admin-disabled") and subject not in html


async def test_unreadable_log_is_503(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    db = state_of(client).gw.config.decision_log.sqlite_path
    assert db is not None
    await client.app[GATEWAY].decision_log.close()
    db.write_bytes(b"this is not a database" * 100)
    body = await api(client, "/_admin/api/records", status=503)
    assert body == {"error": "the decision log cannot be read"}
    await page(client, "/_admin/", status=503)


@pytest.mark.parametrize("mode", ["text", "json"])
@pytest.mark.parametrize("visit", ["erase", "records api", "records page"])
async def test_subject_routes_leave_no_subject_id_in_the_access_log(
    tmp_path: Path,
    aiohttp_server: Callable[..., Any],
    aiohttp_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    mode: str,
    visit: str,
) -> None:
    extra: dict[str, Any] = {
        "admin": {"token_env": TOKEN_ENV, "secure_cookie": False},
        "rules": {"paths": RULE_FILES},
        "server": {"access_log": mode},
    }
    cfg = make_config(tmp_path, extra=extra, env={TOKEN_ENV: TOKEN})
    # wired as `consent-gateway serve` does (gateway/serve.py _serve_one)
    server = await aiohttp_server(
        build_app(cfg),
        access_log=logging.getLogger("gateway.access"),
        access_log_class=access_logger_for(cfg.server.access_log),
    )
    client: Client = await aiohttp_client(server)
    subject = (await consent(client, {"analytics": True}))["subject"]
    caplog.set_level(logging.INFO, logger="gateway.access")
    if visit == "erase":
        await erase(client, subject)
        marker = "/erase"
    elif visit == "records api":
        await api(client, records_path(subject))
        marker = "/records"
    else:
        resp = await client.get(subjects_path(subject), headers=BEARER)
        assert resp.status == 200 and subject in await resp.text()
        marker = "/_admin/subjects"
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert any(marker in line for line in lines), lines
    assert not [line for line in lines if subject in line or "subject=" in line], lines


# --- templates and static files -------------------------------------------------------


def test_templates_escape_everything() -> None:
    env = wiring._templates("/_admin")
    assert env.from_string("{{ v }}").render(v="<script>") == "&lt;script&gt;"
    assert (
        env.get_template("base.html")
        .render(title="<i>", nav=False, csrf=None, here="/")
        .count("&lt;i&gt;")
        == 1
    )


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("admin.css", "text/css"), ("admin.js", "text/javascript")],
)
async def test_static_files(
    gateway_factory: Callable[..., Any], name: str, content_type: str
) -> None:
    client = await admin_client(gateway_factory)
    resp = await client.get(f"/_admin/static/{name}")  # public: the login page needs them
    assert resp.status == 200 and resp.content_type == content_type
    body = await resp.read()
    assert body == (Path(wiring.__file__).parent / "static" / name).read_bytes()
    etag = resp.headers["ETag"]
    again = await client.get(f"/_admin/static/{name}", headers={"If-None-Match": etag})
    assert again.status == 304 and not await again.read()


@pytest.mark.parametrize("name", ["admin.py", "..%2Fapp.py", "nothing.css", ""])
async def test_static_serves_only_its_files(gateway_factory: Callable[..., Any], name: str) -> None:
    client = await admin_client(gateway_factory)
    resp = await client.get(URL(f"/_admin/static/{name}", encoded=True), allow_redirects=False)
    assert resp.status in (303, 404)
    assert b"import" not in await resp.read()


def test_live_tail_script_never_writes_markup() -> None:
    js = (Path(wiring.__file__).parent / "static" / "admin.js").read_text()
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js
    assert "textContent" in js and "api/stream" in js and "live-status" in js
