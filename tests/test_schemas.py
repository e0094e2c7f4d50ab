"""gateway.schemas: the JSON Schemas of rules and config agree with the loaders.

- the committed `schemas/*.schema.json` are what `python -m gateway.schemas` writes;
- every shipped rule, the README's worked example and `config.example.yaml` validate;
- each deliberately broken file fails both the JSON Schema and the loader, and both name
  the same field (the jsonschema error's path, the loader problem's `where`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from jsonschema.exceptions import ValidationError, best_match

from gateway.config import DEFAULT_PURPOSES
from gateway.errors import Problem
from gateway.ruleset.parse import parse_rule
from gateway.schemas import CONFIG_SCHEMA, RULE_SCHEMA, documents, main, render
from tests.conftest import CONFIG_KEYS, ROOT, RULES_DIR, SHIPPED_RULES, config_problems

SCHEMAS = ROOT / "schemas"
DOCUMENTS = documents()
RULES = jsonschema.Draft202012Validator(DOCUMENTS[RULE_SCHEMA])
CONFIG = jsonschema.Draft202012Validator(DOCUMENTS[CONFIG_SCHEMA])
KNOWN = frozenset(DEFAULT_PURPOSES)


# -- the files -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_the_committed_schema_is_the_generated_one(name: str) -> None:
    committed = (SCHEMAS / name).read_text(encoding="utf-8")
    assert committed == render(DOCUMENTS[name]), "run: python -m gateway.schemas"


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_each_schema_is_a_valid_2020_12_schema(name: str) -> None:
    document = DOCUMENTS[name]
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)


def test_main_writes_the_files_and_check_finds_a_stale_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--out", str(tmp_path), "--check"]) == 1
    assert main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(DOCUMENTS)
    assert main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / RULE_SCHEMA).write_text("{}\n", encoding="utf-8")
    assert main(["--out", str(tmp_path), "--check"]) == 1
    assert f"{tmp_path / RULE_SCHEMA} is out of date" in capsys.readouterr().err


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_every_pattern_is_an_ecma_262_regular_expression() -> None:
    # what editors run: JavaScript's RegExp, with the `u` flag and without
    patterns = sorted({p for d in DOCUMENTS.values() for p in _patterns(d)})
    script = (
        "const ps = JSON.parse(require('fs').readFileSync(0, 'utf8')); const bad = [];"
        "for (const p of ps) for (const f of ['u', '']) {"
        " try { new RegExp(p, f) } catch (e) { bad.push(f + ' ' + p + ': ' + e.message) } }"
        "console.log(JSON.stringify(bad));"
    )
    done = subprocess.run(
        ["node", "-e", script], input=json.dumps(patterns), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert all(re.compile(p) for p in patterns)  # and Python's, which the tests use


def test_the_docs_point_editors_at_the_schemas() -> None:
    modeline = "# yaml-language-server: $schema=../schemas/rule.schema.json"
    assert modeline in (RULES_DIR / "README.md").read_text(encoding="utf-8")
    example = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    assert example.splitlines()[0] == "# yaml-language-server: $schema=schemas/config.schema.json"


# -- what the loaders accept, the schemas accept ------------------------------------------


@pytest.mark.parametrize("path", SHIPPED_RULES, ids=lambda p: p.name)
def test_every_shipped_rule_validates(path: Path) -> None:
    _, problems = parse_rule(path.read_text(encoding="utf-8"), str(path), KNOWN)
    if problems:
        pytest.skip(f"the loader refuses it too (a rule being written): {problems[0]}")
    errors = _errors(RULES, yaml.safe_load(path.read_text(encoding="utf-8")))
    assert errors == []


def test_the_readme_worked_example_validates() -> None:
    readme = (RULES_DIR / "README.md").read_text(encoding="utf-8")
    [block] = re.findall(r"```yaml\n(.*?)```", readme, flags=re.DOTALL)
    assert _errors(RULES, yaml.safe_load(block)) == []


def test_the_example_config_validates() -> None:
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text(encoding="utf-8"))
    assert _errors(CONFIG, example) == []


# -- what the loaders refuse, the schemas refuse, at the same field ----------------------


def _where(path: Iterable[object]) -> str:
    """A key path as the loaders write it (`endpoints[0].match.path`)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def named(error: ValidationError) -> str:
    """The field a jsonschema error names: its path, and for a key that may not be there,
    that key."""
    path: list[object] = list(error.absolute_path)
    instance: Any = error.instance
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        path.append(sorted(set(instance) - set(allowed))[0])
    elif "propertyNames" in error.absolute_schema_path:
        path.append(instance)  # the name itself was refused
    return _where(path)


def _errors(validator: jsonschema.Draft202012Validator, document: object) -> list[str]:
    return [f"{named(e)}: {e.message}" for e in validator.iter_errors(document)]


