"""gateway.consent.signals: standard signals on a request become explicit sources."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from types import MappingProxyType
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import ConflictPolicy, ConsentConfig, CookieConfig, CookieKey, SignalsConfig
from gateway.config.consent import CmpTable
from gateway.consent.cmp import CMP_COOKIE_NAMES, decode_cmp_cookies
from gateway.consent.signals import (
    forget,
    gcm_states,
    google_consent_params,
    read_signals,
    resolve_with_signals,
    signal_inputs,
)
from gateway.model import ConsentValue, CurrentConsent, Facts, Headers
from tests.consent.cmp_harness import didomi_token
from tests.signal_values import ONETRUST_NO_TARGETING, TC_ADS_755, TC_ADS_NOT_755, TC_ANALYTICS

G, D = ConsentValue.GRANTED, ConsentValue.DENIED
CFG = SignalsConfig()


def facts(query: str = "", cookies: dict[str, str] | None = None, **headers: str) -> Facts:
    return Facts(
        "r",
        "GET",
        "x.example",
        "/",
        query,
        headers=Headers(tuple(headers.items())),
        cookies=cookies or {},
        now=1_800_000_000.0,
    )


def answers(f: Facts, cfg: SignalsConfig = CFG) -> dict[str, dict[str, ConsentValue]]:
    return {a.source: dict(a.purposes) for a in read_signals(f, cfg).answers}


@pytest.mark.parametrize(
    ("f", "expected"),
    [
        (facts(), {}),
        (
            # the tag request's own TC string: its denials count, its grants do not
            facts(f"gdpr=1&gdpr_consent={TC_ANALYTICS}"),
            {"tcf:query": {"advertising": D, "personalization": D}},
        ),
        (facts(f"gdpr=0&gdpr_consent={TC_ANALYTICS}"), {}),  # GDPR does not apply to this hit
        (
            facts(cookies={"euconsent-v2": TC_ADS_755}),
            {"tcf": {"functional": G, "analytics": D, "advertising": G, "personalization": D}},
        ),
        (facts("gcs=G101"), {"gcm:query": {"advertising": D}}),
        (facts("gcs=G110"), {"gcm:query": {"analytics": D}}),
        # ad_storage granted, the rest denied: advertising needs all three ad types
        (facts("gcd=11r1q1q1q5"), {"gcm:query": {"analytics": D, "advertising": D}}),
        (facts("gcd=11r1r1r1r5"), {}),  # a tag cannot grant itself consent
        (facts("us_privacy=1YYN"), {"us_privacy:query": {"advertising": D}}),
        (facts("us_privacy=1YNN"), {}),
        (facts(cookies={"usprivacy": "1YYN"}), {"us_privacy": {"advertising": D}}),
        (
            facts(cookies={"OptanonConsent": ONETRUST_NO_TARGETING}),
            {"onetrust": {"analytics": G, "functional": G, "advertising": D, "personalization": D}},
        ),
        (
            facts(
                cookies={
                    "cookieyes-consent": "consentid:abc,consent:yes,action:yes,"
                    "necessary:yes,functional:no,analytics:yes,advertisement:no"
                }
            ),
            {"cookieyes": {"functional": D, "analytics": G, "advertising": D}},
        ),
        (
            facts(cookies={"cmplz_statistics": "allow", "cmplz_marketing": "deny"}),
            {"complianz": {"analytics": G, "advertising": D}},
        ),
    ],
)
def test_signal_table(f: Facts, expected: dict[str, dict[str, ConsentValue]]) -> None:
    assert answers(f) == expected


GRANTING = SignalsConfig(request_params_grant=True)


@pytest.mark.parametrize(
    ("query", "expected", "ignored"),
    [
        (
            f"gdpr=1&gdpr_consent={TC_ANALYTICS}",
            {
                "tcf:query": {
                    "functional": G,
                    "analytics": G,
                    "advertising": D,
                    "personalization": D,
                }
            },
            [("tcf:query", "functional"), ("tcf:query", "analytics")],
        ),
        (
            "gcs=G101",
            {"gcm:query": {"analytics": G, "advertising": D}},
            [("gcm:query", "analytics")],
        ),
        (
            "gcd=11r1r1r1r5",
            {"gcm:query": {"analytics": G, "advertising": G}},
            [("gcm:query", "analytics"), ("gcm:query", "advertising")],
        ),
        ("us_privacy=1YYN", {"us_privacy:query": {"advertising": D}}, []),
    ],
)
def test_request_params_grant_only_when_config_says_so(
    query: str, expected: dict[str, dict[str, ConsentValue]], ignored: list[tuple[str, str]]
) -> None:
    assert answers(facts(query), GRANTING) == expected
    assert read_signals(facts(query), GRANTING).ignored == ()
    # By default the same grants are dropped, and named so explain can say why.
    assert list(read_signals(facts(query), CFG).ignored) == ignored


def test_a_tc_string_in_both_the_cookie_and_the_query_counts_as_the_cookie() -> None:
    f = facts(f"gdpr=1&gdpr_consent={TC_ANALYTICS}", cookies={"euconsent-v2": TC_ANALYTICS})
    assert answers(f) == {
        "tcf": {"functional": G, "analytics": G, "advertising": D, "personalization": D}
    }


_SIGNAL_QUERIES = st.lists(
    st.sampled_from(
        [
            "gcs=G111",
            "gcs=G101",
            "gcd=11r1r1r1r5",
            "gcd=13t3t3t3t5",
            f"gdpr=1&gdpr_consent={TC_ADS_755}",
            f"gdpr_consent={TC_ANALYTICS}",
            "us_privacy=1NNN",
            "npa=0",
            "gpp=DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA&gpp_sid=2",
        ]
    ),
    max_size=5,
).map("&".join)


@given(_SIGNAL_QUERIES)
def test_nothing_in_the_query_grants_by_default(query: str) -> None:
    # The invariant behind `request_params_grant: false`: with no cookie, whatever the
    # tag request says about itself, no purpose comes out granted.
    for a in read_signals(facts(query), CFG).answers:
        assert G not in a.purposes.values(), (a.source, query)


def test_usnat_opt_out_in_gpp_denies_advertising() -> None:
    # iabgpp-java UsNatTest: SaleOptOut=1 ... (usnat core with sale opt-out) - build via header
    from gateway.consent import gpp

    usca = "BVWSSSVY.YA"  # iabgpp-java UsCaTest.testDecode1: GPC true
    gpp_string = f"DBABBg~{usca}"
    parsed = gpp.decode_gpp(gpp_string)
    assert parsed.section_ids == (8,)
    assert answers(facts(f"gpp={quote(gpp_string)}&gpp_sid=8")) == {"gpp:query": {"advertising": D}}
    # Not in force for this hit: gpp_sid names another section.
    assert answers(facts(f"gpp={quote(gpp_string)}&gpp_sid=7")) == {}


def test_undecodable_signals_are_reported_and_grant_nothing() -> None:
    s = read_signals(
        facts("gdpr_consent=CQzzzz&gcs=G9&us_privacy=2XYZ", {"CookieConsent": "{garbage"}), CFG
    )
    assert s.answers == ()
    assert {name for name, _ in s.problems} == {"tcf", "gcm", "us_privacy", "cookiebot"}
    for _, reason in s.problems:
        assert "CQzzzz" not in reason and "garbage" not in reason


def test_read_list_turns_signals_off() -> None:
    cfg = SignalsConfig(read=frozenset({"gcm"}))
    assert answers(facts(f"gcs=G100&gdpr_consent={TC_ANALYTICS}&us_privacy=1YYN"), cfg) == {
        "gcm:query": {"analytics": D, "advertising": D}
    }


@pytest.mark.parametrize(
    ("tc", "vendor", "denied"),
    [
        # analytics maps to TCF purposes 1 and 8; these strings do not consent to 8
        (TC_ADS_755, 755, frozenset({"analytics"})),
        (TC_ADS_NOT_755, 755, frozenset({"advertising", "analytics"})),
        (TC_ADS_NOT_755, 1, frozenset({"analytics"})),
        (TC_ANALYTICS, 755, frozenset({"advertising", "analytics"})),
    ],
)
def test_vendor_consent(tc: str, vendor: int, denied: frozenset[str]) -> None:
    s = read_signals(facts(cookies={"euconsent-v2": tc}), CFG)
    assert s.vendors is not None
    assert s.vendors.denied(vendor, frozenset({"advertising", "analytics"})) == denied


def test_resolution_is_restrictive_across_sources() -> None:
    cookie_cfg = CookieConfig(keys=(CookieKey("k1", b"k" * 32),))
    consent = ConsentConfig()
    # TC string grants advertising; OneTrust denies targeting: the more restrictive wins.
    f = facts(cookies={"euconsent-v2": TC_ADS_755, "OptanonConsent": ONETRUST_NO_TARGETING})
    state, _, _ = resolve_with_signals(f, consent, cookie_cfg)
    assert state.state("advertising") is D
    assert state.purposes["advertising"].source in ("onetrust", "tcf")
    assert state.vendors is not None
    # With `newest`, the newer source wins (the TC string's last_updated is 1970 here).
    newest = ConsentConfig(conflict=ConflictPolicy.NEWEST)
    state, _, _ = resolve_with_signals(f, newest, cookie_cfg)
    assert state.state("advertising") is D and state.purposes["advertising"].source == "onetrust"


@pytest.mark.parametrize(
    ("granted", "gcs", "npa"),
    [
        ({"analytics", "advertising"}, "G111", "0"),
        ({"analytics"}, "G101", "1"),
        ({"advertising"}, "G110", "0"),
        (set(), "G100", "1"),
    ],
)
def test_google_params_agree_with_resolved_state(granted: set[str], gcs: str, npa: str) -> None:
    from gateway.consent import gcm
    from gateway.model import ConsentState, PurposeConsent

    state = ConsentState(
        {p: PurposeConsent(G if p in granted else D, "t") for p in ("analytics", "advertising")},
        regime="opt-in",
    )
    params = google_consent_params(state, CFG)
    assert params["gcs"] == gcs and params["npa"] == npa
    effective = gcm.decode_gcd(params["gcd"]).effective
    assert effective == gcm_states(state, CFG)


def _state(advertising: str | None, source: str = "cookie") -> object:
    from gateway.model import ConsentState, PurposeConsent

    purposes = (
        {}
        if advertising is None
        else {"advertising": PurposeConsent(ConsentValue(advertising), source)}
    )
    return ConsentState(purposes, regime="us")


@pytest.mark.parametrize(
    ("kind", "advertising", "source", "query", "fields"),
    [
        ("microsoft", "granted", "cookie", {}, {}),  # never upgrades the tag's own asc
        ("microsoft", "denied", "cookie", {"asc": "D"}, {}),
        ("microsoft", None, "cookie", {"asc": "D"}, {}),
        ("meta", "denied", "gpc", {"dpo": "LDU", "dpoco": "0", "dpost": "0"}, {}),
        ("meta", "denied", "us_privacy", {"dpo": "LDU", "dpoco": "0", "dpost": "0"}, {}),
        ("meta", "denied", "default:opt-in", {}, {}),  # LDU is a US mechanism, not GDPR
        ("meta", "granted", "cookie", {}, {}),
        ("tiktok", "denied", "gpp", {}, {"limited_data_use": True}),
        ("tiktok", "granted", "cookie", {}, {}),
    ],
)
def test_vendor_consent_params(
    kind: str,
    advertising: str | None,
    source: str,
    query: dict[str, str],
    fields: dict[str, object],
) -> None:
    from gateway.consent.signals import vendor_consent_params

    assert vendor_consent_params(kind, _state(advertising, source), CFG) == (query, fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("v=2&gcs=G101&en=x", {"gcs": "G101"}),
        ("gcs=G101&gcs=G111", {"gcs": "G101"}),  # first occurrence wins
        ("%67cs=G100", {"gcs": "G100"}),  # an encoded name is still the name
        (
            "gdpr=1&gdpr_consent=CQ%3D%3D&us_privacy=1YNN",
            {"gdpr": "1", "gdpr_consent": "CQ==", "us_privacy": "1YNN"},
        ),
        ("gcs", {"gcs": ""}),
        ("", {}),
        ("gdpr_consent=CQ&gdpr=0", {"gdpr_consent": "CQ", "gdpr": "0"}),  # not a prefix
        ("gcsx=1&xgcs=2&gcs%20=3&g+cs=4", {}),  # near names are not the name
        ("%67cs=G100&gcs=G111", {"gcs": "G100"}),  # first, encoded or not
        ("gcs=a=b&&npa", {"gcs": "a=b", "npa": ""}),
        ("%26gcs=1&%3Dgcs=2", {}),  # a name that decodes to a separator and more
        ("gcs\n", {}),  # not the name: the newline is part of it
        ("gcs=G1\n", {"gcs": "G1\n"}),
    ],
)
def test_query_params(raw: str, expected: dict[str, str]) -> None:
    from gateway.consent.signals import query_params

    assert query_params(raw) == expected


_QUERY_PARTS = st.sampled_from(
    ["gcs", "gcd", "npa", "gdpr", "gdpr_consent", "gpp", "gpp_sid", "us_privacy", "%67cs"]
    + ["%67%63%73", "gc%73", "g+cs", "x", "gcsx", "=", "&", "%", "+", "%3D", "%26", "1", "G1"]
    + ["\n", "%0A", " "]
)


@given(st.lists(_QUERY_PARTS, max_size=12).map("".join))
def test_query_params_read_as_parse_qsl_does(raw: str) -> None:
    """The first value of each wanted name, as the standard library's reading of the
    query gives it (pairs split on `&`, names and values percent- and plus-decoded)."""
    from urllib.parse import parse_qsl

    from gateway.consent.signals import SIGNAL_PARAMS, query_params

    expected: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        if name in SIGNAL_PARAMS:
            expected.setdefault(name, value)
    assert query_params(raw) == expected


# -- kept answers: a hit gives exactly what resolving afresh gives ----------------------------

_KEYS = CookieConfig(keys=(CookieKey("k1", b"k" * 32),))
_NOW = 1_800_000_000
_SUBJECT = "s-" + "a" * 30


def _cookie(issued_at: int, version: int = 1, key: bytes = b"k" * 32) -> str:
    from gateway.consent.cookie import ConsentCookie, sign_cookie

    record = ConsentCookie(_SUBJECT, {"analytics": True}, issued_at, version, "banner")
    return sign_cookie(record, (CookieKey("k1", key),))


_MAX_AGE = ConsentConfig().max_age
_COOKIES = [
    None,
    _cookie(_NOW - 60),
    _cookie(_NOW - int(_MAX_AGE)),  # fresh until exactly max_age
    _cookie(_NOW - int(_MAX_AGE) - 1),  # expired
    _cookie(_NOW + 10_000),  # from the future
    _cookie(_NOW - 60, version=0),  # old policy
    _cookie(_NOW - 60, key=b"x" * 32),  # forged
]


def _stored(at: float, analytics: bool, subject: str = _SUBJECT) -> CurrentConsent:
    return CurrentConsent(subject, {"analytics": analytics}, 1, at, "api")


@given(
    cookie=st.sampled_from(_COOKIES),
    cmp_cookies=st.sampled_from([{}, {"OptanonConsent": ONETRUST_NO_TARGETING}]),
    query=st.sampled_from(["", "gcs=G100", f"gdpr=1&gdpr_consent={TC_ANALYTICS}"]),
    country=st.sampled_from([None, "DE", "US"]),
    gpc=st.booleans(),
    shift=st.sampled_from([0.0, 1.0, -1.0, 20_000.0, _MAX_AGE]),
    stored=st.sampled_from(
        [
            None,
            _stored(_NOW - 10, False),
            _stored(_NOW - _MAX_AGE - 5, False),
            _stored(_NOW, True, "s-other"),
        ]
    ),
)
def test_a_kept_answer_is_what_resolving_afresh_gives(
    cookie: str | None,
    cmp_cookies: dict[str, str],
    query: str,
    country: str | None,
    gpc: bool,
    shift: float,
    stored: CurrentConsent | None,
) -> None:
    consent = ConsentConfig(policy_version=1)
    jar = {**cmp_cookies, **({"cg_consent": cookie} if cookie else {})}
    headers = Headers((("Sec-GPC", "1"),) if gpc else ())

    def at(now: float) -> Facts:
        return Facts("r", "GET", "x", "/", query, headers, jar, country=country, now=now)

    # a warm cache, filled at another moment, must not answer for this one
    resolve_with_signals(at(_NOW), consent, _KEYS, stored=stored)
    kept = resolve_with_signals(at(_NOW + shift), consent, _KEYS, stored=stored)
    forget()
    fresh = resolve_with_signals(at(_NOW + shift), consent, _KEYS, stored=stored)
    assert kept[0] == fresh[0]
    assert (kept[1].answer, kept[1].problem, kept[1].subject) == (
        fresh[1].answer,
        fresh[1].problem,
        fresh[1].subject,
    )
    assert kept[2] == fresh[2]


class _Recording(dict[str, str]):
    """A cookie jar that notes every name looked up, and refuses to be walked."""

    def __init__(self, jar: dict[str, str]) -> None:
        super().__init__(jar)
        self.read: set[str] = set()

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("a CMP decoder walked the whole jar")


@pytest.mark.parametrize("value", ["x", "allow", ONETRUST_NO_TARGETING])
def test_cmp_decoders_read_only_the_signal_cookies(value: str) -> None:
    """`signal_inputs` keeps only the signal cookies, and kept answers are keyed on them:
    a decoder reading any other cookie would make a kept answer wrong."""
    jar = _Recording(dict.fromkeys(CMP_COOKIE_NAMES, value) | {"unrelated": value})
    decode_cmp_cookies(jar)
    assert jar.read <= CMP_COOKIE_NAMES
    kept = dict(signal_inputs(facts(cookies=dict(jar.items()))).__getitem__(1))
    assert set(kept) == set(CMP_COOKIE_NAMES)


# -- vendor by vendor: CMP ids standing for rule vendors ------------------------------------


def _tables(**tables: CmpTable) -> SignalsConfig:
    return dataclasses.replace(CFG, cmp=MappingProxyType({**CFG.cmp, **tables}))


_KLARO = CmpTable(
    {"posthog": ("analytics",), "matomo": ("analytics",), "youtube": ("functional",)},
    {"posthog": ("posthog",), "matomo": ("matomo",)},
)
# one OneTrust general vendor for two rules, another for one; groups stay purposes
_ONETRUST = CmpTable(
    CFG.cmp["onetrust"], {"V1": ("meta-pixel", "meta-conversions-api"), "V2": ("x-pixel",)}
)
_DIDOMI = CmpTable(CFG.cmp["didomi"], {"c:posthog-Xy12": ("posthog",), "755": ("google-ads",)})
_GRANTS = frozenset({"analytics"})
_NONE: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    ("cfg", "cookies", "source", "purposes", "vendors"),
    [
        # Klaro: a service mapped to a vendor answers for it alone; one that is not,
        # for everyone
        (
            _tables(klaro=_KLARO),
            {"klaro": quote('{"posthog":true,"matomo":false,"youtube":true}')},
            "klaro",
            {"functional": G},
            {"posthog": (G, _GRANTS), "matomo": (D, _NONE)},
        ),
        # without a vendor map, Klaro's services are categories as before: one refusal
        # denies the purpose for everyone
        (
            _tables(klaro=CmpTable({"posthog": ("analytics",), "matomo": ("analytics",)})),
            {"klaro": quote('{"posthog":true,"matomo":false}')},
            "klaro",
            {"analytics": D},
            {},
        ),
        # OneTrust: genVendors answer for the vendors they stand for; groups for purposes
        (
            _tables(onetrust=_ONETRUST),
            {"OptanonConsent": "groups=C0002%3A1&genVendors=V1%3A0%2CV2%3A1%2C"},
            "onetrust",
            {"analytics": G},
            {
                "meta-pixel": (D, _NONE),
                "meta-conversions-api": (D, _NONE),
                "x-pixel": (G, _NONE),
            },
        ),
        # Didomi: its vendor ids, custom and IAB
        (
            _tables(didomi=_DIDOMI),
            {
                "didomi_token": didomi_token(
                    {"user_id": "u", "vendors": {"enabled": [755], "disabled": ["c:posthog-Xy12"]}}
                )
            },
            "didomi",
            {},
            {"google-ads": (G, _NONE), "posthog": (D, _NONE)},
        ),
    ],
)
def test_cmp_vendor_answers(
    cfg: SignalsConfig,
    cookies: dict[str, str],
    source: str,
    purposes: dict[str, ConsentValue],
    vendors: dict[str, tuple[ConsentValue, frozenset[str]]],
) -> None:
    [answer] = read_signals(facts(cookies=cookies), cfg).answers
    assert (answer.source, dict(answer.purposes), dict(answer.vendors)) == (
        source,
        purposes,
        vendors,
    )


def test_two_cmp_ids_for_one_vendor_deny_if_either_does() -> None:
    table = CmpTable({}, {"a": ("posthog",), "b": ("posthog",)})
    for value in ('{"a":true,"b":false}', '{"a":false,"b":true}'):
        [answer] = read_signals(
            facts(cookies={"klaro": quote(value)}), _tables(klaro=table)
        ).answers
        assert answer.vendors["posthog"][0] is D


def test_kept_answers_follow_the_stored_vendor_answers() -> None:
    """The same stored purposes with other vendor answers are another state: a kept
    answer must not stand for it."""
    consent = ConsentConfig(policy_version=1)
    jar = {"cg_consent": _cookie(_NOW - 60)}
    f = Facts("r", "GET", "x", "/", "", Headers(()), jar, country="DE", now=_NOW)
    plain = CurrentConsent(_SUBJECT, {"analytics": True}, 1, _NOW - 10, "api")
    denied = dataclasses.replace(plain, vendors={"posthog": False})
    assert resolve_with_signals(f, consent, _KEYS, stored=plain)[0].vendor_choices == {}
    state = resolve_with_signals(f, consent, _KEYS, stored=denied)[0]
    assert state.vendor_choices["posthog"].state is D
