"""Rule-set scale and memory: P4 and P6 of bench/run.py's table.

    python bench/scale.py [--rules 1000] [--json]

- P4: the shipped rules cloned into `--rules` vendor rules (hosts moved under
  `.c<k>.test`, ids and routes suffixed, so none conflicts); load time of those files;
  CPU per decision (`gateway.core.evaluate`) with them and with 10, on the same hits (to
  the ten vendors both sets have: what a bigger catalogue costs a site's traffic), and
  with hits spread over all of them (what a bigger working set costs besides); the event
  loop's longest stall while `RuleReloader.reload` compiles them again.
- P6: the resident memory of `consent-gateway serve` idle on the full catalogue, and of a
  process holding 1,000,000 subjects in the consent cache (`ConsentCache`).

Prints figures, asserts nothing. Exit 0 when it ran, 1 when setup failed, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import run as bench_run  # noqa: E402
from gateway.config import DEFAULT_PURPOSES  # noqa: E402
from gateway.ruleset.load import load_rules  # noqa: E402

PURPOSES = frozenset(DEFAULT_PURPOSES)


def clone_rules(target: Path, count: int) -> list[str]:
    """`count` rule files in `target`, cloned from rules/; the hosts they list."""
    shipped = sorted((ROOT / "rules").glob("*.yaml"))
    hosts: list[str] = []
    for k in range(count):
        source = shipped[k % len(shipped)]
        rule = load_rules([source], PURPOSES).rules[0]
        names = sorted({h.removeprefix("*.") for h in rule.hosts}, key=len, reverse=True)
        # a whole host name (or a wildcard's suffix after `*.`), not a longer name's tail
        alternatives = "|".join(map(re.escape, names))
        pattern = re.compile(r"(?<![\w-])(" + alternatives + r")(?![\w-])")
        text = pattern.sub(rf"\1.c{k}.test", source.read_text())
        text = re.sub(r"^vendor: (\S+)", rf"vendor: \1-c{k}", text, count=1, flags=re.M)
        text = re.sub(r"^route: (/\S+)", rf"route: \1-c{k}", text, count=1, flags=re.M)
        (target / f"c{k}-{source.name}").write_text(text)
        hosts += [f"{h.removeprefix('*.')}.c{k}.test" for h in rule.hosts if "*" not in h]
    return hosts


def _best_load(path: Path, repeats: int = 3, *, examples: bool = False) -> tuple[float, float]:
    """Best wall and CPU seconds of loading the files at `path`: as the gateway loads them
    at start and on reload (`configured_rules`: without the rules' examples), or with
    them, as `consent-gateway check` reads them."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        load_rules([path], PURPOSES, examples=examples)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def _config(path: Path) -> Any:
    from gateway.config import parse_config

    text = (
        f"rules: {{paths: [{path}]}}\n"
        "cookie: {keys: [{id: bench, secret_env: CG_SCALE_KEY}]}\n"
        "decision_log: {sqlite_path: null}\n"
    )
    return parse_config(text, "bench", env={"CG_SCALE_KEY": secrets.token_urlsafe(32)})


def _decision_run(path: Path, hosts: list[str]) -> Callable[[float], float]:
    """A run of `evaluate` over hits spread across the set's hosts: CPU µs per decision
    over `seconds`."""
    from gateway.core import evaluate
    from gateway.model import Facts, Headers

    cfg = _config(path)
    rules = load_rules([path], PURPOSES)
    headers = Headers((("User-Agent", "Mozilla/5.0"), ("Accept", "*/*")))
    facts = [
        Facts(f"r{i}", "GET", h, "/g/collect", "v=2&tid=G-X&cid=1.2", headers, now=time.time())
        for i, h in enumerate(hosts[:1000] * max(1, 1000 // max(1, len(hosts))))
    ]
    facts.append(Facts("u", "GET", "unknown.example", "/x", "", headers, now=time.time()))

    def run(seconds: float) -> float:
        # A pass first: the kept answers (bounded, shared by both sets) are this set's
        # again, as they are in a gateway that serves one set.
        for f in facts:
            evaluate(f, cfg, rules)
        n, start = 0, time.process_time()
        while time.process_time() - start < seconds:
            for f in facts:
                evaluate(f, cfg, rules)
            n += len(facts)
        return (time.process_time() - start) / n * 1e6

    return run


def decision_us(
    small: tuple[Path, list[str]], big: tuple[Path, list[str]], rounds: int = 5
) -> tuple[float, float, float]:
    """(µs per decision with the small set, with the big set, their ratio): runs of the two
    alternate, so a noisy moment of the VM falls on both; medians of the rounds."""
    a, b = _decision_run(*small), _decision_run(*big)
    pairs = [(a(0.3), b(0.3)) for _ in range(rounds)]
    return (
        statistics.median(x for x, _ in pairs),
        statistics.median(y for _, y in pairs),
        statistics.median(y / x for x, y in pairs),
    )


async def _reload_lag(path: Path) -> tuple[float, float, float]:
    """(max lag ms, p99 lag ms, reload seconds) of a running loop during a reload."""
    from gateway.metrics import Metrics
    from gateway.reload import RuleReloader
    from gateway.state import Gateway, RulesHolder

    cfg = _config(path)
    gw = Gateway(
        config=cfg,
        rules=RulesHolder(load_rules([path], PURPOSES)),
        metrics=Metrics(),
        upstream=None,  # type: ignore[arg-type]  # a reload touches only the rules
        decision_log=None,  # type: ignore[arg-type]
        own_cookies=frozenset(),
    )
    reloader = RuleReloader(gw, 0)
    gaps: list[float] = []
    done = False

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        while not done:
            before = loop.time()
            await asyncio.sleep(0.001)
            gaps.append(max(0.0, loop.time() - before - 0.001))

    ticker = asyncio.get_running_loop().create_task(tick())
    await asyncio.sleep(0.05)
    gaps.clear()
    started = time.perf_counter()
    ok = await reloader.reload()
    took = time.perf_counter() - started
    done = True
    await ticker
    if not ok:
        raise RuntimeError(f"reload failed: {gw.rules.last_error[:3]}")
    ordered = sorted(gaps)
    return ordered[-1] * 1000, ordered[int(0.99 * (len(ordered) - 1))] * 1000, took


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_idle_mb() -> float:
    """`consent-gateway serve` on the shipped rules, started, then idle for a second."""
    env = {bench_run.KEY_ENV: secrets.token_urlsafe(32)}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as d:
        vendor = bench_run.Proc("vendor", None, "http://127.0.0.1:9")  # type: ignore[arg-type]
        gw = bench_run._gateway(stack, Path(d), vendor, env, 1)
        time.sleep(1.0)
        return _rss_mb(gw.pid)


_CACHE_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from gateway.model import CurrentConsent
from gateway.store.cache import ConsentCache
from gateway.consent.cookie import new_subject_id
n = {n}
cache = ConsentCache(n, 600.0)
now = time.time()
purposes = ({{"analytics": True, "advertising": True}}, {{"analytics": True, "advertising": False}})
for i in range(n):
    subject = new_subject_id()
    cache.put(subject, CurrentConsent(subject, purposes[i % 2], 1, now - i % 3600, "banner"), 0)
assert len(cache) == n
print(open("/proc/self/status").read().split("VmRSS:")[1].split()[0], flush=True)
"""


def rss_subjects_mb(n: int) -> float:
    code = _CACHE_CHILD.format(root=str(ROOT), n=n)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    return int(out.stdout.strip()) / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/scale.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rules", type=int, default=1000)
    p.add_argument("--subjects", type=int, default=1_000_000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.rules < 10 or args.subjects < 1:
        p.error("--rules must be at least 10 and --subjects positive")
    notes: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="cg-scale-") as d:
            big, small = Path(d) / "big", Path(d) / "small"
            big.mkdir()
            small.mkdir()
            print(f"scale: cloning {args.rules} rules", file=sys.stderr)
            hosts_n = clone_rules(big, args.rules)
            hosts_10 = clone_rules(small, 10)
            load_s, load_cpu = _best_load(big)
            check_s, _ = _best_load(big, 1, examples=True)
            # The goal: the same traffic (hits to the ten vendors both sets have) against
            # 10 rules and against 1,000; then traffic spread over all 1,000 vendors, whose
            # larger working set (a thousand kept matches and decisions) costs by itself.
            us_10, us_n, ratio = decision_us((small, hosts_10), (big, hosts_10))
            _, us_spread, ratio_spread = decision_us((small, hosts_10), (big, hosts_n))
            print("scale: reload lag", file=sys.stderr)
            lag_max, lag_p99, reload_s = asyncio.run(_reload_lag(big))
        print("scale: memory", file=sys.stderr)
        idle = rss_idle_mb()
        subjects = rss_subjects_mb(args.subjects)
    except Exception as e:  # a setup failure, reported as one line
        print(f"setup failed: {type(e).__name__}: {str(e)[:800]}", file=sys.stderr)
        return 1
    doc: dict[str, Any] = {
        "rules": args.rules,
        "load_s": round(load_s, 3),
        "load_cpu_s": round(load_cpu, 3),
        "load_with_examples_s": round(check_s, 3),
        "decision_us_10": round(us_10, 2),
        "decision_us_n": round(us_n, 2),
        "decision_ratio": round(ratio, 3),
        "decision_us_n_spread": round(us_spread, 2),
        "decision_ratio_spread": round(ratio_spread, 3),
        "reload_max_lag_ms": round(lag_max, 2),
        "reload_p99_lag_ms": round(lag_p99, 2),
        "reload_s": round(reload_s, 3),
        "rss_idle_mb": round(idle, 1),
        "rss_1m_subjects_mb": round(subjects, 1),
        "bytes_per_subject": round(subjects * 1024 * 1024 / args.subjects, 1),
        "notes": notes,
    }
    if args.json:
        print(json.dumps(doc))
    else:
        for k, v in doc.items():
            print(f"{k:<20} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
