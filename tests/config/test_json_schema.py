"""gateway.config.json_schema: the config's JSON Schema, walked from the config schema."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.config import DEFAULT_PURPOSES, GatewayConfig, parse_config
from gateway.config.convert import CONVERTERS
from gateway.config.json_schema import CHECK_SCHEMAS, CONVERTER_SCHEMAS, config_schema
from gateway.config.spec import Spec, key_of, opt, spec_of
from gateway.errors import ConfigError
from gateway.ruleset.load import load_rules
from tests.conftest import CONFIG_ENV, CONFIG_KEYS
from tests.grammar_harness import assert_agrees

SCHEMA = config_schema()


def _options(cls: type, path: str = "") -> Iterator[tuple[str, type, dataclasses.Field[Any]]]:
    """Every option of the config (key path, its section, its field), sections included."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = key_of(f)
        if key is None:
            continue
        yield f"{path}{key}", cls, f
        hint = hints[f.name]
        args = typing.get_args(hint)
        record = args[0] if typing.get_origin(hint) is tuple and args else None
        if dataclasses.is_dataclass(hint):
            yield from _options(typing.cast(type, hint), f"{path}{key}.")
        elif record is not None and dataclasses.is_dataclass(record):
            yield from _options(typing.cast(type, record), f"{path}{key}[].")


OPTIONS = list(_options(GatewayConfig))


def _property(path: str) -> dict[str, Any]:
    """The schema of the option at a key path, `$ref`s followed."""
    node: dict[str, Any] = SCHEMA
    for part in path.split("."):
        while "$ref" in node:
            node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
        record = part.endswith("[]")
        node = node["properties"][part.removesuffix("[]")]
        if record:
            node = node.get("items") or node["additionalProperties"]
    return node


def test_every_converter_has_its_schema_fragment() -> None:
    # a new converter (so a new kind of option) cannot be added without what the file may
    # hold for it
    assert sorted(CONVERTER_SCHEMAS) == sorted(CONVERTERS)


def _checks() -> dict[str, Callable[[str], str | None]]:
    checks: dict[str, Callable[[str], str | None]] = {}
    for _, _, f in OPTIONS:
        if (check := spec_of(f).check) is not None:
            checks[check.__name__] = check
    return checks


def test_every_check_has_its_grammar() -> None:
    assert sorted(CHECK_SCHEMAS) == sorted(_checks())


@pytest.mark.parametrize("name", sorted(_checks()))
def test_each_check_grammar_agrees_with_the_check(name: str) -> None:
    grammar = dataclasses.replace(CHECK_SCHEMAS[name], check=_checks()[name])
    assert_agrees(grammar, ["", "/cg", "/cg/", "cg_consent", "k1", "X-Consent-Subject", "a b"])


@pytest.mark.parametrize(("path", "cls", "f"), OPTIONS, ids=[o[0] for o in OPTIONS])
def test_every_option_is_in_the_schema_with_its_help(
    path: str, cls: type, f: dataclasses.Field[Any]
) -> None:
    prop = _property(path)
    assert prop["description"].startswith(spec_of(f).help)
    if "default" in prop:
        # a default the schema shows is one the schema accepts
        jsonschema.Draft202012Validator({**prop, "$defs": SCHEMA["$defs"]}).validate(
            prop["default"]
        )


