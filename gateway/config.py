"""One frozen, validated config object, read from YAML.

`load_config(path)` returns a `GatewayConfig` or raises `ConfigError` listing
every problem (`file:line: key.path: message`). Unknown keys are errors. Secrets
(cookie signing keys) are never in the file: the file names an environment
variable (`secret_env`) and the value is read at load time.
`config.example.yaml` mirrors these dataclasses field by field.
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

import yarl

from gateway.errors import ConfigError, Problem
from gateway.model import CMP, NECESSARY, SIGNALS, ConsentValue
from gateway.yamlsrc import Node, YamlSource, read_source

__all__ = [
    "AdminConfig",
    "ConflictPolicy",
    "ConsentConfig",
    "CookieConfig",
    "CookieKey",
    "DecisionLogConfig",
    "GatewayConfig",
    "RegimeConfig",
    "AccessLog",
    "RegimeMode",
    "RulesConfig",
    "SameSite",
    "ServerConfig",
    "SignalsConfig",
    "StoreBackend",
    "StoreConfig",
    "UpstreamConfig",
    "WebhookEndpoint",
    "WebhooksConfig",
    "load_config",
    "parse_config",
]

log = logging.getLogger(__name__)

DEFAULT_PURPOSES = (NECESSARY, "functional", "analytics", "advertising", "personalization")

#: EU/EEA member states, the UK, Switzerland and Brazil: consent before tracking.
OPT_IN_COUNTRIES = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE "
    "IS LI NO GB CH BR".split()
)


class ConflictPolicy(enum.StrEnum):
    """How explicit sources that disagree on a purpose combine (`consent.conflict`)."""

    RESTRICTIVE = "restrictive"
    NEWEST = "newest"


class RegimeMode(enum.StrEnum):
    """What an unanswered purpose means in a regime."""

    OPT_IN = "opt-in"
    OPT_OUT = "opt-out"


class SameSite(enum.StrEnum):
    STRICT = "Strict"
    LAX = "Lax"
    NONE = "None"


class AccessLog(enum.StrEnum):
    OFF = "off"
    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    #: processes sharing the port (SO_REUSEPORT); 1 = this process only
    workers: int = 1
    #: peers whose X-Forwarded-For is believed (CIDRs); the visitor's own is never trusted
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: requests with a larger body are answered 413 and never read further
    max_body_bytes: int = 64 * 1024
    #: a trusted header carrying the visitor's country (ISO 3166-1 alpha-2), e.g. CF-IPCountry
    country_header: str | None = None
    #: serve GET /consent, POST /consent, DELETE /consent
    consent_api: bool = True
    log_level: str = "INFO"
    #: one line per request: `off`, `text` or `json` (never query strings or full IPs)
    access_log: AccessLog = AccessLog.OFF
    #: seconds a client may take to send a request's headers (from connecting, or from the
    #: previous answer on a kept-alive connection) and, separately, its body; a client
    #: slower than that is disconnected (slowloris)
    read_timeout: float = 15.0
    #: the operators' listener: /_admin, /metrics, /healthz and /readyz are served here and
    #: not on the public port. None: they share the public port, and /metrics then needs
    #: the admin token
    admin_port: int | None = 9091
    admin_host: str = "127.0.0.1"
    #: POST and DELETE /consent a client network (IPv4 /24, IPv6 /48) may make a minute;
    #: past it they are answered 429
    consent_rate_limit: int = 30


@dataclass(frozen=True, slots=True)
class RulesConfig:
    #: rule files or directories of `*.yaml`
    paths: tuple[Path, ...] = (Path("rules"),)
    #: log what would be enforced, forward everything with only `always` strips
    report_only: bool = False
    #: how often rule files are checked for changes (seconds); 0 = only on SIGHUP
    watch_interval: float = 2.0


@dataclass(frozen=True, slots=True)
class RegimeConfig:
    """A jurisdiction's defaults: what an unanswered purpose means there."""

    name: str
    #: `opt-in`: unknown means denied; `opt-out`: unknown means granted (unless GPC)
    mode: RegimeMode
    countries: frozenset[str] = frozenset()
    #: does `Sec-GPC: 1` deny `consent.gpc_purposes` in this regime
    gpc_binds: bool = True

    @property
    def default(self) -> ConsentValue:
        return ConsentValue.DENIED if self.mode is RegimeMode.OPT_IN else ConsentValue.GRANTED


#: the CMPs whose categories config maps onto purposes
CMPS = tuple(CMP)
GCM_TYPES = ("ad_storage", "analytics_storage", "ad_user_data", "ad_personalization")


T = TypeVar("T")


