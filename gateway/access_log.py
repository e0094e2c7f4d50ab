"""The access log: one line per request, in text or JSON, under the privacy rules of DESIGN §7.

aiohttp's default access log format carries the full request line (query string
included) and the client address: exactly what the gateway refuses to keep. These
loggers write the method, the path without its query (and without `;` path
parameter values), the status, the size, the time taken, the request id and the
client address truncated to /24 or /48.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Final

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from gateway.decision_log import sanitize_path
from gateway.edges import REQUEST_ID
from gateway.transform import truncate_ip

__all__ = ["JsonAccessLogger", "TextAccessLogger", "access_logger_for"]

_LOG: Final = logging.getLogger("gateway.access")
#: the admin API's subject routes carry a subject id in the path
_SUBJECT_PATH: Final = re.compile(r"^(/_admin/api/subjects/)[^/]*")


def _log_path(path: str) -> str:
    # SECURITY: a subject id is personal data (erasure must not leave it in the logs).
    return _SUBJECT_PATH.sub(r"\1-", sanitize_path(path))


def _fields(
    request: web.BaseRequest, response: web.StreamResponse, took: float
) -> dict[str, object]:
    rid = request.get(REQUEST_ID)  # set by edges.request_id when the pipeline ran
    return {
        "ts": round(time.time(), 3),
        "method": request.method[:16],
        # SECURITY: never the query string, never path parameter values.
        "path": _log_path(request.path),
        "status": response.status,
        "bytes": response.body_length,
        "ms": round(took * 1000, 2),
        "request_id": rid if isinstance(rid, str) else None,
        # SECURITY: the network, not the visitor's address.
        "client": truncate_ip(request.remote or ""),
    }


class JsonAccessLogger(AbstractAccessLogger):
    """One JSON object per line, for log shippers."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s", orjson.dumps(_fields(request, response, time)).decode())


class TextAccessLogger(AbstractAccessLogger):
    """`METHOD /path STATUS BYTES MSms client=NET` for people."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        f = _fields(request, response, time)
        self.logger.info(
            "%s %s %s %s %sms client=%s",
            f["method"],
            f["path"],
            f["status"],
            f["bytes"],
            f["ms"],
            f["client"],
        )


def access_logger_for(mode: str) -> type[AbstractAccessLogger] | None:
    """The logger class for `server.access_log` (`off`, `text` or `json`)."""
    return {"json": JsonAccessLogger, "text": TextAccessLogger}.get(mode)