def _schema_names(validator: jsonschema.Draft202012Validator, document: object) -> str:
    error = best_match(validator.iter_errors(document))
    assert error is not None, "the schema accepts it"
    return named(error)


VENDOR = "test-vendor"
BASE = f"""\
vendor: {VENDOR}
name: Test
hosts: [a.example.com, "*.b.example.com"]
purposes: [analytics]
endpoints:
  - id: collect
    match: {{path: /collect, methods: [GET, POST]}}
    kind: beacon
examples:
  - url: https://a.example.com/collect?cid=1
    consent: {{analytics: granted}}
    expect: forward
"""
API = "    kind: api\n"
DROP = "    drop_answer: {status: 200, source: sdk.js}\n"


def _rule(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


BROKEN_RULES = [
    # unknown keys
    ("name: Test\n", "name: Test\ncolour: red\n", "colour"),
    ("{path: /collect,", "{pth: /collect,", "endpoints[0].match.pth"),
    (
        "    kind: beacon\n",
        "    kind: beacon\n    always: {keep: [email]}\n",
        "endpoints[0].always.keep",
    ),
    # wrong types
    ("name: Test\n", "name: Test\ntcf_vendor_id: '755'\n", "tcf_vendor_id"),
    ("name: Test\n", "name: Test\nreport_only: 'yes'\n", "report_only"),
    ("name: Test\n", "name: [Test]\n", "name"),
    ("    expect: forward\n", "    expect: forward\n    headers: [a]\n", "examples[0].headers"),
    # bad enums
    ("kind: beacon", "kind: beaconn", "endpoints[0].kind"),
    ("    kind: beacon\n", "    kind: beacon\n    body: xml\n", "endpoints[0].body"),
    ("name: Test\n", "name: Test\nalways: {ip: partial}\n", "always.ip"),
    ("expect: forward", "expect: forwards", "examples[0].expect"),
    ("{analytics: granted}", "{analytics: yes}", "examples[0].consent.analytics"),
    ("name: Test\n", "name: Test\nconsent_params: bing\n", "consent_params"),
    # missing required keys
    ("    kind: beacon\n", "", "endpoints[0]"),
    ("    expect: forward\n", "", "examples[0]"),
    ("name: Test\n", "", ""),
    # grammars
    (f"vendor: {VENDOR}", "vendor: Test_Vendor", "vendor"),
    ('"*.b.example.com"', '"Bad.Example.com"', "hosts[1]"),
    ('"*.b.example.com"', '"*.com"', "hosts[1]"),
    ('"*.b.example.com"', "10.0.0.1", "hosts[1]"),
    ("name: Test\n", "name: Test\nroute: /consent\n", "route"),
    ("name: Test\n", "name: Test\nroute: /ga4/\n", "route"),
    ("- id: collect", "- id: Collect", "endpoints[0].id"),
    ("{path: /collect,", "{path: collect,", "endpoints[0].match.path"),
    ("{path: /collect,", "{path: /a/../collect,", "endpoints[0].match.path"),
    ("methods: [GET, POST]", "methods: [GET, FETCH]", "endpoints[0].match.methods[1]"),
    ("methods: [GET, POST]", "methods: []", "endpoints[0].match.methods"),
    ("purposes: [analytics]", "purposes: []", "purposes"),
    ('hosts: [a.example.com, "*.b.example.com"]', "hosts: []", "hosts"),
    ("name: Test\n", "name: Test\nalways: {json: ['a[]']}\n", "always.json[0]"),
    ("name: Test\n", "name: Test\nalways: {query: ['a b']}\n", "always.query[0]"),
    ("name: Test\n", "name: Test\nalways: {headers: ['a:b']}\n", "always.headers[0]"),
    (
        "    kind: beacon\n",
        "    kind: beacon\n    forward_headers: [Cookie]\n",
        "endpoints[0].forward_headers[0]",
    ),
    ("https://a.example.com/collect", "http://a.example.com/collect", "examples[0].url"),
    (
        "    expect: forward\n",
        "    expect: forward\n    removed: ['a b']\n",
        "examples[0].removed[0]",
    ),
    ("    expect: forward\n", "    expect: forward\n    method: FETCH\n", "examples[0].method"),
    # rules between keys
    ("    kind: beacon\n", "    kind: beacon\n" + DROP, "endpoints[0].drop_answer"),
    (
        "    kind: beacon\n",
        "    kind: websocket\n    forward_mode: async\n",
        "endpoints[0].forward_mode",
    ),
    ("name: Test\n", "name: Test\nroute_host: a.example.com\n", "route_host"),
    ("{path: /collect,", "{path: /collect, path_prefix: /c,", "endpoints[0].match"),
    ("name: Test\n", "name: Test\nwhen_denied: {necessary: {}}\n", "when_denied.necessary"),
    # a drop answer's own keys
    ("    kind: beacon\n", API + DROP.replace("200", "302"), "endpoints[0].drop_answer.status"),
    ("    kind: beacon\n", API + "    drop_answer: {status: 200}\n", "endpoints[0].drop_answer"),
    (
        "    kind: beacon\n",
        API + "    drop_answer: {status: 200, source: s, json: {}, text: '1'}\n",
        "endpoints[0].drop_answer",
    ),
    (
        "    kind: beacon\n",
        API + "    drop_answer: {status: 200, source: s, text: '1', content_type: Text}\n",
        "endpoints[0].drop_answer.content_type",
    ),
    (
        "    kind: beacon\n",
        API + "    drop_answer: {status: 200, source: s, content_type: text/plain}\n",
        "endpoints[0].drop_answer.content_type",
    ),
]


def _loader_names(problems: Iterable[Problem]) -> set[str]:
    """The fields the rule loader's problems name, without the rule's id."""
    wheres = {p.where for p in problems}
    return {"" if w == VENDOR else w.removeprefix(f"{VENDOR}/") for w in wheres}


@pytest.mark.parametrize(
    ("old", "new", "field"), BROKEN_RULES, ids=[r[2] or "root" for r in BROKEN_RULES]
)
def test_a_broken_rule_fails_both_at_the_same_field(old: str, new: str, field: str) -> None:
    text = _rule(old, new)
    rule, problems = parse_rule(text, "rules/test.yaml", KNOWN)
    assert rule is None, "the loader accepts it"
    assert field in _loader_names(problems), [str(p) for p in problems]
    assert _schema_names(RULES, yaml.safe_load(text)) == field


BROKEN_CONFIGS = [
    ("servr: {}\n", "servr"),
    ("server: {port: http}\n", "server.port"),
    ("server: {port: 70000}\n", "server.port"),
    ("server: {access_log: loud}\n", "server.access_log"),
    ("server: {base_path: /cg/}\n", "server.base_path"),
    ("server: {trusted_proxies: [nope]}\n", "server.trusted_proxies[0]"),
    ("server: {allowed_origins: [www.example.com]}\n", "server.allowed_origins[0]"),
    ("server: {admin_port: 'no'}\n", "server.admin_port"),
    ("consent: {conflict: random}\n", "consent.conflict"),
    ("consent: {max_age: forever}\n", "consent.max_age"),
    ("consent: {policy_version: 0}\n", "consent.policy_version"),
    ("consent: {regimes: {eu: {countries: [DE]}}}\n", "consent.regimes.eu"),
    (
        "consent: {regimes: {eu: {mode: opt-in, countries: [NO]}}}\n",
        "consent.regimes.eu.countries[0]",
    ),
    ("consent: {signals: {cmp: {onetrus: {}}}}\n", "consent.signals.cmp.onetrus"),
    ("consent: {signals: {gcm: {analytics: [ads_storage]}}}\n", "consent.signals.gcm.analytics[0]"),
    (
        "consent: {signals: {tcf_purposes: {analytics: [25]}}}\n",
        "consent.signals.tcf_purposes.analytics[0]",
    ),
    (
        "consent: {signals: {cmp: {klaro: {vendors: {m: [Matomo]}}}}}\n",
        "consent.signals.cmp.klaro.vendors.m[0]",
    ),
    ("cookie: {same_site: none}\n", "cookie.same_site"),
    ("upstream: {queue_size: 0}\n", "upstream.queue_size"),
    ("decision_log: {writer: fork}\n", "decision_log.writer"),
    ("store: {subject_header: X Subject}\n", "store.subject_header"),
    ("store: {sqlite_path: null}\n", "store.sqlite_path"),
    ("rules: {paths: []}\n", "rules.paths"),
    ("rules: {vendor_hosts: {Bad_Vendor: [stats.example.com]}}\n", "rules.vendor_hosts.Bad_Vendor"),
    ("webhooks: {timeout: 90}\n", "webhooks.timeout"),
    ("webhooks: {endpoints: [{name: crm, url: x}]}\n", "webhooks.endpoints[0]"),
]


@pytest.mark.parametrize(("text", "field"), BROKEN_CONFIGS, ids=[c[1] for c in BROKEN_CONFIGS])
def test_a_broken_config_fails_both_at_the_same_field(text: str, field: str) -> None:
    document = CONFIG_KEYS + text
    problems = config_problems(document)
    assert field in {re.sub(r"^gw\.yaml:\d*: ", "", p).split(": ", 1)[0] for p in problems}, (
        problems
    )
    assert _schema_names(CONFIG, yaml.safe_load(document)) == field
