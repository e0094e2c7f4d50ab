"""Shared fixtures: a recording fake vendor and a gateway wired to it.

The fake vendor stands in for every vendor host: `upstream.overrides` maps each
vendor origin to `http://127.0.0.1:{port}/{host}`, so the fake sees which vendor
a request was for in the first path segment. No test ever reaches a real vendor.

The decision log's tests (tests/decision_log/, tests/cli/test_logs.py) share their
builders here: facts, decisions and records (`make_record`), a stored log (`log_db`),
and the request secrets (`SECRETS`) no record may ever hold.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.config import DecisionLogConfig, GatewayConfig, parse_config
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.sinks import SqliteSink
from gateway.errors import ConfigError
from gateway.metrics import Metrics
from gateway.model import (
    Action,
    ConsentState,
    ConsentValue,
    Decision,
    Facts,
    Headers,
    IpPolicy,
    PurposeConsent,
    StripSpec,
)
from gateway.ruleset.match import RuleSet

#: the stores' fixtures (`backend`, `store`, `pg_schema`), for every test module
pytest_plugins = ["tests.stores"]

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "rules"
#: every shipped rule file
SHIPPED_RULES = sorted(RULES_DIR.glob("*.yaml"))
#: "billion laughs": nine levels of nine aliases, 377 bytes that expand to 9**9 strings
BOMB = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)
TEST_KEY = base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=")
#: a config whose only signing key is read from CG_TEST_KEY, and an environment with it
CONFIG_KEYS = "cookie:\n  keys: [{id: k1, secret_env: CG_TEST_KEY}]\n"
CONFIG_ENV = {"CONSENT_GATEWAY_COOKIE_KEY": TEST_KEY, "CG_TEST_KEY": TEST_KEY}
PG_DSN = os.environ.get("GATEWAY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Seen:
    """One request as the fake vendor received it."""

    method: str
    host: str  # the vendor host the gateway meant (first path segment)
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeVendor:
    url: str
    seen: list[Seen] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    #: path suffix -> (status, headers, body) to answer with
    answers: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    delay: float = 0.0

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Seen]:
        """Wait until at least `count` requests arrived (background forwards are async)."""

        async def _wait() -> None:
            while len(self.seen) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(_wait(), timeout)
        return self.seen

    def base_for(self, host: str) -> str:
        return f"{self.url}/{host}"


@pytest.fixture
async def fake_vendor(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> AsyncIterator[FakeVendor]:
    holder: list[FakeVendor] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        vendor = holder[0]
        raw = request.raw_path.partition("?")[0]
        _, host, rest = raw.split("/", 2) if raw.count("/") >= 2 else ("", raw.strip("/"), "")
        vendor.seen.append(
            Seen(
                method=request.method,
                host=host,
                path="/" + rest,
                query=request.raw_path.partition("?")[2],
                headers={k.lower(): v for k, v in request.headers.items()},
                body=await request.read(),
            )
        )
        vendor.arrived.set()
        if vendor.delay:
            await asyncio.sleep(vendor.delay)
        for suffix, (status, headers, body) in vendor.answers.items():
            if raw.endswith(suffix):
                return web.Response(status=status, headers=headers, body=body)
        return web.Response(text="vendor-ok", headers={"Set-Cookie": "vendor_id=abc; Path=/"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app)
    assert isinstance(server, TestServer)
    fv = FakeVendor(url=str(server.make_url("")).rstrip("/"))
    holder.append(fv)
    yield fv


def config_problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    """The problems `parse_config` reports for `text` (as file gw.yaml), as strings."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "gw.yaml", env=CONFIG_ENV if env is None else env)
    return [str(p) for p in info.value.problems]


