"""gateway.explain: `consent-gateway explain` shows the decision and the forwarded diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import DEFAULT_PURPOSES
from gateway.errors import BadDestination, UnknownDestination
from gateway.explain import ExplainRequest, diff, explain, to_json
from gateway.ruleset.load import load_rules
from tests.conftest import RULES_DIR, TEST_KEY, make_config

RULES = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))
FLOODLIGHT = (
    "https://ad.doubleclick.net/activity;src=1234567;type=sales;cat=purch0;ord=ORDER-991;"
    "u1=alice%40example.com;~oref=https%3A%2F%2Fshop.example%2Fthanks%3Fgclid%3DCj0K?"
)


def test_floodlight_u1_and_oref_removed_when_advertising_denied(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    facts, ev = explain(ExplainRequest(FLOODLIGHT, consent={"advertising": "denied"}), cfg, RULES)
    doc = to_json(facts, ev)
    assert doc["vendor"] == "google-floodlight" and doc["endpoint"] == "activity"
    assert doc["decision"] == {
        "action": "strip",
        "missing": ["advertising"],
        "reason": "no consent for advertising: identifiers stripped",
    }
    assert doc["consent"]["advertising"] == {"state": "denied", "source": "cookie"}  # type: ignore[index]
    forwarded = doc["forwarded"]
    assert isinstance(forwarded, dict)
    assert ";u1=" not in forwarded["url"] and "~oref" not in forwarded["url"]
    assert forwarded["url"].startswith("https://ad.doubleclick.net/activity;src=1234567")
    assert ev.outgoing is not None
    changes = diff(facts, ev.outgoing)
    assert "- path u1" in changes and "- path ~oref" in changes and "- path ord" in changes


def test_granted_forwards_with_always_strips_only(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    facts, ev = explain(ExplainRequest(FLOODLIGHT, consent={"advertising": "granted"}), cfg, RULES)
    assert ev.decision.action.value == "forward" and ev.outgoing is not None
    changes = diff(facts, ev.outgoing)
    # ~oref stays, but the click id inside it (another vendor's identifier) does not.
    assert any(c.startswith("~ path ~oref") and "gclid" not in c.split("->")[1] for c in changes)
    assert "- path u1" not in changes


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://evil.example/x", UnknownDestination),
        ("https://127.0.0.1/x", BadDestination),
        ("not a url", BadDestination),
    ],
)
def test_refusals(tmp_path: Path, url: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        explain(ExplainRequest(url), make_config(tmp_path), RULES)


def test_cli_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import config_text

    path = tmp_path / "c.yaml"
    path.write_text(config_text(tmp_path))
    monkeypatch.setenv("CG_TEST_KEY", TEST_KEY)
    code = main(
        ["explain", "--config", str(path), FLOODLIGHT, "--consent", "advertising=denied", "--json"]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(doc) == {"vendor", "endpoint", "consent", "decision", "forwarded"}
    assert doc["decision"]["action"] == "strip"
    assert main(["explain", "--config", str(path), "https://evil.example/", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"]["action"] == "reject"
    assert main(["explain", "--config", str(path), FLOODLIGHT, "--consent", "ads=maybe"]) == 2
