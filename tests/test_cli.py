"""gateway.cli: check, logs, sign, keygen, serve."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from gateway.config import load_config
from gateway.consent.cookie import verify_cookie
from tests.conftest import ROOT, RULES_DIR, TEST_KEY


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    doc = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    doc["data_dir"] = str(tmp_path / "data")
    doc["rules"]["paths"] = [str(RULES_DIR)]
    doc["decision_log"]["sqlite_path"] = str(tmp_path / "data" / "decisions.db")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("CONSENT_GATEWAY_COOKIE_KEY", TEST_KEY)
    return path


def test_check_passes_on_the_shipped_config_and_rules(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--config", str(config_file)]) == 0
    assert "vendor rule(s)" in capsys.readouterr().out


def test_check_rules_dir_alone(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    os.chdir(tmp_path)  # no ./config.yaml here: rules are checked with the default purposes
    assert main(["check", "--strict", str(RULES_DIR)]) == 0  # clean: no problems, no lint


def test_check_reports_a_misspelled_key_with_file_line_and_field(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (RULES_DIR / "meta-pixel.yaml").read_text()
    broken = text.replace("kind:", "knid:", 1)
    (rules / "meta-pixel.yaml").write_text(broken)
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "knid:" in text)
    code = main(["check", "--config", str(config_file), str(rules)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert any(
        o.startswith(
            f"{rules / 'meta-pixel.yaml'}:{line}: meta-pixel/endpoints[0].knid: unknown key"
        )
        for o in out
    ), out
    assert any("did you mean 'kind'" in o for o in out)


def test_check_reports_config_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  prot: 1\ncookie:\n  dev_key_file: k.key\n")
    assert main(["check", "--config", str(bad), str(RULES_DIR)]) == 1
    assert f"{bad}:2: server.prot: unknown key" in capsys.readouterr().out


def test_sign_mints_a_cookie_the_gateway_accepts(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "sign",
            "--config",
            str(config_file),
            "analytics=granted",
            "advertising=denied",
            "--subject",
            "s1",
        ]
    )
    value = capsys.readouterr().out.strip()
    assert code == 0
    cookie = verify_cookie(value, load_config(config_file).cookie.keys)
    assert cookie.purposes == {"analytics": True, "advertising": False}
    assert cookie.subject == "s1" and cookie.source == "cli"


@pytest.mark.parametrize(
    "args",
    [
        ["analytics=maybe"],
        ["tracking=granted"],
        ["analytics"],
        ["--subject", "a b", "analytics=granted"],
    ],
)
def test_sign_rejects_bad_input(config_file: Path, args: list[str]) -> None:
    assert main(["sign", "--config", str(config_file), *args]) == 2


def test_keygen_prints_a_fresh_32_byte_key(capsys: pytest.CaptureFixture[str]) -> None:
    main(["keygen"])
    main(["keygen"])
    a, b = capsys.readouterr().out.split()
    assert a != b and len(base64.urlsafe_b64decode(a + "=" * (-len(a) % 4))) == 32


def test_no_command_is_usage_error() -> None:
    assert main([]) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return int(resp.status)


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_runs_answers_health_and_stops_cleanly(config_file: Path, workers: int) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config_file),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "CONSENT_GATEWAY_COOKIE_KEY": TEST_KEY},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert _get(f"http://127.0.0.1:{port}/healthz") == 200
                assert _get(f"http://127.0.0.1:{port}/readyz") == 200
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # iabtcf-java TCStringV2Test.testCanConstructTCModelFromBase64String
        (
            "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA",
            {"cmp_id": 675, "vendor_list_version": 15},
        ),
        ("1YNN", {"opt_out_sale": "N"}),
    ],
)
def test_decode_json(
    value: str, expected: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    assert main(["decode", value, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert expected.items() <= doc.items()


def test_decode_table_and_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "G101"]) == 0
    out = capsys.readouterr().out
    assert "ad_storage" in out and "denied" in out
    assert main(["decode", "not-a-consent-string"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cannot decode:") and "not-a-consent-string" not in err
    assert main(["decode", "BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA"]) == 1
    assert "v1" in capsys.readouterr().err
