"""gateway.config.schema: frozen sections, secrets never shown, every option documented."""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest
import yaml

from gateway.config import (
    CookieConfig,
    CookieKey,
    GatewayConfig,
    SameSite,
    StoreConfig,
    UpstreamConfig,
    WebhookEndpoint,
    WebhooksConfig,
    parse_config,
)
from gateway.config.spec import key_of, spec_of
from tests.conftest import CONFIG_ENV as ENV
from tests.conftest import CONFIG_KEYS as KEYS
from tests.conftest import ROOT


def test_config_is_frozen() -> None:
    cfg = parse_config(KEYS, env=ENV)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.port = 1  # type: ignore[misc]


DSN = "postgresql://gateway:hunter2-dsn-password@db.internal:5432/consent"
HOOK_SECRET = "whsec-0123456789abcdef"


def test_store_dsn_and_webhook_secrets_never_shown() -> None:
    text = KEYS + "webhooks:\n  endpoints: [{name: crm, url: 'https://crm.example.com/h', "
    text += "secret_env: CG_HOOK}]\nstore:\n  backend: postgres\n"
    cfg = parse_config(text, env={**ENV, "CG_HOOK": HOOK_SECRET, "CONSENT_GATEWAY_PG_DSN": DSN})
    assert cfg.store.postgres_dsn == DSN
    assert cfg.webhooks.endpoints[0].secret == HOOK_SECRET.encode()
    for shown in (repr(cfg), str(cfg), repr(cfg.store), repr(cfg.webhooks)):
        assert "hunter2" not in shown and HOOK_SECRET not in shown


# -- every option declared once, documented in config.example.yaml -----------------------------

EXAMPLE = ROOT / "config.example.yaml"


