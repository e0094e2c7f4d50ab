"""Log privacy (issue 10, defect 7): what a visitor sends never reaches a log or a page.

Values are planted in every position a request has (path segments, `;` parameters,
userinfo, query, body, headers, cookies, X-Forwarded-For, the request line of
malformed requests sent over raw sockets, CSP and router reports' URLs and samples)
and then looked for in every sink: the decision log (SQLite rows and JSON lines, the
aggregated bypasses table), the access log, every log record of
every logger, stdout and stderr, the admin pages and API, `/metrics`,
`consent-gateway logs --json`, and the answers to malformed requests.

Two gateways: one in this process, served by `GatewayRunner` exactly as `serve`
does (so every logger can be captured), and a real `consent-gateway serve`
process (so its own stderr and stdout are what is checked).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
import yarl
from aiohttp import web

from gateway.access_log import (
    AIOHTTP_LOGGERS,
    GatewayRunner,
    JsonAccessLogger,
    install_log_privacy,
)
from gateway.app import GATEWAY, build_app, front_for
from gateway.cli import main as cli_main
from tests.conftest import ROOT, TEST_KEY, FakeVendor, config_text, make_config, overrides_for

TOKEN = "admin-privacy-token-0123456789"
TOKEN_ENV = "CG_TEST_ADMIN"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

# --- what is planted ----------------------------------------------------------------------

EMAIL = "alice.leak@example.com"
EMAIL_ENC = "alice.leak%40example.com"
GCLID = "GCLIDLEAK123"
FBCLID = "FBLEAKfb0987654321"
CID = "555777.888999"
PASSWORD = "hunter2LEAK"
CLIENT_IP = "198.51.100.77"  # the visitor, as the trusted proxy (loopback) reports it
CLAIMED_IP = "203.0.113.99"  # what the visitor claims in its own X-Forwarded-For entry
COOKIE_VALUE = "GA1.2.CKLEAK4242"
CONSENT_STRING = "CPLEAKconsentSTRING"
USER_AGENT = "UALEAKbrowser/1.0"
HEADER_VALUE = "HDRLEAKvalue"
BODY_VALUE = "BODYLEAKvalue"
REFERRER_VALUE = "REFLEAKpage"
SUBJECT_HEADER_VALUE = "SUBLEAKsubject"

#: name -> a string that must be found in no sink
PLANTED = {
    "email": "alice.leak",  # any spelling of the address contains its local part
    "gclid": GCLID,
    "fbclid": FBCLID,
    "client id": CID,
    "userinfo password": PASSWORD,
    "client address": CLIENT_IP,
    "claimed address": CLAIMED_IP,
    "cookie value": "CKLEAK4242",
    "consent string": CONSENT_STRING,
    "user agent": "UALEAK",
    "header value": HEADER_VALUE,
    "body value": BODY_VALUE,
    "referrer value": REFERRER_VALUE,
    "subject header": SUBJECT_HEADER_VALUE,
}

#: every request carries these: addresses, cookies (also an illegal cookie name), headers
COMMON_HEADERS = {
    "X-Forwarded-For": f"{CLAIMED_IP}, {CLIENT_IP}",
    "User-Agent": USER_AGENT,
    "Cookie": (
        f"_ga={COOKIE_VALUE}; euconsent-v2={CONSENT_STRING}; {EMAIL}=1; "
        f"_fbp=fb.1.{FBCLID}; {GCLID}={EMAIL_ENC}"
    ),
    "Referer": f"https://site.example/{REFERRER_VALUE}?email={EMAIL}&gclid={GCLID}",
    "X-Custom": HEADER_VALUE,
}

GA = "www.google-analytics.com"
#: the listed hosts the probes reach: each goes to the fake vendor, never the internet
HOSTS = (GA, "ad.doubleclick.net", "connect.facebook.net")
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Probe:
    """One request sent as written (the target is not re-quoted), with `COMMON_HEADERS`."""

    method: str
    target: str
    body: bytes = b""
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


#: every route and every position a value can take in a well-formed request
REQUESTS: list[Probe] = [
    # unknown destinations: values in path segments, `;` parameters and the query
    Probe("GET", f"/t/evil.example/u/{EMAIL_ENC}/{GCLID}?gclid={GCLID}&fbclid={FBCLID}"),
    Probe("GET", f"/t/evil.example/u/{EMAIL}/{FBCLID}/{CID}"),
    Probe("GET", f"/t/evil.example/x;em={EMAIL};gclid={GCLID};{FBCLID}"),
    Probe("GET", f"/t/evil.example/ip/{CLIENT_IP}/{CLAIMED_IP}"),
    Probe("GET", f"/t/evil.example/src={GCLID};u1={EMAIL_ENC}"),
    # the host segment: userinfo (plain and encoded), a port, an address, a bare token
    Probe("GET", f"/t/{EMAIL}:{PASSWORD}@evil.example/x?gclid={GCLID}"),
    Probe("GET", f"/t/{EMAIL_ENC}:{PASSWORD}%40evil.example/x"),
    Probe("GET", f"/t/evil.example:{PASSWORD}/x"),
    Probe("GET", f"/t/{CLAIMED_IP}/x"),
    Probe("GET", f"/t/{GCLID}/x"),
    # a listed host, but no endpoint for the path or method
    Probe("GET", f"/t/{GA}/u/{EMAIL}/{GCLID}?cid={CID}"),
    Probe("DELETE", f"/t/{GA}/g/collect/{GCLID}"),
    # matched endpoints, dropped without consent: query, form and JSON bodies, `;` params
    Probe("GET", f"/t/{GA}/g/collect?v=2&tid=G-1&cid={CID}&uid={EMAIL}&gclid={GCLID}"),
    Probe(
        "POST",
        f"/t/{GA}/g/collect?v=2&tid=G-1&cid={CID}",
        f"en=page_view&uid={EMAIL}&ep.x={BODY_VALUE}&gclid={GCLID}".encode(),
        FORM,
    ),
    Probe(
        "POST",
        f"/t/{GA}/g/collect?v=2&tid=G-1",
        json.dumps({"uid": EMAIL, "x": BODY_VALUE}).encode(),
        "application/json",
    ),
    Probe(
        "GET",
        f"/t/ad.doubleclick.net/activityi;src=1;u1={EMAIL};ord={GCLID};{FBCLID}=1?gclid={GCLID}",
    ),
    Probe("GET", f"/t/ad.doubleclick.net/ddm/activity/src={GCLID};u1={EMAIL_ENC}"),
    Probe("GET", f"/t/connect.facebook.net/tr/?id=1&ev=PageView&udff[em]={EMAIL}&fbc={FBCLID}"),
    # a server-to-server event naming its subject
    Probe(
        "POST",
        f"/t/{GA}/g/collect?v=2&tid=G-1&cid={CID}",
        f"en=purchase&uid={EMAIL}".encode(),
        FORM,
        {"X-Subject": SUBJECT_HEADER_VALUE},
    ),
    # the first-party route
    Probe("GET", f"/ga4/g/collect?v=2&tid=G-1&cid={CID}&gclid={GCLID}"),
    Probe("GET", f"/ga4/u/{EMAIL_ENC}/{GCLID}"),
    # the consent API, with values where none belong
    Probe("GET", f"/consent?email={EMAIL}&gclid={GCLID}"),
    Probe(
        "POST",
        "/consent",
        json.dumps({"purposes": {GCLID: True, "analytics": False}, "email": EMAIL}).encode(),
        "application/json",
    ),
    Probe("POST", "/consent", f'{{"purposes": "{BODY_VALUE}"}}'.encode(), "application/json"),
    # bypass reports: values in the page and blocked URLs, the script sample, everything
    Probe(
        "POST",
        "/csp-report",
        json.dumps(
            {
                "csp-report": {
                    "document-uri": f"https://site.example/u/{EMAIL_ENC}/{GCLID}?gclid={GCLID}",
                    "blocked-uri": f"https://www.facebook.com/tr?id=1&fbc={FBCLID}&em={EMAIL}",
                    "script-sample": f"fbq('init', '{CID}', {{em: '{EMAIL}'}})",
                    "referrer": f"https://site.example/?r={REFERRER_VALUE}",
                    "source-file": f"https://site.example/{BODY_VALUE}.js",
                    "original-policy": f"img-src 'self' {HEADER_VALUE}",
                }
            }
        ).encode(),
        "application/csp-report",
    ),
    Probe(
        "POST",
        "/csp-report",
        json.dumps(
            [
                {
                    "type": "csp-violation",
                    "url": f"https://site.example/p?em={EMAIL}",
                    "user_agent": USER_AGENT,
                    "body": {
                        "documentURL": f"https://site.example/c/{CID}?gclid={GCLID}",
                        "blockedURL": f"https://www.facebook.com/tr/{FBCLID}?cd[em]={EMAIL}",
                        "sample": BODY_VALUE,
                        "referrer": REFERRER_VALUE,
                    },
                }
            ]
        ).encode(),
        "application/reports+json",
    ),
    Probe(
        "POST",
        "/cg-report",
        json.dumps(
            {
                "kind": "unlisted",
                "host": "cdn.tracker.example",
                "page": f"/u/{EMAIL}/{GCLID}?gclid={GCLID}&fbclid={FBCLID}",
                "url": f"https://cdn.tracker.example/x?em={EMAIL}&v={BODY_VALUE}",
            }
        ).encode(),
        "text/plain;charset=UTF-8",
    ),
    Probe(
        "POST", "/cg-report", f'{{"kind": "unlisted", "host": "{EMAIL}"}}'.encode(), "text/plain"
    ),
    Probe("POST", "/csp-report", f"not json {EMAIL} {GCLID}".encode(), "application/csp-report"),
    # the gateway's own and the admin paths, unauthenticated
    Probe("GET", f"/metrics?gclid={GCLID}"),
    Probe("GET", f"/healthz/{EMAIL_ENC}?x={GCLID}"),
    Probe("GET", f"/_admin/?since={GCLID}&vendor={EMAIL}"),
    Probe("GET", f"/_admin/api/records?vendor={EMAIL}"),
    Probe("GET", f"/{EMAIL_ENC}/{GCLID}?fbclid={FBCLID}"),
]

#: raw bytes the HTTP parser refuses: values in the request line, headers and body framing
MALFORMED: list[bytes] = [
    f"GET /t/evil example/x?gclid={GCLID}&em={EMAIL} HTTP/1.1\r\nHost: a\r\n\r\n".encode(),
    f"GET /t/{GA}/g/collect?cid={CID} HTTP/1.1\r\nHost: a\r\nX: \x01{EMAIL}\r\n\r\n".encode(),
    f"G\x01T /x?gclid={GCLID} HTTP/1.1\r\nHost: a\r\n\r\n".encode(),
    f"{GCLID} /x?em={EMAIL} HTTP/1.1\r\nHost: a\r\n\r\n".encode(),
    f"GET /x?gclid={GCLID} HTTP/1.1\r\nContent-Length: {CID}x\r\n\r\n".encode(),
    f"GET /x?gclid={GCLID}\x00{FBCLID} HTTP/1.1\r\nHost: a\r\n\r\n".encode(),
    f"GET /x HTTP/1.1\r\nHost: a\r\nCookie {COOKIE_VALUE}\r\n\r\n".encode(),
    (
        f"POST /t/{GA}/g/collect?cid={CID} HTTP/1.1\r\nHost: a\r\n"
        f"Transfer-Encoding: chunked\r\n\r\n{BODY_VALUE}\r\n"
    ).encode(),
    f"GET /{GCLID}{'x' * 9000}?em={EMAIL} HTTP/1.1\r\nHost: a\r\n\r\n".encode(),
    f"GET /x HTTP/1.1\r\nHost: a\r\nX-Long: {EMAIL}{'y' * 9000}\r\n\r\n".encode(),
]

#: accepted by the parser but unusual: absolute-form targets with userinfo
ABSOLUTE_FORM: list[bytes] = [
    (
        f"GET http://{EMAIL}:{PASSWORD}@evil.example/t/evil.example/{GCLID}?em={EMAIL} "
        f"HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    ).encode(),
]


def leaks(sinks: dict[str, str]) -> list[tuple[str, str, str]]:
    """(planted name, sink, excerpt) for every planted value found in a sink."""
    found = []
    for what, value in PLANTED.items():
        for sink, text in sinks.items():
            at = text.find(value)
            if at != -1:
                found.append((what, sink, text[max(0, at - 80) : at + 80]))
    return found


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a fresh connection; everything answered until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def send_everything(base: str) -> dict[str, str]:
    """Every request of `REQUESTS`, `MALFORMED` and `ABSOLUTE_FORM` against `base`;
    the answers to the malformed ones, by index (they are a sink too)."""
    port = yarl.URL(base).port
    assert port is not None
    async with aiohttp.ClientSession() as session:
        for probe in REQUESTS:
            headers = {**COMMON_HEADERS, **probe.headers}
            if probe.content_type:
                headers["Content-Type"] = probe.content_type
            url = yarl.URL(base + probe.target, encoded=True)
            async with session.request(
                probe.method, url, data=probe.body or None, headers=headers, allow_redirects=False
            ) as resp:
                await resp.read()
                assert resp.status < 500, (probe, resp.status)
    answers: dict[str, str] = {}
    for i, data in enumerate(MALFORMED):
        answer = await raw_exchange(port, data)
        assert b" 400 " in answer.split(b"\r\n", 1)[0], answer[:200]
        answers[f"answer to malformed request {i}"] = answer.decode("latin-1")
    for i, data in enumerate(ABSOLUTE_FORM):
        answer = await raw_exchange(port, data)
        answers[f"answer to absolute-form request {i}"] = answer.decode("latin-1")
    return answers


def gateway_doc(tmp_path: Path) -> dict[str, Any]:
    """The sections every gateway here adds to `config_text`'s."""
    return {
        "server": {"access_log": "json", "trusted_proxies": ["127.0.0.0/8"], "log_level": "DEBUG"},
        "decision_log": {"jsonl": str(tmp_path / "data" / "decisions.jsonl")},
        "admin": {"token_env": TOKEN_ENV, "secure_cookie": False},
        "store": {"subject_header": "X-Subject"},
    }


