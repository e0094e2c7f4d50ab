"""An `api` endpoint's `drop_answer:` read from its rule file (see `rules/README.md`).

What a dropped call is answered: its SDK's own final success, so the SDK does not keep
the call and send it again once consent arrives (`gateway.ruleset.schema.DropAnswer`).
"""

from __future__ import annotations

import json
import re
from typing import Final

from gateway.model import EndpointKind
from gateway.ruleset.schema import DropAnswer
from gateway.yamlsrc import Node

__all__ = ["DROP_ANSWER_KEYS", "read_drop_answer"]

DROP_ANSWER_KEYS: Final = ("status", "json", "text", "content_type", "source")
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")


def read_drop_answer(node: Node, kind: EndpointKind) -> DropAnswer | None:
    """The endpoint's drop answer (None when it names none), every problem recorded at
    its key: only `api` endpoints have one; a 2xx status and a `source` are required;
    a body is `json` (sent as application/json) or `text` (as `content_type`)."""
    if node.missing:
        return None
    if kind is not EndpointKind.API:
        node.problem(f"only an api endpoint has a drop_answer (this one: {kind})")
        return None
    before = len(node.src.problems)
    m = node.mapping(DROP_ANSWER_KEYS, required=("status", "source"))
    status = m["status"].int(200, min=200, max=299)
    source = m["source"].str()
    content_type = m["content_type"].opt_str()
    body = b""
    if "json" in m and "text" in m:
        node.problem("json or text, not both")
    elif "json" in m:
        if content_type is not None:
            m["content_type"].problem("a json answer is application/json")
        try:
            body = json.dumps(m["json"].value, separators=(",", ":")).encode()
        except (TypeError, ValueError):  # a YAML date or the like: not JSON
            m["json"].problem("must be plain JSON (strings, numbers, lists, mappings)")
        content_type = "application/json"
    elif "text" in m:
        body = m["text"].str().encode()
        content_type = content_type or "text/plain"
    elif content_type is not None:
        m["content_type"].problem("content_type needs a json or text body")
    if content_type is not None and (
        not _CONTENT_TYPE.fullmatch(content_type) or len(content_type) > 100
    ):
        m["content_type"].problem("must be a media type such as text/plain")
    if len(node.src.problems) != before:
        return None
    return node.build(
        DropAnswer, status=status, body=body, content_type=content_type, source=source
    )
