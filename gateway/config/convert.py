"""The named converters: options whose reading from a file is more than their type.

A field of `gateway.config.schema` names one with `convert=`; the walk in
`gateway.config.load` calls it with the option (`Option`: its node, spec, default,
type, and whether the author wrote it) and the `Context` of the load (environment,
folders, the sections and values read so far). A converter returns the field's value,
reporting problems on the nodes it was given; for a record in a list it may return
`DROP` to leave the record out. Values from the environment (keys, tokens, DSNs) are
read here, and a problem names the variable, never its value. What a file may hold for
each converter's option, as JSON Schema, is registered under the same name in
`gateway.config.json_schema.CONVERTER_SCHEMAS` (a test requires one for every converter).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import os
import secrets
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any, TypeVar

import yarl

from gateway.config.consent import DEFAULT_PURPOSES, CmpTable
from gateway.config.schema import (
    CookieKey,
    Network,
    ServerConfig,
    StoreBackend,
    StoreConfig,
    VendorHost,
    VendorRef,
    check_base_path,
)
from gateway.config.spec import Spec
from gateway.grammar import check_purpose_name
from gateway.model import NECESSARY, check_vendor_id
from gateway.yamlsrc import Node

__all__ = [
    "CONVERTERS",
    "DROP",
    "IMAGE_ENV",
    "Context",
    "Converter",
    "origin_pattern",
    "Option",
    "dev_key_refused",
    "http_url",
    "optional_of",
    "resolve",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: set in the container image: every container is one of many (Dockerfile)
IMAGE_ENV = "CONSENT_GATEWAY_IMAGE"

#: a converter's answer for a record (a list item) that is left out
DROP: Any = object()


@dataclass
class Context:
    """What converters may know besides their own value."""

    env: Mapping[str, str]
    file: str
    #: the config file's folder: relative paths are resolved against it
    base: Path
    data_dir: Path = Path("data")
    #: consent.purposes as read (with `necessary`): the purpose maps refer to them
    purposes: frozenset[str] = frozenset(DEFAULT_PURPOSES)
    #: the sections read so far, by class
    done: dict[type, Any] = field(default_factory=dict)
    #: the section being read: its node, its values so far and their nodes, by field name
    section: Node | None = None
    draft: SimpleNamespace = field(default_factory=SimpleNamespace)
    nodes: SimpleNamespace = field(default_factory=SimpleNamespace)
    #: records of the list being read: the values seen of each `unique` field
    seen: dict[str, set[Any]] = field(default_factory=dict)

    def get(self, cls: type[T]) -> T:
        found: T = self.done[cls]
        return found


@dataclass(frozen=True, slots=True)
class Option:
    """One option being read: what a converter is given."""

    node: Node
    spec: Spec
    default: Any
    #: the author wrote the key (perhaps with a null value)
    written: bool
    #: the field's type
    hint: Any


Converter = Callable[[Option, Context], Any]


def optional_of(hint: Any) -> Any:
    """`X` of a hint `X | None`, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return rest[0]
    return None


def resolve(ctx: Context, p: Path) -> Path:
    return p if p.is_absolute() else ctx.base / p


def http_url(node: Node) -> yarl.URL | None:
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


def _networks(o: Option, ctx: Context) -> tuple[Network, ...]:
    """A list of IP networks (a bare address is its /32 or /128); empty when missing."""
    out: list[Network] = []
    for item in o.node.list():
        try:
            out.append(ipaddress.ip_network(item.str(), strict=False))
        except ValueError:
            item.problem("not an IP network (e.g. 10.0.0.0/8)")
    return tuple(out)


def _origins(o: Option, ctx: Context) -> tuple[str, ...]:
    """Site origins, normalised (`scheme://host[:port]`, lower case, no default port).

    A pattern may start its host with `*.` (any subdomain, at any depth, of a name of at
    least two labels); a bare `*` is refused: with credentials it would let any site
    read a visitor's consent.
    """
    out: list[str] = []
    for item in o.node.list():
        origin = origin_pattern(item.str())
        if origin is None:
            item.problem(
                "must be an origin such as https://www.example.com or https://*.example.com "
                "(scheme and host, no path)"
            )
        elif origin in out:
            item.problem("listed twice")
        else:
            out.append(origin)
    return tuple(out)


