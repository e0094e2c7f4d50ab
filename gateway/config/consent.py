"""The schema of the `consent:` section: purposes, regimes and signals.

Declared like every section (`gateway.config.spec.opt`); `GatewayConfig` in
`gateway.config.schema` holds it. A module of its own only to keep each short:
the signal tables' defaults are long.

Pure: no YAML, no files, no environment.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.config.spec import opt
from gateway.model import CMP, NECESSARY, SIGNALS, ConsentValue

__all__ = [
    "CMPS",
    "CmpTable",
    "DEFAULT_PURPOSES",
    "GCM_TYPES",
    "OPT_IN_COUNTRIES",
    "ConflictPolicy",
    "ConsentConfig",
    "RegimeConfig",
    "RegimeMode",
    "SignalsConfig",
]

DEFAULT_PURPOSES = (NECESSARY, "functional", "analytics", "advertising", "personalization")

#: EU/EEA member states, the UK, Switzerland and Brazil: consent before tracking.
OPT_IN_COUNTRIES = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE "
    "IS LI NO GB CH BR".split()
)

#: the CMPs whose categories config maps onto purposes
CMPS = tuple(CMP)
GCM_TYPES = ("ad_storage", "analytics_storage", "ad_user_data", "ad_personalization")


def _default_regime_exists(c: ConsentConfig) -> list[str]:
    if c.default_regime not in {r.name for r in c.regimes}:
        return [f"{c.default_regime!r} is not one of the regimes"]
    return []


def _gpc_among_purposes(c: ConsentConfig) -> list[str]:
    return [f"{p!r} is not one of consent.purposes" for p in c.gpc_purposes - set(c.purposes)]


class ConflictPolicy(enum.StrEnum):
    """How explicit sources that disagree on a purpose combine (`consent.conflict`)."""

    RESTRICTIVE = "restrictive"
    NEWEST = "newest"


class RegimeMode(enum.StrEnum):
    """What an unanswered purpose means in a regime."""

    OPT_IN = "opt-in"
    OPT_OUT = "opt-out"


@dataclass(frozen=True, slots=True)
class RegimeConfig:
    """A jurisdiction's defaults: what an unanswered purpose means there."""

    name: str = opt(help="the regime's name: its key under consent.regimes", from_key=True)
    mode: RegimeMode = opt(
        fallback=RegimeMode.OPT_IN,
        help="`opt-in`: unknown means denied; `opt-out`: unknown means granted (unless GPC)",
    )
    countries: frozenset[str] = opt(
        frozenset(), convert="country_codes", help="the countries (ISO 3166-1 alpha-2) it covers"
    )
    gpc_binds: bool = opt(True, help="does `Sec-GPC: 1` deny `consent.gpc_purposes` here")

    @property
    def default(self) -> ConsentValue:
        return ConsentValue.DENIED if self.mode is RegimeMode.OPT_IN else ConsentValue.GRANTED


