"""The config file's JSON Schema (`schemas/config.schema.json`), made from the config schema.

`config_schema` walks the dataclasses of `gateway.config.schema` as `gateway.config.load`
walks them to read a file: each option's key, whether it is required, its type, default,
bounds (`min`/`max`, `gt`), choices and help (its `description`), each section a mapping
that refuses unknown keys. What an option's type cannot say comes from two registries,
both keyed by the name its `opt(...)` gives:

- `CONVERTER_SCHEMAS`: for each named converter (`convert=`, `gateway.config.convert`),
  the fragment saying what the file may hold there;
- `CHECK_SCHEMAS`: for each check of one value (`check=`), its `Grammar`.

The walk refuses an option neither its type nor a registry explains, and tests hold both
registries to the names the schema uses, so an option cannot be added without what its
schema says. Rules between options (`rule=`) are the loader's alone.

Pure: builds values; `gateway.schemas` writes them.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import ipaddress
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yarl

from gateway.config.convert import CMP_VENDORS_KEY, optional_of
from gateway.config.schema import GatewayConfig
from gateway.config.spec import Spec, key_of, spec_of
from gateway.grammar import (
    DNS_NAME_PATTERN,
    PURPOSE,
    VENDOR_ID,
    Grammar,
    Json,
    ci,
    described,
    one_or_list,
)
from gateway.yamlsrc import DURATION_PATTERN

__all__ = ["CHECK_SCHEMAS", "CONVERTER_SCHEMAS", "Fragment", "config_schema"]

#: a converter's fragment, from the option's spec and type
Fragment = Callable[[Spec, Any], Json]

_STRING: Json = {"type": "string"}


def _nullable(schema: Json) -> Json:
    """`schema`, or null."""
    kind = schema.get("type")
    if isinstance(kind, str | list) and "anyOf" not in schema and "$ref" not in schema:
        out = {**schema, "type": [*([kind] if isinstance(kind, str) else kind), "null"]}
        if "enum" in schema:
            out["enum"] = [*schema["enum"], None]
        return out
    return {"anyOf": [schema, {"type": "null"}]}


def _optional(hint: Any, schema: Json) -> Json:
    return _nullable(schema) if optional_of(hint) is not None else schema


def _env(spec: Spec, hint: Any) -> Json:
    return _optional(hint, dict(_STRING))


def _network_list(spec: Spec, hint: Any) -> Json:
    network = {"type": "string", "pattern": r"^[0-9A-Fa-f:.]+(?:/[0-9]{1,3})?$"}
    return {"type": "array", "items": network}


def _origin_list(spec: Spec, hint: Any) -> Json:
    origin = {"type": "string", "pattern": rf"^{ci('http')}[sS]?://[^/?#@\s]+$"}
    return {"type": "array", "items": origin, "uniqueItems": True}


def _case_blind_choice(spec: Spec, hint: Any) -> Json:
    pattern = "|".join(ci(c) for c in spec.choices)
    return {"type": "string", "pattern": f"^(?:{pattern})$", "examples": list(spec.choices)}


def _off_or_choice(spec: Spec, hint: Any) -> Json:
    # a bare `off` is YAML's false: the loader forgives it
    return {"enum": [*(m.value for m in hint), False]}


def _file(spec: Spec, hint: Any) -> Json:
    file: Json = {"type": "string", "minLength": 1} if spec.empty else dict(_STRING)
    return _optional(hint, file)


def _not_in_the_file(spec: Spec, hint: Any) -> Json:
    return {"not": {}}


def _vendor_overrides(spec: Spec, hint: Any) -> Json:
    return {
        "type": "object",
        "propertyNames": {"pattern": r"^https://[^/?#@:\s]+$"},
        "additionalProperties": {"type": "string", "pattern": rf"^{ci('http')}[sS]?://"},
    }


def _host_additions(spec: Spec, hint: Any) -> Json:
    # a host a rule may hold (`*.` only without a path prefix), and a prefix to mount under
    dns, segment = DNS_NAME_PATTERN, "/[A-Za-z0-9._~-]+"
    host = {"type": "string", "pattern": rf"^(?:\*\.{dns}|{dns}(?:(?:{segment})+/*)?)$"}
    return {
        "type": "object",
        "propertyNames": {"pattern": VENDOR_ID.pattern, "maxLength": VENDOR_ID.max_length},
        "additionalProperties": {"type": "array", "items": host},
    }


def _vendor_refs(spec: Spec, hint: Any) -> Json:
    return {"type": "array", "items": VENDOR_ID.schema(), "uniqueItems": True}


def _purpose_list(spec: Spec, hint: Any) -> Json:
    out = one_or_list(PURPOSE.schema(), unique=True)
    out["maxItems"] = 32
    return out


def _country_codes(spec: Spec, hint: Any) -> Json:
    return {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z]{2}$"}}


def _purpose_array(spec: Spec, hint: Any) -> Json:
    return {"type": "array", "items": PURPOSE.schema()}


def _signal_names(spec: Spec, hint: Any) -> Json:
    return one_or_list({"type": "string", "enum": list(spec.choices)})


def _purpose_map(spec: Spec, hint: Any) -> Json:
    value: Json = (
        {"type": "string", "enum": list(spec.choices)}
        if spec.choices
        else {"type": "integer", "minimum": spec.min, "maximum": spec.max}
    )
    return {
        "type": "object",
        "propertyNames": {"pattern": PURPOSE.pattern},
        "additionalProperties": {"type": "array", "items": value},
    }


def _cmp_table(spec: Spec, hint: Any) -> Json:
    vendors = {"type": "array", "items": VENDOR_ID.schema()}
    table = {
        "type": "object",
        "properties": {
            CMP_VENDORS_KEY: {
                "type": "object",
                "description": "the CMP's service or vendor ids -> the rule vendors each "
                "stands for",
                "additionalProperties": vendors,
            }
        },
        "additionalProperties": _purpose_array(spec, hint),
    }
    return {
        "type": "object",
        "propertyNames": {"enum": list(spec.choices)},
        "additionalProperties": table,
    }


#: what a file may hold for an option read by each named converter, by its name
CONVERTER_SCHEMAS: Mapping[str, Fragment] = MappingProxyType(
    {
        "networks": _network_list,
        "origins": _origin_list,
        "level_name": _case_blind_choice,
        "off_or_choice": _off_or_choice,
        "data_folder": _file,
        "data_file": _file,
        "log_target": _file,
        "config_file": _not_in_the_file,
        "env_signing_key": _env,
        "env_text": _env,
        "env_dsn": _env,
        "dev_signing_key": lambda spec, hint: _nullable(_STRING),
        "vendor_overrides": _vendor_overrides,
        "host_additions": _host_additions,
        "vendor_refs": _vendor_refs,
        "purpose_list": _purpose_list,
        "country_codes": _country_codes,
        "purpose_set": _purpose_array,
        "signal_names": _signal_names,
        "purpose_map": _purpose_map,
        "cmp_table": _cmp_table,
    }
)

#: the grammar of each check of one value (`check=`), by the check's name
CHECK_SCHEMAS: Mapping[str, Grammar] = MappingProxyType(
    {
        "check_base_path": Grammar(
            "empty, or a path such as /cg (no trailing slash)", r"^(?:/[A-Za-z0-9._~-]+)*$"
        ),
        "_cookie_name": Grammar("letters, digits, _ or -", r"^[A-Za-z0-9_-]+$"),
        "_header_name": Grammar(
            "an HTTP header name, e.g. X-Consent-Subject", r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$"
        ),
        "_key_id": Grammar("1-16 ASCII letters or digits", r"^[A-Za-z0-9]{0,16}$"),
        "_endpoint_name": Grammar(
            "1-64 letters, digits, '-', '_' or '.'", r"^[A-Za-z0-9_.-]{1,64}$"
        ),
    }
)


# ---------------------------------------------------------------------------
# The walk


def config_schema() -> Json:
    """The body of `schemas/config.schema.json`: `GatewayConfig` and every section."""
    defs: Json = {}
    root = _section(GatewayConfig, defs)
    return {**root, "$defs": dict(sorted(defs.items()))}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _required(f: dataclasses.Field[Any]) -> bool:
    no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    return no_default and key_of(f) is not None


def _section(cls: type, defs: Json) -> Json:
    properties: Json = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        key = key_of(f)
        if key is None:
            continue
        properties[key] = _option(cls, f, defs)
        if _required(f):
            required.append(key)
    out: Json = {}
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
        out["description"] = " ".join(cls.__doc__.split("\n\n")[0].split())
    out |= {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _ref(cls: type, defs: Json) -> Json:
    if cls.__name__ not in defs:
        defs[cls.__name__] = {}  # placeholder while its own fields are walked
        defs[cls.__name__] = _section(cls, defs)
    return {"$ref": f"#/$defs/{cls.__name__}"}


def _option(cls: type, f: dataclasses.Field[Any], defs: Json) -> Json:
    spec = spec_of(f)
    hint = _hints(cls)[f.name]
    if spec.convert is not None:
        out = dict(CONVERTER_SCHEMAS[spec.convert](spec, hint))
    else:
        out = _typed(hint, spec, defs)
    description = spec.help
    if _is_duration(hint):
        description += " (a number of seconds, or 500ms, 30s, 15m, 1h, 180d, 2w)"
    out = described(description, out)
    default = _default(f, spec)
    if not _required(f) and default is not _NONE and _fits(default, out):
        out["default"] = default
    return out


def _is_duration(hint: Any) -> bool:
    return hint is float or optional_of(hint) is float


def _typed(hint: Any, spec: Spec, defs: Json) -> Json:
    """The schema of an option by its type: what `gateway.config.load._typed` reads."""
    inner = optional_of(hint)
    if inner is not None:
        return _nullable(_typed(inner, spec, defs))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _ref(typing.cast(type, hint), defs)
    if origin is tuple and dataclasses.is_dataclass(args[0]):
        record = typing.cast(type, args[0])
        if any(spec_of(f).from_key for f in dataclasses.fields(record)):
            out: Json = {"type": "object", "additionalProperties": _ref(record, defs)}
            if spec.empty:
                out["minProperties"] = 1
            return out
        out = {"type": "array", "items": _ref(record, defs)}
        if spec.empty:
            out["minItems"] = 1
        return out
    if origin in (tuple, frozenset):
        return one_or_list(dict(_STRING), at_least_one=bool(spec.empty))
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        out = {"type": "integer"}
        if spec.min is not None:
            out["minimum"] = spec.min
        if spec.max is not None:
            out["maximum"] = spec.max
        return out
    if hint is float:
        out = {"type": ["number", "string"], "pattern": DURATION_PATTERN}
        out |= {"minimum": 0} if spec.gt is None else {"exclusiveMinimum": spec.gt}
        if spec.max is not None:
            out["maximum"] = spec.max
        return out
    if hint is str:
        if spec.choices:
            return {"type": "string", "enum": list(spec.choices)}
        if spec.check is not None:
            return CHECK_SCHEMAS[spec.check.__name__].schema()
        return dict(_STRING)
    if hint is Path:
        return dict(_STRING)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"type": "string", "enum": [m.value for m in hint]}
    if hint is yarl.URL:
        return {"type": "string", "pattern": rf"^{ci('http')}[sS]?://[^/?#\s]+"}
    raise TypeError(f"{spec.help!r}: no JSON Schema for {hint} (name a converter?)")


# -- defaults ---------------------------------------------------------------------------

_NONE: Any = object()


def _default(f: dataclasses.Field[Any], spec: Spec) -> Any:
    """The option's default as the file writes it, or `_NONE` where it has no plain one."""
    if spec.key_default is not None:
        return spec.key_default
    if spec.key:  # the key names where the value comes from, not the value
        return _NONE
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    elif f.default is not dataclasses.MISSING:
        value = f.default
    else:
        return _NONE
    return _json(value)


def _json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return _json(value.value)
    if isinstance(value, Path | ipaddress.IPv4Network | ipaddress.IPv6Network | yarl.URL):
        return str(value)
    if isinstance(value, frozenset):
        items = [_json(v) for v in value]
        return _NONE if _NONE in items else sorted(items)
    if isinstance(value, tuple | list):
        items = [_json(v) for v in value]
        return _NONE if _NONE in items else items
    if isinstance(value, Mapping):
        pairs = {str(k): _json(v) for k, v in value.items()}
        return _NONE if _NONE in pairs.values() else pairs
    return _NONE  # a section, a record


def _fits(value: Any, schema: Json) -> bool:
    """Whether `value`'s JSON type is one `schema` names (a default never contradicts it)."""
    named: set[str] = set()
    for part in [schema, *schema.get("anyOf", [])]:
        kind = part.get("type")
        named |= {kind} if isinstance(kind, str) else set(kind or ())
        if "enum" in part and value in part["enum"]:
            return True
    kinds = {
        type(None): "null",
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }
    kind = kinds.get(type(value))
    return kind in named or (kind == "integer" and "number" in named)
