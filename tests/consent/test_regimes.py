import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import ConsentConfig, RegimeConfig, RegimeMode
from gateway.consent import regimes as regimes_mod
from gateway.consent.regimes import (
    PLACEHOLDER_COUNTRIES,
    country_from,
    parse_country,
    regime_for,
)
from gateway.model import Headers


def test_exports() -> None:
    assert all(hasattr(regimes_mod, name) for name in regimes_mod.__all__)


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        (None, None),
        ("DE", "DE"),
        ("de", "DE"),
        ("De", "DE"),
        (" us ", "US"),
        ("", None),
        ("D", None),
        ("DEU", None),  # alpha-3 is not what the header carries
        ("D1", None),
        ("12", None),
        ("D-", None),
        ("\u00c4\u00d6", None),  # letters, not ASCII
        ("XX", None),  # Cloudflare: unknown
        ("xx", None),
        ("T1", None),  # Cloudflare: Tor
        ("A1", None),
        ("A2", None),
        ("O1", None),
        ("EU", None),
        ("AP", None),
        ("ZZ", None),
    ],
)
def test_parse_country(value: str | None, expect: str | None) -> None:
    assert parse_country(value) == expect


@given(st.text(max_size=4))
def test_parse_country_yields_an_alpha2_code_or_none(value: str) -> None:
    code = parse_country(value)
    assert code is None or (len(code) == 2 and code.isascii() and code.isalpha() and code.isupper())
    assert code not in PLACEHOLDER_COUNTRIES


@pytest.mark.parametrize(
    ("headers", "header_name", "expect"),
    [
        ((("CF-IPCountry", "FR"),), "CF-IPCountry", "FR"),
        ((("cf-ipcountry", "fr"),), "CF-IPCountry", "FR"),
        ((("CF-IPCountry", "XX"),), "CF-IPCountry", None),
        ((("CF-IPCountry", "T1"),), "CF-IPCountry", None),
        ((), "CF-IPCountry", None),
        ((("CF-IPCountry", "FR"),), None, None),  # no trusted header configured
        ((("X-Country", "FR"),), "CF-IPCountry", None),  # not the trusted header
        ((("CF-IPCountry", "FR"), ("CF-IPCountry", "US")), "CF-IPCountry", "FR"),
    ],
)
def test_country_from(
    headers: tuple[tuple[str, str], ...], header_name: str | None, expect: str | None
) -> None:
    assert country_from(Headers(headers), header_name) == expect


CUSTOM = ConsentConfig(
    regimes=(
        RegimeConfig("eu", RegimeMode.OPT_IN, frozenset({"DE", "FR"})),
        RegimeConfig("us", RegimeMode.OPT_OUT, frozenset({"US"})),
        RegimeConfig("rest", RegimeMode.OPT_OUT),
    ),
    default_regime="rest",
)


@pytest.mark.parametrize(
    ("cfg", "country", "expect"),
    [
        (ConsentConfig(), "DE", "opt-in"),
        (ConsentConfig(), "GB", "opt-in"),
        (ConsentConfig(), "BR", "opt-in"),
        (ConsentConfig(), "US", "us"),
        (ConsentConfig(), "us", "us"),
        (ConsentConfig(), "JP", "opt-in"),  # listed nowhere: the default
        (ConsentConfig(), None, "opt-in"),
        (ConsentConfig(), "XX", "opt-in"),
        (CUSTOM, "FR", "eu"),
        (CUSTOM, "US", "us"),
        (CUSTOM, "JP", "rest"),
        (CUSTOM, None, "rest"),
        (CUSTOM, "T1", "rest"),
    ],
)
def test_regime_for(cfg: ConsentConfig, country: str | None, expect: str) -> None:
    assert regime_for(cfg, country).name == expect
