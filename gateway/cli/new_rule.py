"""`consent-gateway new-rule`: a vendor rule drafted from captured request URLs.

`--from URL` (repeatable) or `--from-file FILE` (one URL a line, `-` for standard input:
URLs on a command line stay in the shell's history) name requests copied from the
browser's network panel; the draft (`gateway.ruleset.draft`) goes to standard output, or
to `-o FILE`, which is never overwritten. Captured URLs are visitor data: no message
here quotes one, and the draft holds none of their identifiers' values.

Exit codes: 0 a draft was written, 1 it could not be (a file exists, cannot be read or
written), 2 bad usage (no URL, a URL that is not one, a vendor id that is not a slug).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

__all__ = ["add_command", "run_new_rule"]


def add_command(sub: Any) -> None:
    """Add `new-rule` to the command's subparsers `sub`."""
    p: argparse.ArgumentParser = sub.add_parser(
        "new-rule", help="draft a vendor rule from captured request URLs"
    )
    p.add_argument(
        "--from", dest="urls", action="append", default=[], metavar="URL", help="a request URL"
    )
    p.add_argument("--from-file", metavar="FILE", help="request URLs, one a line ('-': stdin)")
    p.add_argument("--vendor", metavar="SLUG", help="the rule's id (default: from the host)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the draft here, a new file")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    urls = list(args.urls)
    if args.from_file:
        try:
            text = sys.stdin.read() if args.from_file == "-" else Path(args.from_file).read_text()
        except OSError as e:
            print(f"--from-file: {e.strerror}", file=sys.stderr)
            return 1
        except UnicodeDecodeError:
            print("--from-file: not UTF-8 text", file=sys.stderr)
            return 1
        urls += [line.strip() for line in text.splitlines() if line.strip()]
    return run_new_rule(
        urls, vendor=args.vendor, output=args.output, out=sys.stdout, err=sys.stderr
    )


def run_new_rule(
    urls: list[str], *, vendor: str | None, output: str | None, out: TextIO, err: TextIO
) -> int:
    """Draft a rule from `urls` and write it to `output` (a new file) or `out`."""
    # imported here: the parser is built for every command, the drafter needed by one
    from gateway.config import DEFAULT_PURPOSES
    from gateway.ruleset.draft import Sighting, draft_rule, sighting_from_url
    from gateway.ruleset.parse import parse_rule

    if not urls:
        print("give at least one request URL (--from URL or --from-file FILE)", file=err)
        return 2
    sightings: list[Sighting] = []
    for i, url in enumerate(urls, 1):
        try:
            sightings.append(sighting_from_url(url))
        except ValueError as e:
            # SECURITY: the URL is visitor data: named by its position, never quoted.
            print(f"URL #{i}: {e}", file=err)
            return 2
    try:
        text = draft_rule(sightings, vendor, DEFAULT_PURPOSES)
    except ValueError as e:
        print(f"--vendor: {e}", file=err)
        return 2
    _, problems = parse_rule(text, output or "<draft>", frozenset(DEFAULT_PURPOSES))
    for problem in problems:  # the drafter's bug, not the author's: say so, still write it
        print(f"the draft does not load as it is: {problem}", file=err)
    if output is None:
        out.write(text)
        return 0
    try:
        with open(output, "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        print(f"{output}: exists, not overwritten", file=err)
        return 1
    except OSError as e:
        print(f"{output}: {e.strerror}", file=err)
        return 1
    hosts = len({s.host for s in sightings})
    print(f"{output}: drafted from {len(urls)} request(s) to {hosts} host(s)", file=err)
    return 0