def test_sections_refuse_unknown_keys_and_name_required_ones() -> None:
    assert SCHEMA["additionalProperties"] is False
    for name, section in SCHEMA["$defs"].items():
        assert section["additionalProperties"] is False, name
    assert SCHEMA["$defs"]["CookieKey"]["required"] == ["id", "secret_env"]
    assert SCHEMA["$defs"]["RegimeConfig"]["required"] == ["mode"]
    assert "name" not in SCHEMA["$defs"]["RegimeConfig"]["properties"]  # the record's key


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("server.port", {"type": "integer", "minimum": 0, "maximum": 65535, "default": 8080}),
        ("server.admin_port", {"type": ["integer", "null"], "default": 9091}),
        ("server.read_timeout", {"exclusiveMinimum": 0, "default": 15.0}),
        ("cookie.same_site", {"enum": ["Strict", "Lax", "None"], "default": "Lax"}),
        ("store.postgres_dsn_env", {"default": "CONSENT_GATEWAY_PG_DSN"}),
        ("rules.paths", {"minItems": 1, "default": ["rules"]}),
        ("server.log_level", {"examples": ["DEBUG", "INFO", "WARNING", "ERROR"]}),
        ("consent.regimes", {"type": "object", "minProperties": 1}),
        ("webhooks.timeout", {"maximum": 60}),
    ],
)
def test_options_say_their_bounds_choices_and_defaults(path: str, expected: dict[str, Any]) -> None:
    prop = _property(path)
    assert {k: prop.get(k) for k in expected} == expected


def test_a_secret_option_shows_no_default() -> None:
    for path in ("admin.token_env", "cookie.keys[].secret_env", "cookie.dev_key_file"):
        assert "default" not in _property(path), path


def test_an_option_of_a_type_without_a_schema_is_refused() -> None:
    from gateway.config import json_schema

    @dataclasses.dataclass(frozen=True)
    class Odd:
        value: complex = opt(1j, help="a complex number")

    with pytest.raises(TypeError, match="no JSON Schema for"):
        json_schema._section(Odd, {})
    assert isinstance(spec_of(dataclasses.fields(Odd)[0]), Spec)


RULE = """\
vendor: test-vendor
name: Test
hosts: [a.example.net]
purposes: [analytics]
endpoints: [{id: collect, match: {path: /collect}, kind: beacon}]
examples: [{url: "https://a.example.net/collect", expect: drop}]
"""


@pytest.mark.parametrize(
    ("entry", "ok"),
    [
        ("stats.example.com", True),
        ("*.example.com", True),
        ("www.example.com/metrics", True),
        ("www.example.com/metrics/v1/", True),
        ("10.0.0.1", False),
        ("Stats.example.com", False),
        ("*.example.com/metrics", False),
        ("www.example.com/", False),
        ("www.example.com//m", False),
        ("www.example.com/a b", False),
        ("localhost", False),
    ],
)
def test_a_vendor_host_is_refused_by_the_schema_as_by_the_loaders(
    tmp_path: Path, entry: str, ok: bool
) -> None:
    # the config reads the entry, the rules loader judges its host: the schema does both
    (tmp_path / "test.yaml").write_text(RULE, encoding="utf-8")
    text = CONFIG_KEYS + f"rules:\n  vendor_hosts:\n    test-vendor: [{entry!r}]\n"
    validator = jsonschema.Draft202012Validator(SCHEMA)
    schema_ok = not list(validator.iter_errors(yaml.safe_load(text)))
    try:
        config = parse_config(text, "gw.yaml", env=CONFIG_ENV)
        load_rules([tmp_path], frozenset(DEFAULT_PURPOSES), config.rules.vendor_hosts)
        loaders_ok = True
    except ConfigError:  # RuleError too
        loaders_ok = False
    assert (schema_ok, loaders_ok) == (ok, ok)


@pytest.mark.parametrize(
    ("entries", "ok"),
    [
        ("[]", True),
        ("[test-vendor]", True),
        ("[Test-Vendor]", False),
        ("[test-vendor, test-vendor]", False),
        ("test-vendor", False),
    ],
)
def test_router_vendors_are_refused_by_the_schema_as_by_the_config(entries: str, ok: bool) -> None:
    # whether a rule has the vendor is the rules loader's (tests/ruleset/test_load.py)
    text = CONFIG_KEYS + f"rules:\n  router_vendors: {entries}\n"
    validator = jsonschema.Draft202012Validator(SCHEMA)
    schema_ok = not list(validator.iter_errors(yaml.safe_load(text)))
    try:
        parse_config(text, "gw.yaml", env=CONFIG_ENV)
        config_ok = True
    except ConfigError:
        config_ok = False
    assert (schema_ok, config_ok) == (ok, ok)
