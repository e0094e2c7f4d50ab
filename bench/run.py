"""Load benchmark: the gateway's dropped and forwarded paths against a naive proxy.

    python bench/run.py [--duration 5] [--concurrency 50] [--max-requests N]
                        [--vendor-delay MS] [--json]

Everything runs on 127.0.0.1 and stops by itself:

- a fake vendor (aiohttp, answers 200 at once or after --vendor-delay, counts
  what it receives),
- the gateway (`build_app` on a config in a temporary directory, vendor origins
  overridden to the fake vendor),
- a naive pass-through proxy (one shared ClientSession, forwards everything),

each in its own process (multiprocessing, spawn), so the load generator (this
process) shares no event loop with them. Each scenario runs for `--duration`
seconds or `--max-requests` requests, whichever comes first, at `--concurrency`
requests in flight, after a short unreported warm-up.

It prints figures and asserts nothing about them. Exit status: 0 when the
benchmark ran (whatever the numbers), 1 when setup failed or a server process
died, 2 for bad usage, 130 when interrupted.
See bench/README.md for how to read the output.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import secrets
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import orjson
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"  # the only address this benchmark ever binds or connects to
KEY_ENV = "CG_BENCH_COOKIE_KEY"
#: the bench serves one port; /metrics there needs the admin token (server.admin_port: null)
ADMIN_ENV = "CG_BENCH_ADMIN_TOKEN"
ADMIN_TOKEN = "bench-admin-token-0123456789"

GA4_HOST = "www.google-analytics.com"
GA4_PATH = "/g/collect"
GA4_QUERY = "v=2&tid=G-TEST&cid=555.1&en=page_view"
GTM_HOST = "www.googletagmanager.com"
GTM_PATH = "/gtag/js"
GTM_QUERY = "id=G-TEST"
#: vendor hosts whose origins the gateway sends to the fake vendor
VENDOR_HOSTS = (GA4_HOST, GTM_HOST)

#: the fake vendor's own counter; never under a vendor host, so never forwarded to
STATS_PATH = "/__bench/stats"
#: a small stand-in for gtag.js, so the script path streams a realistic-ish body
FAKE_SCRIPT = b"/* fake gtag.js */" + b"(function(){var d=window.dataLayer||[];})();" * 40

SETUP_TIMEOUT = 30.0  # seconds a server process gets to report its port
STOP_TIMEOUT = 15.0  # seconds a server process gets to shut down before it is killed
SETTLE_TIMEOUT = 30.0  # seconds to wait for background forwards to reach the vendor
SETTLE_QUIET = 0.6  # seconds without change that count as settled
REQUEST_TIMEOUT = 10.0  # per request, so a wedged server cannot hang the benchmark

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


class SetupError(Exception):
    """Something the benchmark needs did not start; the message says what."""


# ---------------------------------------------------------------------------
# Server processes (each runs one aiohttp app on a socket it bound itself)


AppFactory = Callable[[], web.Application]


def _child_prelude() -> None:
    # Ctrl-C reaches the whole process group: only the parent reacts, and it stops
    # the children with SIGTERM, so each shuts its app down cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


def _serve(conn: multiprocessing.connection.Connection, factory: AppFactory) -> None:
    """Run `factory()`'s app on a fresh loopback port until SIGTERM.

    Sends ("port", n) once serving, or ("error", text) if it could not start.
    """

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, 0))
        sock.listen(1024)
        runner = web.AppRunner(
            factory(), access_log=None, handle_signals=False, shutdown_timeout=5.0
        )
        await runner.setup()  # runs the app's startup and cleanup contexts' first half
        try:
            await web.SockSite(runner, sock).start()
            conn.send(("port", sock.getsockname()[1]))
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except Exception:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
        sys.exit(1)


# The fake vendor ----------------------------------------------------------------

_VENDOR_COUNT = web.AppKey("vendor_count", list[int])
_VENDOR_DELAY = web.AppKey("vendor_delay", float)


async def _vendor_handler(request: web.Request) -> web.Response:
    if request.path == STATS_PATH:
        return web.json_response({"requests": request.app[_VENDOR_COUNT][0]})
    request.app[_VENDOR_COUNT][0] += 1
    await request.read()
    if delay := request.app[_VENDOR_DELAY]:
        await asyncio.sleep(delay)  # a real vendor's round trip
    if request.path.endswith("/js"):
        return web.Response(body=FAKE_SCRIPT, content_type="text/javascript")
    return web.Response(text="ok")


def vendor_main(conn: multiprocessing.connection.Connection, delay: float) -> None:
    _child_prelude()

    def factory() -> web.Application:
        app = web.Application()
        app[_VENDOR_COUNT] = [0]
        app[_VENDOR_DELAY] = delay
        app.router.add_route("*", "/{tail:.*}", _vendor_handler)
        return app

    _serve(conn, factory)


# The naive pass-through proxy ----------------------------------------------------
# What a consent-unaware proxy costs: forward every /t/{host}/{path} request to the
# fake vendor (laid out like the gateway's overrides: /{host}/{path}) and return its
# answer. No consent, no rules, no log.

_NAIVE_SESSION = web.AppKey("naive_session", aiohttp.ClientSession)
_NAIVE_TARGET = web.AppKey("naive_target", str)


async def _naive_handler(request: web.Request) -> web.Response:
    url = request.app[_NAIVE_TARGET] + request.raw_path.removeprefix("/t")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    body = await request.read()
    async with request.app[_NAIVE_SESSION].request(
        request.method, url, headers=headers, data=body or None, allow_redirects=False
    ) as up:
        content = await up.read()
        ctype = up.headers.get("Content-Type")
        return web.Response(
            status=up.status, body=content, headers={"Content-Type": ctype} if ctype else None
        )


async def _naive_session(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200),  # the gateway's default max_connections
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        app[_NAIVE_SESSION] = session
        yield


def naive_main(conn: multiprocessing.connection.Connection, target: str) -> None:
    _child_prelude()

    def factory() -> web.Application:
        app = web.Application()
        app[_NAIVE_TARGET] = target
        app.cleanup_ctx.append(_naive_session)
        app.router.add_route("*", "/t/{tail:.*}", _naive_handler)
        return app

    _serve(conn, factory)


# The gateway ------------------------------------------------------------------------


def gateway_main(
    conn: multiprocessing.connection.Connection,
    config_text: str,
    config_file: str,
    env: dict[str, str],
) -> None:
    _child_prelude()
    import logging

    # Warnings (queue full, records lost) go to stderr; the figures go to stdout.
    logging.basicConfig(level=logging.WARNING, format="gateway %(levelname)s %(name)s: %(message)s")

    def factory() -> web.Application:
        from gateway.app import build_app
        from gateway.config import parse_config

        return build_app(parse_config(config_text, config_file, env=env))

    _serve(conn, factory)


@dataclass
class Server:
    name: str
    process: multiprocessing.process.BaseProcess
    url: str = ""


def _start(
    ctx: multiprocessing.context.SpawnContext,
    stack: contextlib.ExitStack,
    name: str,
    target: Callable[..., None],
    *args: object,
) -> Server:
    """Start `target` in a spawned process and wait for its port (SetupError if none)."""
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(child, *args), name=f"bench-{name}", daemon=True)
    proc.start()
    child.close()
    stack.callback(_stop, proc)
    if not parent.poll(SETUP_TIMEOUT):
        raise SetupError(f"{name}: did not start within {SETUP_TIMEOUT:.0f} s")
    try:
        kind, value = parent.recv()
    except EOFError as e:
        raise SetupError(f"{name}: exited during startup (code {proc.exitcode})") from e
    finally:
        parent.close()
    if kind != "port":
        raise SetupError(f"{name}: failed to start:\n{value}")
    return Server(name, proc, f"http://{LOOPBACK}:{value}")


def _stop(proc: multiprocessing.process.BaseProcess) -> None:
    if proc.is_alive():
        proc.terminate()  # SIGTERM: the app's cleanup contexts run (queues drain)
    proc.join(STOP_TIMEOUT)
    if proc.is_alive():
        proc.kill()
        proc.join(5.0)


# ---------------------------------------------------------------------------
# Gateway config, consent cookie, rule inspection


def _gateway_config(tmp: Path, vendor_url: str) -> str:
    """The gateway's YAML: shipped rules, SQLite log and data in `tmp`, vendors overridden."""
    doc = {
        "data_dir": str(tmp / "data"),
        "server": {"host": LOOPBACK, "log_level": "WARNING", "admin_port": None},
        "admin": {"token_env": ADMIN_ENV, "secure_cookie": False},
        "rules": {"paths": [str(ROOT / "rules")]},
        "cookie": {"keys": [{"id": "bench", "secret_env": KEY_ENV}], "secure": False},
        "upstream": {"overrides": {f"https://{h}": f"{vendor_url}/{h}" for h in VENDOR_HOSTS}},
        "decision_log": {"sqlite_path": str(tmp / "data" / "decisions.db")},
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass(frozen=True)
class EndpointInfo:
    vendor: str
    endpoint: str
    kind: str
    forward_mode: str
    #: the purposes it needs to forward untouched
    purposes: tuple[str, ...]

    def __str__(self) -> str:
        needs = "+".join(self.purposes)
        return f"{self.vendor}/{self.endpoint} ({self.kind}, {self.forward_mode}, needs {needs})"


@dataclass(frozen=True)
class Setup:
    """What the load generator needs to know before it starts."""

    cookie_header: str
    ga4: EndpointInfo
    script: EndpointInfo | None


def _inspect(config_text: str, config_file: str, env: Mapping[str, str]) -> Setup:
    """Parse the config the gateway will use, sign a cookie, find the endpoints to hit."""
    from gateway.config import parse_config
    from gateway.consent.cookie import ConsentCookie, new_subject_id, sign_cookie
    from gateway.ruleset.load import load_rules

    cfg = parse_config(config_text, config_file, env=env)
    cookie = ConsentCookie(
        subject=new_subject_id(),
        # GA4 collect needs analytics and advertising to go untouched (analytics alone
        # is a STRIP of the ad identifiers): grant both, so "forwarded" is a plain FORWARD.
        purposes={"analytics": True, "advertising": True},
        issued_at=int(time.time()),
        policy_version=cfg.consent.policy_version,
        source="bench",
    )
    rules = load_rules(cfg.rules.paths, frozenset(cfg.consent.purposes))

    def find(host: str, path: str) -> EndpointInfo | None:
        m = rules.match(host, path, "GET")
        if m is None:
            return None
        ep = m.endpoint
        return EndpointInfo(
            m.vendor.vendor, ep.id, str(ep.kind), str(ep.forward_mode), tuple(sorted(ep.purposes))
        )

    ga4 = find(GA4_HOST, GA4_PATH)
    if ga4 is None:
        raise SetupError(f"no rule in {ROOT / 'rules'} matches GET {GA4_HOST}{GA4_PATH}")
    return Setup(
        cookie_header=f"{cfg.cookie.name}={sign_cookie(cookie, cfg.cookie.keys)}",
        ga4=ga4,
        script=find(GTM_HOST, GTM_PATH),
    )


# ---------------------------------------------------------------------------
# Load generation


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    server: Server  # the gateway or the naive proxy
    path: str  # path and query
    headers: Mapping[str, str] = field(default_factory=dict)
    #: the gateway's /metrics URL, for its own counters (None for the naive proxy)
    metrics_url: str | None = None
    #: the rule endpoint the gateway matches the request to (None for the naive proxy)
    endpoint: EndpointInfo | None = None


@dataclass
class Result:
    scenario: str
    description: str
    url: str
    #: the rule endpoint the gateway matched, e.g. "google-analytics-4/collect (beacon, async)"
    endpoint: str | None
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    statuses: dict[str, int]
    #: requests the fake vendor received during the run and until forwards settled
    vendor_received: int
    #: seconds after the last response until the vendor count stopped moving
    settle_s: float
    #: deltas of the gateway's own counters over the run (empty for the naive proxy)
    gateway: dict[str, float]
    #: CPU used during the run, % of one core: loadgen (this process), the server, vendor
    cpu_pct: dict[str, float]
    #: CPU milliseconds the server (gateway or naive proxy) spent per request: unlike
    #: req/s and latency, barely moved by other work competing for the cores
    server_cpu_ms: float | None
    #: the whole machine's CPU use during the run, % of all cores (None off Linux); far above
    #: the sum of cpu_pct / cores means other work competed with the benchmark
    machine_busy_pct: float | None


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None if empty)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def _drive(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    duration: float,
    max_requests: int,
    concurrency: int,
) -> tuple[list[float], Counter[str], int, float]:
    """Send GET `url` from `concurrency` workers until `duration` or `max_requests`.

    Returns (latencies in seconds of successful requests, status/error counts,
    error count, wall seconds). An error is a transport failure or a 4xx/5xx.
    """
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors = 0
    issued = 0
    started = time.perf_counter()
    deadline = started + duration

    async def worker() -> None:
        nonlocal errors, issued
        while issued < max_requests and time.perf_counter() < deadline:
            issued += 1
            t0 = time.perf_counter()
            try:
                async with session.get(url, headers=headers, allow_redirects=False) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as e:
                errors += 1
                statuses[type(e).__name__] += 1
                continue
            elapsed = time.perf_counter() - t0
            statuses[str(status)] += 1
            if status >= 400:
                errors += 1
            else:
                latencies.append(elapsed)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses, errors, time.perf_counter() - started


