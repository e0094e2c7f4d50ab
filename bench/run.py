"""What consent enforcement costs, against references measured in the same run.

    python bench/run.py [--duration 5] [--connections 50] [--json] [--quick]

One table of issue 13's goals P1-P7, each measured figure beside the reference it is
compared with and the goal, then one row per load scenario (req/s, latency, CPU per
request). Every server runs in its own process on 127.0.0.1 and is stopped at the end:

- a fake vendor (bench/servers.py: raw asyncio, counts what it receives, answers at
  once or after a delay it is told);
- the references: a trivial aiohttp + uvloop handler answering 204, a naive aiohttp
  pass-through proxy (no consent, no rules, no log), and nginx (`return 204`,
  `proxy_pass`) as the physical limit when nginx is installed;
- the gateway itself, `consent-gateway serve` on the shipped rules with vendor origins
  overridden to the fake vendor; a second one with `--workers 2` for scaling.

wrk drives the load (bench/load.py). P4 and P6 come from bench/scale.py, P7 from
bench/tcf.py, each run as a subprocess with --json. It prints figures and asserts
nothing about them. Exit status: 0 when it ran, 1 when setup failed (wrk missing, a
server did not start), 2 for bad usage, 130 when interrupted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import LoadResult, cpu_seconds, machine_ticks, wrk, wrk_path
from bench.servers import DELAY_PATH, LOOPBACK, STATS_PATH, nginx_config

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
KEY_ENV = "CG_BENCH_COOKIE_KEY"
GA4_HOST = "www.google-analytics.com"
GA4 = f"/t/{GA4_HOST}/g/collect?v=2&tid=G-TEST&cid=555.1&en=page_view"
#: a GA4 page view as Chrome sends it through a site's gateway: 37 query parameters, 15
#: headers. The P1 hit above is the smallest GA4 hit; the gateway reads more of this one
#: (signal parameters in a long query, more headers) than aiohttp's parse does.
GA4_BROWSER = (
    f"/t/{GA4_HOST}/g/collect?v=2&tid=G-ABCDEF1234&gtm=45je4b20v9&_p=1733300000123&gcs=G100"
    "&gcd=13p3p3p2p5l1&npa=1&dma=0&tag_exp=101925629~102067555&cid=1234567890.1733300000"
    "&ul=en-us&sr=1920x1080&uaa=x86&uab=64&uafvl=Chromium%3B131.0.6778.85&uamb=0&uam=&uap=Linux"
    "&uapv=6.5.0&uaw=0&are=1&frm=0&pscdl=noapi&_eu=AAAAAAQ&_s=2&sid=1733300000&sct=3&seg=1"
    "&dl=https%3A%2F%2Fshop.example%2Fproducts%2Fblue-shoe%3Fref%3Dhome"
    "&dr=https%3A%2F%2Fshop.example%2F&dt=Blue%20Shoe%20%E2%80%93%20Shop&en=page_view&_ee=1"
    "&tfd=1234"
)
BROWSER_HEADERS = {  # wrk adds Host
    "Connection": "keep-alive",
    "sec-ch-ua-platform": '"Linux"',
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "sec-ch-ua": '"Chromium";v="131", "Not_A Brand";v="24"',
    "sec-ch-ua-mobile": "?0",
    "Accept": "*/*",
    "Origin": "https://shop.example",
    "Sec-Fetch-Site": "same-site",
    "Sec-Fetch-Mode": "no-cors",
    "Sec-Fetch-Dest": "empty",
    "Referer": "https://shop.example/",
    "Accept-Encoding": "gzip, deflate, br, zstd",
    "Accept-Language": "en-US,en;q=0.9",
    "Cookie": "_ga=GA1.1.1234567890.1733300000; _ga_ABCDEF1234=GS1.1.1733300000.3.1.1733300100.0",
}
GTM_HOST = "www.googletagmanager.com"
GTAG = f"/t/{GTM_HOST}/gtag/js?id=G-TEST"
VENDOR_HOSTS = (GA4_HOST, GTM_HOST)
START_TIMEOUT = 30.0
SETTLE_QUIET = 0.6  # seconds without a new vendor request that count as settled
SETTLE_TIMEOUT = 60.0
VENDOR_DELAY_MS = 50.0  # P3: a real vendor's round trip


class SetupError(Exception):
    pass


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    url: str
    admin_url: str | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _spawn(stack: contextlib.ExitStack, name: str, *args: str) -> Proc:
    """A bench/servers.py server; its first stdout line names its port."""
    popen = subprocess.Popen(
        [sys.executable, str(BENCH / "servers.py"), *args], stdout=subprocess.PIPE, text=True
    )
    stack.callback(_stop, popen)
    assert popen.stdout is not None
    line = popen.stdout.readline().split()
    if len(line) != 2 or line[0] != "port":
        raise SetupError(f"{name}: did not start (exit {popen.poll()})")
    return Proc(name, popen, f"http://{LOOPBACK}:{line[1]}")


def _wait_http(url: str, popen: subprocess.Popen[str], name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise SetupError(f"{name}: exited during startup (code {popen.returncode})")
        with contextlib.suppress(OSError):
            _get(url, 1.0)
            return
        time.sleep(0.1)
    raise SetupError(f"{name}: not answering {url} after {START_TIMEOUT:.0f} s")


def _gateway(
    stack: contextlib.ExitStack, tmp: Path, vendor: Proc, env: dict[str, str], workers: int
) -> Proc:
    """`consent-gateway serve` on the shipped rules, production defaults otherwise."""
    home = tmp / f"gateway-{workers}"
    home.mkdir()
    port, admin = _free_port(), _free_port()
    doc = {
        "data_dir": str(home / "data"),
        "server": {
            "host": LOOPBACK,
            "port": port,
            "admin_port": admin,
            "log_level": "WARNING",
            "drain_delay": 0,
        },
        "rules": {"paths": [str(ROOT / "rules")]},
        "cookie": {"keys": [{"id": "bench", "secret_env": KEY_ENV}], "secure": False},
        "upstream": {"overrides": {f"https://{h}": f"{vendor.url}/{h}" for h in VENDOR_HOSTS}},
        "decision_log": {"sqlite_path": str(home / "data" / "decisions.db")},
    }
    config = home / "config.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    log = (home / "gateway.log").open("w")
    stack.callback(log.close)
    popen = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
        + (["--workers", str(workers)] if workers > 1 else []),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
        cwd=home,
    )
    stack.callback(_stop, popen)
    proc = Proc(f"gateway x{workers}", popen, f"http://{LOOPBACK}:{port}")
    proc.admin_url = f"http://{LOOPBACK}:{admin}"
    _wait_http(proc.admin_url + "/readyz", popen, proc.name)
    if workers > 1:  # every worker up: each answers /healthz on the shared admin port
        time.sleep(2.0)
    return proc


def _nginx(stack: contextlib.ExitStack, tmp: Path, vendor: Proc) -> Proc | None:
    exe = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if exe is None:
        return None
    home = tmp / "nginx"
    home.mkdir()
    port = _free_port()
    conf = home / "nginx.conf"
    conf.write_text(nginx_config(home, port, int(vendor.url.rsplit(":", 1)[1])))
    popen = subprocess.Popen(
        [exe, "-c", str(conf), "-p", str(home), "-e", str(home / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    stack.callback(_stop, popen)
    proc = Proc("nginx", popen, f"http://{LOOPBACK}:{port}")
    _wait_http(proc.url + "/t/ready", popen, "nginx")
    return proc


def _consent_cookie(env: dict[str, str]) -> str:
    """A signed cg_consent cookie granting analytics and advertising (GA4 collect needs
    both to be forwarded untouched; analytics alone is a STRIP)."""
    from gateway.config import parse_config
    from gateway.consent.cookie import ConsentCookie, new_subject_id, sign_cookie

    text = yaml.safe_dump({"cookie": {"keys": [{"id": "bench", "secret_env": KEY_ENV}]}})
    cfg = parse_config(text, "bench", env=env)
    cookie = ConsentCookie(
        subject=new_subject_id(),
        purposes={"analytics": True, "advertising": True},
        issued_at=int(time.time()),
        policy_version=cfg.consent.policy_version,
        source="bench",
    )
    return f"{cfg.cookie.name}={sign_cookie(cookie, cfg.cookie.keys)}"


# -- measuring ----------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    what: str
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    #: CPU milliseconds the server spent per request, background forwards included
    cpu_ms: float | None
    #: requests the vendor received (None: the scenario sends nothing on)
    vendor_got: int | None = None
    #: requests delivered to the vendor per second, until the forwards settled
    delivered_rps: float | None = None
    settle_s: float | None = None
    offered_rps: float | None = None
    machine_busy_pct: float | None = None
    gateway: dict[str, float] = field(default_factory=dict)


def _vendor_count(vendor: Proc) -> int:
    return int(json.loads(_get(vendor.url + STATS_PATH))["requests"])


def _settle(vendor: Proc) -> tuple[int, float]:
    """(vendor count, seconds until it last moved) once it has been still SETTLE_QUIET s."""
    start = moved = time.monotonic()
    count = _vendor_count(vendor)
    while time.monotonic() - moved < SETTLE_QUIET and time.monotonic() - start < SETTLE_TIMEOUT:
        time.sleep(0.05)
        now = _vendor_count(vendor)
        if now != count:
            count, moved = now, time.monotonic()
    return count, moved - start


def _counters(server: Proc) -> dict[str, float]:
    if server.admin_url is None:
        return {}
    from prometheus_client.parser import text_string_to_metric_families

    text = _get(server.admin_url + "/metrics").decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name.removeprefix("consent_gateway_")
            if name == "requests_total":
                key = f"action:{s.labels.get('action', '?')}"
            elif name in ("forward_queue_dropped_total", "decision_log_written_total"):
                key = name.removesuffix("_total")
            elif name in ("upstream_errors_total", "decision_log_lost_total"):
                key = name.removesuffix("_total") + ":" + next(iter(s.labels.values()), "?")
            else:
                continue
            out[key] = out.get(key, 0.0) + s.value
    return out


def measure(
    scenario: str,
    what: str,
    server: Proc,
    path: str,
    args: argparse.Namespace,
    *,
    headers: dict[str, str] | None = None,
    vendor: Proc | None = None,
    rate: float | None = None,
) -> Row:
    """Warm up, then one measured wrk run; with `vendor`, wait for the forwards to land."""
    url = server.url + path
    if not args.json:
        print(f"  {scenario} ...", file=sys.stderr, flush=True)
    wrk(url, seconds=1, connections=args.connections, headers=headers, rate=rate)
    if vendor is not None:
        _settle(vendor)
    before = _counters(server)
    got0 = _vendor_count(vendor) if vendor is not None else 0
    cpu0, ticks0 = cpu_seconds(server.pid), machine_ticks()
    r: LoadResult = wrk(
        url, seconds=args.duration, connections=args.connections, headers=headers, rate=rate
    )
    ticks1 = machine_ticks()
    got, settle = _settle(vendor) if vendor is not None else (0, 0.0)
    cpu = cpu_seconds(server.pid) - cpu0
    after = _counters(server)
    busy = 100 * (ticks1[0] - ticks0[0]) / max(1, ticks1[1] - ticks0[1])
    row = Row(
        scenario=scenario,
        what=what,
        requests=r.requests,
        errors=r.errors,
        rps=round(r.rps, 1),
        p50_ms=r.p50_ms,
        p99_ms=r.p99_ms,
        cpu_ms=round(cpu * 1000 / r.requests, 4) if r.requests else None,
        offered_rps=rate,
        machine_busy_pct=round(busy, 1),
        gateway={k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)},
    )
    if vendor is not None:
        row.vendor_got = got - got0
        row.settle_s = round(settle, 2)
        row.delivered_rps = round(row.vendor_got / (r.seconds + settle), 1)
    return row


def paired(
    args: argparse.Namespace,
    rows: list[Row],
    reference: Callable[[], Row],
    gateway: Callable[[], Row],
    figure: Callable[[Row], float],
    notes: list[str],
) -> tuple[Row, Row]:
    """The reference and the gateway measured `args.repeat` times, alternately, and the
    pair whose ratio is the median: on a shared VM a neighbour's burst lands on one run,
    and alternating puts both sides under the same spells. The rows kept are that pair's;
    every pair's ratio is in the notes."""
    pairs = []
    for _ in range(args.repeat):
        ref, gw = reference(), gateway()
        pairs.append((figure(gw) / figure(ref) if figure(ref) else 0.0, ref, gw))
    pairs.sort(key=lambda p: p[0])
    _, ref, gw = pairs[len(pairs) // 2]
    rows += [ref, gw]
    if len(pairs) > 1:
        ratios = ", ".join(f"{p[0]:.2f}" for p in pairs)
        notes.append(f"{gw.scenario} / {ref.scenario}: {len(pairs)} alternating pairs ({ratios})")
    return ref, gw


def _micro(script: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """A companion benchmark's --json object (None, with a note, when it failed)."""
    if not args.json:
        print(f"  {script} ...", file=sys.stderr, flush=True)
    cmd = [sys.executable, str(BENCH / script), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        print(f"{script} failed: {proc.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


# -- the run ------------------------------------------------------------------------------


@dataclass
class Goal:
    id: str
    what: str
    measured: float | None
    unit: str
    reference: float | None = None
    #: "ratio" goals compare measured / reference; others compare measured itself
    ratio: float | None = None
    goal: str = ""
    met: bool | None = None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _load_scenarios(
    args: argparse.Namespace, tmp: Path, env: dict[str, str], notes: list[str]
) -> tuple[list[Row], list[Goal]]:
    rows: list[Row] = []
    goals: list[Goal] = []
    with contextlib.ExitStack() as stack:
        vendor = _spawn(stack, "vendor", "vendor")
        trivial = _spawn(stack, "trivial", "trivial")
        naive = _spawn(stack, "naive", "naive", "--target", vendor.url)
        nginx = _nginx(stack, tmp, vendor)
        if nginx is None:
            notes.append("nginx not installed: no physical-limit reference rows")
        gw = _gateway(stack, tmp, vendor, env, 1)
        cookie = {"Cookie": _consent_cookie(env)}

        def run(name: str, what: str, server: Proc, path: str, **kw: Any) -> Row:
            row = measure(name, what, server, path, args, **kw)
            rows.append(row)
            return row

        if nginx is not None:
            run("nginx-204", "nginx `return 204` (physical limit)", nginx, GA4)
        trivial_row, dropped = paired(
            args,
            rows,
            lambda: measure(
                "trivial-204", "aiohttp + uvloop handler answering 204", trivial, GA4, args
            ),
            lambda: measure(
                "dropped", "GA4 collect, no consent: DROP, answered 204 locally", gw, GA4, args
            ),
            lambda row: row.rps,
            notes,
        )
        goals.append(
            Goal(
                "P1",
                "dropped hit vs trivial aiohttp handler",
                dropped.rps,
                "req/s",
                trivial_row.rps,
                _ratio(dropped.rps, trivial_row.rps),
                ">= 0.8",
            )
        )
        trivial_b, dropped_b = paired(
            args,
            rows,
            lambda: measure(
                "trivial-browser",
                "aiohttp + uvloop handler answering 204, a browser's GA4 hit",
                trivial,
                GA4_BROWSER,
                args,
                headers=BROWSER_HEADERS,
            ),
            lambda: measure(
                "dropped-browser",
                "a browser's GA4 hit (37 parameters, 15 headers), no consent: DROP",
                gw,
                GA4_BROWSER,
                args,
                headers=BROWSER_HEADERS,
            ),
            lambda row: row.rps,
            notes,
        )
        goals.append(
            Goal(
                "P1b",
                "as P1, the hit as a browser sends it",
                dropped_b.rps,
                "req/s",
                trivial_b.rps,
                _ratio(dropped_b.rps, trivial_b.rps),
                "(not a goal of the issue: P1 on real traffic)",
            )
        )
        if nginx is not None:
            run(
                "nginx-proxy",
                "nginx `proxy_pass` to the vendor (physical limit)",
                nginx,
                GA4.replace("/t/", "/p/", 1),
                vendor=vendor,
            )
        naive_row, fwd = paired(
            args,
            rows,
            lambda: measure(
                "naive-proxy",
                "aiohttp pass-through proxy, GA4 collect",
                naive,
                GA4,
                args,
                vendor=vendor,
            ),
            lambda: measure(
                "forwarded-bg",
                "GA4 collect, consent granted: answered 204, forwarded in the background",
                gw,
                GA4,
                args,
                headers=cookie,
                vendor=vendor,
            ),
            lambda row: row.delivered_rps or 0.0,
            notes,
        )
        goals.append(
            Goal(
                "P2",
                "forwarded beacon, delivered to the vendor, vs naive proxy",
                fwd.delivered_rps,
                "req/s",
                naive_row.delivered_rps,
                _ratio(fwd.delivered_rps, naive_row.delivered_rps),
                ">= 1.0 (stretch 1.5)",
            )
        )
        run(
            "forwarded-sync",
            "gtag.js, consent granted: fetched from the vendor and streamed back",
            gw,
            GTAG,
            headers=cookie,
            vendor=vendor,
        )
        # P3: half the gateway's measured beacon capacity, the vendor 50 ms away
        rate = round((fwd.delivered_rps or fwd.rps) / 2, -1)
        _get(f"{vendor.url}{DELAY_PATH}{VENDOR_DELAY_MS:g}")
        t3 = run(
            "trivial-paced",
            f"aiohttp 204 handler at {rate:g} req/s offered",
            trivial,
            GA4,
            rate=rate,
        )
        g3 = run(
            "beacon-paced",
            f"GA4 beacon, consent granted, at {rate:g} req/s offered, vendor takes 50 ms",
            gw,
            GA4,
            headers=cookie,
            vendor=vendor,
            rate=rate,
        )
        _get(f"{vendor.url}{DELAY_PATH}0")
        p3 = _ratio(g3.p99_ms, t3.p99_ms)
        goals.append(
            Goal(
                "P3",
                f"beacon p99 at {rate:g} req/s, vendor 50 ms, vs trivial handler",
                g3.p99_ms,
                "ms",
                t3.p99_ms,
                p3,
                "<= 2.0 and far below 50 ms",
                None if p3 is None else p3 <= 2.0 and g3.p99_ms < VENDOR_DELAY_MS / 2,
            )
        )
        _stop(gw.popen)
        if args.workers > 1:
            gw2 = _gateway(stack, tmp, vendor, env, args.workers)
            w = run(
                f"dropped x{args.workers}",
                f"as `dropped`, --workers {args.workers}",
                gw2,
                GA4,
            )
            goals.append(
                Goal(
                    "W",
                    f"dropped hit, --workers {args.workers} vs 1",
                    w.rps,
                    "req/s",
                    dropped.rps,
                    _ratio(w.rps, dropped.rps),
                    "(scaling; shares 2 cores with wrk)",
                )
            )
    for g in goals:
        if g.met is None and g.ratio is not None and g.id in ("P1", "P2"):
            g.met = g.ratio >= (0.8 if g.id == "P1" else 1.0)
    return rows, goals


def _micro_goals(args: argparse.Namespace, notes: list[str]) -> list[Goal]:
    goals: list[Goal] = []
    scale = _micro("scale.py", args)
    if scale is None:
        notes.append("bench/scale.py failed: no P4/P6 figures")
    else:
        n = scale["rules"]
        ratio = scale["decision_ratio"]
        if "decision_ratio_spread" in scale:
            notes.append(
                f"P4: with the hits spread over all {n} vendors' hosts: "
                f"{scale['decision_us_n_spread']} µs, {scale['decision_ratio_spread']} x"
            )
        if "load_with_examples_s" in scale:
            notes.append(
                f"P4: the {n} files with their examples, as `check` reads them: "
                f"{scale['load_with_examples_s']} s"
            )
        goals += [
            Goal(
                "P4",
                f"decision CPU, {n} rules vs 10 (the same hits)",
                scale["decision_us_n"],
                "µs",
                scale["decision_us_10"],
                ratio,
                "<= 1.1",
                ratio <= 1.1,
            ),
            Goal(
                "P4",
                f"load {n} rule files (as served: their examples are check's)",
                scale["load_s"],
                "s",
                goal="< 2",
                met=scale["load_s"] < 2,
            ),
            Goal(
                "P4",
                f"event-loop lag during a reload of {n} rules (max)",
                scale["reload_max_lag_ms"],
                "ms",
                goal="<= 20",
                met=scale["reload_max_lag_ms"] <= 20,
            ),
            Goal(
                "P6",
                "RSS idle, full catalogue",
                scale["rss_idle_mb"],
                "MB",
                goal="<= 80",
                met=scale["rss_idle_mb"] <= 80,
            ),
            Goal(
                "P6",
                "RSS with 1,000,000 cached consent subjects",
                scale["rss_1m_subjects_mb"],
                "MB",
                goal="<= 400",
                met=scale["rss_1m_subjects_mb"] <= 400,
            ),
        ]
        notes += [f"scale: {n}" for n in scale.get("notes") or []]
    tcf = _micro("tcf.py", args)
    if tcf is None:
        notes.append("bench/tcf.py failed: no P7 figures")
    else:
        r = tcf["ratio"]
        goals += [
            Goal(
                "P7",
                f"TC string fresh decode vs IAB's JS decoder on Node ({tcf['strings']} strings)",
                tcf["python_fresh_per_s"],
                "/s",
                tcf["node_fresh_per_s"],
                r,
                ">= 1.0",
                None if r is None else r >= 1.0,
            ),
            Goal(
                "P7",
                f"TC string seen again (bounded cache of {tcf['cache_size']})",
                tcf["python_cached_per_s"],
                "/s",
            ),
        ]
        if tcf.get("ratios"):
            ratios = ", ".join(f"{x:.2f}" for x in tcf["ratios"])
            notes.append(f"P7: {len(tcf['ratios'])} alternating Python/Node runs ({ratios})")
        if tcf.get("note"):
            notes.append(f"tcf: {tcf['note']}")
    return goals


def _n(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}" if abs(v) < 100 else f"{v:,.0f}"


def _print(settings: dict[str, Any], goals: list[Goal], rows: list[Row], notes: list[str]) -> None:
    print("consent-gateway benchmark: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print()
    print(f"{'goal':<5} {'what':<62} {'measured':>14} {'reference':>14} {'ratio':>6}  goal")
    for g in goals:
        met = "" if g.met is None else ("  met" if g.met else "  NOT MET")
        print(
            f"{g.id:<5} {g.what:<62} {_n(g.measured) + ' ' + g.unit:>14} "
            f"{(_n(g.reference) + ' ' + g.unit) if g.reference is not None else '':>14} "
            f"{_n(g.ratio, 2) if g.ratio is not None else '':>6}  {g.goal}{met}"
        )
    print()
    print(
        f"{'scenario':<16} {'requests':>9} {'err':>4} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'cpu ms/req':>10} {'vendor got':>10} {'delivered/s':>11} {'busy %':>6}"
    )
    for r in rows:
        print(
            f"{r.scenario:<16} {r.requests:>9} {r.errors:>4} {r.rps:>8,.0f} {r.p50_ms:>7.2f} "
            f"{r.p99_ms:>7.2f} {_n(r.cpu_ms, 3):>10} {_n(r.vendor_got, 0):>10} "
            f"{_n(r.delivered_rps, 0):>11} {_n(r.machine_busy_pct):>6}"
        )
    print()
    for r in rows:
        extra = ", ".join(f"{k}={v:g}" for k, v in sorted(r.gateway.items()))
        settle = f"; settled {r.settle_s} s after the load" if r.settle_s is not None else ""
        print(
            f"{r.scenario:<16} {r.what}{settle}" + (f"\n{'':<17}gateway: {extra}" if extra else "")
        )
    for note in notes:
        print(f"note: {note}")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    p.add_argument("--connections", type=int, default=50, help="wrk's open connections")
    p.add_argument("--workers", type=int, default=2, help="workers of the scaling row (1: skip)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--skip-micro", action="store_true", help="load scenarios only (no P4-P7)")
    p.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="P1 and P2: alternating pairs of runs, the median pair reported",
    )
    args = p.parse_args(argv)
    if args.duration <= 0 or args.connections < 1 or args.workers < 1 or args.repeat < 1:
        p.error("--duration, --connections, --workers and --repeat must be positive")
    return args


@contextlib.contextmanager
def _tempdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cg-bench-") as d:
        yield Path(d)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if wrk_path() is None:
        print("bench/run.py needs wrk on PATH (Debian: apt-get install wrk)", file=sys.stderr)
        return 1
    import aiohttp

    settings: dict[str, Any] = {
        "duration_s": args.duration,
        "connections": args.connections,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    notes: list[str] = []
    env = {KEY_ENV: secrets.token_urlsafe(32)}
    try:
        with _tempdir() as tmp:
            rows, goals = _load_scenarios(args, tmp, env, notes)
        if not args.skip_micro:
            goals += _micro_goals(args, notes)
    except SetupError as e:
        print(f"setup failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.json:
        doc = {
            "settings": settings,
            "goals": [asdict(g) for g in goals],
            "scenarios": [asdict(r) for r in rows],
            "notes": notes,
        }
        print(json.dumps(doc, indent=1))
    else:
        _print(settings, goals, rows, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