class CmpTable(Mapping[str, tuple[str, ...]]):
    """One CMP's table (`consent.signals.cmp.<cmp>`): its category ids -> the purposes
    each stands for, and under `vendors`, its service or vendor ids -> the rule vendor
    ids each stands for (Klaro services, OneTrust `genVendors`, Didomi vendors).

    A mapping of the categories, so a CMP without vendors reads as it always did. An id
    named under `vendors` speaks for those vendors only: its answer is theirs, and it
    does not answer its purposes for every vendor (`gateway.consent.signals`)."""

    __slots__ = ("_categories", "vendors")

    def __init__(
        self,
        categories: Mapping[str, tuple[str, ...]],
        vendors: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self._categories = MappingProxyType(dict(categories))
        self.vendors: Mapping[str, tuple[str, ...]] = MappingProxyType(dict(vendors or {}))

    def __getitem__(self, key: str) -> tuple[str, ...]:
        return self._categories[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._categories)

    def __len__(self) -> int:
        return len(self._categories)

    def __repr__(self) -> str:
        return f"CmpTable({dict(self._categories)!r}, vendors={dict(self.vendors)!r})"


def _default_cmp() -> Mapping[str, CmpTable]:
    m = CmpTable
    return MappingProxyType(
        {
            CMP.ONETRUST: m(
                {
                    "C0002": ("analytics",),
                    "C0003": ("functional",),
                    "C0004": ("advertising", "personalization"),
                    "C0005": ("advertising",),
                }
            ),
            CMP.COOKIEBOT: m(
                {
                    "preferences": ("functional", "personalization"),
                    "statistics": ("analytics",),
                    "marketing": ("advertising",),
                }
            ),
            CMP.DIDOMI: m({"analytics": ("analytics",), "advertising": ("advertising",)}),
            CMP.KLARO: m({}),
            CMP.COOKIEYES: m(
                {
                    "functional": ("functional",),
                    "analytics": ("analytics",),
                    "performance": ("analytics",),
                    "advertisement": ("advertising",),
                }
            ),
            CMP.COMPLIANZ: m(
                {
                    "functional": ("functional",),
                    "preferences": ("personalization",),
                    "statistics": ("analytics",),
                    "marketing": ("advertising",),
                }
            ),
            CMP.COMMANDERS_ACT: m({}),
        }
    )


@dataclass(frozen=True, slots=True)
class SignalsConfig:
    """How the standard signals a site already emits map onto the gateway's purposes.

    For each mapping, a purpose is granted by a signal when everything it maps to is
    granted there, denied when any of it is denied, and not answered otherwise.
    """

    read: frozenset[str] = opt(
        frozenset(SIGNALS),
        choices=tuple(SIGNALS),
        convert="signal_names",
        help="the signals read from requests; a signal not listed is ignored",
    )
    request_params_grant: bool = opt(
        False,
        help="may signals in the tag request's own query (gcs, gcd, gdpr_consent, gpp, "
        "us_privacy) grant? By default they only deny: a tag request cannot grant itself "
        "consent",
    )
    tcf_purposes: Mapping[str, tuple[int, ...]] = opt(
        factory=lambda: MappingProxyType(
            {
                "functional": (1,),
                "analytics": (1, 8),
                "advertising": (1, 2, 3, 4, 7),
                "personalization": (1, 5, 6),
            }
        ),
        min=1,
        max=24,
        convert="purpose_map",
        help="purpose -> TCF purposes that all need consent. Default: Google's published "
        "TCF -> Consent Mode mapping (P1 storage; P3/P4 personalised ads; P7 measurement)",
    )
    tcf_special_features: Mapping[str, tuple[int, ...]] = opt(
        factory=lambda: MappingProxyType({}),
        min=1,
        max=12,
        convert="purpose_map",
        help="purpose -> TCF special features that need the opt-in",
    )
    tcf_legitimate_interest: bool = opt(
        False, help="accept legitimate interest where TCF allows it (never purposes 1, 3-6)"
    )
    gcm: Mapping[str, tuple[str, ...]] = opt(
        factory=lambda: MappingProxyType(
            {
                "analytics": ("analytics_storage",),
                "advertising": ("ad_storage", "ad_user_data", "ad_personalization"),
            }
        ),
        choices=GCM_TYPES,
        convert="purpose_map",
        help="purpose -> Consent Mode types that all need to be granted",
    )
    us_opt_out_purposes: frozenset[str] = opt(
        frozenset({"advertising"}),
        convert="purpose_set",
        help="purposes a US opt-out of sale / sharing / targeted advertising denies (GPP, "
        "us_privacy)",
    )
    cmp: Mapping[str, CmpTable] = opt(
        factory=_default_cmp,
        choices=CMPS,
        convert="cmp_table",
        help="cmp -> its category id -> purposes it stands for (tenant settings: check your "
        "CMP); under `vendors`, its service or vendor id -> the rule vendor ids it stands for",
    )


@dataclass(frozen=True, slots=True)
class ConsentConfig:
    purposes: tuple[str, ...] = opt(
        DEFAULT_PURPOSES,
        convert="purpose_list",
        help="the gateway's purposes; `necessary` is always granted",
    )
    policy_version: int = opt(
        1, min=1, help="consent recorded under an older policy version counts as unknown"
    )
    max_age: float = opt(180 * 86400.0, help="consent older than this (seconds) counts as unknown")
    regimes: tuple[RegimeConfig, ...] = opt(
        (
            RegimeConfig("opt-in", RegimeMode.OPT_IN, OPT_IN_COUNTRIES),
            RegimeConfig("us", RegimeMode.OPT_OUT, frozenset({"US"})),
        ),
        empty="at least one regime is required",
        help="jurisdictions, by name: what an unanswered purpose means there",
    )
    default_regime: str = opt(
        "opt-in",
        rule=_default_regime_exists,
        section_where=True,
        help="the regime for a visitor whose country is unknown or listed nowhere",
    )
    gpc_purposes: frozenset[str] = opt(
        frozenset({"advertising"}),
        rule=_gpc_among_purposes,
        help="purposes that `Sec-GPC: 1` denies where the regime says GPC binds",
    )
    conflict: ConflictPolicy = opt(
        ConflictPolicy.RESTRICTIVE,
        help="how disagreeing explicit sources combine: `restrictive` or `newest`",
    )
    signals: SignalsConfig = opt(
        SignalsConfig(),
        help="how the standard signals (TCF, GPP, Consent Mode, CMP cookies) map onto purposes",
    )

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