async def _vendor_count(session: aiohttp.ClientSession, vendor_url: str) -> int:
    async with session.get(vendor_url + STATS_PATH) as resp:
        resp.raise_for_status()
        doc = await resp.json()
    return int(doc["requests"])


async def _gateway_counters(session: aiohttp.ClientSession, url: str | None) -> dict[str, float]:
    """The gateway's counters of interest, flattened (empty when unavailable)."""
    if url is None:
        return {}
    from prometheus_client.parser import text_string_to_metric_families

    try:
        async with session.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
            text = await resp.text()
    except aiohttp.ClientError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "gateway_requests_total":
                key = f"action:{s.labels.get('action', '?')}"
            elif s.name == "gateway_forward_queue_dropped_total":
                key = "forward_queue_dropped"
            elif s.name == "gateway_upstream_errors_total":
                key = f"upstream_errors:{s.labels.get('kind', '?')}"
            elif s.name == "gateway_decision_log_lost_total":
                key = f"decision_log_lost:{s.labels.get('reason', '?')}"
            elif s.name == "gateway_decision_log_written_total":
                key = "decision_log_written"
            elif s.name == "gateway_forward_queue_depth":
                key = "forward_queue_depth"
            else:
                continue
            out[key] = out.get(key, 0.0) + s.value
    return out


