"""Differential test: gateway.consent.tcf against IAB's reference implementation.

The reference is `@iabtechlabtcf/core` (pinned in tests/interop/package.json and
package-lock.json), driven by tests/interop/tcf_decode.mjs. Both directions run:

1. Node encodes: the reference encoder builds COUNT random TC strings from a seeded PRNG
   (random purposes, vendor sets shaped for bitfields and for ranges, publisher
   restrictions, disclosed and allowed vendors, publisher TC with custom purposes, segments
   in any order) and the reference decoder reads each back. We must decode every one of
   them to exactly the reference decoder's model.
2. Python encodes: an independent encoder below writes COUNT random strings with layout
   choices the reference encoder never makes (ranges split, repeated, overlapping or out of
   order, single ids written as ranges, MaxVendorId above the highest id, repeated
   (purpose, type) restriction pairs, trailing zero characters). Our decoder must give the
   model the encoder meant, and the reference decoder must give the same. The same batch
   carries thousands of randomly mutated strings (where both accept they must agree; where
   one refuses, the reason must be a known, documented difference) and the table of known
   differences (`DIFFERENCES`), pinned so a change on either side shows up here.

Each direction is one node process over stdin/stdout, both processes running at once.

node_modules is looked for at tests/interop/node_modules (`npm ci --prefix tests/interop`).
Without it the test fails under CI (CI=true) and is skipped elsewhere.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import random
import shutil
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.consent.tcf import MAX_TC_STRING_LENGTH, V1_REASON, TCString, decode_tc_string
from gateway.errors import TCFError

INTEROP = Path(__file__).resolve().parents[1] / "interop"
SCRIPT = INTEROP / "tcf_decode.mjs"
REFERENCE = INTEROP / "node_modules" / "@iabtechlabtcf" / "core" / "package.json"
REFERENCE_VERSION = "1.5.21"
#: per direction: enough that every layout choice the coverage test counts turns up
#: dozens of times (the rarest, vendor ids above 4096, about 60)
COUNT = 5_000
MUTATED = 2_500
SEED = int(os.environ.get("TCF_DIFFERENTIAL_SEED", "20260301"))
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

Json = dict[str, Any]


# --- the reference ---------------------------------------------------------------------------


def require_reference() -> str:
    """The node executable, once the pinned reference is installed; else fail (CI) or skip."""
    node = shutil.which("node")
    problem = None
    if node is None:
        problem = "node is not on PATH"
    elif not REFERENCE.exists():
        problem = (
            "tests/interop/node_modules has no @iabtechlabtcf/core: "
            "run `npm ci --prefix tests/interop`"
        )
    if problem is not None:
        message = f"the TCF differential test needs IAB's reference decoder: {problem}"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)  # CI must never pass without having compared
        pytest.skip(message)
    installed = json.loads(REFERENCE.read_text())["version"]
    assert installed == REFERENCE_VERSION, (
        f"tests/interop has @iabtechlabtcf/core {installed}, the test pins "
        f"{REFERENCE_VERSION}: run `npm ci --prefix tests/interop`"
    )
    assert node is not None
    return node


def start_node(node: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [node, str(SCRIPT), *args],
        cwd=INTEROP,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], stdin: str | None = None) -> list[Json]:
    out, err = process.communicate(stdin, timeout=180)
    assert process.returncode == 0, f"tcf_decode.mjs failed: {err[-2000:]}"
    return [json.loads(line) for line in out.splitlines()]


# --- an independent encoder ------------------------------------------------------------------


class Bits:
    """Collects fields as '0'/'1' text; `text()` is base64url, no padding."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def uint(self, value: int, width: int) -> None:
        assert 0 <= value < 1 << width, (value, width)
        if width:
            self.parts.append(format(value, f"0{width}b"))

    def flag(self, value: bool) -> None:
        self.parts.append("1" if value else "0")

    def ids(self, ids: set[int], width: int) -> None:
        field = bytearray(b"0" * width)
        for i in ids:
            field[i - 1] = ord("1")
        self.parts.append(field.decode())

    def text(self) -> str:
        bitstring = "".join(self.parts)
        chars = -(-len(bitstring) // 6)
        bitstring += "0" * (-len(bitstring) % 24)
        raw = int(bitstring, 2).to_bytes(len(bitstring) // 8, "big") if bitstring else b""
        return base64.urlsafe_b64encode(raw).decode()[:chars]


def id_runs(ids: set[int]) -> list[tuple[int, int]]:
    """`ids` as ascending (first, last) runs of consecutive ids."""
    ordered = sorted(ids)
    cuts = [i for i in range(1, len(ordered)) if ordered[i] != ordered[i - 1] + 1]
    bounds = [0, *cuts, len(ordered)] if ordered else [0]
    return [(ordered[a], ordered[b - 1]) for a, b in zip(bounds, bounds[1:], strict=False)]


def random_ids(rng: random.Random, cap: int = 65535) -> set[int]:
    """Vendor ids shaped like the node generator's: empty, sparse, or runs (some very high)."""
    shape = rng.randrange(10)
    if shape == 0:
        return set()
    if shape <= 3:
        n = min(cap, rng.randint(1, 600))
        return set(rng.sample(range(1, n + 1), int(n * rng.choice([0.05, 0.3, 0.7]))))
    top = min(cap, 65535 if rng.random() < 0.05 else rng.choice([100, 1000, 3000]))
    out: set[int] = set()
    for _ in range(rng.randint(1, 8)):
        start = rng.randint(1, top)
        end = min(top, start + (0 if rng.random() < 0.3 else rng.randint(1, 200)))
        out.update(range(start, end + 1))
    return out


def write_entries(bits: Bits, runs: list[tuple[int, int]], rng: random.Random) -> None:
    """NumEntries + range entries covering exactly the `runs`, in a random layout."""
    entries: list[tuple[int, int]] = []
    for start, end in runs:
        if end > start and rng.random() < 0.2:
            middle = rng.randint(start, end - 1)
            entries += [(start, middle), (middle + 1, end)]
        elif end > start + 1 and rng.random() < 0.1:
            entries += [(start, end - 1), (start + 1, end)]  # overlapping
        else:
            entries.append((start, end))
    if entries and rng.random() < 0.2:
        entries.append(rng.choice(entries))  # repeated
    if rng.random() < 0.3:
        rng.shuffle(entries)
    bits.uint(len(entries), 12)
    for start, end in entries:
        as_range = start != end or rng.random() < 0.1  # a one-id range is valid too
        bits.flag(as_range)
        bits.uint(start, 16)
        if as_range:
            bits.uint(end, 16)


def write_vendor_section(bits: Bits, ids: set[int], rng: random.Random) -> None:
    max_id = max(ids, default=0)
    if rng.random() < 0.2:
        max_id = min(65535, max_id + rng.randint(0, 20))
    bits.uint(max_id, 16)
    # Ranges for high ids (a bitfield would be kilobytes), else either; sparse sets (many
    # runs) mostly as bitfields, to keep the batch quick.
    runs = id_runs(ids)
    as_ranges = max_id > 4000 or (len(runs) <= 64 and rng.random() < 0.5)
    bits.flag(as_ranges)
    if as_ranges:
        write_entries(bits, runs, rng)
    else:
        bits.ids(ids, max_id)


def subset(rng: random.Random, n: int, p: float) -> set[int]:
    """Each of 1..n with probability p."""
    return {i for i in range(1, n + 1) if rng.random() < p}


def iso(deciseconds: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=deciseconds // 10)
    tenths = deciseconds % 10
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{tenths}" if tenths else "") + "Z"


def letters(rng: random.Random) -> tuple[str, list[int]]:
    codes = [rng.randrange(26), rng.randrange(26)]
    return "".join(chr(65 + c) for c in codes), codes


def random_tc_string(rng: random.Random) -> tuple[str, Json]:
    """A random, valid TC string and the model it is meant to carry (to_json form)."""
    core = Bits()
    created = rng.randrange(1 << 36) if rng.random() < 0.5 else 864000 * rng.randint(15000, 21000)
    updated = created if rng.random() < 0.5 else rng.randrange(1 << 36)
    language, language_codes = letters(rng)
    country, country_codes = letters(rng)
    expected: Json = {
        "version": 2,
        "created": iso(created),
        "last_updated": iso(updated),
        # 0 and 1 are refused by the reference model's setter: see DIFFERENCES
        "cmp_id": rng.randint(2, 4095),
        "cmp_version": rng.randrange(4096),
        "consent_screen": rng.randrange(64),
        "consent_language": language,
        "vendor_list_version": rng.randrange(4096),
        "policy_version": rng.choice([2, 4, 5, rng.randrange(64)]),
        "is_service_specific": rng.random() < 0.8,
        "use_non_standard_texts": rng.random() < 0.2,
        "special_feature_optins": subset(rng, 12, 0.3),
        "purpose_consents": subset(rng, 24, 0.4),
        "purpose_legitimate_interests": subset(rng, 24, 0.3),
        "purpose_one_treatment": rng.random() < 0.2,
        "publisher_country_code": country,
        "vendor_consents": random_ids(rng),
        "vendor_legitimate_interests": random_ids(rng),
    }
    core.uint(2, 6)
    core.uint(created, 36)
    core.uint(updated, 36)
    core.uint(expected["cmp_id"], 12)
    core.uint(expected["cmp_version"], 12)
    core.uint(expected["consent_screen"], 6)
    for code in language_codes:
        core.uint(code, 6)
    core.uint(expected["vendor_list_version"], 12)
    core.uint(expected["policy_version"], 6)
    core.flag(expected["is_service_specific"])
    core.flag(expected["use_non_standard_texts"])
    core.ids(expected["special_feature_optins"], 12)
    core.ids(expected["purpose_consents"], 24)
    core.ids(expected["purpose_legitimate_interests"], 24)
    core.flag(expected["purpose_one_treatment"])
    for code in country_codes:
        core.uint(code, 6)
    write_vendor_section(core, expected["vendor_consents"], rng)
    write_vendor_section(core, expected["vendor_legitimate_interests"], rng)

    restrictions: list[tuple[int, int, list[tuple[int, int]]]] = []
    for _ in range(rng.randint(1, 8) if rng.random() < 0.5 else 0):
        if restrictions and rng.random() < 0.15:
            purpose, kind, _ = rng.choice(restrictions)  # a repeated (purpose, type) pair
        else:
            purpose = rng.randint(1, 11) if rng.random() < 0.9 else rng.randint(1, 63)
            kind = rng.randint(0, 2)
        restrictions.append((purpose, kind, id_runs(random_ids(rng, cap=3000))[:48]))
    core.uint(len(restrictions), 12)
    merged: dict[tuple[int, int], set[int]] = {}
    for purpose, kind, runs in restrictions:
        core.uint(purpose, 6)
        core.uint(kind, 2)
        write_entries(core, runs, rng)
        for start, end in runs:
            merged.setdefault((purpose, kind), set()).update(range(start, end + 1))
    expected["publisher_restrictions"] = [
        {"purpose_id": p, "restriction_type": k, "vendors": sorted(v)}
        for (p, k), v in sorted(merged.items())
    ]

    segments = [core.text()]
    optional = [t for t in (1, 2, 3) if rng.random() < 0.5]
    rng.shuffle(optional)
    expected["disclosed_vendors"] = expected["allowed_vendors"] = None
    publisher: list[set[int]] = [set(), set(), set(), set()]
    for segment_type in optional:
        bits = Bits()
        bits.uint(segment_type, 3)
        if segment_type in (1, 2):
            ids = random_ids(rng)
            write_vendor_section(bits, ids, rng)
            expected["disclosed_vendors" if segment_type == 1 else "allowed_vendors"] = sorted(ids)
        else:
            custom = rng.randrange(64) if rng.random() < 0.5 else 0
            publisher = [subset(rng, 24, 0.3), subset(rng, 24, 0.3)]
            publisher += [subset(rng, custom, 0.5), subset(rng, custom, 0.5)]
            bits.ids(publisher[0], 24)
            bits.ids(publisher[1], 24)
            bits.uint(custom, 6)
            bits.ids(publisher[2], custom)
            bits.ids(publisher[3], custom)
        segments.append(bits.text())
    # trailing zero characters are zero fill, on any segment
    segments = [s + rng.choice(["", "", "", "A", "AA"]) for s in segments]
    for name, ids in zip(
        [
            "publisher_consents",
            "publisher_legitimate_interests",
            "custom_purpose_consents",
            "custom_purpose_legitimate_interests",
        ],
        publisher,
        strict=True,
    ):
        expected[name] = ids
    for name, value in list(expected.items()):
        if isinstance(value, set):
            expected[name] = sorted(value)
    return ".".join(segments), {f.name: expected[f.name] for f in dataclasses.fields(TCString)}


def mutate(value: str, rng: random.Random) -> str:
    """`value` after 1-3 random edits: replace, insert or delete a character, truncate,
    repeat a segment or reverse the segment order."""
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(value)) if value else 0
        op = rng.randrange(5)
        char = rng.choice(ALPHABET + ".=")
        if op == 0:
            value = value[:i] + char + value[i + 1 :]
        elif op == 1:
            value = value[:i] + char + value[i:]
        elif op == 2:
            value = value[:i] + value[i + 1 :]
        elif op == 3:
            value = value[: max(1, i)]
        else:
            parts = value.split(".")
            if rng.random() < 0.5:
                j = rng.randrange(len(parts))
                parts.insert(j, parts[j])
            else:
                parts.reverse()
            value = ".".join(parts)
    return value


# --- known differences -----------------------------------------------------------------------


def b(*fields: str) -> str:
    """base64url of the concatenated '0'/'1' fields."""
    bits = Bits()
    bits.parts.extend(fields)
    return bits.text()


def u(value: int, width: int) -> str:
    return format(value, f"0{width}b")


def header(*, cmp_id: int = 300, language: tuple[int, int] = (4, 13)) -> str:
    """The core's first 213 bits: version 2, times 0, policy 5, nothing consented."""
    return "".join(
        [u(2, 6), u(0, 72), u(cmp_id, 12), u(1, 12), u(0, 6), u(language[0], 6)]
        + [u(language[1], 6), u(100, 12), u(5, 6), "10", u(0, 60), "0", u(0, 12)]
    )


def entry(start: int, end: int) -> str:
    return "1" + u(start, 16) + u(end, 16) if start != end else "0" + u(start, 16)


NO_VENDORS = u(0, 16) + "0"
NO_RESTRICTIONS = u(0, 12)
MINIMAL = b(header(), NO_VENDORS, NO_VENDORS, NO_RESTRICTIONS)
DISCLOSED_3 = b("001", u(3, 16), "0", "111")


def with_restrictions(*items: tuple[int, int, list[tuple[int, int]]]) -> str:
    fields = [header(), NO_VENDORS, NO_VENDORS, u(len(items), 12)]
    for purpose, kind, ranges in items:
        fields += [u(purpose, 6), u(kind, 2), u(len(ranges), 12)]
        fields += [entry(s, e) for s, e in ranges]
    return b(*fields)


def with_consents(max_id: int, ranges: list[tuple[int, int]]) -> str:
    section = u(max_id, 16) + "1" + u(len(ranges), 12) + "".join(entry(s, e) for s, e in ranges)
    return b(header(), section, NO_VENDORS, NO_RESTRICTIONS)


# (case, value, our reason (None: we decode it), does the reference decode it?). Where we
# refuse what the reference accepts, the string is malformed and we fail closed; where we
# accept what it refuses, the string is well formed and iabtcf-java accepts it too.
DIFFERENCES: list[tuple[str, str, str | None, bool]] = [
    (
        "a segment type twice (reference: the last copy wins; iabtcf-java: the first)",
        f"{MINIMAL}.{DISCLOSED_3}.{b('001', u(3, 16), '0', '100')}",
        "duplicate segment",
        True,
    ),
    (
        "a second core segment (reference: decodes it over the first)",
        f"{MINIMAL}.{MINIMAL}",
        "core segment out of place",
        True,
    ),
    (
        "no core segment (reference: decodes a lone DisclosedVendors segment)",
        DISCLOSED_3,
        "core segment not first",
        True,
    ),
    (
        "TCF v1.1 string (reference: decodes it as v1; iabtcf-es ReportedIssues.test.ts '191')",
        "BO2e4qiO2e4qiB9ABADEDS-AAAAxKABgACBiQA",
        V1_REASON,
        True,
    ),
    (
        "vendor range ending before it starts (reference: an empty entry; iabtcf-java refuses)",
        with_consents(10, [(9, 4)]),
        "range ends before it starts",
        True,
    ),
    (
        "vendor id above MaxVendorId (reference: kept; iabtcf-java refuses)",
        with_consents(10, [(5, 11)]),
        "vendor id above MaxVendorId",
        True,
    ),
    (
        "restriction naming vendor 0 (reference: keeps vendor 0)",
        with_restrictions((1, 0, [(0, 0)])),
        "vendor id 0",
        True,
    ),
    (
        "restriction for purpose 0, no vendors (reference: ignores it)",
        with_restrictions((0, 1, [])),
        "restriction for purpose 0",
        True,
    ),
    (
        "ConsentLanguage letter beyond Z (reference and iabtcf-java: '[')",
        b(header(language=(26, 0)), NO_VENDORS, NO_VENDORS, NO_RESTRICTIONS),
        "letter out of range",
        True,
    ),
    (
        "ranges naming more than MAX_RANGE_IDS vendors (reference: expands them all)",
        with_restrictions(*((p, 0, [(1, 65535)]) for p in (1, 2, 3))),
        "too many vendor ids in ranges",
        True,
    ),
    (
        "`=` padding (reference: refuses `=`; iabtcf-java accepts)",
        f"{MINIMAL}{'A' * (-len(MINIMAL) % 4)}AA==",
        None,
        False,
    ),
    (
        "one trailing '.' (reference: refuses the empty segment; go-gdpr accepts)",
        f"{MINIMAL}.",
        None,
        False,
    ),
    (
        "restriction type 3 with a vendor (reference: cannot hash it; iabtcf-java keeps it)",
        with_restrictions((1, 3, [(7, 7)])),
        None,
        False,
    ),
    (
        "CmpId 1 (reference: its TCModel setter refuses ids below 2; iabtcf-java accepts)",
        b(header(cmp_id=1), NO_VENDORS, NO_VENDORS, NO_RESTRICTIONS),
        None,
        False,
    ),
]

# Why the reference may accept what we refuse (malformed input the reference lets through)...
REFERENCE_LAXER = {
    "duplicate segment",
    "core segment out of place",
    "core segment not first",
    "too many segments",
    "range ends before it starts",
    "vendor id above MaxVendorId",
    "vendor id 0",
    "restriction for purpose 0",
    "letter out of range",
    "too many vendor ids in ranges",
    V1_REASON,
}


def reference_stricter(value: str, ours: Json) -> bool:
    """...and why it may refuse what we accept (see DIFFERENCES)."""
    return (
        "=" in value
        or value.endswith(".")
        or ours["cmp_id"] < 2
        or any(r["restriction_type"] == 3 for r in ours["publisher_restrictions"])
    )


def ours(value: str) -> Json | str:
    """Our decoding as to_json, or the reason we refuse it."""
    try:
        return decode_tc_string(value).to_json()
    except TCFError as e:
        return e.reason


# --- the runs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    value: str
    #: the reference decoder's reading: {"ok": true, "tc": ...} or {"ok": false, "error": ...}
    theirs: Json
    #: our reading (to_json) or the reason we refuse it
    ours: Json | str
    #: what our encoder meant the string to carry (Python-encoded strings only)
    expected: Json | None = None
    #: how the reference encoded it (reference-encoded strings only)
    path: str = ""


@dataclass(frozen=True)
class Runs:
    node_encoded: list[Case]
    python_encoded: list[Case]
    mutated: list[Case]
    differences: list[Case]
    #: how many strings the one decoding node process read
    decode_batch: int


@pytest.fixture(scope="module")
def runs() -> Runs:
    """Both node processes, overlapped with our own work (2 cores: keep both busy)."""
    node = require_reference()
    with ThreadPoolExecutor(max_workers=2) as pool:
        # Read the encoder's output from the start, or it stalls on a full pipe.
        encoded = pool.submit(finish, start_node(node, "encode", str(SEED), str(COUNT)))
        rng = random.Random(SEED)
        python_encoded: list[tuple[str, Json]] = []
        while len(python_encoded) < COUNT:
            value, expected = random_tc_string(rng)
            if len(value) <= MAX_TC_STRING_LENGTH:
                python_encoded.append((value, expected))
        mutated = [mutate(rng.choice(python_encoded)[0], rng) for _ in range(MUTATED)]
        batch = [v for v, _ in python_encoded] + mutated + [v for _, v, _, _ in DIFFERENCES]
        assert all("\n" not in v for v in batch)
        decoded = pool.submit(finish, start_node(node, "decode"), "\n".join(batch) + "\n")
        mine = [ours(v) for v in batch]
        node_encoded = [
            Case(line["s"], line, ours(line["s"]), path=line["path"]) for line in encoded.result()
        ]
        theirs = decoded.result()
    assert len(theirs) == len(batch)
    cases = [Case(v, t, o) for v, t, o in zip(batch, theirs, mine, strict=True)]
    for i, (_, expected) in enumerate(python_encoded):
        cases[i] = dataclasses.replace(cases[i], expected=expected)
    first, second = len(python_encoded), len(python_encoded) + len(mutated)
    return Runs(node_encoded, cases[:first], cases[first:second], cases[second:], len(batch))


# --- tests -----------------------------------------------------------------------------------


def test_reference_encoded_strings_decode_identically(runs: Runs) -> None:
    assert len(runs.node_encoded) == COUNT
    failed = [case.theirs for case in runs.node_encoded if not case.theirs["ok"]]
    assert not failed, f"the reference could not read its own strings: {failed[:3]}"
    mismatches = [
        (case.value, explain(case.ours, case.theirs["tc"]))
        for case in runs.node_encoded
        if case.ours != case.theirs["tc"]
    ]
    assert not mismatches, f"{len(mismatches)} disagreements, e.g. {mismatches[:3]}"


def explain(got: Json | str, want: Json) -> object:
    if isinstance(got, str):
        return f"we refused: {got}"
    return {k: (got.get(k), want.get(k)) for k in want if got.get(k) != want.get(k)}


def core_bit(value: str, position: int) -> int:
    return (ALPHABET.index(value[position // 6]) >> (5 - position % 6)) & 1


def test_reference_encoded_strings_cover_the_format(runs: Runs) -> None:
    """The generator really exercises what the comparison is meant to cover."""
    seen: Counter[str] = Counter()
    for case in runs.node_encoded:
        value, tc = case.value, case.theirs["tc"]
        seen[case.path] += 1
        # IsRangeEncoding of the vendor consent section is core bit 213 + 16
        if tc["vendor_consents"]:
            seen["consents as ranges" if core_bit(value, 229) else "consents as bitfield"] += 1
        types = [ALPHABET.index(part[0]) >> 3 for part in value.split(".")[1:]]
        seen.update(f"segment {t}" for t in types)
        if types != sorted(types):
            seen["segments out of order"] += 1
        if tc["publisher_restrictions"]:
            seen["restrictions"] += 1
        if tc["custom_purpose_consents"]:
            seen["custom purposes"] += 1
        if max(tc["vendor_consents"], default=0) > 4096:
            seen["vendor ids above 4096"] += 1
    for feature in (
        "TCString.encode",
        "SegmentEncoder",
        "consents as ranges",
        "consents as bitfield",
        "segment 1",
        "segment 2",
        "segment 3",
        "segments out of order",
        "restrictions",
        "custom purposes",
        "vendor ids above 4096",
    ):
        assert seen[feature] >= 50, (feature, seen)


def test_python_encoded_strings_agree(runs: Runs) -> None:
    assert runs.decode_batch >= COUNT  # one node process decoded at least COUNT strings
    assert len(runs.python_encoded) == COUNT
    problems = []
    for case in runs.python_encoded:
        assert case.expected is not None
        if case.ours != case.expected:
            problems.append(("ours", case.value, explain(case.ours, case.expected)))
        if not case.theirs["ok"]:
            problems.append(("reference", case.value, case.theirs["error"]))
        elif case.theirs["tc"] != case.expected:
            problems.append(("reference", case.value, explain(case.theirs["tc"], case.expected)))
    assert not problems, f"{len(problems)} disagreements, e.g. {problems[:3]}"


def test_mutated_strings_agree_or_differ_only_as_documented(runs: Runs) -> None:
    outcomes: Counter[str] = Counter()
    problems = []
    for case in runs.mutated:
        got, theirs = case.ours, case.theirs
        if isinstance(got, dict) and theirs["ok"]:
            outcomes["both decode"] += 1
            if got != theirs["tc"]:
                problems.append((case.value, explain(got, theirs["tc"])))
        elif isinstance(got, dict):
            outcomes["only we decode"] += 1
            if not reference_stricter(case.value, got):
                problems.append((case.value, f"reference refused: {theirs['error']}"))
        elif theirs["ok"]:
            outcomes["only the reference decodes"] += 1
            if got not in REFERENCE_LAXER:
                problems.append((case.value, f"we refused: {got}"))
        else:
            outcomes["both refuse"] += 1
    assert not problems, f"{len(problems)} unexplained differences, e.g. {problems[:3]}"
    assert outcomes["both decode"] >= 200, outcomes
    assert outcomes["both refuse"] >= 200, outcomes


@pytest.mark.parametrize("index", range(len(DIFFERENCES)), ids=[d[0] for d in DIFFERENCES])
def test_known_differences(runs: Runs, index: int) -> None:
    case, value, our_reason, reference_decodes = DIFFERENCES[index]
    got = runs.differences[index]
    assert got.value == value
    if our_reason is None:
        assert isinstance(got.ours, dict), (case, got.ours)
    else:
        assert got.ours == our_reason, case
    assert got.theirs["ok"] is reference_decodes, (case, got.theirs)
