"""The gateway's exceptions, as one tree.

```
GatewayError                  base of everything the gateway raises on purpose
├── ConfigError               config or rule files are invalid; carries .problems
│   └── RuleError             a rule file is invalid (same shape, raised by ruleset)
├── ConsentCookieError        a consent cookie is malformed, forged, stale or signed by an
│                             unknown key; the resolver treats it as absent
├── SignalError               a standard consent signal cannot be decoded; carries .reason.
│   │                         The resolver treats the signal as absent (never as consent)
│   ├── TCFError              an IAB TCF TC string (v1 strings are refused with a reason)
│   ├── GPPError              an IAB GPP string, one of its sections, or a us_privacy string
│   ├── GCMError              a Google Consent Mode value (gcs, gcd, npa, dma, dma_cps)
│   └── CMPError              a consent-management platform's cookie
├── RequestError              the incoming request cannot be handled; answered 4xx, never
│   │                         forwarded. Carries .status and a short public .message
│   ├── UnknownDestination    no rule lists the host (or no endpoint the path): 404
│   ├── BadDestination        the host segment is not a plain DNS name (userinfo, port,
│   │                         IP literal, encoded separators...): 400
│   ├── BodyTooLarge          the body exceeds server.max_body_bytes, as sent or once
│   │                         decompressed: 413
│   ├── BodyCorrupt           the body is not what its Content-Encoding says: 400
│   ├── BodyEncodingUnknown   a Content-Encoding the gateway cannot read: 415
│   └── BodyTimeout           the body did not arrive within server.read_timeout: 408
├── ClientGone                the visitor disconnected while sending its request: its
│                             doing, counted, never logged as an error
├── StoreError                the consent store failed or refused (unreachable, not open,
│                             schema newer than the code); callers fail closed
├── LogUnavailable            the decision log's SQLite file cannot be read (not SQLite,
│                             corrupt, unreadable, locked, a table of another shape); the
│                             one place sqlite3.Error is mapped for readers (decision_log.query)
├── TransformError            a body the rule says to strip could not be read safely;
│                             the pipeline drops the request instead of forwarding it
└── UpstreamError             the vendor could not be reached or answered badly; the one
    │                         place aiohttp.ClientError / TimeoutError are mapped (upstream.py)
    ├── UpstreamTimeout
    └── UpstreamRefused       the upstream gate refused a connection: a host no rule lists
                              and no override names, a redirect, or a request made outside
                              the gate. Never retried, counted and logged as a warning
```

Messages never contain query values, cookie values, consent strings, bodies or
full IP addresses: they may be logged and shown to the visitor.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BadDestination",
    "BodyCorrupt",
    "BodyEncodingUnknown",
    "BodyTimeout",
    "BodyTooLarge",
    "CMPError",
    "ClientGone",
    "GCMError",
    "GPPError",
    "SignalError",
    "StoreError",
    "TCFError",
    "ConfigError",
    "ConsentCookieError",
    "GatewayError",
    "LogUnavailable",
    "Problem",
    "RequestError",
    "RuleError",
    "TransformError",
    "UnknownDestination",
    "UpstreamError",
    "UpstreamRefused",
    "UpstreamTimeout",
]


class GatewayError(Exception):
    """Base class of the gateway's own exceptions."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a config or rule file: `file:line: where: message`."""

    file: str
    line: int | None
    where: str
    message: str

    def __str__(self) -> str:
        line = "" if self.line is None else f"{self.line}:"
        where = f" {self.where}:" if self.where else ""
        return f"{self.file}:{line}{where} {self.message}"


class ConfigError(GatewayError):
    """Config (or rules) failed validation; `problems` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid configuration")


class RuleError(ConfigError):
    """A rule file failed validation."""


class ConsentCookieError(GatewayError):
    """A consent cookie that must be treated as absent; `reason` is a short code."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class SignalError(GatewayError):
    """A consent signal that cannot be decoded; `reason` says why, never quoting the input."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class TCFError(SignalError):
    """An IAB TCF TC string that cannot be decoded."""


class GPPError(SignalError):
    """An IAB GPP string, GPP section or us_privacy string that cannot be decoded."""


class GCMError(SignalError):
    """A Google Consent Mode value that cannot be decoded."""


class CMPError(SignalError):
    """A consent-management platform's cookie that cannot be decoded."""


class RequestError(GatewayError):
    """A request the gateway refuses; `message` is safe to send to the visitor."""

    status = 400

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class UnknownDestination(RequestError):
    status = 404


class BadDestination(RequestError):
    status = 400


class BodyTooLarge(RequestError):
    status = 413


class BodyCorrupt(RequestError):
    status = 400


class BodyEncodingUnknown(RequestError):
    status = 415


class BodyTimeout(RequestError):
    status = 408


class StoreError(GatewayError):
    """The consent store failed or refused: unreachable, not open, or its schema is newer
    than this code knows. Callers fail closed (unreadable consent is no consent).
    Messages never contain subject ids, purposes or DSNs."""


class LogUnavailable(GatewayError):
    """The decision log's SQLite file cannot be read. The message names the file and
    the SQLite failure, never record contents. A file or table not there yet is no
    error: it reads as an empty log."""


class ClientGone(GatewayError):
    """The visitor disconnected before its request was read; nobody waits for an answer."""


class TransformError(GatewayError):
    """A body could not be read safely to strip it; the request must be dropped."""


class UpstreamError(GatewayError):
    """Forwarding failed; `kind` names the failure for metrics (connect, timeout, ...)."""

    def __init__(self, kind: str, message: str = "") -> None:
        self.kind = kind
        super().__init__(message or kind)


class UpstreamTimeout(UpstreamError):
    def __init__(self, message: str = "") -> None:
        super().__init__("timeout", message)


class UpstreamRefused(UpstreamError):
    """The upstream gate refused the connection before any socket was opened."""

    def __init__(self, kind: str = "refused", message: str = "") -> None:
        super().__init__(kind, message)
