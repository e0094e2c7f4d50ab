"""Load generation and accounting for `bench/run.py`: wrk, and CPU read from /proc.

wrk (C, one thread) drives every scenario, so the load generator costs a fraction of a
core and the same for the server under test and its references. A paced run (`rate`)
gives each connection a delay between its requests (wrk's Lua `delay()`, jittered so
arrivals are not in lockstep): an offered rate for latency at a fixed load.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LoadResult", "cpu_seconds", "machine_ticks", "wrk", "wrk_path"]

#: wrk calls done() at the end; its one line of JSON is what this module reads
_SCRIPT = """
local interval = tonumber(os.getenv("CG_BENCH_INTERVAL_MS") or "0")
if interval > 0 then
  function delay() return interval * (0.5 + math.random()) end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'CGBENCH {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def wrk_path() -> str | None:
    return shutil.which("wrk")


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    #: transport errors and non-2xx/3xx answers
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    headers: dict[str, str] | None = None,
    rate: float | None = None,
) -> LoadResult:
    """Run wrk against `url` for `seconds`: as fast as `connections` allow, or paced to
    about `rate` requests/s in all. Raises RuntimeError if wrk fails."""
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_SCRIPT)
        script = f.name
    env = dict(os.environ)
    env["CG_BENCH_INTERVAL_MS"] = f"{connections / rate * 1000:.3f}" if rate else "0"
    cmd = [exe, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    cmd += ["-s", script, url]
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    finally:
        Path(script).unlink(missing_ok=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("CGBENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
    doc = json.loads(line.removeprefix("CGBENCH "))
    errors = sum(doc[k] for k in ("connect", "read", "write", "status", "timeout"))
    return LoadResult(
        requests=doc["requests"],
        seconds=doc["duration_us"] / 1e6,
        errors=errors,
        p50_ms=doc["p50"] / 1000,
        p90_ms=doc["p90"] / 1000,
        p99_ms=doc["p99"] / 1000,
        max_ms=doc["max"] / 1000,
    )


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            pass
    return out


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU seconds of `pid` (and its live child processes): 0 if gone."""
    total = 0.0
    pids = [pid, *(_children(pid) if children else [])]
    tick = os.sysconf("SC_CLK_TCK")
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return sum(parts) - idle, sum(parts)
