"""gateway.admin.answers: what every admin answer carries (security headers, the
navigation and its CSRF token) and the error answers, on every page and API route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.admin.answers import CSP
from tests.admin.conftest import (
    BEARER,
    TOKEN,
    admin_client,
    api,
    page,
    parse,
    record,
    seed,
)

PAGES = [
    "/_admin/",
    "/_admin/overview",
    "/_admin/rules",
    "/_admin/unknown",
    "/_admin/bypasses",
    "/_admin/explain",
    "/_admin/subjects",
]
API = [
    "/_admin/api/records",
    "/_admin/api/overview",
    "/_admin/api/rules",
    "/_admin/api/unknown",
    "/_admin/api/bypasses",
]


@pytest.mark.parametrize(
    ("path", "cache"),
    [(p, "no-store") for p in [*PAGES, *API, "/_admin/login", "/_admin/nothing"]]
    + [("/_admin/static/admin.css", "no-cache"), ("/_admin/static/admin.js", "no-cache")],
)
async def test_security_headers_on_every_answer(
    gateway_factory: Callable[..., Any], path: str, cache: str
) -> None:
    client = await admin_client(gateway_factory)
    for headers in (BEARER, {}):
        resp = await client.get(path, headers=headers, allow_redirects=False)
        assert resp.headers["Content-Security-Policy"] == (
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["X-Frame-Options"] == "DENY"
        if resp.status in (200, 304) or "static" not in path:
            expected = cache if resp.status == 200 else "no-store"
            assert resp.headers["Cache-Control"] == expected, (path, resp.status)
    assert CSP == resp.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", [*PAGES, "/_admin/login"])
async def test_pages_hold_no_inline_script_or_style(
    gateway_factory: Callable[..., Any], path: str
) -> None:
    client = await admin_client(gateway_factory)
    seed(client, [record("r")])
    doc = await page(client, path)
    for node in doc.walk():
        assert node.tag != "style"
        assert "style" not in node.attrs, node
        assert not any(a.startswith("on") for a in node.attrs), node
        if node.tag == "script":
            assert node.attrs["src"].startswith("/_admin/static/") and not node.text.strip()
        if node.tag == "link":
            assert node.attrs["href"].startswith("/_admin/static/")


@pytest.mark.parametrize("path", PAGES)
async def test_pages_have_the_navigation(gateway_factory: Callable[..., Any], path: str) -> None:
    client = await admin_client(gateway_factory)
    doc = await page(client, path)
    links = {a.attrs["href"]: a.text.strip() for a in doc.one("nav", "main").all("a")}
    assert links == {
        "/_admin/": "Blocked",
        "/_admin/overview": "Overview",
        "/_admin/rules": "Rules",
        "/_admin/unknown": "Unknown destinations",
        "/_admin/bypasses": "Bypasses",
        "/_admin/explain": "Explain",
        "/_admin/subjects": "Consent records",
    }
    current = [a.attrs["href"] for a in doc.all("a") if a.attrs.get("aria-current") == "page"]
    assert path in current
    # Through a bearer token there is no session, so no logout form ...
    assert not doc.all("form", id="logout")
    # ... and with a session there is one, carrying its CSRF token.
    await client.post("/_admin/login", data={"token": TOKEN})
    resp = await client.get(path)
    form = parse(await resp.text()).one("form", id="logout")
    assert form.attrs["method"] == "post" and form.attrs["action"] == "/_admin/logout"
    csrf = form.one("input")
    assert csrf.attrs["name"] == "csrf" and csrf.attrs["type"] == "hidden" and csrf.attrs["value"]


async def test_not_found(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    doc = await page(client, "/_admin/nothing", status=404)
    assert doc.one(id="error-message")
    assert await api(client, "/_admin/api/nothing", status=404) == {"error": "Not Found"}
