"""The JSON Schemas of rule files and of the config, written from the loaders' definitions.

`schemas/rule.schema.json` is made from the rule keys that `gateway.ruleset.parse` reads
with (`gateway.ruleset.keys`), `schemas/config.schema.json` from the config dataclasses
that `gateway.config.load` walks (`gateway.config.json_schema`): one definition each, so
an editor and the loader cannot disagree on a key. After changing either, run

    python -m gateway.schemas           # writes schemas/*.schema.json
    python -m gateway.schemas --check   # exit status 1 if a written file is out of date

(tests/test_schemas.py fails while the committed files differ from what this writes).
Editors (VS Code with Red Hat's YAML extension, or any yaml-language-server client) read a
schema through the first line of a YAML file:

    # yaml-language-server: $schema=../schemas/rule.schema.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.config.json_schema import config_schema
from gateway.grammar import Json
from gateway.ruleset.keys import rule_schema

__all__ = ["CONFIG_SCHEMA", "DIALECT", "RULE_SCHEMA", "documents", "main", "render"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: the files' names in the schemas folder
RULE_SCHEMA = "rule.schema.json"
CONFIG_SCHEMA = "config.schema.json"


def documents() -> dict[str, Json]:
    """Each schema file's name and its document."""
    return {
        RULE_SCHEMA: {
            "$schema": DIALECT,
            "title": "consent-gateway vendor rule (rules/*.yaml)",
            **rule_schema(),
        },
        CONFIG_SCHEMA: {
            "$schema": DIALECT,
            "title": "consent-gateway configuration",
            "description": "The gateway's config file (config.example.yaml documents every "
            "option). Secrets are never written in it: it names environment variables.",
            **config_schema(),
        },
    }


def render(document: Json) -> str:
    """A document as its file holds it."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with --check, compare) the schema files; 1 when --check finds one stale."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway.schemas", description="Write the JSON Schemas of rules and config."
    )
    parser.add_argument("--out", type=Path, default=Path("schemas"), help="default: schemas")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    stale: list[Path] = []
    for name, document in documents().items():
        path: Path = args.out / name
        text = render(document)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{path} is out of date: run python -m gateway.schemas", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
