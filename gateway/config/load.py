"""Read a config file into a `GatewayConfig`: one walk over the schema's fields.

`load_config(path)` returns a `GatewayConfig` or raises `ConfigError` listing every
problem (`file:line: key.path: message`). Unknown keys are errors. Secrets (cookie
signing keys, the admin token, webhook secrets, the PostgreSQL DSN) are never in the
file: the file names an environment variable and the value is read at load time.

The walk (`_section`) reads each dataclass of `gateway.config.schema` from its
mapping: the keys it accepts, which are required, and how each value converts all
come from the fields (their type, default and `Spec`). Options whose reading is
more than a type (values from the environment or key files, paths under data_dir,
networks, purpose maps, signal tables) name a converter of `gateway.config.convert`.
No key is written here: tests/config/test_load.py holds this module to that.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import yarl

from gateway.config.convert import CONVERTERS, DROP, Context, Option, http_url, optional_of, resolve
from gateway.config.schema import GatewayConfig
from gateway.config.spec import key_of, spec_of
from gateway.errors import ConfigError, Problem
from gateway.yamlsrc import Node, YamlSource, read_source

__all__ = ["load_config", "parse_config"]

T = TypeVar("T")


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
    base = Path(file).resolve().parent if not file.startswith("<") else Path.cwd()
    ctx = Context(os.environ if env is None else env, file, base)
    cfg = _section(GatewayConfig, src.root(), ctx)
    if src.problems or cfg is None:
        raise ConfigError(src.problems)
    return cfg


# ---------------------------------------------------------------------------
# The walk


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _required(f: dataclasses.Field[Any]) -> bool:
    no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    return no_default and key_of(f) is not None


def _section(cls: type[T], node: Node, ctx: Context, item_key: str | None = None) -> T | None:
    """Read the mapping at `node` into `cls`, reporting every problem on the way.

    None: a record (a list item) left out, for a missing required key or a value that
    drops it; or a problem that leaves no valid config.
    """
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    keys = [(f, key_of(f)) for f in fields]
    m = node.mapping([k for _, k in keys if k], required=[k for f, k in keys if k and _required(f)])
    outer = (ctx.section, ctx.draft, ctx.nodes)
    ctx.section, ctx.draft, ctx.nodes = node, SimpleNamespace(), SimpleNamespace()
    problems = node.src.problems
    dropped = False
    try:
        for f, key in sorted(keys, key=lambda fk: spec_of(fk[0]).stage):
            spec = spec_of(f)
            if spec.from_key:
                setattr(ctx.draft, f.name, item_key)
                continue
            child = m[key] if key else node
            setattr(ctx.nodes, f.name, child)
            default = _default(f)
            if _required(f) and child.missing:
                # reported by `mapping`; without a fallback, the rest of the record is not read
                if spec.fallback is None:
                    dropped = True
                    break
                default = spec.fallback
            before = len(problems)
            hint = _hints(typing.cast(type, cls))[f.name]
            option = Option(child, spec, default, key in m, hint)
            value = (CONVERTERS[spec.convert] if spec.convert else _typed)(option, ctx)
            if spec.unique and len(problems) == before:
                seen = ctx.seen.setdefault(f.name, set())
                if value in seen:
                    child.problem(spec.unique.format(value))
                seen.add(value)
            if value is DROP or (spec.gate and len(problems) > before):
                dropped = True
                if spec.gate:
                    break
                continue
            setattr(ctx.draft, f.name, value)
        if dropped:
            return None
        try:
            built = cls(**vars(ctx.draft))
        except ValueError as e:
            if not problems:
                problems.append(Problem(node.src.file, None, "", str(e)))
            return None
        ctx.done[cls] = built
        for f, key in keys:
            rule = spec_of(f).rule
            for message in rule(built) if rule else ():
                where = m[key] if key and (key in m or not spec_of(f).section_where) else node
                where.problem(message)
        return built
    finally:
        ctx.section, ctx.draft, ctx.nodes = outer


def _typed(o: Option, ctx: Context) -> Any:
    """The value of `o` by its type: the conversion of every option without a converter."""
    node, spec, hint = o.node, o.spec, o.hint
    inner = optional_of(hint)
    if inner is not None:
        if node.value is None:
            return None if o.written else o.default
        if inner is str:
            text = node.str()
            if spec.check and (message := spec.check(text)):
                node.problem(message)
            return text or None
        return _typed(dataclasses.replace(o, hint=inner), ctx)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _section(typing.cast(type, hint), node, ctx)
    if origin is tuple and dataclasses.is_dataclass(args[0]):
        return _records(o, typing.cast(type, args[0]), ctx)
    if origin in (tuple, frozenset):
        items = node.str_list() if o.written else [str(d) for d in o.default]
        if not items and spec.empty and o.written:
            node.problem(spec.empty)
            return o.default
        if args[0] is Path:
            return tuple(resolve(ctx, Path(s)) for s in items)
        return origin(items)
    if hint is bool:
        return node.bool(o.default)
    if hint is int:
        return node.int(o.default, min=spec.min, max=spec.max)
    if hint is float:
        return _duration(o)
    if hint is str:
        text = node.str(o.default or "")
        if spec.choices and text not in spec.choices:
            node.problem(f"must be one of: {', '.join(spec.choices)}")
            return o.default
        if spec.check and (message := spec.check(text)):
            node.problem(message)
        return text
    if hint is Path:
        return resolve(ctx, Path(node.str(str(o.default))))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return node.enum(hint, o.default)
    if hint is yarl.URL:
        return http_url(node)
    raise TypeError(f"{node.where}: no conversion for {hint}")


def _records(o: Option, cls: type, ctx: Context) -> Any:
    """A list of records, or a mapping of them where one field is the item's key."""
    if not o.written:
        return o.default
    keyed = any(spec_of(f).from_key for f in dataclasses.fields(cls))
    items = o.node.items() if keyed else [(None, n) for n in o.node.list()]
    outer, ctx.seen = ctx.seen, {}
    try:
        out = [r for k, n in items if (r := _section(cls, n, ctx, k)) is not None]
    finally:
        ctx.seen = outer
    if not out and o.spec.empty:
        o.node.problem(o.spec.empty)
        return o.default
    return tuple(out)


def _duration(o: Option) -> float:
    """Seconds, from a number or a string such as `30s`, `15m`, `180d`, within the bounds."""
    value = o.node.duration(o.default)
    gt, most = o.spec.gt, o.spec.max
    if (gt is not None and value <= gt) or (most is not None and value > most):
        bounds = ([] if gt is None else [f"more than {gt:g}"]) + (
            [] if most is None else [f"at most {most}s"]
        )
        o.node.problem("must be " + " and ".join(bounds))
        return typing.cast(float, o.default)
    return value
