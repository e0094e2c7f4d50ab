"""gateway.explain: `consent-gateway explain` shows the decision and the forwarded diff."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import DEFAULT_PURPOSES
from gateway.errors import BadDestination, UnknownDestination
from gateway.explain import ExplainRequest, diff, explain, render_text, subjects_of, to_json
from gateway.ruleset.load import load_rules
from gateway.store.base import ConsentRecord, CurrentConsent
from gateway.store.migrations import migrate
from gateway.store.sqlite import SqliteStore
from tests.conftest import RULES_DIR, TEST_KEY, cookie_for, make_config

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


def test_a_denied_vendor_is_shown_with_its_source_and_decides(tmp_path: Path) -> None:
    """The visitor granted advertising but denied Floodlight itself: the decision is the
    one for advertising denied, and both explain forms say why."""
    cfg = make_config(tmp_path)
    req = ExplainRequest(
        FLOODLIGHT, consent={"advertising": "granted"}, vendors={"google-floodlight": False}
    )
    facts, ev = explain(req, cfg, RULES)
    doc = to_json(facts, ev)
    assert doc["vendors"] == {
        "google-floodlight": {"state": "denied", "source": "cookie", "grants": []}
    }
    assert doc["decision"] == {
        "action": "strip",
        "missing": ["advertising"],
        "reason": (
            "no consent for advertising: identifiers stripped"
            " (vendor google-floodlight denied: cookie)"
        ),
    }
    text = render_text(facts, ev)
    assert "vendors\n  google-floodlight denied   from cookie" in text


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
    assert set(doc) == {
        "vendor",
        "endpoint",
        "consent",
        "vendors",
        "ignored_grants",
        "decision",
        "forwarded",
    }
    assert doc["decision"]["action"] == "strip"
    assert main(["explain", "--config", str(path), "https://evil.example/", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"]["action"] == "reject"
    assert main(["explain", "--config", str(path), FLOODLIGHT, "--consent", "ads=maybe"]) == 2


# -- the consent store, when asked (--store) --------------------------------------------------


def _stored(subject: str, **purposes: bool) -> CurrentConsent:
    return CurrentConsent(subject, purposes, 1, time.time() - 10, "withdrawal")


def test_a_stored_withdrawal_newer_than_the_cookie_is_shown(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    cookie = cookie_for({"advertising": "granted"}, subject="v1", issued_at=int(time.time()) - 60)
    req = ExplainRequest(FLOODLIGHT, cookie=cookie)
    assert subjects_of(req, cfg) == ["v1"]
    _, without = explain(req, cfg, RULES)
    assert without.decision.action.value == "forward"
    stored = {"v1": _stored("v1", advertising=False)}
    _, ev = explain(dataclasses.replace(req, stored=stored), cfg, RULES)
    assert ev.decision.action.value == "strip"
    assert ev.consent is not None and ev.consent.purposes["advertising"].source == "store"


@pytest.mark.parametrize(
    ("stored", "action"),
    [
        (None, "strip"),  # the store not read: the subject counts as unknown, no consent
        ({"backend-7": None}, "strip"),  # unknown to the store: no consent
        (
            {"backend-7": CurrentConsent("backend-7", {"advertising": True}, 1, 9e9, "api")},
            "forward",
        ),
    ],
)
def test_a_server_event_is_judged_by_the_store(
    tmp_path: Path, stored: dict[str, CurrentConsent | None] | None, action: str
) -> None:
    cfg = make_config(tmp_path, extra={"store": {"subject_header": "X-Consent-Subject"}})
    req = ExplainRequest(
        FLOODLIGHT, consent={"advertising": "granted"}, headers=[("X-Consent-Subject", "backend-7")]
    )
    assert subjects_of(req, cfg) == ["backend-7"]
    _, ev = explain(dataclasses.replace(req, stored=stored), cfg, RULES)
    assert ev.decision.action.value == action


async def test_cli_explain_reads_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import config_text

    path = tmp_path / "c.yaml"
    path.write_text(config_text(tmp_path))
    monkeypatch.setenv("CG_TEST_KEY", TEST_KEY)
    (tmp_path / "data").mkdir(exist_ok=True)
    store = SqliteStore(tmp_path / "data" / "consent.db")
    await store.open()
    await migrate(store)
    await store.record(
        ConsentRecord("v1", {"advertising": False}, "withdrawal", 1, time.time() - 5, None, None)
    )
    await store.close()
    cookie = cookie_for({"advertising": "granted"}, subject="v1", issued_at=int(time.time()) - 60)
    args = ["explain", "--config", str(path), FLOODLIGHT, "--cookie", cookie, "--json"]
    assert await asyncio.to_thread(main, args) == 0
    assert json.loads(capsys.readouterr().out)["decision"]["action"] == "forward"
    assert await asyncio.to_thread(main, [*args, "--store"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["decision"]["action"] == "strip"
    assert doc["consent"]["advertising"] == {"state": "denied", "source": "store"}


GA4_SELF_GRANTED = "https://www.google-analytics.com/g/collect?v=2&tid=G-1&cid=1.2&en=x&gcs=G111"


@pytest.mark.parametrize(
    ("grant", "analytics", "source", "ignored"),
    [
        (
            False,
            "denied",
            "default:opt-in",
            [{"source": "gcm:query", "purpose": "analytics"}],
        ),
        (True, "granted", "gcm:query", []),
    ],
    ids=["params-may-not-grant", "params-may-grant"],
)
def test_a_tag_cannot_grant_itself_consent_unless_config_says_so(
    tmp_path: Path, grant: bool, analytics: str, source: str, ignored: list[dict[str, str]]
) -> None:
    cfg = make_config(tmp_path, extra={"consent": {"signals": {"request_params_grant": grant}}})
    facts, ev = explain(ExplainRequest(GA4_SELF_GRANTED), cfg, RULES)
    doc = to_json(facts, ev)
    # gcs=G111 grants analytics_storage: the hit is dropped unless the request may grant
    assert doc["decision"]["action"] == ("drop" if analytics == "denied" else "strip")  # type: ignore[index]
    assert doc["consent"]["analytics"] == {"state": analytics, "source": source}  # type: ignore[index]
    assert doc["ignored_grants"] == ignored
    text = render_text(facts, ev)
    assert ("gcm:query granted analytics: ignored" in text) is (not grant)