def config_text(
    tmp_path: Path,
    overrides: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> str:
    """YAML for a test gateway: shipped rules, SQLite log in tmp_path, fake upstreams."""
    doc: dict[str, object] = {
        "data_dir": str(tmp_path / "data"),
        # one test client, one port: the operators' routes share it (/metrics then
        # needs the admin token); tests of the separate listener set a port
        "server": {"admin_port": None},
        "rules": {"paths": [str(RULES_DIR)]},
        "cookie": {"keys": [{"id": "k1", "secret_env": "CG_TEST_KEY"}], "secure": False},
        "upstream": {"overrides": overrides or {}, "connect_timeout": 1, "total_timeout": 3},
        "decision_log": {
            "sqlite_path": str(tmp_path / "data" / "decisions.db"),
            "flush_interval": "10ms",
            # A writer process costs each test gateway 0.3 s to start (the suite's
            # gateways: twice the time); tests/decision_log runs both hosts, and the
            # served gateways of tests/cli and tests/test_serve.py keep the default.
            "writer": "thread",
        },
    }
    for key, value in (extra or {}).items():
        section = doc.setdefault(key, {})
        if isinstance(section, dict) and isinstance(value, dict):
            section.update(value)
        else:
            doc[key] = value
    return yaml.safe_dump(doc)


def make_config(
    tmp_path: Path,
    overrides: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
) -> GatewayConfig:
    """`env`: further environment variables the config may name (e.g. `admin.token_env`)."""
    return parse_config(
        config_text(tmp_path, overrides, extra),
        str(tmp_path / "config.yaml"),
        env={"CG_TEST_KEY": TEST_KEY, **(env or {})},
    )


def overrides_for(fake: FakeVendor, hosts: Iterable[str]) -> dict[str, str]:
    return {f"https://{h}": fake.base_for(h) for h in hosts}


@pytest.fixture
def gateway_factory(
    tmp_path: Path,
    fake_vendor: FakeVendor,
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
) -> Callable[..., object]:
    """`await gateway_factory(hosts=[...], extra={...}, env={...}, rules=...)` -> TestClient of a
    gateway whose vendor origins for `hosts` go to the fake vendor (`env`: variables
    the config may name, e.g. `admin.token_env`)."""

    async def factory(
        hosts: Iterable[str] = (),
        extra: dict[str, object] | None = None,
        env: dict[str, str] | None = None,
        rules: RuleSet | None = None,
    ) -> TestClient[web.Request, web.Application]:
        from gateway.app import build_app  # imported late: the fixtures serve pure tests too

        cfg = make_config(tmp_path, overrides_for(fake_vendor, hosts), extra, env)
        # `rules`: a compiled rule set shared by a module's tests (compiling the shipped
        # rules is most of a gateway's start-up)
        client = await aiohttp_client(build_app(cfg, rules))
        assert isinstance(client, TestClient)
        return client

    return factory


def cookie_for(
    consent: dict[str, str], subject: str = "test-subject", issued_at: int | None = None
) -> str:
    """A signed consent cookie value (TEST_KEY, id k1) expressing `consent`
    (purpose -> granted|denied; `unknown` purposes are left out)."""
    import time

    from gateway.config import CookieKey
    from gateway.consent.cookie import ConsentCookie, sign_cookie

    purposes = {p: v == "granted" for p, v in consent.items() if v in ("granted", "denied")}
    cookie = ConsentCookie(
        subject=subject,
        purposes=purposes,
        issued_at=int(time.time()) if issued_at is None else issued_at,
        policy_version=1,
        source="test",
    )
    return sign_cookie(cookie, (CookieKey("k1", b"k" * 32),))


def field_present(seen: Seen, name: str) -> bool:
    """Whether field `name` reached the vendor: a query or form/batch-body parameter, or
    `json:dotted.path` (with `[]` for every element) in a JSON body. The same test as
    `consent-gateway check` runs on an example's transformed request."""
    from gateway.examples import field_reached

    return field_reached(seen.path, seen.query, seen.body, name)


async def settled(client: TestClient[web.Request, web.Application]) -> None:
    """Wait until the gateway behind `client` has sent every background forward it
    queued (or failed it): a negative check ("nothing reached the vendor") after this
    is exact, where a fixed sleep would pass on a slow machine even when it is wrong."""
    from gateway.app import GATEWAY

    await client.app[GATEWAY].upstream.drain()


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """config.example.yaml as shipped, its data and rules pointed at tmp_path and the
    repository, the signing key in the environment: what `serve` and the CLI read."""
    doc = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    doc["data_dir"] = str(tmp_path / "data")
    doc["rules"]["paths"] = [str(RULES_DIR)]
    doc["decision_log"]["sqlite_path"] = str(tmp_path / "data" / "decisions.db")
    # no load balancer to wait for when a test stops it
    doc["server"]["drain_delay"] = 0
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("CONSENT_GATEWAY_COOKIE_KEY", TEST_KEY)
    return path


# --- the decision log: records, files and the secrets they must never hold ----------------

#: 2026-11-29T10:00:00Z, the time of every decision-log test record unless one says otherwise
T0 = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC).timestamp()


