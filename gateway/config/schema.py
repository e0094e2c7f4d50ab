"""The config schema: frozen dataclasses, each option declared once.

Every option is a dataclass field made with `opt(...)` (`gateway.config.spec`): its
default, its bounds (`min`/`max` for integers, `gt`/`max` for durations, `choices`),
its help text, and, where reading it from a file is more than converting a YAML value
to the field's type, the name of a converter in `gateway.config.convert` (`convert=`).
Checks of one value (`check=`) and rules between fields of a section (`rule=`) are
pure functions here; the loader reports their messages at the option's line.
`gateway.config.load` walks these fields and never lists a key itself, and
`config.example.yaml` documents every option (tests/config hold them to that).
The `consent:` section's types live in `gateway.config.consent`.

Pure: no YAML, no files, no environment; the core imports these types.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

import yarl

from gateway.config.consent import ConsentConfig
from gateway.config.spec import opt

__all__ = [
    "LOG_LEVELS",
    "AccessLog",
    "AdminConfig",
    "CookieConfig",
    "CookieKey",
    "DecisionLogConfig",
    "GatewayConfig",
    "LogFormat",
    "LogWriter",
    "Network",
    "RulesConfig",
    "SameSite",
    "ServerConfig",
    "StoreBackend",
    "StoreConfig",
    "UpstreamConfig",
    "VendorHost",
    "VendorRef",
    "WebhookEndpoint",
    "WebhooksConfig",
    "check_base_path",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# ---------------------------------------------------------------------------
# Checks and rules


_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
_ENDPOINT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


_BASE_PATH = re.compile(r"(/[A-Za-z0-9._~-]+)*")


def check_base_path(path: str) -> str | None:
    if not _BASE_PATH.fullmatch(path) or path.endswith("/"):
        return "must be empty or a path such as /cg (no trailing slash, no query)"
    return None


def _cookie_name(name: str) -> str | None:
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        return "cookie name must be letters, digits, _ or -"
    return None


def _header_name(header: str) -> str | None:
    if not _HEADER_NAME.fullmatch(header):
        return "must be an HTTP header name, e.g. X-Consent-Subject"
    return None


def _key_id(kid: str) -> str | None:
    if kid and (not (kid.isascii() and kid.isalnum()) or len(kid) > 16):
        return "key id must be 1-16 ASCII letters or digits"
    return None


def _endpoint_name(name: str) -> str | None:
    if not _ENDPOINT_NAME.fullmatch(name):
        return "must be 1-64 letters, digits, '-', '_' or '.'"
    return None


def _same_site_needs_secure(c: CookieConfig) -> list[str]:
    return (
        ["SameSite=None requires secure: true"]
        if c.same_site is SameSite.NONE and not c.secure
        else []
    )


def _connect_within_total(u: UpstreamConfig) -> list[str]:
    return ["must not exceed total_timeout"] if u.connect_timeout > u.total_timeout else []


def _backoff_order(w: WebhooksConfig) -> list[str]:
    if w.backoff_initial <= 0 or w.backoff_max < w.backoff_initial:
        return ["need 0 < backoff_initial <= backoff_max"]
    return []


# ---------------------------------------------------------------------------
# The choices


class SameSite(enum.StrEnum):
    STRICT = "Strict"
    LAX = "Lax"
    NONE = "None"


class AccessLog(enum.StrEnum):
    OFF = "off"
    TEXT = "text"
    JSON = "json"


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


class LogWriter(enum.StrEnum):
    PROCESS = "process"
    THREAD = "thread"


class StoreBackend(enum.StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


# ---------------------------------------------------------------------------
# The sections


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = opt("127.0.0.1", help="the address the public listener binds")
    port: int = opt(8080, min=0, max=65535, help="the public listener's port")
    workers: int = opt(
        1, min=1, max=256, help="processes sharing the port (SO_REUSEPORT); 1 = this process only"
    )
    trusted_proxies: tuple[Network, ...] = opt(
        (),
        convert="networks",
        help="peers whose X-Forwarded-For is believed (CIDRs); the visitor's own is never trusted",
    )
    max_body_bytes: int = opt(
        64 * 1024,
        min=0,
        max=64 * 1024 * 1024,
        help="requests with a larger body (as sent or decompressed) are answered 413 and "
        "never read further",
    )
    country_header: str | None = opt(
        None,
        help="a trusted header carrying the visitor's country (ISO 3166-1 alpha-2), e.g. "
        "CF-IPCountry",
    )
    consent_api: bool = opt(True, help="serve GET /consent, POST /consent, DELETE /consent")
    log_level: str = opt("INFO", choices=LOG_LEVELS, convert="level_name", help="log level")
    log_format: LogFormat = opt(
        LogFormat.TEXT,
        help="the application log on stderr: `text` lines for people, or `json`: one JSON "
        "object a line (time, level, logger, message, the record's fields, a traceback as "
        "`exc`) for log shippers, aiohttp's and asyncio's records and the access log included",
    )
    access_log: AccessLog = opt(
        AccessLog.OFF,
        convert="off_or_choice",
        help="one line per request: `off`, `text` or `json` (never query strings or full IPs)",
    )
    read_timeout: float = opt(
        15.0,
        gt=0,
        help="seconds a client may take to send a request's headers (from connecting, or from "
        "the previous answer on a kept-alive connection) and, separately, its body; a client "
        "slower than that is disconnected (slowloris)",
    )
    drain_delay: float = opt(
        5.0,
        help="on SIGTERM, how long /readyz answers 503 while the gateway still serves, before "
        "its listeners close: time for a load balancer to notice and stop sending (SIGINT, "
        "or a second signal, skips it)",
    )
    shutdown_timeout: float = opt(
        10.0,
        gt=0,
        help="once the listeners close, how long requests in flight may take to finish "
        "before they are cut (the decision log is drained after)",
    )
    admin_port: int | None = opt(
        9091,
        min=0,
        max=65535,
        help="the operators' listener: /_admin, /metrics, /healthz and /readyz are served here "
        "and not on the public port. None: they share the public port, and /metrics then "
        "needs the admin token",
    )
    admin_host: str = opt("127.0.0.1", help="the address the operators' listener binds")
    consent_rate_limit: int = opt(
        30,
        min=1,
        max=1_000_000,
        help="POST and DELETE /consent a client network (IPv4 /24, IPv6 /48) may make a "
        "minute; past it they are answered 429",
    )
    base_path: str = opt(
        "",
        check=check_base_path,
        help="the path the gateway is mounted under behind a reverse proxy (e.g. /cg): every "
        "public route and the router script are served under it, and the admin page too when "
        "it shares the public port (admin_port: null)",
    )
    allowed_origins: tuple[str, ...] = opt(
        (),
        convert="origins",
        help="site origins allowed to call the gateway cross-origin (CORS), exactly "
        "(https://www.example.com) or by subdomain (https://*.example.com); the consent "
        "API's same-origin check accepts exactly these besides the gateway's own",
    )
    decision_header: bool = opt(
        True,
        help="answer every tag request with a Consent-Gateway-Decision header (action, "
        "vendor, missing purposes, request id), readable by page scripts",
    )


class VendorHost(NamedTuple):
    """One `rules.vendor_hosts` entry: a host a site adds to a shipped rule (its
    self-hosted collector, a CNAME to the vendor, a custom domain), and the path prefix
    the rule's endpoints live under on it, if any. Where it was written, so the rules
    loader (which checks the host against every rule) reports a problem there. A tuple,
    not a record section: the converter reads it whole."""

    vendor: str
    host: str
    #: `/metrics` for `www.example.com/metrics`: the rule's paths mounted under it
    prefix: str | None
    file: str
    line: int | None
    where: str

    def __str__(self) -> str:
        return self.host + (self.prefix or "")


class VendorRef(NamedTuple):
    """A rule vendor id the config names (`rules.router_vendors`), and where, so the
    rules loader reports an id no rule has at its line."""

    vendor: str
    file: str
    line: int | None
    where: str


@dataclass(frozen=True, slots=True)
class RulesConfig:
    paths: tuple[Path, ...] = opt(
        (Path("rules"),),
        empty="at least one rule file or directory is required",
        help="rule files or directories of `*.yaml`",
    )
    report_only: bool = opt(
        False, help="log what would be enforced, forward everything with only `always` strips"
    )
    watch_interval: float = opt(
        2.0, help="how often rule files are checked for changes (seconds); 0 = only on SIGHUP"
    )
    vendor_hosts: tuple[VendorHost, ...] = opt(
        factory=tuple,
        convert="host_additions",
        help="rule vendor id -> hosts added to that rule: a self-hosted or first-party "
        "collector (`stats.example.com`), `*.example.com`, or `www.example.com/metrics` "
        "to mount the rule's paths under a prefix. Checked with the rules: no host another "
        "rule has, no IP address, no public suffix",
    )
    router_vendors: tuple[VendorRef, ...] = opt(
        factory=tuple,
        convert="vendor_refs",
        help="rule vendor ids whose hosts /cg.js and /cg-sw.js route through the gateway; "
        "empty: every loaded rule's. The page script then carries only the site's own "
        "vendors; a request to another loaded vendor's host is not rewritten and is "
        "reported as a bypass (the gateway still enforces what reaches /t/)",
    )


@dataclass(frozen=True, slots=True)
class CookieKey:
    id: str = opt(
        check=_key_id, unique="key id {!r} is listed twice", fallback="", help="the key's id"
    )
    secret: bytes = opt(
        key="secret_env",
        repr=False,
        convert="env_signing_key",
        help="the key bytes (>= 16), read from the environment variable named here or the "
        "dev key file, never logged",
    )


@dataclass(frozen=True, slots=True)
class CookieConfig:
    name: str = opt("cg_consent", check=_cookie_name, help="the consent cookie's name")
    keys: tuple[CookieKey, ...] = opt(
        (), help="signing keys, newest first: the first signs, all verify (rotation)"
    )
    secure: bool = opt(True, help="the cookie's Secure flag")
    http_only: bool = opt(True, help="the cookie's HttpOnly flag")
    same_site: SameSite = opt(
        SameSite.LAX, rule=_same_site_needs_secure, help="the cookie's SameSite attribute"
    )
    domain: str | None = opt(None, help="set to share the cookie across subdomains")
    path: str = opt("/", help="the cookie's Path")
    dev_key: bool = opt(
        False,
        key="dev_key_file",
        convert="dev_signing_key",
        help="a key file under data_dir, used when no key above is set: fine for one "
        "process, wrong for a fleet (the field: the only key is that file's)",
    )


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    connect_timeout: float = opt(
        2.0, rule=_connect_within_total, help="seconds to connect to a vendor"
    )
    total_timeout: float = opt(10.0, help="seconds for a whole forwarded request")
    queue_size: int = opt(
        10_000,
        min=1,
        help="bounded queue for beacons and pixels forwarded after the visitor has its answer",
    )
    queue_workers: int = opt(
        200,
        min=1,
        max=1024,
        help="background forwards in flight at once (each on its own kept-alive "
        "connection): throughput is about queue_workers / vendor latency, so keep it well "
        "above the beacon rate x latency",
    )
    max_connections: int = opt(200, min=1, help="connections to vendors, all together")
    overrides: Mapping[str, yarl.URL] = opt(
        factory=lambda: MappingProxyType({}),
        convert="vendor_overrides",
        help="vendor origin -> base URL to send to instead (staging, tests); only config can "
        "do this",
    )


@dataclass(frozen=True, slots=True)
class DecisionLogConfig:
    backend: StoreBackend = opt(
        StoreBackend.SQLITE,
        help="sqlite (this instance's records in `sqlite_path`) or postgres (every "
        "instance's records in one database, partitioned by day)",
    )
    sqlite_path: Path | None = opt(
        Path("data/decisions.db"),
        convert="data_file",
        help="SQLite file the records go to with backend sqlite (queried by `consent-gateway "
        "logs`); None = off",
    )
    postgres_dsn: str | None = opt(
        None,
        key="postgres_dsn_env",
        key_default="CONSENT_GATEWAY_PG_DSN",
        repr=False,
        convert="env_dsn",
        help="backend postgres: read from the environment variable named here; the store's "
        "database may be the same one",
    )
    retention: float = opt(
        30 * 86400.0,
        gt=0,
        help="records older than this are deleted (PostgreSQL: whole days, so up to a day later)",
    )
    rollup_retention: float = opt(
        400 * 86400.0,
        gt=0,
        help="the per-minute counts behind the admin overview (every request, forwarded "
        "ones too) older than this are deleted",
    )
    jsonl: str | None = opt(
        None,
        convert="log_target",
        help="JSON lines for log shippers: a file path, `-` for stdout, or None",
    )
    queue_size: int = opt(10_000, min=1, help="records waiting to be written")
    batch_size: int = opt(500, min=1, help="records written at once")
    flush_interval: float = opt(0.5, help="seconds between writes")
    writer: LogWriter = opt(
        LogWriter.PROCESS,
        help="where the sinks are written: `process`, a writer process of the gateway's own "
        "(the event loop never waits for it); `thread`, a thread of the gateway's process",
    )


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The operators' page under /_admin/ and its JSON API."""

    token: str | None = opt(
        None,
        key="token_env",
        repr=False,
        min=16,
        convert="env_text",
        help="the bearer token / login secret, read from the environment variable named "
        "here; None disables the admin",
    )
    max_failures_per_minute: int = opt(
        10,
        min=1,
        max=10_000,
        help="failed logins allowed per client address per minute before 429",
    )
    session_max_age: float = opt(8 * 3600.0, help="how long a login lasts (seconds)")
    secure_cookie: bool = opt(
        True, help="the session cookie's Secure flag (false only for plain-http local use)"
    )


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The consent store (DESIGN §6) and the cache in front of it."""

    backend: StoreBackend = opt(
        StoreBackend.SQLITE,
        help="sqlite (one file, one machine) or postgres (several instances)",
    )
    sqlite_path: Path = opt(
        Path("data/consent.db"),
        convert="data_file",
        empty="must be a file path (the store cannot be turned off)",
        help="the SQLite file of backend sqlite",
    )
    postgres_dsn: str | None = opt(
        None,
        key="postgres_dsn_env",
        key_default="CONSENT_GATEWAY_PG_DSN",
        repr=False,
        convert="env_dsn",
        help="read from the environment variable named here (a DSN may carry a password)",
    )
    postgres_pool_size: int = opt(10, min=1, max=1000, help="connections to PostgreSQL")
    migrate_on_start: bool = opt(
        True,
        help="apply pending migrations at start; false: refuse to start until `migrate` has run",
    )
    cache_size: int = opt(100_000, min=1, help="subjects' states kept in memory")
    cache_ttl: float = opt(
        600.0,
        gt=0,
        help="how long a looked-up state is kept; changes replace entries at once, so this "
        "bounds memory, not staleness (states set by changes are kept for `consent.max_age`)",
    )
    poll_interval: float = opt(
        0.5,
        gt=0,
        help="how often the change feed is read when nothing announces changes (SQLite, and "
        "PostgreSQL as a safety net behind LISTEN/NOTIFY)",
    )
    subject_header: str | None = opt(
        None,
        check=_header_name,
        help="server-to-server: the header naming the subject a back end sends events for",
    )
    server_networks: tuple[Network, ...] = opt(
        (),
        convert="networks",
        help="where back ends call from: the header is believed only from these networks (the "
        "client address as resolved through `server.trusted_proxies`); empty: from anywhere",
    )

    def __post_init__(self) -> None:
        if self.backend not in (StoreBackend.SQLITE, StoreBackend.POSTGRES):
            raise ValueError("store.backend must be sqlite or postgres")


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    name: str = opt(
        check=_endpoint_name,
        unique="duplicate webhook name {!r}",
        gate=True,
        fallback="",
        help="a short name: the delivery cursor's key, shown by `webhooks status`",
    )
    url: yarl.URL = opt(gate=True, help="where the events are POSTed (http or https)")
    secret: bytes = opt(
        key="secret_env",
        repr=False,
        min=16,
        convert="env_text",
        help="the HMAC-SHA256 key, read from the environment variable named here",
    )


@dataclass(frozen=True, slots=True)
class WebhooksConfig:
    """Signed consent-change events POSTed to downstream systems."""

    endpoints: tuple[WebhookEndpoint, ...] = opt((), help="the receivers")
    timeout: float = opt(5.0, gt=0, max=60, help="seconds a receiver has to answer")
    backoff_initial: float = opt(1.0, help="the first retry's delay")
    backoff_max: float = opt(300.0, rule=_backoff_order, help="the longest delay between retries")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    server: ServerConfig = opt(ServerConfig(), help="the listeners")
    rules: RulesConfig = opt(RulesConfig(), help="the vendor rule files")
    consent: ConsentConfig = opt(ConsentConfig(), help="purposes, regimes and signals")
    cookie: CookieConfig = opt(
        CookieConfig(),
        stage=1,  # last: whether a dev key may stand in depends on the server and the store
        help="the signed consent cookie",
    )
    upstream: UpstreamConfig = opt(UpstreamConfig(), help="forwarding to vendors")
    decision_log: DecisionLogConfig = opt(
        DecisionLogConfig(), help="where blocked or altered requests are recorded"
    )
    admin: AdminConfig = opt(AdminConfig(), help="the operators' page")
    store: StoreConfig = opt(StoreConfig(), help="the consent store")
    webhooks: WebhooksConfig = opt(WebhooksConfig(), help="consent-change events")
    source: Path | None = opt(
        None,
        key=None,
        convert="config_file",
        help="the file this came from; relative paths inside it are resolved against its folder",
    )
    data_dir: Path = opt(
        Path("data"),
        stage=-1,  # first: the data files' defaults live under it
        convert="data_folder",
        help="where the embedded SQLite files and the development signing key live",
    )

    def __post_init__(self) -> None:
        names = {r.name for r in self.consent.regimes}
        if self.consent.default_regime not in names:
            raise ValueError(f"default_regime {self.consent.default_regime!r} is not a regime")
        if not self.cookie.keys:
            raise ValueError("cookie.keys: at least one signing key is required")
