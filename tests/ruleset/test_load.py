"""gateway.ruleset.load: rule files and directories -> a `RuleSet`, every problem in
every file, and the conflicts between files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.config import DEFAULT_PURPOSES, VendorHost, VendorRef
from gateway.errors import RuleError
from gateway.ruleset.load import configured_rules, load_rules, registrable_domain
from tests.conftest import RULES_DIR, SHIPPED_RULES, make_config

KNOWN = frozenset(DEFAULT_PURPOSES)


# -- load_rules ----------------------------------------------------------------


def rule_text(vendor: str, hosts: list[str], route: str | None = None) -> str:
    first = hosts[0].replace("*.", "x.")
    lines = [
        f"vendor: {vendor}",
        f"name: {vendor}",
        "hosts:",
        *(f'  - "{h}"' for h in hosts),
        *([f"route: {route}", f"route_host: {first}"] if route else []),
        "purposes: [analytics]",
        "endpoints:",
        "  - {id: collect, match: {path: /collect}, kind: beacon}",
        "examples:",
        f"  - {{url: 'https://{first}/collect', expect: drop}}",
    ]
    return "\n".join(lines) + "\n"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_directory_reads_yaml_and_yml_in_order(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", rule_text("b", ["b.example.com"]))
    write(tmp_path, "a.yml", rule_text("a", ["a.example.com"]))
    write(tmp_path, "README.md", "# not a rule: vendor: [\n")
    write(tmp_path, "notes.txt", "ignored")
    (tmp_path / "sub.yaml").mkdir()  # a directory with a rule-like name is not a file
    rules = load_rules([tmp_path], KNOWN)
    assert [r.vendor for r in rules.rules] == ["a", "b"]
    assert rules.rules[0].file == str(tmp_path / "a.yml")


def test_load_files_and_directories_once_each(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", rule_text("a", ["a.example.com"]))
    rules = load_rules([a, tmp_path, a], KNOWN)
    assert [r.vendor for r in rules.rules] == ["a"]


def test_load_nothing_gives_an_empty_rule_set() -> None:
    assert len(load_rules([], KNOWN)) == 0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "missing.yaml", "no such file or directory"),
        (lambda d: d, "no rule files"),
        (lambda d: write(d, "x.yaml", "").parent, "missing required key 'vendor'"),
        (lambda d: (d / "x.yaml").write_bytes(b"\xff\xfe") and d, "not UTF-8"),
    ],
    ids=["missing", "empty-dir", "empty-file", "not-utf8"],
)
def test_load_file_problems(tmp_path: Path, setup: object, message: str) -> None:
    assert callable(setup)
    with pytest.raises(RuleError) as info:
        load_rules([setup(tmp_path)], KNOWN)
    assert any(message in p.message for p in info.value.problems), info.value


def test_load_collects_problems_from_every_file(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", rule_text("a", ["a.example.com"]).replace("beacon", "becon"))
    write(tmp_path, "b.yaml", rule_text("b", ["b.example.com"]).replace("analytics", "x"))
    write(tmp_path, "c.yaml", rule_text("c", ["c.example.com"]))
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path], KNOWN)
    assert {Path(p.file).name for p in info.value.problems} == {"a.yaml", "b.yaml"}
    text = str(info.value)
    assert "a.yaml:7: a/endpoints[0].kind: must be one of" in text
    assert "b.yaml:5: b/purposes[0]: unknown purpose 'x'" in text
    assert "no endpoint matches" not in text  # b's endpoint did not compile: no such claim


# (first rule's hosts, route), (second rule's hosts, route) -> the conflict's where (in the
# file of the rule it names) and what its message says; where None: no conflict.
CLAIMED = "is also claimed"
CROSS_FILE: list[tuple[list[str], str | None, list[str], str | None, str | None, str]] = [
    (["a.ex.com"], None, ["a.ex.com"], None, "b/hosts[0]", f"host 'a.ex.com' {CLAIMED}"),
    (["*.ex.com"], None, ["*.ex.com"], None, "b/hosts[0]", f"host '*.ex.com' {CLAIMED}"),
    (["*.ex.com"], None, ["x.ex.com"], None, "b/hosts[0]", "overlaps '*.ex.com'"),
    (["*.ex.com"], None, ["x.y.ex.com"], None, "b/hosts[0]", "overlaps '*.ex.com'"),
    (["x.ex.com"], None, ["*.ex.com"], None, "a/hosts[0]", "overlaps '*.ex.com'"),
    (["*.ex.com"], None, ["*.x.ex.com"], None, "b/hosts[0]", "overlaps '*.ex.com'"),
    (["*.x.ex.com"], None, ["*.ex.com"], None, "a/hosts[0]", "overlaps '*.ex.com'"),
    (["a.ex.com", "*.c.ex"], None, ["b.ex.com", "z.c.ex"], None, "b/hosts[1]", "overlaps"),
    (["a.ex.com"], "/ga4", ["b.ex.com"], "/ga4", "b/route", f"route '/ga4' {CLAIMED}"),
    (["a.ex.com"], "/ga4", ["b.ex.com"], "/ga4/x", "b/route", "overlaps '/ga4'"),
    (["a.ex.com"], "/ga4/x", ["b.ex.com"], "/ga4", "a/route", "overlaps '/ga4'"),
    # no conflict
    (["*.ex.com"], None, ["ex.com"], None, None, ""),
    (["*.a.ex.com"], None, ["*.b.ex.com"], None, None, ""),
    (["a.ex.com"], None, ["aa.ex.com"], None, None, ""),
    (["a.ex.com"], "/ga", ["b.ex.com"], "/ga4", None, ""),
    (["a.ex.com"], "/ga4/x", ["b.ex.com"], "/ga4/y", None, ""),
]


@pytest.mark.parametrize(
    ("hosts_a", "route_a", "hosts_b", "route_b", "where", "message"), CROSS_FILE
)
def test_cross_file_checks(
    tmp_path: Path,
    hosts_a: list[str],
    route_a: str | None,
    hosts_b: list[str],
    route_b: str | None,
    where: str | None,
    message: str,
) -> None:
    write(tmp_path, "a.yaml", rule_text("a", hosts_a, route_a))
    write(tmp_path, "b.yaml", rule_text("b", hosts_b, route_b))
    if where is None:
        assert len(load_rules([tmp_path], KNOWN)) == 2
        return
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path], KNOWN)
    [problem] = info.value.problems
    assert problem.where == where and message in problem.message
    # the problem sits in one file and names the other
    named = {"a": "b.yaml", "b": "a.yaml"}[where[0]]
    assert problem.file.endswith(f"{where[0]}.yaml") and named in problem.message
    assert problem.line is not None and problem.line > 2


def test_duplicate_vendor_ids_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", rule_text("same", ["a.example.com"]))
    write(tmp_path, "b.yaml", rule_text("same", ["b.example.com"]))
    with pytest.raises(RuleError) as info:
        load_rules([tmp_path], KNOWN)
    [problem] = info.value.problems
    assert str(problem) == (
        f"{tmp_path / 'b.yaml'}:1: same/vendor: vendor id 'same' is also used in "
        f"{tmp_path / 'a.yaml'}"
    )


def test_one_vendor_may_overlap_itself(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", rule_text("a", ["www.example.com", "*.example.com"]))
    assert load_rules([tmp_path], KNOWN).vendor("a") is not None


# -- the shipped rules -----------------------------------------------------------

REQUIRED_VENDORS = {
    "google-analytics-4",
    "google-ads",
    "meta-pixel",
    "tiktok-pixel",
    "linkedin-insight",
    "microsoft-uet",
    "microsoft-clarity",
    "hotjar",
}


def test_shipped_rules_load_without_problems() -> None:
    rules = load_rules([RULES_DIR], KNOWN)
    assert {r.vendor for r in rules.rules} >= REQUIRED_VENDORS
    assert len(rules.rules) == len(SHIPPED_RULES)


# -- hosts the config adds (rules.vendor_hosts) -------------------------------------------


def added(vendor: str, entry: str, line: int = 7) -> VendorHost:
    host, slash, rest = entry.partition("/")
    prefix = f"/{rest}" if slash else None
    return VendorHost(vendor, host, prefix, "gw.yaml", line, f"rules.vendor_hosts.{vendor}[0]")


@pytest.fixture
def two_rules(tmp_path: Path) -> Path:
    write(tmp_path, "a.yaml", rule_text("a", ["a.example.com"]))
    write(tmp_path, "b.yaml", rule_text("b", ["*.b.example.com"]))
    return tmp_path


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (added("nobody", "stats.shop.example"), "no rule has vendor id 'nobody'"),
        (added("a", "203.0.113.7"), "not a plain DNS host name"),
        (added("a", "Stats.shop.example"), "lower case"),
        (added("a", "stats.shop.example:8443"), "not a plain DNS host name"),
        (added("a", "co.uk"), "'co.uk' is a public suffix"),
        (added("a", "*.co.uk"), "'*.co.uk' is a public suffix"),
        (added("a", "*.github.io"), "'*.github.io' is a public suffix"),
        (added("a", "*.shop.example/metrics"), "a path prefix needs an exact host"),
        (added("a", "www.shop.example/m/../x"), "no dot segments"),
        (added("a", "a.example.com"), "'a.example.com' is already a host of 'a'"),
        # another rule's host, exactly or under its wildcard: reported at the config entry
        (added("a", "x.b.example.com"), "also claimed by vendor 'b'"),
    ],
)
def test_an_added_host_is_held_to_the_rules_of_hosts(
    two_rules: Path, entry: VendorHost, message: str
) -> None:
    with pytest.raises(RuleError) as e:
        load_rules([two_rules], KNOWN, [entry])
    [problem] = e.value.problems
    assert (problem.file, problem.line, problem.where) == ("gw.yaml", 7, entry.where)
    assert message in problem.message


def test_added_hosts_route_to_their_rule_and_a_prefix_mounts_its_paths(two_rules: Path) -> None:
    rules = load_rules(
        [two_rules], KNOWN, [added("a", "stats.shop.example"), added("a", "www.shop.example/m")]
    )
    a = rules.vendor("a")
    assert a is not None and a.added_hosts == ("stats.shop.example", "www.shop.example")
    assert a.mounts == {"www.shop.example": "/m"}
    assert rules.match("stats.shop.example", "/collect", "GET") is not None
    # under the prefix, the rule's own paths; elsewhere on that host, nothing
    assert rules.match("www.shop.example", "/m/collect", "GET") is not None
    for path in ("/collect", "/mx/collect", "/m", "/m/../collect", "/m%2Fcollect"):
        assert rules.match("www.shop.example", path, "GET") is None, path


def test_the_shipped_rules_take_added_hosts() -> None:
    rules = load_rules([RULES_DIR], KNOWN, [added("matomo", "stats.shop.example")])
    match = rules.match("stats.shop.example", "/matomo.php", "GET")
    assert match is not None and match.vendor.vendor == "matomo"


def test_configured_rules_or_the_rules_at_paths_with_the_hosts_added_to_them(
    two_rules: Path, tmp_path: Path
) -> None:
    """`explain --rules`: the rule being written, for the config's purposes, with the hosts
    the config adds to its vendor; entries for vendors not among them are not problems."""
    cfg = make_config(tmp_path)
    cfg = dataclasses.replace(
        cfg,
        rules=dataclasses.replace(
            cfg.rules,
            paths=(two_rules,),
            vendor_hosts=(added("a", "stats.shop.example"), added("matomo", "s.shop.example")),
        ),
    )
    with pytest.raises(RuleError, match="no rule has vendor id 'matomo'"):
        configured_rules(cfg)
    only_a = configured_rules(cfg, [two_rules / "a.yaml"])
    assert [r.vendor for r in only_a.rules] == ["a"]
    assert only_a.vendor_for_host("stats.shop.example") is not None
    b = configured_rules(cfg, [two_rules / "b.yaml"])
    assert [r.vendor for r in b.rules] == ["b"] and b.rules[0].added_hosts == ()


def test_what_the_gateway_serves_is_loaded_without_the_examples(tmp_path: Path) -> None:
    """Examples are a rule's own tests: `check` (load_rules) reads and holds them, the
    gateway's rules (configured_rules: serve, reload, explain) leave them out, so a wrong
    example costs `check`, never a start or a reload."""
    good = write(tmp_path, "a.yaml", rule_text("a", ["a.example"]))
    assert len(load_rules([good], KNOWN).rules[0].examples) == 1
    wrong = rule_text("b", ["b.example"]).replace("https://b.example/", "https://c.example/")
    (tmp_path / "wrong").mkdir()
    path = write(tmp_path / "wrong", "b.yaml", wrong)
    with pytest.raises(RuleError, match="not one of this rule's hosts"):
        load_rules([path], KNOWN)
    cfg = make_config(tmp_path)
    cfg = dataclasses.replace(cfg, rules=dataclasses.replace(cfg.rules, paths=(good, path)))
    served = configured_rules(cfg)
    assert [(r.vendor, r.examples) for r in served.rules] == [("a", ()), ("b", ())]


def test_a_routed_vendor_no_rule_has_is_refused_at_its_line(two_rules: Path) -> None:
    # a typo would leave that vendor's tags unrouted by /cg.js, so unenforced
    refs = [VendorRef("a", "gw.yaml", 9, "rules.router_vendors[0]")]
    assert (
        load_rules([two_rules], frozenset(DEFAULT_PURPOSES), router_vendors=refs).vendor("a")
        is not None
    )
    refs.append(VendorRef("posthgo", "gw.yaml", 10, "rules.router_vendors[1]"))
    with pytest.raises(RuleError) as e:
        load_rules([two_rules], frozenset(DEFAULT_PURPOSES), router_vendors=refs)
    assert [(p.line, p.message) for p in e.value.problems] == [
        (10, "no rule has vendor id 'posthgo'")
    ]


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("analytics.tiktok.com", "tiktok.com"),
        ("eu.cdn.acme.co.uk", "acme.co.uk"),
        ("shop.github.io", "shop.github.io"),
        ("co.uk", None),
    ],
)
def test_registrable_domain(host: str, domain: str | None) -> None:
    assert registrable_domain(host) == domain
