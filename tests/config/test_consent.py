"""gateway.config.consent: the consent section's regimes, safe by default."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.config import (
    CMPS,
    DEFAULT_PURPOSES,
    GCM_TYPES,
    ConsentConfig,
    SignalsConfig,
    load_config,
)
from gateway.config.spec import spec_of
from tests.conftest import CONFIG_ENV as ENV
from tests.conftest import CONFIG_KEYS as KEYS
from tests.conftest import ROOT
from tests.conftest import config_problems as problems


def test_example_config_is_safe_by_default() -> None:
    cfg = load_config(ROOT / "config.example.yaml", env=ENV)
    regime = cfg.consent.regime_for(None)
    assert regime.mode == "opt-in"
    assert cfg.consent.regime_for("ZZ").mode == "opt-in"
    assert cfg.consent.regime_for("DE").mode == "opt-in"
    assert cfg.consent.regime_for("US").mode == "opt-out"


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


def test_the_default_signal_tables_name_only_default_purposes() -> None:
    signals = SignalsConfig()
    for table in (signals.tcf_purposes, signals.gcm, signals.tcf_special_features):
        assert set(table) <= set(DEFAULT_PURPOSES)
    assert {t for types in signals.gcm.values() for t in types} <= set(GCM_TYPES)
    assert set(signals.cmp) == set(CMPS)
    for categories in signals.cmp.values():
        assert {p for ps in categories.values() for p in ps} <= set(DEFAULT_PURPOSES)
    assert signals.us_opt_out_purposes <= set(DEFAULT_PURPOSES)


@pytest.mark.parametrize(
    ("consent", "option", "expected"),
    [
        (ConsentConfig(), "default_regime", []),
        (
            ConsentConfig(default_regime="mars"),
            "default_regime",
            ["'mars' is not one of the regimes"],
        ),
        (
            ConsentConfig(gpc_purposes=frozenset({"ads"})),
            "gpc_purposes",
            ["'ads' is not one of consent.purposes"],
        ),
        (ConsentConfig(gpc_purposes=frozenset({"necessary"})), "gpc_purposes", []),
    ],
)
def test_the_rules_of_the_consent_section(
    consent: ConsentConfig, option: str, expected: list[str]
) -> None:
    [f] = [f for f in dataclasses.fields(ConsentConfig) if f.name == option]
    rule = spec_of(f).rule
    assert rule is not None and list(rule(consent)) == expected


def test_an_unwritten_default_regime_is_reported_on_the_section() -> None:
    text = KEYS + "consent:\n  regimes:\n    eu: {mode: opt-in}\n"
    assert problems(text) == ["gw.yaml:3: consent: 'opt-in' is not one of the regimes"]