@pytest.fixture
def privacy_filter() -> Iterator[None]:
    """`install_log_privacy` as `consent-gateway serve` runs it, undone afterwards."""
    before = {n: list(logging.getLogger(n).filters) for n in AIOHTTP_LOGGERS}
    install_log_privacy()
    try:
        yield
    finally:
        for name, filters in before.items():
            logging.getLogger(name).filters[:] = filters


@pytest.fixture(params=["access-log", "front"])
async def live_gateway(
    request: pytest.FixtureRequest, tmp_path: Path, fake_vendor: FakeVendor, privacy_filter: None
) -> AsyncIterator[tuple[str, web.Application]]:
    """A gateway on a real socket, wired as `consent-gateway serve` wires it: with the JSON
    access log (every request through aiohttp), and without (tag requests answered
    locally through `gateway.front`)."""
    cfg = make_config(
        tmp_path, overrides_for(fake_vendor, HOSTS), gateway_doc(tmp_path), {TOKEN_ENV: TOKEN}
    )
    app = build_app(cfg)
    if request.param == "access-log":
        runner = GatewayRunner(
            app, access_log=logging.getLogger("gateway.access"), access_log_class=JsonAccessLogger
        )
    else:
        runner = GatewayRunner(app, access_log=None, front=front_for(app, access_log=False))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()


