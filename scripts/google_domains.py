"""Keep the Google country domains in rules/google-ads.yaml in step with Google's own list.

Google's ad tags send some hits to the visitor's own Google domain rather than to
www.google.com (remarketing and 1p conversion hits on www.google.co.uk/pagead/...,
www.google.com.au/...). The rule file lists those hosts one by one: a regular expression over
any top-level domain would also accept look-alike hosts Google does not own. This script
writes that list from scripts/google_supported_domains.txt, a copy of
https://www.google.com/supported_domains, between two marker comments in the rule's `hosts:`:

    # BEGIN google country domains (scripts/google_domains.py)
    - www.google.ad
    ...
    # END google country domains

Usage:
    python scripts/google_domains.py            # rewrite the block in rules/google-ads.yaml
    python scripts/google_domains.py --check    # exit 1 if the block differs from the list

Exit status: 0 done / up to date, 1 the rule file differs (--check), 2 the list or the rule
file cannot be used (missing markers, a line that is not a Google domain).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOMAINS_FILE = ROOT / "scripts" / "google_supported_domains.txt"
RULE_FILE = ROOT / "rules" / "google-ads.yaml"

BEGIN_MARKER = "# BEGIN google country domains (scripts/google_domains.py)"
END_MARKER = "# END google country domains"

#: hosts the rule lists itself, outside the generated block
LISTED_ELSEWHERE = frozenset({"www.google.com"})

#: one entry of Google's list: ".google." followed by one or two lower-case labels
_DOMAIN = re.compile(r"^\.google\.(?:[a-z]{2,3}\.)?[a-z]{2,3}$")


class DomainsError(Exception):
    """The list or the rule file cannot be used as it is."""


def read_supported_domains(text: str) -> list[str]:
    """The domains of a supported_domains file (".google.co.uk" ...), in file order.

    Blank lines and lines starting with `#` are skipped; entries may also be separated by
    spaces. Anything else that is not a Google domain is an error, so a changed or
    corrupted list is noticed rather than turned into hosts.
    """
    domains: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        for entry in stripped.split():
            if not _DOMAIN.match(entry):
                raise DomainsError(f"line {number}: {entry!r} is not a .google.<tld> domain")
            domains.append(entry)
    if len(set(domains)) != len(domains):
        raise DomainsError("the list names a domain twice")
    return domains


def country_hosts(domains: Iterable[str]) -> list[str]:
    """`www.google.<tld>` for every listed domain the rule does not list itself, sorted."""
    hosts = {f"www{domain}" for domain in domains}
    return sorted(hosts - LISTED_ELSEWHERE)


def render_block(hosts: Sequence[str], indent: str) -> list[str]:
    """The lines between the markers: one YAML list item per host."""
    return [f"{indent}- {host}" for host in hosts]


def rewrite(rule_text: str, hosts: Sequence[str]) -> str:
    """`rule_text` with the lines between the two markers replaced by `hosts`.

    The items take the indentation of the BEGIN marker. Exactly one BEGIN marker followed
    by one END marker must be present.
    """
    lines = rule_text.splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN_MARKER]
    ends = [i for i, line in enumerate(lines) if line.strip() == END_MARKER]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise DomainsError(
            f"{RULE_FILE.name} needs exactly one {BEGIN_MARKER!r} line followed by one "
            f"{END_MARKER!r} line"
        )
    begin, end = begins[0], ends[0]
    indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
    new_lines = lines[: begin + 1] + render_block(hosts, indent) + lines[end:]
    trailing = "\n" if rule_text.endswith("\n") else ""
    return "\n".join(new_lines) + trailing


def expected_rule_text(rule_text: str, domains_text: str) -> str:
    """What the rule file should read, given its current text and the domains list."""
    return rewrite(rule_text, country_hosts(read_supported_domains(domains_text)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the rule file differs; write nothing"
    )
    parser.add_argument("--rule", type=Path, default=RULE_FILE, help=argparse.SUPPRESS)
    parser.add_argument("--domains", type=Path, default=DOMAINS_FILE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    rule_path: Path = args.rule
    try:
        current = rule_path.read_text(encoding="utf-8")
        wanted = expected_rule_text(current, args.domains.read_text(encoding="utf-8"))
    except (OSError, DomainsError) as e:
        print(f"google_domains: {e}", file=sys.stderr)
        return 2
    if wanted == current:
        return 0
    if args.check:
        print(
            f"google_domains: {rule_path} differs from {args.domains.name}; "
            "run `python scripts/google_domains.py`",
            file=sys.stderr,
        )
        return 1
    rule_path.write_text(wanted, encoding="utf-8")
    print(f"google_domains: wrote {rule_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