def origin_pattern(text: str) -> str | None:
    """`text` as a normalised origin or `*.` pattern, or None when it is neither."""
    try:
        url = yarl.URL(text.strip())
    except ValueError:
        return None
    host = url.raw_host
    if (
        url.scheme not in ("http", "https")
        or not host
        or url.raw_path not in ("", "/")
        or url.raw_query_string
        or url.raw_fragment
        or url.user is not None
        or text.strip().endswith("/")
    ):
        return None
    labels = host.lower().split(".")
    wild = labels[0] == "*"
    name = labels[1:] if wild else labels
    if not name or any(not label or "*" in label for label in name):
        return None
    if wild and len(name) < 2:
        return None
    port = "" if url.explicit_port is None or url.is_default_port() else f":{url.port}"
    return f"{url.scheme}://{'.'.join(labels)}{port}"


def _level_name(o: Option, ctx: Context) -> str:
    level = o.node.str(o.default).upper() if o.written else o.default
    if level not in o.spec.choices:
        o.node.problem(f"must be one of {', '.join(o.spec.choices)}")
        return typing.cast(str, o.default)
    return typing.cast(str, level)


def _off_or_choice(o: Option, ctx: Context) -> Any:
    # YAML reads a bare `off` as false: the example config quotes it, this forgives it
    return o.hint("off") if o.node.value is False else o.node.enum(o.hint, o.default)


def _data_folder(o: Option, ctx: Context) -> Path:
    ctx.data_dir = resolve(ctx, Path(o.node.str(str(o.default))))
    return ctx.data_dir


def _data_file(o: Option, ctx: Context) -> Path | None:
    """A file under data_dir by default; relative to the config file's folder if written."""
    if not o.written:
        return ctx.data_dir / Path(o.default).name
    raw = o.node.opt_str()
    if raw:
        return resolve(ctx, Path(raw))
    if o.spec.empty:
        o.node.problem(o.spec.empty)
        return ctx.data_dir / Path(o.default).name
    return None


def _log_target(o: Option, ctx: Context) -> str | None:
    target = o.node.opt_str()
    if target and target != "-" and not Path(target).is_absolute():
        target = str(ctx.base / target)
    return target or None


def _config_file(o: Option, ctx: Context) -> Path:
    return Path(ctx.file)


def _decode_key(text: str) -> bytes | None:
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) >= 16 else None


def _env_signing_key(o: Option, ctx: Context) -> Any:
    var = o.node.str()
    value = ctx.env.get(var) if var else None
    if value is None:
        return DROP  # a key not provisioned here: only the dev key file can stand in
    secret = _decode_key(value)
    if secret is None:
        # SECURITY: name the variable, never its value.
        o.node.problem(
            f"environment variable {var} must hold >= 16 bytes, base64url "
            "(make one with `consent-gateway keygen`)"
        )
        return DROP
    return secret


def _env_text(o: Option, ctx: Context) -> str | bytes | None:
    """A secret from the environment variable named: text, or its UTF-8 bytes."""
    optional = optional_of(o.hint) is not None
    var = o.node.opt_str() if optional else o.node.str()
    value = ctx.env.get(var, "") if var else ""
    if optional and not value:
        return None  # unset: the feature is off
    secret = value if optional else value.encode()
    if len(secret) < (o.spec.min or 0):
        # SECURITY: name the variable, never its value.
        o.node.problem(f"environment variable {var} must hold >= {o.spec.min} characters")
        return None if optional else DROP
    return secret


def _env_dsn(o: Option, ctx: Context) -> str | None:
    var = o.node.opt_str() if o.written else o.spec.key_default
    if o.written and not var:
        o.node.problem("must name the environment variable holding the DSN")
    elif ctx.draft.backend == StoreBackend.POSTGRES:
        dsn = ctx.env.get(var) if var else None
        if dsn:
            return dsn
        # SECURITY: name the variable, never a value.
        where = o.node if o.written else ctx.nodes.backend
        where.problem(f"backend postgres needs a DSN in environment variable {var}")
    return None


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


