"""An `api` endpoint's `drop_answer:` read from its rule file (see `rules/README.md`).

What a dropped call is answered: its SDK's own final success, so the SDK does not keep
the call and send it again once consent arrives (`gateway.ruleset.schema.DropAnswer`).
"""

from __future__ import annotations

import json
from typing import Final

from gateway.model import EndpointKind
from gateway.ruleset.keys import API_DROP_ANSWER, DropAnswerKeys
from gateway.ruleset.schema import DropAnswer
from gateway.yamlsrc import Node

__all__ = ["DROP_ANSWER_KEYS", "read_drop_answer"]

#: the keys of `drop_answer:`, as `gateway.ruleset.keys` declares them
DROP_ANSWER_KEYS: Final = DropAnswerKeys.names()


def read_drop_answer(node: Node, kind: EndpointKind) -> DropAnswer | None:
    """The endpoint's drop answer (None when it names none), every problem recorded at
    its key: only `api` endpoints have one; a 2xx status and a `source` are required;
    a body is `json` (sent as application/json) or `text` (as `content_type`)."""
    if node.missing:
        return None
    if API_DROP_ANSWER.refuses(kind):
        node.problem(f"only an api endpoint has a drop_answer (this one: {kind})")
        return None
    before = len(node.src.problems)
    m = DropAnswerKeys.mapping(node)
    status = DropAnswerKeys.status.read(m, 200)
    source = DropAnswerKeys.source.read(m)
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
    if content_type is not None and (error := DropAnswerKeys.content_type.check(content_type)):
        m["content_type"].problem(error)
    if len(node.src.problems) != before:
        return None
    return node.build(
        DropAnswer, status=status, body=body, content_type=content_type, source=source
    )
