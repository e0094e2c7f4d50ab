"""`consent-gateway csp` (gateway/cli/csp.py): header lines on stdout, refusals on stderr."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cli import main


def test_prints_the_policy_and_its_reporting_endpoint(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["csp", "--config", str(config_file)]) == 0
    out, err = capsys.readouterr()
    policy, endpoints = out.splitlines()
    assert policy.startswith("Content-Security-Policy: default-src 'self' ")
    assert "connect-src 'self';" in policy
    assert policy.endswith("report-uri /csp-report; report-to consent-gateway")
    assert endpoints == 'Reporting-Endpoints: consent-gateway="/csp-report"'
    assert "forbids direct requests" in err and "google" not in out


def test_subdomain_gateway_extras_base_path_and_report_only(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load(config_file.read_text())
    doc.setdefault("server", {})["base_path"] = "/cg"
    config_file.write_text(yaml.safe_dump(doc))
    args = ["csp", "--config", str(config_file), "--gateway", "https://cg.example.com"]
    assert main([*args, "--allow", "cdn.example.com", "--report-only"]) == 0
    policy, endpoints = capsys.readouterr().out.splitlines()
    assert policy.startswith("Content-Security-Policy-Report-Only: ")
    assert "connect-src 'self' https://cg.example.com cdn.example.com;" in policy
    assert "report-uri https://cg.example.com/cg/csp-report;" in policy
    assert (
        endpoints == 'Reporting-Endpoints: consent-gateway="https://cg.example.com/cg/csp-report"'
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--allow", "www.facebook.com"], "rule 'meta-pixel' lists this host"),
        (["--allow", "https:"], "give an origin"),
        (["--gateway", "cg.example.com"], "--gateway"),
    ],
)
def test_refusals_exit_2_and_print_nothing_to_paste(
    config_file: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["csp", "--config", str(config_file), *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err


def test_rules_that_do_not_load_exit_1(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "rules"
    bad.mkdir()
    (bad / "x.yaml").write_text("vendor: [\n")
    doc = yaml.safe_load(config_file.read_text())
    doc["rules"]["paths"] = [str(bad)]
    config_file.write_text(yaml.safe_dump(doc))
    assert main(["csp", "--config", str(config_file)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "x.yaml" in err


def test_no_report_to_prints_the_policy_alone(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["csp", "--config", str(config_file), "--no-report-to"]) == 0
    [policy] = capsys.readouterr().out.splitlines()
    assert policy.endswith("; report-uri /csp-report")
