"""scripts/google_domains.py: rules/google-ads.yaml lists exactly Google's country domains.

The script runs as it would for a maintainer (a subprocess), against the shipped files and
against copies changed the ways a stale or corrupted list would be.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import DEFAULT_PURPOSES
from gateway.ruleset.load import load_rules

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "google_domains.py"
RULE = ROOT / "rules" / "google-ads.yaml"
DOMAINS = ROOT / "scripts" / "google_supported_domains.txt"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def test_the_shipped_rule_matches_googles_list() -> None:
    result = _run("--check")
    assert result.returncode == 0, result.stderr


def test_every_listed_domain_is_a_host_of_the_google_ads_rule() -> None:
    rule = load_rules([RULE], frozenset(DEFAULT_PURPOSES)).rules[0]
    listed = {
        "www" + d
        for line in DOMAINS.read_text().splitlines()
        if line.startswith(".")
        for d in line.split()
    }
    assert len(listed) > 180
    assert listed <= set(rule.hosts)
    # an explicit list, never a pattern over any top-level domain
    assert not any(h.startswith("*.") and "google." in h for h in rule.hosts)


def test_a_stale_block_is_found_and_rewritten(tmp_path: Path) -> None:
    rule = tmp_path / "google-ads.yaml"
    rule.write_text(RULE.read_text().replace("  - www.google.co.uk\n", "", 1))
    assert rule.read_text() != RULE.read_text()
    result = _run("--check", "--rule", str(rule))
    assert result.returncode == 1
    assert "differs" in result.stderr
    assert _run("--rule", str(rule)).returncode == 0
    assert rule.read_text() == RULE.read_text()


@pytest.mark.parametrize(
    ("domains", "error"),
    [
        (".google.com\n.evil-google.com\n", "is not a .google.<tld> domain"),
        (".google.co.uk\n.google.co.uk\n", "names a domain twice"),
    ],
)
def test_a_corrupted_list_is_refused(tmp_path: Path, domains: str, error: str) -> None:
    listed = tmp_path / "domains.txt"
    listed.write_text(domains)
    result = _run("--check", "--domains", str(listed))
    assert result.returncode == 2
    assert error in result.stderr


def test_a_rule_without_the_markers_is_refused(tmp_path: Path) -> None:
    rule = tmp_path / "google-ads.yaml"
    rule.write_text(RULE.read_text().replace("# END google country domains", "# end"))
    result = _run("--check", "--rule", str(rule))
    assert result.returncode == 2
    assert "needs exactly one" in result.stderr
