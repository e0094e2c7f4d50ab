"""TC string decoding: the gateway's decoder against IAB's reference decoder on Node.

    python bench/tcf.py [--strings 1000] [--seconds 2] [--json]

The strings come from IAB's own encoder (tests/interop/tcf_decode.mjs encode, seeded):
every one is decoded by both sides, fresh each time. Then the same strings through
`tcf.decode_tc_string_kept`, the bounded cache the request path uses: what a string seen
again costs. Prints figures, asserts nothing. Exit 0 when it ran, 1 when setup failed,
2 for bad usage. Node or the reference package missing: the Node figure is null.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.consent import tcf  # noqa: E402
from gateway.errors import SignalError  # noqa: E402

INTEROP = ROOT / "tests" / "interop"
SEED = 20261203


def corpus(count: int, node: str | None) -> tuple[list[str], str | None]:
    """`count` distinct TC strings from IAB's encoder, or (no Node) from the test helpers."""
    if node is not None and (INTEROP / "node_modules" / "@iabtechlabtcf" / "core").exists():
        out = subprocess.run(
            [node, str(INTEROP / "tcf_decode.mjs"), "encode", str(SEED), str(count * 2)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        found = [json.loads(line) for line in out.splitlines() if line.strip()]
        strings = list(dict.fromkeys(d["s"] for d in found if d.get("ok")))[:count]
        return strings, None
    from tests.signal_values import bitfield_section, core, range_section

    strings = [
        core(
            purposes={1, 2, 3, 4, 7, 9, 10} if i % 2 else {1, 8},
            consents=bitfield_section(set(range(1, 300 + i % 400, 3)))
            if i % 3
            else range_section([(1, 50 + i), (100, 120 + i % 50)], 400),
            created=i,
        )
        for i in range(count)
    ]
    return strings, "node or @iabtechlabtcf/core missing: strings from tests/signal_values"


def python_rate(strings: list[str], seconds: float, decode: Any) -> float:
    for s in strings:  # warm-up (and, for the kept path, fills the cache)
        decode(s)
    n, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for s in strings:
            try:
                decode(s)
            except SignalError:
                pass
            n += 1
    return n / (time.process_time() - start)


def node_rate(strings: list[str], seconds: float, node: str | None) -> float | None:
    if node is None or not (INTEROP / "node_modules" / "@iabtechlabtcf" / "core").exists():
        return None
    out = subprocess.run(
        [node, str(ROOT / "bench" / "tcf_node.mjs"), str(seconds)],
        input=json.dumps(strings),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds * 4 + 60,
    ).stdout
    doc = json.loads(out)
    return float(doc["decodes"]) / float(doc["seconds"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/tcf.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--strings", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=2.0, help="per run and side")
    p.add_argument("--rounds", type=int, default=3, help="alternating Python and Node runs")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.strings < 1 or args.seconds <= 0 or args.rounds < 1:
        p.error("--strings, --seconds and --rounds must be positive")
    node = shutil.which("node")
    try:
        strings, note = corpus(args.strings, node)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        print(f"setup failed: {e}", file=sys.stderr)
        return 1
    print(f"tcf: {len(strings)} strings, {args.seconds} s per side", file=sys.stderr)

    def fresh(s: str) -> object:
        return tcf.decode_tc_string(s)

    # Alternating runs, the medians: a noisy moment of the VM falls on both sides.
    pairs: list[tuple[float, float | None]] = []
    for _ in range(args.rounds):
        py_run = python_rate(strings, args.seconds, fresh)
        try:
            js_run = node_rate(strings, args.seconds, node)
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            js_run, note = None, f"node run failed: {type(e).__name__}"
        pairs.append((py_run, js_run))
    py = statistics.median(p for p, _ in pairs)
    js_runs = [j for _, j in pairs if j]
    js = statistics.median(js_runs) if js_runs else None
    ratios = [p / j for p, j in pairs if j]
    kept = python_rate(strings, args.seconds, tcf.decode_tc_string_kept)
    doc = {
        "strings": len(strings),
        "python_fresh_per_s": round(py, 1),
        "node_fresh_per_s": None if js is None else round(js, 1),
        "ratio": round(statistics.median(ratios), 3) if ratios else None,
        "ratios": [round(r, 3) for r in ratios],
        "python_cached_per_s": round(kept, 1),
        "cache_size": tcf.KEPT_STRINGS,
        "note": note,
    }
    if args.json:
        print(json.dumps(doc))
    else:
        for k, v in doc.items():
            print(f"{k:<22} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
