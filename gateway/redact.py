"""What a request's values become before anything keeps them: names and templates.

Every sink that keeps something about a request (the decision log, the access log,
the admin pages, a decision's reason) keeps it through these functions, so a visitor's
data reaches no log, error or page but as a name (THREAT_MODEL.md §5):

- `sanitize_path`: the path as a template, values as `VALUE_MARK` (`{…}`);
  `log_path`: the matched endpoint's own pattern, else that template;
- `sanitize_host`: a DNS name, or `{…}`; `sanitize_method`: a standard method, or `{…}`;
- `looks_like_value`: the shape test behind them (e-mails, ids, long digits, tokens);
- `clean`: any other text of the gateway's own, capped and printable.

Pure: the core (`gateway.core`) builds its reasons with them.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

from gateway.ruleset.match import Match
from gateway.ruleset.schema import is_dns_name

__all__ = [
    "RAW_CAP",
    "VALUE_MARK",
    "clean",
    "clean_opt",
    "log_path",
    "looks_like_value",
    "sanitize_host",
    "sanitize_method",
    "sanitize_path",
]

#: longest path a log keeps
_PATH_CAP: Final = 256
#: the most of any raw text looked at (the rest is cut before any work)
RAW_CAP: Final = 8192


_NON_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def clean(text: str, cap: int) -> str:
    """`text` with every non-printable character as `?`, at most `cap` characters.

    Cut text ends in `…` so a reader knows it was cut.
    """
    text = text[:RAW_CAP]
    if _NON_PRINTABLE.search(text):
        # SECURITY: control characters would let a visitor forge log lines or drive a terminal.
        text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= cap else text[: cap - 1] + "…"


def clean_opt(text: str | None, cap: int) -> str | None:
    return None if text is None else clean(text, cap)


#: what a path segment (or a `;` parameter value) that looks like a value is stored as
VALUE_MARK: Final = "{…}"

# What a value looks like inside one path segment, tried on its percent-decoded text.
# False positives only cost a log reader some detail; a false negative stores an
# identifier, so each shape errs towards replacing.
_VALUE_SHAPES: Final = re.compile(
    r"@"  # an email, or userinfo
    r"|\d{6,}"  # a long number: an account, order or phone number, a timestamp
    r"|\d{1,3}(?:\.\d{1,3}){3}"  # an IPv4 address
    r"|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:"  # an IPv6 address
    r"|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-"  # a UUID
    r"|[=;&?#/\\]"  # separators that were percent-encoded: a smuggled query or parameter
    r"|[\x00-\x1f\x7f]"  # control characters: no path word has them
)
_TOKEN: Final = re.compile(r"[A-Za-z0-9]+")
_BASE64_RUN: Final = re.compile(r"[A-Za-z0-9+/_=-]{16,}")
#: a `;name=value` parameter name kept in the log: short and plain
_PARAM_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
#: longer than any word a path is made of
_LONG_SEGMENT: Final = 40


def _decoded(text: str) -> str:
    """`text` percent-decoded until stable (at most three rounds: `%2540` is `@` too)."""
    for _ in range(3):
        if "%" not in text:
            break
        decoded = unquote(text, errors="replace")
        if decoded == text:
            break
        text = decoded
    return text


def looks_like_value(segment: str) -> bool:
    """Whether one path segment (or one parameter's name) may identify someone.

    Values: emails (also `%40`-encoded), numbers of 6 digits or more, IP addresses,
    UUIDs, letter-and-digit tokens of 8 characters or more (ids, hex), base64-like
    runs of 16 or more with a digit or a capital (tokens), anything over 40
    characters and anything hiding an encoded separator. Short plain words
    (`collect`, `v1`, `tr`, `g`, `fbevents.js`) are not values.
    """
    text = _decoded(segment)
    if len(text) > _LONG_SEGMENT or _VALUE_SHAPES.search(text):
        return True
    for token in _TOKEN.findall(text):
        if len(token) >= 8 and not token.isalpha() and not token.isdigit():
            return True  # an id or hex: letters and digits mixed
    for run in _BASE64_RUN.findall(text):
        if run.lower() != run or any(c.isdigit() for c in run):
            return True
    return False


def _template_segment(segment: str) -> str:
    """One path segment as a template: a value becomes `{…}`; in `a;name=value;flag`
    parameters each value becomes `{…}` and each name is kept if plain."""
    head, sep, params = segment.partition(";")
    # More parameters than the capped path can show are left in the last part, unread.
    parts = [head, *params.split(";", _PATH_CAP // 2)] if sep else [head]
    out: list[str] = []
    size = 0
    for part in parts:
        if size > _PATH_CAP:
            break  # cut from the logged path anyway
        name, eq, _value = part.partition("=")
        if not eq:
            out.append(VALUE_MARK if looks_like_value(part) else part)
        elif _PARAM_NAME.fullmatch(name) and not looks_like_value(name):
            # DoubleClick writes `/ddm/activity/src=123;type=x`: the names say which
            # activity, the values who.
            out.append(f"{name}={VALUE_MARK}")
        else:
            out.append(VALUE_MARK)
        size += len(out[-1]) + 1
    return ";".join(out)


def sanitize_path(path: str) -> str:
    """The request path as every log keeps it: a template without values.

    The query and fragment are cut; each segment that looks like a value
    (`looks_like_value`: emails, ids, long numbers, tokens, addresses) becomes
    `{…}`, as does each `;name=value` parameter's value (plain names stay):
    `/u/alice%40example.com/GCLID123456/collect;src=9;u1=x` ->
    `/u/{…}/{…}/collect;src={…};u1={…}`. The result is printable and capped.
    The decision log, the access log and the admin pages all store or show this.
    """
    # SECURITY: visitors put identifiers in path segments and `;` parameters as freely as
    # in the query; the log keeps the shape of the path, never what filled it.
    raw = path[:RAW_CAP].split("?", 1)[0].split("#", 1)[0]
    out: list[str] = []
    size = 0
    for segment in raw.split("/"):
        if size > _PATH_CAP:
            break  # the rest would be cut anyway: never spend time on it
        out.append(_template_segment(segment))
        size += len(out[-1]) + 1
    return clean("/".join(out), _PATH_CAP)


def log_path(path: str, match: Match | None) -> str:
    """The path a decision record keeps: the matched endpoint's pattern as the rule
    wrote it (`/g/collect`, `/tr/*`, `~/v[0-9]+/events`), which holds nothing the
    visitor sent; without a match, `sanitize_path`."""
    if match is not None:
        return clean(match.endpoint.pattern, _PATH_CAP)
    return sanitize_path(path)


#: methods kept as sent; any other token is a visitor's free text
_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)


def sanitize_method(method: str) -> str:
    """The method as every log keeps it: a standard HTTP method, or `{…}`.

    aiohttp accepts any token as a method (with its pure-Python parser): a made-up
    method is visitor text like any other.
    """
    return method if method in _METHODS else VALUE_MARK


_USERINFO = re.compile(r"^.*(?:@|%40)", re.IGNORECASE | re.DOTALL)


def sanitize_host(host: str) -> str:
    """The host as every log keeps it: a DNS name a rule could list, or `{…}`.

    For a rejected request this is the visitor's raw `/t/{host}/` segment: userinfo
    (`user:pw@`, also `%40`), a port and `;` parameters are cut, and the rest is
    kept, lower-cased, only if it is a plain DNS name (`is_dns_name`). An IP
    literal, a single label, percent-encoding or control characters become `{…}`:
    no rule can list such a host, so the Unknown destinations page loses nothing.
    An empty segment stays empty.
    """
    # SECURITY: a raw host segment may carry `user:password@`, `;name=value` parameters,
    # an address or any other text; the logs and the admin pages show names only.
    name = _USERINFO.sub("", host[:RAW_CAP]).split(";", 1)[0].split(":", 1)[0]
    if not name:
        return ""
    name = name.lower() if name.isascii() else name
    return name if is_dns_name(name) else VALUE_MARK
