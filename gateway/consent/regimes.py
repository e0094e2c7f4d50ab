"""The visitor's jurisdiction: country from a trusted header, regime from the country.

The country comes only from a header the operator names in config
(`server.country_header`, e.g. Cloudflare's `CF-IPCountry`), set by a CDN or proxy
in front of the gateway; never from anything the visitor's browser claims.
"""

from __future__ import annotations

from gateway.config import ConsentConfig, RegimeConfig
from gateway.model import Headers

__all__ = ["PLACEHOLDER_COUNTRIES", "country_from", "parse_country", "regime_for"]

#: values geo headers use for "no country": unknown (Cloudflare XX, user-assigned ZZ), Tor exit
#: (T1), anonymous proxy / satellite / other (MaxMind's legacy A1, A2, O1), and the continent-
#: level EU and AP. Each means "country unknown", so the default regime applies.
PLACEHOLDER_COUNTRIES = frozenset({"XX", "ZZ", "T1", "A1", "A2", "O1", "EU", "AP"})


def parse_country(value: str | None) -> str | None:
    """`value` as an upper-case ISO 3166-1 alpha-2 code, or None when it is not one.

    None for an absent value, anything but two ASCII letters (surrounding whitespace
    aside) and the placeholders in PLACEHOLDER_COUNTRIES.
    """
    if value is None:
        return None
    code = value.strip(" \t").upper()
    if len(code) != 2 or not (code.isascii() and code.isalpha()) or code in PLACEHOLDER_COUNTRIES:
        return None
    return code


def country_from(headers: Headers, header_name: str | None) -> str | None:
    """The visitor's country from the trusted header `header_name`, or None.

    None when no header is configured, the header is absent, or its value is not a
    country (see `parse_country`).
    """
    if header_name is None:
        return None
    return parse_country(headers.get(header_name))


def regime_for(cfg: ConsentConfig, country: str | None) -> RegimeConfig:
    """The regime whose countries list `country`, else the configured default regime.

    `country` is normalised first (`parse_country`), so a raw or placeholder value
    falls to the default regime rather than matching nothing by accident of case.
    """
    return cfg.regime_for(parse_country(country))
