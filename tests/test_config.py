"""gateway.config: one frozen, validated object; every problem named with file, line, path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yarl

from gateway.config import (
    DEFAULT_PURPOSES,
    ConsentConfig,
    GatewayConfig,
    load_config,
    parse_config,
)
from gateway.errors import ConfigError
from tests.conftest import ROOT, TEST_KEY

ENV = {"CONSENT_GATEWAY_COOKIE_KEY": TEST_KEY, "CG_TEST_KEY": TEST_KEY}
KEYS = "cookie:\n  keys: [{id: k1, secret_env: CG_TEST_KEY}]\n"
TWO_K1 = "cookie:\n  keys: [{id: k1, secret_env: CG_TEST_KEY}, {id: k1, secret_env: CG_TEST_KEY}]\n"


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "gw.yaml", env=ENV if env is None else env)
    return [str(p) for p in info.value.problems]


def test_example_config_is_valid_and_mirrors_the_defaults(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "config.example.yaml", env=ENV)
    defaults = GatewayConfig(cookie=cfg.cookie)
    # The example shows every key with its default value.
    assert cfg.server == defaults.server
    assert cfg.consent == ConsentConfig()
    assert cfg.upstream == dataclasses.replace(defaults.upstream, overrides=cfg.upstream.overrides)
    assert cfg.rules.paths == (ROOT / "rules",)
    assert cfg.decision_log.sqlite_path == ROOT / "data" / "decisions.db"
    assert cfg.cookie.keys[0].id == "k1"
    assert cfg.consent.purposes == DEFAULT_PURPOSES


def test_example_config_is_safe_by_default() -> None:
    cfg = load_config(ROOT / "config.example.yaml", env=ENV)
    regime = cfg.consent.regime_for(None)
    assert regime.mode == "opt-in"
    assert cfg.consent.regime_for("ZZ").mode == "opt-in"
    assert cfg.consent.regime_for("DE").mode == "opt-in"
    assert cfg.consent.regime_for("US").mode == "opt-out"


def test_config_is_frozen() -> None:
    cfg = parse_config(KEYS, env=ENV)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (KEYS + "servr: {}\n", "gw.yaml:3: servr: unknown key (did you mean 'server'?)"),
        (KEYS + "server:\n  port: http\n", "gw.yaml:4: server.port: expected an integer"),
        (KEYS + "server:\n  port: 70000\n", "gw.yaml:4: server.port: must satisfy"),
        (KEYS + "server:\n  trusted_proxies: [nope]\n", "server.trusted_proxies[0]: not an IP"),
        (KEYS + "server:\n  log_level: LOUD\n", "server.log_level: must be one of"),
        (KEYS + "consent:\n  max_age: forever\n", "consent.max_age: not a duration"),
        (KEYS + "consent:\n  conflict: random\n", "consent.conflict: must be restrictive"),
        (KEYS + "consent:\n  default_regime: mars\n", "'mars' is not one of the regimes"),
        (KEYS + "consent:\n  gpc_purposes: [ads]\n", "'ads' is not one of consent.purposes"),
        (
            KEYS + "consent:\n  regimes:\n    eu: {mode: opt-maybe}\n  default_regime: eu\n",
            "consent.regimes.eu.mode: must be opt-in or opt-out",
        ),
        (
            KEYS + "consent:\n  regimes:\n    eu: {mode: opt-in, countries: [DEU]}\n"
            "  default_regime: eu\n",
            "'DEU' is not an ISO 3166-1 alpha-2 code",
        ),
        (KEYS + "upstream:\n  overrides: {nope: http://x}\n", "upstream.overrides.nope: key"),
        (
            KEYS + "upstream:\n  overrides: {'https://a.example': 'ftp://x'}\n",
            "must be an http(s) base URL",
        ),
        (
            KEYS + "upstream:\n  connect_timeout: 5s\n  total_timeout: 1s\n",
            "connect_timeout: must not exceed total_timeout",
        ),
        (KEYS.replace("k1", "k 1"), "cookie.keys[0].id: key id must be"),
        (KEYS + "  same_site: Loose\n", "cookie.same_site: must be Strict, Lax or None"),
        (KEYS + "  same_site: None\n  secure: false\n", "SameSite=None requires secure"),
        ("cookie: {}\n", "no signing key"),
        ("server: [1, 2]\n" + KEYS, "gw.yaml:1: server: expected a mapping, got a list"),
    ],
)
def test_problems_name_file_line_and_path(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems(KEYS + "server:\n  port: x\n  workers: 0\nrulez: {}\n")
    assert len(found) == 3, found


def test_secret_comes_from_the_environment_and_is_never_shown() -> None:
    cfg = parse_config(KEYS, env={"CG_TEST_KEY": TEST_KEY})
    assert cfg.cookie.keys[0].secret == b"k" * 32
    assert TEST_KEY not in repr(cfg)
    short = problems(KEYS, env={"CG_TEST_KEY": "c2hvcnQ"})
    assert any("CG_TEST_KEY must hold >= 16 bytes" in p for p in short)
    assert not any("c2hvcnQ" in p for p in short)


def test_missing_secret_without_dev_key_file_is_an_error() -> None:
    assert any("no signing key" in p for p in problems(KEYS, env={}))


def test_dev_key_file_is_created_once_and_reused(tmp_path: Path) -> None:
    text = f"data_dir: {tmp_path}\ncookie:\n  keys: []\n  dev_key_file: dev.key\n"
    first = parse_config(text, str(tmp_path / "c.yaml"), env={})
    second = parse_config(text, str(tmp_path / "c.yaml"), env={})
    assert first.cookie.keys == second.cookie.keys
    assert (tmp_path / "dev.key").stat().st_mode & 0o077 == 0  # owner-only


def test_key_rotation_order_newest_first() -> None:
    text = "cookie:\n  keys:\n    - {id: k2, secret_env: NEW}\n    - {id: k1, secret_env: OLD}\n"
    new = "bmV3LWtleS1uZXcta2V5LW5ldy1rZXk"
    cfg = parse_config(text, env={"NEW": new, "OLD": TEST_KEY})
    assert [k.id for k in cfg.cookie.keys] == ["k2", "k1"]


def test_overrides_and_relative_paths(tmp_path: Path) -> None:
    text = (
        KEYS + "upstream:\n  overrides:\n    'https://WWW.Example.com': http://127.0.0.1:9/x\n"
        "rules:\n  paths: [myrules]\n"
    )
    cfg = parse_config(text, str(tmp_path / "c.yaml"), env=ENV)
    assert cfg.upstream.overrides == {"https://www.example.com": yarl.URL("http://127.0.0.1:9/x")}
    assert cfg.rules.paths == (tmp_path / "myrules",)


@pytest.mark.parametrize(
    ("country", "regime"),
    [
        ("FR", "opt-in"),
        ("GB", "opt-in"),
        ("BR", "opt-in"),
        ("US", "us"),
        ("JP", "opt-in"),
        (None, "opt-in"),
    ],
)
def test_regime_for(country: str | None, regime: str) -> None:
    assert ConsentConfig().regime_for(country).name == regime


def test_unquoted_norway_gets_a_hint() -> None:
    text = KEYS + "consent:\n  regimes:\n    eu: {mode: opt-in, countries: [FR, NO]}\n"
    text += "  default_regime: eu\n"
    assert any('quote it, e.g. "NO"' in p for p in problems(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            TWO_K1,
            "key id 'k1' is listed twice",
        ),
        ("cookie:\n  keys: [{id: ké, secret_env: CG_TEST_KEY}]\n", "1-16 ASCII letters"),
        (KEYS + "consent:\n  purposes: [ads tracking]\n", "must be 1-32 ASCII letters"),
        (KEYS + "consent:\n  purposes: [ads, ads]\n", "a purpose is listed twice"),
    ],
)
def test_cookie_keys_and_purposes_fit_the_cookie(text: str, expected: str) -> None:
    assert any(expected in p for p in problems(text))