def _uncommented(text: str) -> str:
    """The example with its commented-out example values put in place.

    The example shows an option whose default is empty (`key: []` or `key: {}`) with a
    commented-out value right below it: comment lines whose `#` sits at the key's column
    and whose text is indented further than prose (`#` then two spaces or more). Those
    lines, with the `#` taken out, become the key's value; prose comments stay comments.
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        key = re.fullmatch(r"( *)([\w.-]+): (\[\]|\{\})(\s*#.*)?", line)
        block: list[str] = []
        if key:
            col = len(key.group(1))
            j = i + 1
            while j < len(lines) and re.match(rf" {{{col}}}#  ", lines[j]):
                block.append(lines[j][:col] + " " + lines[j][col + 1 :])
                j += 1
        if block:
            out += [f"{key.group(1)}{key.group(2)}:", *block] if key else []
            i += 1 + len(block)
        else:
            out.append(line)
            i += 1
    return "\n".join(out) + "\n"


def _walk(cls: type, doc: object, path: str, missing: list[str], unknown: list[str]) -> None:
    """Options of `cls` not in `doc`, and keys of `doc` that are no option."""
    if not isinstance(doc, dict):
        missing.append(f"{path} (not a mapping)")
        return
    hints = typing.get_type_hints(cls)
    keys = {key_of(f): f for f in dataclasses.fields(cls) if key_of(f) is not None}
    unknown += [f"{path}{k}" for k in doc if k not in keys]
    for key, f in keys.items():
        if key not in doc:
            missing.append(f"{path}{key}")
            continue
        hint, value = hints[f.name], doc[key]
        if dataclasses.is_dataclass(hint):
            _walk(typing.cast(type, hint), value, f"{path}{key}.", missing, unknown)
        elif typing.get_origin(hint) is tuple and dataclasses.is_dataclass(
            typing.get_args(hint)[0]
        ):
            record = typing.get_args(hint)[0]
            items = list(value.values()) if isinstance(value, dict) else list(value or [])
            per_item: list[set[str]] = []
            for item in items:
                gone: list[str] = []
                _walk(record, item, f"{path}{key}[].", gone, unknown)
                per_item.append(set(gone))
            if not items:
                missing.append(f"{path}{key}[] (no example record)")
            else:
                missing += sorted(set.intersection(*per_item))


def test_the_example_documents_every_option_and_only_options() -> None:
    doc = yaml.safe_load(_uncommented(EXAMPLE.read_text(encoding="utf-8")))
    missing: list[str] = []
    unknown: list[str] = []
    _walk(GatewayConfig, doc, "", missing, unknown)
    assert missing == []
    assert unknown == []


def test_commented_out_values_count_and_prose_does_not() -> None:
    text = "a:\n  xs: []\n  #  - name: n\n  #    # why\n  #    url: u\n  # Prose below.\n"
    text += "  ys: []\n  # Prose: not a value.\n  zs: {}\n  #   k: v\n"
    assert yaml.safe_load(_uncommented(text)) == {
        "a": {"xs": [{"name": "n", "url": "u"}], "ys": [], "zs": {"k": "v"}}
    }


def test_the_check_sees_an_undocumented_option() -> None:
    # control: the example without one option, and with one key that is none
    text = EXAMPLE.read_text(encoding="utf-8").replace("  batch_size: 500\n", "  batches: 5\n")
    missing: list[str] = []
    unknown: list[str] = []
    _walk(GatewayConfig, yaml.safe_load(_uncommented(text)), "", missing, unknown)
    assert (missing, unknown) == (["decision_log.batch_size"], ["decision_log.batches"])


def _sections(cls: type = GatewayConfig) -> list[type]:
    out = [cls]
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        args = typing.get_args(hint)
        if dataclasses.is_dataclass(hint):
            out += _sections(typing.cast(type, hint))
        elif typing.get_origin(hint) is tuple and args and dataclasses.is_dataclass(args[0]):
            out += _sections(typing.cast(type, args[0]))
    return out


OPTIONS = [(cls, f) for cls in _sections() for f in dataclasses.fields(cls)]


@pytest.mark.parametrize(("cls", "f"), OPTIONS, ids=[f"{c.__name__}.{f.name}" for c, f in OPTIONS])
def test_every_option_has_help_and_a_default_within_its_bounds(
    cls: type, f: dataclasses.Field[object]
) -> None:
    spec = spec_of(f)
    assert spec.help.strip(), "every option says what it is for"
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if isinstance(default, int) and not isinstance(default, bool):
        assert spec.min is None or default >= spec.min
        assert spec.max is None or default <= spec.max
    if isinstance(default, float) and spec.gt is not None:
        assert default > spec.gt and (spec.max is None or default <= spec.max)
    if isinstance(default, str) and spec.choices:
        assert default in spec.choices


# -- checks of one value and rules between options ---------------------------------------------


def _field(cls: type, name: str) -> dataclasses.Field[object]:
    [found] = [f for f in dataclasses.fields(cls) if f.name == name]
    return found


@pytest.mark.parametrize(
    ("section", "option", "problems"),
    [
        (UpstreamConfig(connect_timeout=5, total_timeout=1), "connect_timeout", 1),
        (UpstreamConfig(connect_timeout=1, total_timeout=1), "connect_timeout", 0),
        (WebhooksConfig(backoff_initial=0), "backoff_max", 1),
        (WebhooksConfig(backoff_initial=10, backoff_max=5), "backoff_max", 1),
        (WebhooksConfig(backoff_initial=5, backoff_max=5), "backoff_max", 0),
        (CookieConfig(same_site=SameSite.NONE, secure=False), "same_site", 1),
        (CookieConfig(same_site=SameSite.NONE), "same_site", 0),
    ],
)
def test_rules_between_options(section: object, option: str, problems: int) -> None:
    rule = spec_of(_field(type(section), option)).rule
    assert rule is not None
    assert len(list(rule(section))) == problems


@pytest.mark.parametrize(
    ("cls", "option", "value", "expected"),
    [
        (CookieConfig, "name", "cg_consent", None),
        (CookieConfig, "name", "cg consent", "cookie name must be letters, digits, _ or -"),
        (CookieConfig, "name", "", "cookie name must be letters, digits, _ or -"),
        (StoreConfig, "subject_header", "X-Consent-Subject", None),
        (StoreConfig, "subject_header", "X Subject", "must be an HTTP header name"),
        (CookieKey, "id", "k1", None),
        (CookieKey, "id", "k.1", "key id must be 1-16 ASCII letters or digits"),
        (CookieKey, "id", "k" * 17, "key id must be 1-16 ASCII letters or digits"),
        (WebhookEndpoint, "name", "cdp.eu-1", None),
        (WebhookEndpoint, "name", "", "must be 1-64 letters"),
    ],
)
def test_checks_of_one_value(cls: type, option: str, value: str, expected: str | None) -> None:
    check = spec_of(_field(cls, option)).check
    assert check is not None
    found = check(value)
    assert found == expected if expected is None else (found or "").startswith(expected)


def test_the_whole_config_needs_a_key_and_its_default_regime() -> None:
    with pytest.raises(ValueError, match="at least one signing key"):
        GatewayConfig()
    key = CookieKey("k1", b"k" * 32)
    GatewayConfig(cookie=CookieConfig(keys=(key,)))  # the defaults are a valid config