def make_facts(**kw: Any) -> Facts:
    args: dict[str, Any] = {
        "request_id": "req-1",
        "method": "GET",
        "host": "www.google-analytics.com",
        "path": "/g/collect",
        "query": "v=2&tid=G-X",
        "now": T0,
    }
    args.update(kw)
    return Facts(**args)


def make_decision(action: Action = Action.DROP, **kw: Any) -> Decision:
    args: dict[str, Any] = {
        "action": action,
        "vendor": "google-analytics-4",
        "endpoint": "collect",
        "required": frozenset({"analytics"}),
        "missing": frozenset({"analytics"}),
        "strips": StripSpec(),
        "reason": "analytics not granted",
    }
    args.update(kw)
    return Decision(**args)


def make_consent(**states: ConsentValue) -> ConsentState:
    return ConsentState(
        {p: PurposeConsent(v, "cookie") for p, v in states.items()}, regime="opt-in"
    )


def make_record(request_id: str, **kw: Any) -> DecisionRecord:
    args: dict[str, Any] = {
        "ts": T0,
        "request_id": request_id,
        "action": "drop",
        "vendor": "google-analytics-4",
        "endpoint": "collect",
        "missing": ("analytics",),
        "sources": {"analytics": "default:opt-in"},
        "regime": "opt-in",
        "method": "GET",
        "host": "www.google-analytics.com",
        "path": "/g/collect",
        "stripped": (),
        "reason": "analytics not granted",
    }
    args.update(kw)
    return DecisionRecord(**args)


#: rejected requests for no vendor (and two that are not), for the unknown-hosts view
UNKNOWN_ROWS = [
    make_record("1", ts=T0, vendor=None, endpoint=None, action="reject", host="a.example"),
    make_record("2", ts=T0 + 10, vendor=None, endpoint=None, action="reject", host="b.example"),
    make_record("3", ts=T0 + 20, vendor=None, endpoint=None, action="reject", host="a.example"),
    make_record("4", ts=T0 + 30, vendor=None, endpoint=None, action="reject", host="c.example"),
    # a known vendor's rejected request (bad request), and a dropped one: not unknown hosts
    make_record("5", ts=T0 + 40, vendor="ga4", action="reject", host="d.example"),
    make_record("6", ts=T0 + 50, vendor=None, endpoint=None, action="drop", host="e.example"),
]


def unknown(request_id: str, at: float, method: str, path: str, **kw: object) -> DecisionRecord:
    fields: dict[str, object] = {"vendor": None, "endpoint": None, "action": "reject"}
    fields |= {"host": "a.example", "method": method, "path": path, **kw}
    return make_record(request_id, ts=T0 + at, **fields)


