"""gateway.ruleset.drop_answer: an api endpoint's `drop_answer:` as written, or its problems.

The same fields in a whole rule file are in tests/ruleset/test_parse.py's problem table.
"""

from __future__ import annotations

import pytest

from gateway.config import DEFAULT_PURPOSES
from gateway.model import EndpointKind
from gateway.ruleset.drop_answer import read_drop_answer
from gateway.ruleset.load import load_rules
from gateway.ruleset.schema import DropAnswer
from gateway.yamlsrc import YamlSource
from tests.conftest import RULES_DIR

SHIPPED = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))


def _read(text: str, kind: EndpointKind = EndpointKind.API) -> tuple[DropAnswer | None, list[str]]:
    src = YamlSource.parse(text, "r.yaml")
    answer = read_drop_answer(src.root(), kind)
    return answer, [f"{p.where}: {p.message}" for p in src.problems]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (
            "{status: 200, json: {status: 1}, source: s}",
            DropAnswer(200, b'{"status":1}', "application/json", "s"),
        ),
        ("{status: 200, json: [], source: s}", DropAnswer(200, b"[]", "application/json", "s")),
        ("{status: 200, text: '1', source: s}", DropAnswer(200, b"1", "text/plain", "s")),
        (
            "{status: 200, text: 'ok', content_type: text/javascript, source: s}",
            DropAnswer(200, b"ok", "text/javascript", "s"),
        ),
        ("{status: 202, source: s}", DropAnswer(202, b"", None, "s")),
    ],
)
def test_drop_answers_as_written(text: str, answer: DropAnswer) -> None:
    assert _read(text) == (answer, [])


def test_no_drop_answer_is_none() -> None:
    assert _read("") == (None, [])


@pytest.mark.parametrize(
    ("text", "kind", "problem"),
    [
        (
            "{status: 200, source: s}",
            EndpointKind.BEACON,
            ": only an api endpoint has a drop_answer",
        ),
        ("{status: 200}", EndpointKind.API, ": missing required key 'source'"),
        ("{status: 301, source: s}", EndpointKind.API, "status: must satisfy 200 <= value <= 299"),
        (
            "{status: 200, json: 1, text: '1', source: s}",
            EndpointKind.API,
            ": json or text, not both",
        ),
        (
            "{status: 200, content_type: text/plain, source: s}",
            EndpointKind.API,
            "content_type: content_type needs",
        ),
        (
            "{status: 200, json: {}, content_type: text/plain, source: s}",
            EndpointKind.API,
            "content_type: a json answer",
        ),
        (
            "{status: 205, text: x, source: s}",
            EndpointKind.API,
            ": drop_answer status 205 has no body",
        ),
        ("{status: 200, sorce: s}", EndpointKind.API, "sorce: unknown key"),
    ],
)
def test_problems(text: str, kind: EndpointKind, problem: str) -> None:
    answer, problems = _read(text, kind)
    assert answer is None
    assert any(problem in p for p in problems), problems


def test_every_shipped_api_endpoint_answers_a_drop_as_its_sdk_success() -> None:
    """A dropped API call answered 204 is retried by SDKs that want their vendor's success
    (posthog-js resends anything but 200), and replayed once consent arrives. Every api
    endpoint of the catalogue names its SDK's success, and where that shape comes from."""
    missing = [
        f"{rule.vendor}/{e.id}"
        for rule in SHIPPED.rules
        for e in rule.endpoints
        if e.kind is EndpointKind.API and not e.retired and e.drop_answer is None
    ]
    assert missing == []
    for rule in SHIPPED.rules:
        for e in rule.endpoints:
            if e.drop_answer is not None:
                assert len(e.drop_answer.source) >= 10, f"{rule.vendor}/{e.id}: cite the source"
