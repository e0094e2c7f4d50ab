"""gateway.cli.new_rule: `consent-gateway new-rule` drafts a rule from captured URLs, on
standard output or into a new file, and never quotes a captured URL."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import DEFAULT_PURPOSES
from gateway.ruleset.parse import parse_rule

PIXEL = (
    "https://www.facebook.com/tr/?id=1234567890123456&ev=PageView&fbp=fb.1.17123.118073"
    "&ud[em]=alice%40mail.example&gdpr_consent=CPzHq4APzHq4AAHABBENAgCsAP"
)
SCRIPT = "https://connect.facebook.net/en_US/fbevents.js"
#: what the captures hold that is the visitor's
SECRETS = ("fb.1.17123", "alice", "CPzHq4")


def loads(text: str) -> str:
    rule, problems = parse_rule(text, "draft.yaml", frozenset(DEFAULT_PURPOSES))
    assert problems == [] and rule is not None
    return rule.vendor


def test_a_draft_on_standard_output(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert main(["new-rule", "--from", PIXEL, "--from", SCRIPT]) == 0
    out, err = capsys.readouterr()
    assert loads(out) == "facebook" and err == ""
    assert "hosts: [connect.facebook.net, www.facebook.com]" in out
    for secret in SECRETS:
        assert secret not in out and secret not in caplog.text


def test_a_draft_into_a_new_file_never_over_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "meta.yaml"
    assert main(["new-rule", "--from", PIXEL, "--vendor", "meta-draft", "-o", str(target)]) == 0
    assert loads(target.read_text()) == "meta-draft"
    out, err = capsys.readouterr()
    assert out == "" and err == f"{target}: drafted from 1 request(s) to 1 host(s)\n"
    target.write_text("mine")
    assert main(["new-rule", "--from", PIXEL, "-o", str(target)]) == 1
    assert target.read_text() == "mine"
    assert "exists, not overwritten" in capsys.readouterr().err


def test_urls_from_a_file_or_standard_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    captured = tmp_path / "urls.txt"
    captured.write_text(f"{PIXEL}\n\n  {SCRIPT}  \n")
    assert main(["new-rule", "--from-file", str(captured)]) == 0
    first = capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(captured.read_text()))
    assert main(["new-rule", "--from-file", "-"]) == 0
    assert capsys.readouterr().out == first
    assert "# A draft from 2 captured request(s)" in first


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        ([], 2, "give at least one request URL"),
        (["--from", "https://10.0.0.1/tr?em=alice%40mail.example"], 2, "URL #1: the host is not"),
        (["--from", PIXEL, "--from", "ftp://x.example/alice"], 2, "URL #2: not an http(s) URL"),
        (["--from", PIXEL, "--vendor", "Alice Corp"], 2, "--vendor: vendor id:"),
        (["--from-file", "missing.txt"], 1, "--from-file: No such file"),
    ],
)
def test_refusals_never_quote_a_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    os.chdir(tmp_path)
    assert main(["new-rule", *argv]) == code
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(message), err
    assert "alice" not in err.replace("Alice Corp", "")