async def test_no_planted_value_reaches_any_sink(
    request: pytest.FixtureRequest,
    live_gateway: tuple[str, web.Application],
    tmp_path: Path,
    fake_vendor: FakeVendor,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    base, app = live_gateway
    gw = app[GATEWAY]
    sinks = await send_everything(base)
    metrics_text = ""
    async with aiohttp.ClientSession(headers=BEARER) as session:
        async with session.get(base + "/metrics") as resp:
            metrics_text = await resp.text()
    # Explicit drain: close() writes every accepted record and closes the sinks.
    await gw.decision_log.close()

    db = tmp_path / "data" / "decisions.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT * FROM decisions").fetchall()
        bypasses = conn.execute("SELECT * FROM bypasses").fetchall()
    sinks["decision log (SQLite)"] = "\n".join(repr(r) for r in rows)
    sinks["bypasses (SQLite)"] = "\n".join(repr(r) for r in bypasses)
    sinks["decision log (JSON lines)"] = (tmp_path / "data" / "decisions.jsonl").read_text()
    sinks["metrics"] = metrics_text
    async with aiohttp.ClientSession(headers=BEARER) as session:
        for page in (
            "/_admin/?since=all",
            "/_admin/?view=records&since=all",
            "/_admin/record?id=1",
            "/_admin/overview?since=all",
            "/_admin/unknown?since=all",
            "/_admin/bypasses?since=all",
            "/_admin/rules",
            "/_admin/api/records?since=all&limit=1000",
            "/_admin/api/overview?since=all",
            "/_admin/api/unknown?since=all",
            "/_admin/api/bypasses?since=all",
            "/_admin/api/rules",
        ):
            async with session.get(base + page) as resp:
                assert resp.status == 200, page
                sinks[f"admin {page}"] = await resp.text()
            if "/api/" not in page:
                # as read: a host name is split into labels by markup (<wbr> after a dot)
                sinks[f"admin {page} (text)"] = re.sub(r"<[^>]*>", "", sinks[f"admin {page}"])

    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        config_text(tmp_path, overrides_for(fake_vendor, HOSTS), gateway_doc(tmp_path))
    )
    monkeypatch.setenv("CG_TEST_KEY", TEST_KEY)
    capfd.readouterr()  # what the gateway wrote so far is checked below, with the rest
    assert cli_main(["logs", "--config", str(config_file), "--json", "--limit", "1000"]) == 0
    logs_out = capfd.readouterr()
    sinks["consent-gateway logs --json"] = logs_out.out + logs_out.err

    access = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    sinks["access log"] = "\n".join(access)
    sinks["every log record"] = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    sinks["log text (tracebacks included)"] = caplog.text
    out = capfd.readouterr()
    sinks["stdout"], sinks["stderr"] = out.out, out.err

    # Positive controls: the sinks hold what they should, so their silence means something.
    assert len(rows) >= 20
    assert '"action":"reject"' in sinks["decision log (JSON lines)"]
    assert '"host":"evil.example"' in sinks["consent-gateway logs --json"]
    assert "evil.example" in sinks["admin /_admin/unknown?since=all"]
    assert "www.facebook.com" in sinks["admin /_admin/bypasses?since=all (text)"]
    assert '"host":"cdn.tracker.example"' in sinks["admin /_admin/api/bypasses?since=all"]
    assert "{…}" in sinks["bypasses (SQLite)"] and len(bypasses) == 3
    assert (
        'consent_gateway_bypass_reports_total{source="csp",vendor="meta-pixel"} 2.0' in metrics_text
    )
    assert "{…}" in sinks["admin /_admin/api/records?since=all&limit=1000"]
    if request.node.callspec.params["live_gateway"] == "access-log":
        assert len(access) >= len(REQUESTS) + len(MALFORMED)
        assert "198.51.100.0" in sinks["access log"] or "127.0.0.0" in sinks["access log"]
    else:  # no access log: tag requests were answered by the front, the rest by aiohttp
        assert not access
    assert "bad request from a client" in sinks["every log record"]
    assert "consent_gateway_requests_total" in sinks["metrics"]

    found = leaks(sinks)
    assert not found, "\n".join(f"{what} in {sink}: …{text}…" for what, sink, text in found)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_serve_process_writes_no_planted_value(
    tmp_path: Path, fake_vendor: FakeVendor
) -> None:
    """`consent-gateway serve` itself: its stderr and stdout (decision log JSON lines
    to stdout, access log and DEBUG logging to stderr) and its answers."""
    port = _free_port()
    doc = yaml.safe_load(config_text(tmp_path, overrides_for(fake_vendor, HOSTS)))
    for section, values in gateway_doc(tmp_path).items():
        doc.setdefault(section, {}).update(values)
    doc["server"].update({"port": port, "host": "127.0.0.1", "drain_delay": 0})
    doc["decision_log"]["jsonl"] = "-"
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(doc))
    out_file, err_file = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    env = {**os.environ, "CG_TEST_KEY": TEST_KEY, TOKEN_ENV: TOKEN}
    with out_file.open("wb") as out, err_file.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config_file)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):  # until it listens (a positive condition, bounded)
                try:
                    async with session.get(base + "/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert proc.poll() is None, err_file.read_text()
                await asyncio.sleep(0.05)
        answers = await send_everything(base)
    finally:
        # SIGTERM: the runner shuts down and drains the decision log before exit.
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err_file.read_text()
    sinks = {**answers, "stdout": out_file.read_text(), "stderr": err_file.read_text()}
    assert '"action":"reject"' in sinks["stdout"]  # the decision log reached stdout
    assert "gateway.access" in sinks["stderr"] and "bad request from a client" in sinks["stderr"]
    for name, answer in answers.items():
        if "malformed" in name:
            assert answer.endswith('{"error":"bad request"}'), (name, answer)
    found = leaks(sinks)
    assert not found, "\n".join(f"{what} in {sink}: …{text}…" for what, sink, text in found)