def _frozen(d: Mapping[str, tuple[T, ...]]) -> Mapping[str, tuple[T, ...]]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True, slots=True)
class SignalsConfig:
    """How the standard signals a site already emits map onto the gateway's purposes.

    For each mapping, a purpose is granted by a signal when everything it maps to is
    granted there, denied when any of it is denied, and not answered otherwise.
    """

    #: the signals read from requests; a signal not listed is ignored
    read: frozenset[str] = frozenset(SIGNALS)
    #: may signals in the tag request's own query (gcs, gcd, gdpr_consent, gpp, us_privacy)
    #: grant? By default they only deny: a tag request cannot grant itself consent.
    request_params_grant: bool = False
    #: purpose -> TCF purposes that all need consent. Default: Google's published
    #: TCF -> Consent Mode mapping (P1 storage; P3/P4 personalised ads; P7 measurement).
    tcf_purposes: Mapping[str, tuple[int, ...]] = field(
        default_factory=lambda: MappingProxyType(
            {
                "functional": (1,),
                "analytics": (1, 8),
                "advertising": (1, 2, 3, 4, 7),
                "personalization": (1, 5, 6),
            }
        )
    )
    #: purpose -> TCF special features that need the opt-in
    tcf_special_features: Mapping[str, tuple[int, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    #: accept legitimate interest where TCF allows it (never purposes 1, 3-6)
    tcf_legitimate_interest: bool = False
    #: purpose -> Consent Mode types that all need to be granted
    gcm: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType(
            {
                "analytics": ("analytics_storage",),
                "advertising": ("ad_storage", "ad_user_data", "ad_personalization"),
            }
        )
    )
    #: purposes a US opt-out of sale / sharing / targeted advertising denies (GPP, us_privacy)
    us_opt_out_purposes: frozenset[str] = frozenset({"advertising"})
    #: cmp -> its category id -> purposes it stands for (tenant settings: check your CMP)
    cmp: Mapping[str, Mapping[str, tuple[str, ...]]] = field(
        default_factory=lambda: MappingProxyType(
            {
                CMP.ONETRUST: MappingProxyType(
                    {
                        "C0002": ("analytics",),
                        "C0003": ("functional",),
                        "C0004": ("advertising", "personalization"),
                        "C0005": ("advertising",),
                    }
                ),
                CMP.COOKIEBOT: MappingProxyType(
                    {
                        "preferences": ("functional", "personalization"),
                        "statistics": ("analytics",),
                        "marketing": ("advertising",),
                    }
                ),
                CMP.DIDOMI: MappingProxyType(
                    {"analytics": ("analytics",), "advertising": ("advertising",)}
                ),
                CMP.KLARO: MappingProxyType({}),
                CMP.COOKIEYES: MappingProxyType(
                    {
                        "functional": ("functional",),
                        "analytics": ("analytics",),
                        "performance": ("analytics",),
                        "advertisement": ("advertising",),
                    }
                ),
                CMP.COMPLIANZ: MappingProxyType(
                    {
                        "functional": ("functional",),
                        "preferences": ("personalization",),
                        "statistics": ("analytics",),
                        "marketing": ("advertising",),
                    }
                ),
                CMP.COMMANDERS_ACT: MappingProxyType({}),
            }
        )
    )


@dataclass(frozen=True, slots=True)
class ConsentConfig:
    purposes: tuple[str, ...] = DEFAULT_PURPOSES
    #: consent recorded under an older policy version counts as unknown
    policy_version: int = 1
    #: consent older than this (seconds) counts as unknown
    max_age: float = 180 * 86400.0
    regimes: tuple[RegimeConfig, ...] = (
        RegimeConfig("opt-in", RegimeMode.OPT_IN, OPT_IN_COUNTRIES),
        RegimeConfig("us", RegimeMode.OPT_OUT, frozenset({"US"})),
    )
    #: the regime for a visitor whose country is unknown or listed nowhere
    default_regime: str = "opt-in"
    #: purposes that `Sec-GPC: 1` denies where the regime says GPC binds
    gpc_purposes: frozenset[str] = frozenset({"advertising"})
    #: how disagreeing explicit sources combine: `restrictive` or `newest`
    conflict: ConflictPolicy = ConflictPolicy.RESTRICTIVE
    #: how the standard signals (TCF, GPP, Consent Mode, CMP cookies) map onto purposes
    signals: SignalsConfig = SignalsConfig()

    def regime_for(self, country: str | None) -> RegimeConfig:
        """The regime of `country` (upper-case alpha-2), else the default regime."""
        if country:
            for r in self.regimes:
                if country in r.countries:
                    return r
        for r in self.regimes:
            if r.name == self.default_regime:
                return r
        raise AssertionError("default_regime is validated to exist")


@dataclass(frozen=True, slots=True)
class CookieKey:
    id: str
    #: the key bytes (>= 16), read from the environment or the dev key file, never logged
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class CookieConfig:
    name: str = "cg_consent"
    #: signing keys, newest first: the first signs, all verify (rotation)
    keys: tuple[CookieKey, ...] = ()
    secure: bool = True
    http_only: bool = True
    same_site: SameSite = SameSite.LAX
    domain: str | None = None
    path: str = "/"
    #: the only key is `dev_key_file`'s: fine for one process, wrong for a fleet
    dev_key: bool = False


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    connect_timeout: float = 2.0
    total_timeout: float = 10.0
    #: bounded queue for beacons and pixels forwarded after the visitor has its answer
    queue_size: int = 10_000
    #: concurrent background senders (coroutines, not threads): throughput is about
    #: queue_workers / vendor latency, so keep it well above the beacon rate x latency
    queue_workers: int = 64
    max_connections: int = 200
    #: vendor origin -> base URL to send to instead (staging, tests); only config can do this
    overrides: Mapping[str, yarl.URL] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class DecisionLogConfig:
    #: SQLite file the records go to (queried by `consent-gateway logs`); None = off
    sqlite_path: Path | None = Path("data/decisions.db")
    #: JSON lines for log shippers: a file path, `-` for stdout, or None
    jsonl: str | None = None
    queue_size: int = 10_000
    batch_size: int = 500
    flush_interval: float = 0.5


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The operators' page under /_admin/ and its JSON API."""

    #: the bearer token / login secret (read from `token_env`); None disables the admin
    token: str | None = field(default=None, repr=False)
    #: failed logins allowed per client address per minute before 429
    max_failures_per_minute: int = 10
    #: how long a login lasts (seconds)
    session_max_age: float = 8 * 3600.0
    #: the session cookie's Secure flag (false only for plain-http local use)
    secure_cookie: bool = True


class StoreBackend(enum.StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The consent store (DESIGN §6) and the cache in front of it."""

    #: sqlite (one file, one machine) or postgres (several instances)
    backend: StoreBackend = StoreBackend.SQLITE
    sqlite_path: Path = Path("data/consent.db")
    #: read from `postgres_dsn_env` (a DSN may carry a password)
    postgres_dsn: str | None = field(default=None, repr=False)
    postgres_pool_size: int = 10
    #: apply pending migrations at start; false: refuse to start until `migrate` has run
    migrate_on_start: bool = True
    cache_size: int = 100_000
    #: how long a looked-up state is kept; changes replace entries at once, so this bounds
    #: memory, not staleness (states set by changes are kept for `consent.max_age`)
    cache_ttl: float = 600.0
    #: how often the change feed is read when nothing announces changes (SQLite, and
    #: PostgreSQL as a safety net behind LISTEN/NOTIFY)
    poll_interval: float = 0.5
    #: server-to-server: the header naming the subject a back end sends events for
    subject_header: str | None = None
    #: where back ends call from: the header is believed only from these networks (the
    #: client address as resolved through `server.trusted_proxies`); empty: from anywhere
    server_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def __post_init__(self) -> None:
        if self.backend not in (StoreBackend.SQLITE, StoreBackend.POSTGRES):
            raise ValueError("store.backend must be sqlite or postgres")


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    #: a short name: the delivery cursor's key, shown by `webhooks status`
    name: str
    url: yarl.URL
    #: the HMAC-SHA256 key (read from `secret_env`)
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class WebhooksConfig:
    """Signed consent-change events POSTed to downstream systems."""

    endpoints: tuple[WebhookEndpoint, ...] = ()
    timeout: float = 5.0
    backoff_initial: float = 1.0
    backoff_max: float = 300.0


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    server: ServerConfig = ServerConfig()
    rules: RulesConfig = RulesConfig()
    consent: ConsentConfig = ConsentConfig()
    cookie: CookieConfig = CookieConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    decision_log: DecisionLogConfig = DecisionLogConfig()
    admin: AdminConfig = AdminConfig()
    store: StoreConfig = StoreConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    #: the file this came from; relative paths inside it are resolved against its folder
    source: Path | None = None

    def __post_init__(self) -> None:
        names = {r.name for r in self.consent.regimes}
        if self.consent.default_regime not in names:
            raise ValueError(f"default_regime {self.consent.default_regime!r} is not a regime")
        if not self.cookie.keys:
            raise ValueError("cookie.keys: at least one signing key is required")


# ---------------------------------------------------------------------------
# Loading

_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
_ENDPOINT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and validate the config file at `path`; raise ConfigError listing every problem."""
    p = Path(path)
    text = read_source(p)
    if isinstance(text, Problem):
        raise ConfigError([text])
    return parse_config(text, str(p), env=os.environ if env is None else env)


def parse_config(
    text: str, file: str = "<config>", env: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Validate YAML `text` into a GatewayConfig; raise ConfigError listing every problem."""
    src = YamlSource.parse(text, file)
    env = os.environ if env is None else env
    base = Path(file).resolve().parent if not file.startswith("<") else Path.cwd()
    root = src.root()
    top = root.mapping(
        [
            "data_dir",
            "server",
            "rules",
            "consent",
            "cookie",
            "upstream",
            "decision_log",
            "admin",
            "store",
            "webhooks",
        ]
    )
    data_dir = _path(top.get("data_dir"), base, Path("data"))
    server = _server(top.get("server"), root)
    rules = _rules(top.get("rules"), root, base)
    consent = _consent(top.get("consent"), root)
    upstream = _upstream(top.get("upstream"), root)
    dlog = _decision_log(top.get("decision_log"), root, base, data_dir)
    admin = _admin(top["admin"], env)
    store = _store(top["store"], env, base, data_dir)
    cookie = _cookie(top.get("cookie"), root, env, data_dir, _fleet(server, store, env))
    webhooks = _webhooks(top["webhooks"], env)
    if src.problems:
        raise ConfigError(src.problems)
    try:
        return GatewayConfig(
            server, rules, consent, cookie, upstream, dlog, admin, store, webhooks, Path(file)
        )
    except ValueError as e:
        raise ConfigError([Problem(file, None, "", str(e))]) from e


def _or_empty(node: Node | None, root: Node, key: str) -> Node:
    return node if node is not None else root.child(key, None)


def _path(node: Node | None, base: Path, default: Path) -> Path:
    if node is None or node.missing:
        return base / default
    p = Path(node.str(str(default)))
    return p if p.is_absolute() else base / p


def _server(node: Node | None, root: Node) -> ServerConfig:
    n = _or_empty(node, root, "server")
    m = n.mapping(
        [
            "host",
            "port",
            "workers",
            "trusted_proxies",
            "max_body_bytes",
            "country_header",
            "consent_api",
            "log_level",
            "access_log",
            "read_timeout",
            "consent_rate_limit",
            "admin_port",
            "admin_host",
        ]
    )
    d = ServerConfig()
    admin_port: int | None = d.admin_port
    if "admin_port" in m:
        admin_port = (
            None if m["admin_port"].value is None else m["admin_port"].int(0, min=0, max=65535)
        )
    level = m["log_level"].str(d.log_level).upper() if "log_level" in m else d.log_level
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        m["log_level"].problem("must be one of DEBUG, INFO, WARNING, ERROR")
        level = d.log_level
    header = m["country_header"].opt_str()
    return ServerConfig(
        host=m["host"].str(d.host),
        port=m["port"].int(d.port, min=0, max=65535),
        workers=m["workers"].int(d.workers, min=1, max=256),
        trusted_proxies=_networks(m["trusted_proxies"]),
        max_body_bytes=m["max_body_bytes"].int(d.max_body_bytes, min=0, max=64 * 1024 * 1024),
        country_header=header or None,
        consent_api=m["consent_api"].bool(True),
        log_level=level,
        access_log=_access_log(m["access_log"]),
        read_timeout=_positive(m["read_timeout"], d.read_timeout),
        consent_rate_limit=m["consent_rate_limit"].int(d.consent_rate_limit, min=1, max=1_000_000),
        admin_port=admin_port,
        admin_host=m["admin_host"].str(d.admin_host),
    )


def _access_log(node: Node) -> AccessLog:
    # YAML reads a bare `off` as false: the example config quotes it, this forgives it
    return AccessLog.OFF if node.value is False else node.enum(AccessLog, AccessLog.OFF)


def _rules(node: Node | None, root: Node, base: Path) -> RulesConfig:
    m = _or_empty(node, root, "rules").mapping(["paths", "report_only", "watch_interval"])
    paths = tuple(
        (p if p.is_absolute() else base / p)
        for p in (Path(s) for s in (m["paths"].str_list() if "paths" in m else ["rules"]))
    )
    if "paths" in m and not paths:
        m["paths"].problem("at least one rule file or directory is required")
    return RulesConfig(
        paths=paths,
        report_only=m["report_only"].bool(),
        watch_interval=m["watch_interval"].duration(RulesConfig().watch_interval),
    )


def _consent(node: Node | None, root: Node) -> ConsentConfig:
    n = _or_empty(node, root, "consent")
    m = n.mapping(
        [
            "purposes",
            "policy_version",
            "max_age",
            "regimes",
            "default_regime",
            "gpc_purposes",
            "conflict",
            "signals",
        ]
    )
    d = ConsentConfig()
    purposes = tuple(m["purposes"].str_list()) if "purposes" in m else d.purposes
    for p in purposes:
        # Purpose names travel in every consent cookie: short, plain and few.
        if not (p.isascii() and p.replace("_", "").replace("-", "").isalnum() and len(p) <= 32):
            m["purposes"].problem(f"purpose {p!r} must be 1-32 ASCII letters, digits, _ or -")
    if len(set(purposes)) != len(purposes):
        m["purposes"].problem("a purpose is listed twice")
    if len(purposes) > 32:
        m["purposes"].problem("at most 32 purposes")
    if NECESSARY not in purposes:
        purposes = (NECESSARY, *purposes)
    known = set(purposes)
    regimes = d.regimes
    if "regimes" in m:
        out: list[RegimeConfig] = []
        for name, rn in m["regimes"].items():
            r = rn.mapping(["mode", "countries", "gpc_binds"], required=["mode"])
            mode = r["mode"].enum(RegimeMode, RegimeMode.OPT_IN)
            codes: set[str] = set()
            for cn in r["countries"].list():
                if isinstance(cn.value, bool):
                    # YAML 1.1 reads an unquoted NO (Norway) as false.
                    cn.problem('a country code must be a string: quote it, e.g. "NO"')
                else:
                    codes.add(cn.str().upper())
            countries = frozenset(codes)
            for c in countries:
                if len(c) != 2 or not c.isalpha():
                    r["countries"].problem(f"{c!r} is not an ISO 3166-1 alpha-2 code")
            out.append(
                RegimeConfig(
                    name,
                    mode,
                    countries,
                    r["gpc_binds"].bool(True) if "gpc_binds" in r else True,
                )
            )
        if not out:
            m["regimes"].problem("at least one regime is required")
        else:
            regimes = tuple(out)
    default_regime = m["default_regime"].str(d.default_regime)
    if default_regime not in {r.name for r in regimes}:
        where = m.get("default_regime", n)
        where.problem(f"{default_regime!r} is not one of the regimes")
    gpc = frozenset(m["gpc_purposes"].str_list()) if "gpc_purposes" in m else d.gpc_purposes
    for p in gpc - known:
        m["gpc_purposes"].problem(f"{p!r} is not one of consent.purposes")
    conflict = m["conflict"].enum(ConflictPolicy, d.conflict)
    return ConsentConfig(
        purposes=purposes,
        policy_version=m["policy_version"].int(1, min=1),
        max_age=m["max_age"].duration(d.max_age),
        regimes=regimes,
        default_regime=default_regime,
        gpc_purposes=gpc,
        conflict=conflict,
        signals=_signals(m["signals"], frozenset(known)),
    )


def _purpose_map(
    node: Node, known: frozenset[str], check: Callable[[Node], T | None]
) -> dict[str, tuple[T, ...]]:
    out: dict[str, tuple[T, ...]] = {}
    for purpose, items in node.items():
        if purpose not in known:
            items.problem(f"{purpose!r} is not one of consent.purposes")
            continue
        values = [check(item) for item in items.list()]
        out[purpose] = tuple(v for v in values if v is not None)
    return out


def _signals(node: Node, known: frozenset[str]) -> SignalsConfig:
    d = SignalsConfig()
    m = node.mapping(
        [
            "read",
            "tcf_purposes",
            "tcf_special_features",
            "tcf_legitimate_interest",
            "gcm",
            "us_opt_out_purposes",
            "cmp",
            "request_params_grant",
        ]
    )

    def tcf_purpose(n: Node) -> int | None:
        v = n.int(0, min=1, max=24)
        return v or None

    def special_feature(n: Node) -> int | None:
        v = n.int(0, min=1, max=12)
        return v or None

    def gcm_type(n: Node) -> str | None:
        v = n.str()
        if v not in GCM_TYPES:
            n.problem(f"must be one of: {', '.join(GCM_TYPES)}")
            return None
        return v

    def purpose(n: Node) -> str | None:
        v = n.str()
        if v not in known:
            n.problem(f"{v!r} is not one of consent.purposes")
            return None
        return v

    read = d.read
    if "read" in m:
        names = m["read"].str_list()
        for name in set(names) - set(SIGNALS):
            m["read"].problem(f"unknown signal {name!r}; known: {', '.join(SIGNALS)}")
        read = frozenset(names) & frozenset(SIGNALS)
    cmp = dict(d.cmp)
    for name, cn in m["cmp"].items():
        if name not in CMPS:
            cn.problem(f"unknown CMP; known: {', '.join(CMPS)}")
            continue
        cmp[name] = MappingProxyType(
            {
                category: tuple(p for p in (purpose(i) for i in items.list()) if p)
                for category, items in cn.items()
            }
        )
    us = d.us_opt_out_purposes
    if "us_opt_out_purposes" in m:
        us = frozenset(p for p in (purpose(i) for i in m["us_opt_out_purposes"].list()) if p)
    return SignalsConfig(
        read=read,
        request_params_grant=m["request_params_grant"].bool(False),
        tcf_purposes=(
            _frozen(_purpose_map(m["tcf_purposes"], known, tcf_purpose))
            if "tcf_purposes" in m
            else d.tcf_purposes
        ),
        tcf_special_features=(
            _frozen(_purpose_map(m["tcf_special_features"], known, special_feature))
            if "tcf_special_features" in m
            else d.tcf_special_features
        ),
        tcf_legitimate_interest=m["tcf_legitimate_interest"].bool(False),
        gcm=(_frozen(_purpose_map(m["gcm"], known, gcm_type)) if "gcm" in m else d.gcm),
        us_opt_out_purposes=us,
        cmp=MappingProxyType(cmp),
    )


def _decode_key(text: str) -> bytes | None:
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) >= 16 else None


#: set in the container image: every container is one of many (Dockerfile)
IMAGE_ENV = "CONSENT_GATEWAY_IMAGE"


def _fleet(server: ServerConfig, store: StoreConfig, env: Mapping[str, str]) -> str | None:
    """Why this gateway is (or may be) one of several instances, or None: then every
    instance must sign cookies with the same key, and a dev key file cannot be it."""
    if env.get(IMAGE_ENV) == "1":
        return "a container image, where each container would mint its own"
    if server.workers > 1:
        return f"{server.workers} worker processes (server.workers)"
    if store.backend == StoreBackend.POSTGRES:
        return "a PostgreSQL store, which is there for several instances"
    return None


def dev_key_refused(reason: str) -> str:
    """The message for a dev key where a fleet needs a shared one (config and `serve`)."""
    return (
        f"a dev key file is for one process on one machine, not for {reason}: cookies "
        "signed by one instance would not verify on another. Set the environment variable "
        "named by cookie.keys[].secret_env (make a key with `consent-gateway keygen`)"
    )


def _cookie(
    node: Node | None,
    root: Node,
    env: Mapping[str, str],
    data_dir: Path,
    fleet: str | None = None,
) -> CookieConfig:
    n = _or_empty(node, root, "cookie")
    m = n.mapping(
        ["name", "keys", "dev_key_file", "secure", "http_only", "same_site", "domain", "path"]
    )
    d = CookieConfig()
    keys: list[CookieKey] = []
    seen_ids: set[str] = set()
    for kn in m["keys"].list() if "keys" in m else []:
        k = kn.mapping(["id", "secret_env"], required=["id", "secret_env"])
        kid = k["id"].str() if "id" in k else ""
        if kid and (not (kid.isascii() and kid.isalnum()) or len(kid) > 16):
            k["id"].problem("key id must be 1-16 ASCII letters or digits")
        elif kid in seen_ids:
            k["id"].problem(f"key id {kid!r} is listed twice")
        seen_ids.add(kid)
        var = k["secret_env"].str() if "secret_env" in k else ""
        if not var:
            continue
        value = env.get(var)
        if value is None:
            continue  # a key that is not provisioned here: only the dev key file can stand in
        secret = _decode_key(value)
        if secret is None:
            # SECURITY: name the variable, never its value.
            k["secret_env"].problem(
                f"environment variable {var} must hold >= 16 bytes, base64url "
                "(make one with `consent-gateway keygen`)"
            )
            continue
        keys.append(CookieKey(kid, secret))
    dev = False
    fleet_refused: str | None = None
    if not keys and "dev_key_file" in m and not m["dev_key_file"].missing:
        if fleet is not None:
            fleet_refused = fleet
            # SECURITY of the promise, not of a secret: a key per instance makes every
            # visitor's consent vanish on the next instance (and on every redeploy).
            m["dev_key_file"].problem(dev_key_refused(fleet))
        else:
            keys.append(_dev_key(m["dev_key_file"], data_dir))
            dev = True
    if not keys and fleet_refused is None:
        n.problem(
            "no signing key: set the environment variable named by cookie.keys[].secret_env "
            "(see `consent-gateway keygen`), or set cookie.dev_key_file for a single machine"
        )
    same_site = m["same_site"].enum(SameSite, d.same_site)
    secure = m["secure"].bool(True)
    if same_site is SameSite.NONE and not secure:
        m["same_site"].problem("SameSite=None requires secure: true")
    name = m["name"].str(d.name)
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        m["name"].problem("cookie name must be letters, digits, _ or -")
    return CookieConfig(
        name=name,
        keys=tuple(keys),
        secure=secure,
        http_only=m["http_only"].bool(True),
        same_site=same_site,
        domain=m["domain"].opt_str() or None,
        path=m["path"].str("/") if "path" in m else "/",
        dev_key=dev,
    )


def _dev_key(node: Node, data_dir: Path) -> CookieKey:
    """A signing key kept in a file beside the data, created on first use.

    For one machine only: with several machines every instance needs the same
    key, which is what `secret_env` is for.
    """
    p = Path(node.str())
    if not p.is_absolute():
        p = data_dir / p if p.parent == Path(".") else data_dir.parent / p
    try:
        if p.exists():
            secret = _decode_key(p.read_text(encoding="ascii"))
            if secret is None:
                node.problem("dev key file does not hold a valid key")
                return CookieKey("dev", b"\0" * 32)
            return CookieKey("dev", secret)
        p.parent.mkdir(parents=True, exist_ok=True)
        raw = secrets.token_bytes(32)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(base64.urlsafe_b64encode(raw).decode().rstrip("="))
        log.warning("created a development cookie signing key in %s", p)
        return CookieKey("dev", raw)
    except OSError as e:
        node.problem(f"cannot use dev key file: {e.strerror}")
        return CookieKey("dev", b"\0" * 32)


def _upstream(node: Node | None, root: Node) -> UpstreamConfig:
    m = _or_empty(node, root, "upstream").mapping(
        [
            "connect_timeout",
            "total_timeout",
            "queue_size",
            "queue_workers",
            "max_connections",
            "overrides",
        ]
    )
    d = UpstreamConfig()
    overrides: dict[str, yarl.URL] = {}
    for origin, on in m["overrides"].items() if "overrides" in m else []:
        try:
            o, target = yarl.URL(origin), yarl.URL(on.str())
        except ValueError:
            on.problem("key must be an origin and value an http(s) base URL")
            continue
        if o.scheme not in ("http", "https") or not o.host or o.path not in ("", "/"):
            on.problem("key must be an origin such as https://www.google-analytics.com")
            continue
        if o.scheme != "https" or o.explicit_port or o.user or o.query_string or o.fragment:
            # The gateway only ever reaches a vendor at https://<rule host>: any other key
            # would be accepted and silently never used.
            on.problem(
                "key must be https://<host> (no port, user or query): "
                "vendors are reached over https only"
            )
            continue
        if target.scheme not in ("http", "https") or not target.host:
            on.problem("must be an http(s) base URL")
            continue
        overrides[f"{o.scheme}://{o.host.lower()}"] = target
    connect = m["connect_timeout"].duration(d.connect_timeout)
    total = m["total_timeout"].duration(d.total_timeout)
    if connect > total:
        m["connect_timeout"].problem("must not exceed total_timeout")
    return UpstreamConfig(
        connect_timeout=connect,
        total_timeout=total,
        queue_size=m["queue_size"].int(d.queue_size, min=1),
        queue_workers=m["queue_workers"].int(d.queue_workers, min=1, max=1024),
        max_connections=m["max_connections"].int(d.max_connections, min=1),
        overrides=MappingProxyType(overrides),
    )


def _decision_log(node: Node | None, root: Node, base: Path, data_dir: Path) -> DecisionLogConfig:
    m = _or_empty(node, root, "decision_log").mapping(
        ["sqlite_path", "jsonl", "queue_size", "batch_size", "flush_interval"]
    )
    d = DecisionLogConfig()
    sqlite_path: Path | None = data_dir / "decisions.db"
    if "sqlite_path" in m:
        raw: str | None = m["sqlite_path"].opt_str()
        sqlite_path = None if not raw else (Path(raw) if Path(raw).is_absolute() else base / raw)
    jsonl = m["jsonl"].opt_str()
    if jsonl and jsonl != "-" and not Path(jsonl).is_absolute():
        jsonl = str(base / jsonl)
    return DecisionLogConfig(
        sqlite_path=sqlite_path,
        jsonl=jsonl or None,
        queue_size=m["queue_size"].int(d.queue_size, min=1),
        batch_size=m["batch_size"].int(d.batch_size, min=1),
        flush_interval=m["flush_interval"].duration(d.flush_interval),
    )


def _admin(node: Node, env: Mapping[str, str]) -> AdminConfig:
    m = node.mapping(["token_env", "max_failures_per_minute", "session_max_age", "secure_cookie"])
    d = AdminConfig()
    token = None
    var = m["token_env"].opt_str()
    if var:
        token = env.get(var) or None
        if token is not None and len(token) < 16:
            # SECURITY: name the variable, never its value.
            m["token_env"].problem(f"environment variable {var} must hold >= 16 characters")
            token = None
    return AdminConfig(
        token=token,
        max_failures_per_minute=m["max_failures_per_minute"].int(
            d.max_failures_per_minute, min=1, max=10_000
        ),
        session_max_age=m["session_max_age"].duration(d.session_max_age),
        secure_cookie=m["secure_cookie"].bool(True),
    )


def _store(node: Node, env: Mapping[str, str], base: Path, data_dir: Path) -> StoreConfig:
    m = node.mapping(
        [
            "backend",
            "sqlite_path",
            "postgres_dsn_env",
            "postgres_pool_size",
            "migrate_on_start",
            "cache_size",
            "cache_ttl",
            "poll_interval",
            "subject_header",
            "server_networks",
        ]
    )
    d = StoreConfig()
    backend = m["backend"].enum(StoreBackend, d.backend)
    sqlite_path = data_dir / "consent.db"
    if "sqlite_path" in m:
        raw = m["sqlite_path"].opt_str()
        if not raw:
            m["sqlite_path"].problem("must be a file path (the store cannot be turned off)")
        else:
            sqlite_path = Path(raw) if Path(raw).is_absolute() else base / raw
    dsn = None
    var = m["postgres_dsn_env"].opt_str() if "postgres_dsn_env" in m else "CONSENT_GATEWAY_PG_DSN"
    if "postgres_dsn_env" in m and not var:
        m["postgres_dsn_env"].problem("must name the environment variable holding the DSN")
    elif backend == StoreBackend.POSTGRES:
        dsn = env.get(var) if var else None
        if not dsn:
            # SECURITY: name the variable, never a value.
            where = m["postgres_dsn_env"] if "postgres_dsn_env" in m else m["backend"]
            where.problem(f"backend postgres needs a DSN in environment variable {var}")
    header = m["subject_header"].opt_str() if "subject_header" in m else None
    if header is not None and not _HEADER_NAME.fullmatch(header):
        m["subject_header"].problem("must be an HTTP header name, e.g. X-Consent-Subject")
        header = None
    return StoreConfig(
        backend=backend,
        sqlite_path=sqlite_path,
        postgres_dsn=dsn,
        postgres_pool_size=m["postgres_pool_size"].int(d.postgres_pool_size, min=1, max=1000),
        migrate_on_start=m["migrate_on_start"].bool(d.migrate_on_start),
        cache_size=m["cache_size"].int(d.cache_size, min=1),
        cache_ttl=_positive(m["cache_ttl"], d.cache_ttl),
        poll_interval=_positive(m["poll_interval"], d.poll_interval),
        subject_header=header or None,
        server_networks=_networks(m["server_networks"]),
    )


def _networks(node: Node) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A list of IP networks (a bare address is its /32 or /128); empty when missing."""
    out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in node.list():
        try:
            out.append(ipaddress.ip_network(item.str(), strict=False))
        except ValueError:
            item.problem("not an IP network (e.g. 10.0.0.0/8)")
    return tuple(out)


def _positive(node: Node, default: float) -> float:
    value = node.duration(default)
    if value <= 0:
        node.problem("must be more than 0")
        return default
    return value


def _http_url(node: Node) -> yarl.URL | None:
    """An absolute http(s) URL with a valid host, or None with the problem reported."""
    try:
        url = yarl.URL(node.str())
        ok = url.scheme in ("http", "https") and bool(url.host) and " " not in (url.host or "")
    except ValueError:
        ok = False
    if not ok:
        node.problem("must be an http(s) URL")
        return None
    return url


def _webhooks(node: Node, env: Mapping[str, str]) -> WebhooksConfig:
    m = node.mapping(["endpoints", "timeout", "backoff_initial", "backoff_max"])
    d = WebhooksConfig()
    endpoints: list[WebhookEndpoint] = []
    seen: set[str] = set()
    for item in m["endpoints"].list() if "endpoints" in m else []:
        e = item.mapping(["name", "url", "secret_env"], required=["name", "url", "secret_env"])
        name = e["name"].str()
        if not _ENDPOINT_NAME.fullmatch(name):
            e["name"].problem("must be 1-64 letters, digits, '-', '_' or '.'")
            continue
        if name in seen:
            e["name"].problem(f"duplicate webhook name {name!r}")
            continue
        seen.add(name)
        if "url" not in e or "secret_env" not in e:
            continue  # reported as missing
        url = _http_url(e["url"])
        if url is None:
            continue
        var = e["secret_env"].str()
        secret = env.get(var, "").encode() if var else b""
        if len(secret) < 16:
            # SECURITY: name the variable, never its value.
            e["secret_env"].problem(f"environment variable {var} must hold >= 16 characters")
            continue
        endpoints.append(WebhookEndpoint(name, url, secret))
    timeout = m["timeout"].duration(d.timeout)
    if not 0 < timeout <= 60:
        m["timeout"].problem("must be more than 0 and at most 60s")
        timeout = d.timeout
    initial = m["backoff_initial"].duration(d.backoff_initial)
    most = m["backoff_max"].duration(d.backoff_max)
    if initial <= 0 or most < initial:
        m["backoff_max"].problem("need 0 < backoff_initial <= backoff_max")
    return WebhooksConfig(
        endpoints=tuple(endpoints),
        timeout=timeout,
        backoff_initial=initial,
        backoff_max=most,
    )