def _dev_signing_key(o: Option, ctx: Context) -> bool:
    """Whether the only signing key is the dev key file's (then it is the section's key)."""
    fleet = _fleet(ctx.get(ServerConfig), ctx.get(StoreConfig), ctx.env)
    refused = False
    if not ctx.draft.keys and not o.node.missing:
        if fleet is not None:
            # SECURITY of the promise, not of a secret: a key per instance makes every
            # visitor's consent vanish on the next instance (and on every redeploy).
            o.node.problem(dev_key_refused(fleet))
            refused = True
        else:
            ctx.draft.keys = (_dev_key(o.node, ctx.data_dir),)
            return True
    if not ctx.draft.keys and not refused and ctx.section is not None:
        ctx.section.problem(
            "no signing key: set the environment variable named by cookie.keys[].secret_env "
            "(see `consent-gateway keygen`), or set cookie.dev_key_file for a single machine"
        )
    return False


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


def _host_additions(o: Option, ctx: Context) -> tuple[VendorHost, ...]:
    """vendor id -> [host or host/path-prefix]; the hosts' grammar and whether another
    rule has them are the rules loader's to judge (`gateway.ruleset.load`)."""
    out: list[VendorHost] = []
    for vendor, hosts in o.node.items():
        if (error := check_vendor_id(vendor)) is not None:
            hosts.problem(f"a rule vendor id {error}")
            continue
        for node in hosts.list():
            host, slash, rest = node.str().partition("/")
            prefix = f"/{rest}".rstrip("/") if slash else None
            if prefix is not None and (not prefix or check_base_path(prefix) is not None):
                node.problem("a path prefix is /segment[/segment...] of letters, digits, . _ ~ -")
                continue
            out.append(VendorHost(vendor, host, prefix, node.src.file, node.line, node.where))
    return tuple(out)


def _vendor_refs(o: Option, ctx: Context) -> tuple[VendorRef, ...]:
    """A list of rule vendor ids; whether a rule has each is the rules loader's to judge."""
    out: list[VendorRef] = []
    for node in o.node.list():
        vendor = node.str()
        if (error := check_vendor_id(vendor)) is not None:
            node.problem(f"a rule vendor id {error}")
        elif any(r.vendor == vendor for r in out):
            node.problem(f"{vendor!r} is listed twice")
        else:
            out.append(VendorRef(vendor, node.src.file, node.line, node.where))
    return tuple(out)


def _vendor_overrides(o: Option, ctx: Context) -> Mapping[str, yarl.URL]:
    overrides: dict[str, yarl.URL] = {}
    for origin, on in o.node.items():
        try:
            u, target = yarl.URL(origin), yarl.URL(on.str())
        except ValueError:
            on.problem("key must be an origin and value an http(s) base URL")
            continue
        if u.scheme not in ("http", "https") or not u.host or u.path not in ("", "/"):
            on.problem("key must be an origin such as https://www.google-analytics.com")
            continue
        if u.scheme != "https" or u.explicit_port or u.user or u.query_string or u.fragment:
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
        overrides[f"{u.scheme}://{u.host.lower()}"] = target
    return MappingProxyType(overrides)


# -- purposes, regimes and signals --------------------------------------------------------


def _purpose_list(o: Option, ctx: Context) -> tuple[str, ...]:
    """consent.purposes; `necessary` is added. The purpose maps are checked against them."""
    purposes: tuple[str, ...] = tuple(o.node.str_list()) if o.written else o.default
    for p in purposes:
        # Purpose names travel in every consent cookie: short, plain and few.
        if (error := check_purpose_name(p)) is not None:
            o.node.problem(error)
    if len(set(purposes)) != len(purposes):
        o.node.problem("a purpose is listed twice")
    if len(purposes) > 32:
        o.node.problem("at most 32 purposes")
    if NECESSARY not in purposes:
        purposes = (NECESSARY, *purposes)
    ctx.purposes = frozenset(purposes)
    return purposes


def _country_codes(o: Option, ctx: Context) -> frozenset[str]:
    codes: set[str] = set()
    for cn in o.node.list():
        if isinstance(cn.value, bool):
            # YAML 1.1 reads an unquoted NO (Norway) as false.
            cn.problem('a country code must be a string: quote it, e.g. "NO"')
        else:
            codes.add(cn.str().upper())
    for c in codes:
        if len(c) != 2 or not c.isalpha():
            o.node.problem(f"{c!r} is not an ISO 3166-1 alpha-2 code")
    return frozenset(codes)