@dataclass(frozen=True)
class Settled:
    vendor_count: int
    #: seconds from the call until the vendor count last moved
    seconds: float
    #: the server's CPU seconds when the vendor count last moved (or at the call)
    server_cpu: float | None


async def _settle(
    session: aiohttp.ClientSession,
    vendor_url: str,
    metrics_url: str | None,
    server_pid: int | None,
) -> Settled:
    """Wait until the work behind the responses is done: the vendor's count unchanged
    for SETTLE_QUIET seconds (longer than the decision log's default flush interval),
    then the gateway's counters unchanged since the last look and its forward queue
    empty; bounded by SETTLE_TIMEOUT."""
    started = stable_since = moved = time.perf_counter()
    cpu = _cpu_seconds(server_pid)
    count = await _vendor_count(session, vendor_url)
    counters = await _gateway_counters(session, metrics_url)
    while time.perf_counter() - started < SETTLE_TIMEOUT:
        await asyncio.sleep(0.05)
        now_count = await _vendor_count(session, vendor_url)
        if now_count != count:
            cpu = _cpu_seconds(server_pid)
            count, moved = now_count, time.perf_counter()
            stable_since = moved
            continue
        if time.perf_counter() - stable_since < SETTLE_QUIET:
            continue
        # /metrics is read only once the vendor is quiet: rendering it costs the gateway CPU
        now_counters = await _gateway_counters(session, metrics_url)
        depth = now_counters.pop("forward_queue_depth", 0.0)
        counters.pop("forward_queue_depth", None)
        if now_counters == counters and not depth:
            break
        counters, stable_since = now_counters, time.perf_counter()
    return Settled(count, moved - started, cpu)


