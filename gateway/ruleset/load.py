"""Read rule files (`rules/*.yaml`) into a validated, indexed `RuleSet`.

`load_rules` reads every file, collects every problem in every file (each as
`file:line: vendor/key.path: message`), then checks the files against each
other (vendor ids, hosts, routes), and raises `RuleError` listing them all if
there is any. The gateway refuses to start on a `RuleError`, or keeps its
last good rule set on reload. `gateway.ruleset.parse` does the per-file part.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from gateway.errors import Problem, RuleError
from gateway.ruleset.match import RuleConflict, RuleConflictError, RuleSet
from gateway.ruleset.parse import RuleParser
from gateway.ruleset.schema import VendorRule
from gateway.yamlsrc import read_source

__all__ = ["load_rules"]

_RULE_SUFFIXES = (".yaml", ".yml")


def load_rules(paths: Sequence[Path], known_purposes: frozenset[str]) -> RuleSet:
    """Load rule files into an indexed `RuleSet`.

    Each path is a rule file or a directory of them (its `*.yaml` and `*.yml`
    files, in name order; other files such as `README.md` are ignored). Raises
    `RuleError` listing every problem in every file, and every conflict
    between files (a vendor id, host or route claimed twice), if there is any.
    """
    problems: list[Problem] = []
    claims: dict[str, dict[str, tuple[str, int | None]]] = {}
    rules: list[VendorRule] = []
    for path in _rule_files(paths, problems):
        text = read_source(path)
        if isinstance(text, Problem):
            problems.append(text)
            continue
        parsed = RuleParser(str(path), known_purposes).parse(text)
        problems += parsed.problems
        if parsed.rule is not None:
            rules.append(parsed.rule)
            claims[parsed.rule.file] = parsed.claims
    try:
        ruleset = RuleSet(rules)
    except RuleConflictError as e:
        problems += [_conflict_problem(c, claims[c.second.file]) for c in e.conflicts]
        raise RuleError(problems) from e
    if problems:
        raise RuleError(problems)
    return ruleset


# ---------------------------------------------------------------------------
# Files


def _rule_files(paths: Iterable[Path], problems: list[Problem]) -> list[Path]:
    """The rule files named by `paths`, each once, in the order given."""
    out: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = _directory_files(path)
            if not found:
                problems.append(Problem(str(path), None, "", "no rule files (*.yaml) in directory"))
        elif path.is_file():
            found = [(path, path.resolve())]
        else:
            problems.append(Problem(str(path), None, "", "no such file or directory"))
            continue
        for p, key in found:
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


def _directory_files(path: Path) -> list[tuple[Path, Path]]:
    """A directory's rule files in name order, each with its resolved path. The directory
    is resolved once and only symbolic links one by one: resolving a thousand files'
    every component (a reload of 1,000 rules) held the loop's thread off 20-70 ms."""
    where = path.resolve()
    found = []
    with os.scandir(path) as entries:
        for e in entries:
            if os.path.splitext(e.name)[1] in _RULE_SUFFIXES and e.is_file():
                p = path / e.name
                found.append((p, p.resolve() if e.is_symlink() else where / e.name))
    return sorted(found)


def _conflict_problem(c: RuleConflict, claims: dict[str, tuple[str, int | None]]) -> Problem:
    """A cross-file conflict, reported at the later rule's key, naming the earlier file."""
    claim = c.what if c.what != "host" else f"host:{c.key}"
    where, line = claims.get(claim, (c.what, None))
    return Problem(c.second.file, line, f"{c.second.vendor}/{where}", str(c))