def _purpose(node: Node, ctx: Context) -> str | None:
    v = node.str()
    if v not in ctx.purposes:
        node.problem(f"{v!r} is not one of consent.purposes")
        return None
    return v


def _purposes(nodes: list[Node], ctx: Context) -> tuple[str, ...]:
    return tuple(p for p in (_purpose(i, ctx) for i in nodes) if p)


def _purpose_set(o: Option, ctx: Context) -> frozenset[str]:
    return frozenset(_purposes(o.node.list(), ctx)) if o.written else o.default


def _signal_names(o: Option, ctx: Context) -> frozenset[str]:
    if not o.written:
        return typing.cast(frozenset[str], o.default)
    names = o.node.str_list()
    known = o.spec.choices
    for name in set(names) - set(known):
        o.node.problem(f"unknown signal {name!r}; known: {', '.join(known)}")
    return frozenset(names) & frozenset(known)


def _purpose_map(o: Option, ctx: Context) -> Mapping[str, tuple[Any, ...]]:
    """purpose -> the values it maps to: integers within min/max, or strings of choices."""
    if not o.written:
        return typing.cast(Mapping[str, tuple[Any, ...]], o.default)
    spec = o.spec

    def value(n: Node) -> Any:
        if spec.choices:
            v = n.str()
            if v not in spec.choices:
                n.problem(f"must be one of: {', '.join(spec.choices)}")
                return None
            return v
        return n.int(0, min=spec.min, max=spec.max) or None

    out: dict[str, tuple[Any, ...]] = {}
    for purpose, items in o.node.items():
        if purpose not in ctx.purposes:
            items.problem(f"{purpose!r} is not one of consent.purposes")
            continue
        values = [value(item) for item in items.list()]
        out[purpose] = tuple(v for v in values if v is not None)
    return MappingProxyType(out)


def _cmp_table(o: Option, ctx: Context) -> Mapping[str, CmpTable]:
    """cmp -> category -> purposes, and `vendors`: cmp id -> rule vendor ids; a CMP
    written replaces its default table."""
    cmp = dict(o.default)
    for name, cn in o.node.items():
        if name not in o.spec.choices:
            cn.problem(f"unknown CMP; known: {', '.join(o.spec.choices)}")
            continue
        categories: dict[str, tuple[str, ...]] = {}
        vendors: dict[str, tuple[str, ...]] = {}
        for category, items in cn.items():
            if category == CMP_VENDORS_KEY:
                vendors = {cid: _vendor_ids(ids.list()) for cid, ids in items.items()}
            else:
                categories[category] = _purposes(items.list(), ctx)
        cmp[name] = CmpTable(categories, vendors)
    return MappingProxyType(cmp)


#: the key of a CMP's table that maps its service / vendor ids, not a category
CMP_VENDORS_KEY = "vendors"


def _vendor_ids(nodes: list[Node]) -> tuple[str, ...]:
    out = []
    for node in nodes:
        v = node.str()
        if (error := check_vendor_id(v)) is not None:
            node.problem(f"a rule vendor id {error}")
        else:
            out.append(v)
    return tuple(out)


#: every converter a field may name (`convert=`), by name
CONVERTERS: Mapping[str, Converter] = MappingProxyType(
    {
        "networks": _networks,
        "origins": _origins,
        "level_name": _level_name,
        "off_or_choice": _off_or_choice,
        "data_folder": _data_folder,
        "data_file": _data_file,
        "log_target": _log_target,
        "config_file": _config_file,
        "env_signing_key": _env_signing_key,
        "env_text": _env_text,
        "env_dsn": _env_dsn,
        "dev_signing_key": _dev_signing_key,
        "vendor_overrides": _vendor_overrides,
        "host_additions": _host_additions,
        "vendor_refs": _vendor_refs,
        "purpose_list": _purpose_list,
        "country_codes": _country_codes,
        "purpose_set": _purpose_set,
        "signal_names": _signal_names,
        "purpose_map": _purpose_map,
        "cmp_table": _cmp_table,
    }
)