def _delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in after.items():
        if key == "forward_queue_depth":
            continue
        d = value - before.get(key, 0.0)
        if d:
            out[key] = d
    return out


def _cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds (user + system) used so far by `pid`, or by this process for None.

    Other processes are read from /proc (Linux); elsewhere None.
    """
    if pid is None:
        return time.process_time()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: count fields after its closing ")"
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_snapshot(procs: Mapping[str, int | None]) -> dict[str, float | None]:
    return {name: _cpu_seconds(pid) for name, pid in procs.items()}


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
    total = sum(values[:8])
    return total - values[3] - values[4], total


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


async def _run_scenario(
    session: aiohttp.ClientSession, vendor: Server, sc: Scenario, args: argparse.Namespace
) -> Result:
    """Warm up, settle, measure, settle again; the figures of the measured part."""
    url = sc.server.url + sc.path
    server_pid = sc.server.process.pid
    procs = {"loadgen": None, sc.server.name: server_pid, vendor.name: vendor.process.pid}

    await _drive(session, url, sc.headers, min(1.0, args.duration * 0.1), 2_000, args.concurrency)
    vendor_before = (await _settle(session, vendor.url, sc.metrics_url, server_pid)).vendor_count
    counters_before = await _gateway_counters(session, sc.metrics_url)
    cpu_before, machine_before = _cpu_snapshot(procs), _machine_ticks()

    latencies, statuses, errors, seconds = await _drive(
        session, url, sc.headers, args.duration, args.max_requests, args.concurrency
    )

    cpu_after, machine_after = _cpu_snapshot(procs), _machine_ticks()
    settled = await _settle(session, vendor.url, sc.metrics_url, server_pid)
    counters_after = await _gateway_counters(session, sc.metrics_url)

    requests = sum(statuses.values())
    latencies.sort()
    cpu_pct: dict[str, float] = {}
    for name, after in cpu_after.items():
        before = cpu_before[name]
        if after is not None and before is not None and seconds > 0:
            cpu_pct[name] = round(100 * (after - before) / seconds, 1)
    machine_busy: float | None = None
    if machine_before and machine_after and machine_after[1] > machine_before[1]:
        busy = machine_after[0] - machine_before[0]
        machine_busy = round(100 * busy / (machine_after[1] - machine_before[1]), 1)
    # Per request, the server's CPU includes background forwards finished after the
    # last response (up to when the vendor count last moved).
    server_cpu_ms: float | None = None
    server_before = cpu_before[sc.server.name]
    if settled.server_cpu is not None and server_before is not None and requests:
        server_cpu_ms = round((settled.server_cpu - server_before) * 1000 / requests, 3)

    return Result(
        scenario=sc.name,
        description=sc.description,
        url=url,
        endpoint=None if sc.endpoint is None else str(sc.endpoint),
        requests=requests,
        errors=errors,
        seconds=round(seconds, 3),
        rps=round(requests / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=_ms(_percentile(latencies, 0.50)),
        p90_ms=_ms(_percentile(latencies, 0.90)),
        p99_ms=_ms(_percentile(latencies, 0.99)),
        max_ms=_ms(latencies[-1] if latencies else None),
        statuses=dict(sorted(statuses.items())),
        vendor_received=settled.vendor_count - vendor_before,
        settle_s=round(settled.seconds, 2),
        gateway=_delta(counters_after, counters_before),
        cpu_pct=cpu_pct,
        server_cpu_ms=server_cpu_ms,
        machine_busy_pct=machine_busy,
    )


def _scenarios(setup: Setup, gateway: Server, naive: Server) -> tuple[list[Scenario], list[str]]:
    """The scenarios to run, in order, and notes on what could not be measured."""
    ga4 = f"/t/{GA4_HOST}{GA4_PATH}?{GA4_QUERY}"
    metrics = gateway.url + "/metrics"
    consent = {"Cookie": setup.cookie_header}
    granted = "analytics+advertising granted"
    notes: list[str] = []
    scenarios = [
        Scenario(
            "dropped",
            "GA4 collect, no consent (opt-in default): DROP, answered locally",
            gateway,
            ga4,
            metrics_url=metrics,
            endpoint=setup.ga4,
        )
    ]
    if setup.ga4.forward_mode == "sync":
        scenarios.append(
            Scenario(
                "forwarded",
                f"GA4 collect, {granted}: FORWARD, the vendor's answer streamed back",
                gateway,
                ga4,
                consent,
                metrics,
                setup.ga4,
            )
        )
    else:
        scenarios.append(
            Scenario(
                "forwarded-bg",
                f"GA4 collect, {granted}: FORWARD, answered at once, sent by the background queue",
                gateway,
                ga4,
                consent,
                metrics,
                setup.ga4,
            )
        )
        if setup.script is not None and setup.script.forward_mode == "sync":
            scenarios.append(
                Scenario(
                    "forwarded-sync",
                    "gtag.js loader, same cookie: FORWARD, fetched from the vendor and "
                    "streamed back",
                    gateway,
                    f"/t/{GTM_HOST}{GTM_PATH}?{GTM_QUERY}",
                    consent,
                    metrics,
                    setup.script,
                )
            )
        else:
            notes.append(
                "no synchronous forwarded path measured: GA4 collect forwards in the "
                f"background and no rule forwards GET {GTM_HOST}{GTM_PATH} synchronously"
            )
    scenarios.append(
        Scenario(
            "naive-proxy",
            "GA4 collect through a consent-unaware pass-through proxy (waits for the vendor)",
            naive,
            ga4,
            consent,
        )
    )
    return scenarios, notes


async def _load(
    args: argparse.Namespace, vendor: Server, scenarios: list[Scenario]
) -> list[Result]:
    connector = aiohttp.TCPConnector(limit=args.concurrency + 4, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        cookie_jar=aiohttp.DummyCookieJar(),  # every request carries exactly its own headers
    ) as session:
        for ready in sorted({sc.server.url + "/readyz" for sc in scenarios if sc.metrics_url}):
            async with session.get(ready) as resp:
                if resp.status != 200:
                    raise SetupError(f"gateway not ready: {ready} -> {await resp.text()}")
        results = []
        for sc in scenarios:
            if not args.json:
                print(f"  running {sc.name} ...", file=sys.stderr, flush=True)
            results.append(await _run_scenario(session, vendor, sc, args))
        return results


# ---------------------------------------------------------------------------
# Output


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _table(results: list[Result], settings: Mapping[str, object], notes: list[str]) -> str:
    lines = [
        "consent-gateway benchmark: " + ", ".join(f"{k}={v}" for k, v in settings.items()),
        "",
    ]
    head = (
        "scenario",
        "requests",
        "errors",
        "req/s",
        "p50 ms",
        "p99 ms",
        "vendor got",
        "server cpu ms/req",
    )
    rows = [
        (
            r.scenario,
            str(r.requests),
            str(r.errors),
            _fmt(r.rps, 1),
            _fmt(r.p50_ms),
            _fmt(r.p99_ms),
            str(r.vendor_received),
            _fmt(r.server_cpu_ms, 3),
        )
        for r in results
    ]
    widths = [max(len(c) for c in col) for col in zip(head, *rows, strict=True)]
    for row in (head, *rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    pad = " " * (widths[0] + 2)
    for r in results:
        lines.append("")
        lines.append(f"{r.scenario.ljust(widths[0])}  {r.description}")
        path = r.url.split("/", 3)[-1]
        lines.append(f"{pad}GET /{path}" + (f" -> {r.endpoint}" if r.endpoint else ""))
        parts = ["statuses " + ", ".join(f"{k}={v}" for k, v in r.statuses.items())]
        if r.gateway:
            parts.append("gateway " + ", ".join(f"{k}={v:g}" for k, v in r.gateway.items()))
        if r.settle_s:
            parts.append(f"vendor count settled {r.settle_s:.2f} s after the last response")
        lines.append(pad + "; ".join(parts))
        parts = []
        if r.cpu_pct:
            cpu = ", ".join(f"{k} {v:g}" for k, v in r.cpu_pct.items())
            parts.append(f"cpu % of one core: {cpu}")
        if r.machine_busy_pct is not None:
            parts.append(f"machine busy {r.machine_busy_pct:g}% of {os.cpu_count()} cores")
        if parts:
            lines.append(pad + "; ".join(parts))
    if notes:
        lines.append("")
    for note in notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Main


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per scenario (5)")
    p.add_argument("--concurrency", type=int, default=50, help="requests in flight (50)")
    p.add_argument(
        "--max-requests",
        type=int,
        default=200_000,
        help="stop a scenario after this many requests even if time is left (200000)",
    )
    p.add_argument(
        "--vendor-delay",
        type=float,
        default=0.0,
        metavar="MS",
        help="the fake vendor waits this long before answering, like a real one (0)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args(argv)
    if not 0 < args.duration <= 600:
        p.error("--duration must be in (0, 600] seconds")
    if not 1 <= args.concurrency <= 1000:
        p.error("--concurrency must be in [1, 1000]")
    if not 0 <= args.vendor_delay <= 5000:
        p.error("--vendor-delay must be in [0, 5000] ms")
    if args.max_requests < 1:
        p.error("--max-requests must be at least 1")
    return args


@contextlib.contextmanager
def _servers(
    tmp: Path, key: str, vendor_delay: float
) -> Iterator[tuple[Server, Server, Server, Setup]]:
    """Start the three servers (stopped and joined on exit, whatever happens)."""
    ctx = multiprocessing.get_context("spawn")
    with contextlib.ExitStack() as stack:
        vendor = _start(ctx, stack, "fake-vendor", vendor_main, vendor_delay)
        config_file = tmp / "config.yaml"
        config_text = _gateway_config(tmp, vendor.url)
        config_file.write_text(config_text, encoding="utf-8")
        env = {KEY_ENV: key, ADMIN_ENV: ADMIN_TOKEN}
        try:
            setup = _inspect(config_text, str(config_file), env)
        except SetupError:
            raise
        except Exception as e:
            raise SetupError(f"gateway config or rules: {type(e).__name__}: {e}") from e
        gateway = _start(ctx, stack, "gateway", gateway_main, config_text, str(config_file), env)
        naive = _start(ctx, stack, "naive-proxy", naive_main, vendor.url)
        yield vendor, gateway, naive, setup


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    loop_name = "asyncio"
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
        loop_name = "uvloop"
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    settings: dict[str, object] = {
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "max_requests": args.max_requests,
        "vendor_delay_ms": args.vendor_delay,
        "loop": loop_name,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        # other work on the machine skews every figure: shown so a reader can tell
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    try:
        with tempfile.TemporaryDirectory(prefix="cg-bench-") as tmpdir:
            delay = args.vendor_delay / 1000
            with _servers(Path(tmpdir), key, delay) as (vendor, gateway, naive, setup):
                scenarios, notes = _scenarios(setup, gateway, naive)
                results = asyncio.run(_load(args, vendor, scenarios))
    except SetupError as e:
        print(f"bench setup failed: {e}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, OSError) as e:
        # a server process went away mid-run (its own stderr says why)
        print(f"bench failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.json:
        doc = {"settings": settings, "notes": notes, "scenarios": [asdict(r) for r in results]}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(_table(results, settings, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