PATH_ROWS = [
    unknown("1", 0, "GET", "/px.gif"),
    unknown("2", 10, "POST", "/v1/{…}/events"),
    unknown("3", 20, "POST", "/v1/{…}/events"),
    unknown("4", 30, "GET", "/v1/{…}/events"),
    unknown("5", 40, "GET", "/other", host="b.example"),  # another host
    unknown("6", 50, "GET", "/known", vendor="ga4"),  # a known vendor's bad request
    unknown("7", 60, "GET", "/dropped", action="drop"),
]


def store_records(db: Path, records: Sequence[DecisionRecord]) -> None:
    sink = SqliteSink(db)
    try:
        sink.write(records)
    finally:
        sink.close()


def log_config(tmp_path: Path, **kw: Any) -> DecisionLogConfig:
    args: dict[str, Any] = {
        "sqlite_path": tmp_path / "data" / "decisions.db",
        "jsonl": None,
        "queue_size": 1000,
        "batch_size": 50,
        "flush_interval": 0.01,
    }
    args.update(kw)
    return DecisionLogConfig(**args)


def log_written(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("consent_gateway_decision_log_written_total") or 0.0


def log_lost(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "consent_gateway_decision_log_lost_total", {"reason": reason}
    )
    return value or 0.0


SECRETS = {
    "query value": "QSECRETcid1234",
    "consent string": "CPzHqYAPzHqYAAHABBENBCCsAP_SECRET",
    "cookie value": "CKSECRETga1.2.3",
    "header value": "HDRSECRETagent",
    "body": "BODYSECRETemail",
    "client ip": "203.0.113.77",
    "path parameter value": "U1SECRETxyz",
    "userinfo": "PWSECRET",
}


def secret_facts(host: str = "ad.doubleclick.net") -> Facts:
    s = SECRETS
    return make_facts(
        host=host,
        path=f"/activityi;src=123;u1={s['path parameter value']};ord=1?cid={s['query value']}",
        query=f"cid={s['query value']}&gdpr_consent={s['consent string']}",
        headers=Headers(
            (
                ("User-Agent", s["header value"]),
                ("Cookie", f"_ga={s['cookie value']}"),
                ("X-Forwarded-For", s["client ip"]),
            )
        ),
        cookies={"_ga": s["cookie value"], "euconsent-v2": s["consent string"]},
        body=f'{{"em":"{s["body"]}"}}'.encode(),
        client_ip=s["client ip"],
        country="DE",
    )


PRIVACY_CASES = [
    pytest.param(
        make_decision(Action.FORWARD, missing=frozenset(), report_only=True), "forward-report"
    ),
    pytest.param(
        make_decision(
            Action.STRIP,
            strips=StripSpec(
                query=frozenset({"cid", "gdpr_consent"}),
                cookies=frozenset({"_ga"}),
                headers=frozenset({"user-agent"}),
                ip=IpPolicy.TRUNCATE,
            ),
        ),
        "strip",
    ),
    pytest.param(make_decision(Action.DROP), "drop"),
    pytest.param(
        make_decision(Action.REJECT, vendor=None, endpoint=None, missing=frozenset()), "reject"
    ),
]


LOG_ROWS = [
    make_record("a", ts=T0, vendor="ga4", action="drop", missing=("analytics",)),
    make_record("b", ts=T0 + 10, vendor="ga4", action="strip", missing=("advertising",)),
    make_record("c", ts=T0 + 20, vendor="meta", missing=("advertising", "analytics"), regime="us"),
    make_record(
        "d", ts=T0 + 30, vendor=None, endpoint=None, action="reject", missing=(), regime=None
    ),
    make_record(
        "e", ts=T0 + 40, vendor="meta", action="forward", missing=("advertising",), regime="us"
    ),
]


@pytest.fixture
def log_db(tmp_path: Path) -> Path:
    path = tmp_path / "decisions.db"
    store_records(path, LOG_ROWS)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a process started by a test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str) -> int:
    """GET `url` from a thread without an event loop (a served subprocess); its status."""
    with urllib.request.urlopen(url, timeout=2) as resp:
        return int(resp.status)
