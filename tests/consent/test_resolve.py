from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gateway.consent
from gateway.config import (
    OPT_IN_COUNTRIES,
    ConflictPolicy,
    ConsentConfig,
    CookieConfig,
    CookieKey,
    RegimeConfig,
    RegimeMode,
)
from gateway.consent import resolve as resolve_mod
from gateway.consent.cookie import ConsentCookie, sign_cookie
from gateway.consent.resolve import (
    FUTURE_SKEW,
    CookieOutcome,
    SourceAnswer,
    read_cookie,
    resolve,
    resolve_request,
    resolve_server,
)
from gateway.model import NECESSARY, ConsentValue, Facts, Headers, PurposeConsent
from gateway.store.base import CurrentConsent

G, D, U = ConsentValue.GRANTED, ConsentValue.DENIED, ConsentValue.UNKNOWN
NOW = 1_700_000_000
K1 = CookieKey("k1", b"k" * 32)
K2 = CookieKey("k2", b"j" * 32)
COOKIE = CookieConfig(keys=(K1,))
DEFAULT = ConsentConfig()
SUBJECT = "AbCdEfGhIjKlMnOpQrStUv"
# a regime where GPC carries no legal weight (operator's choice)
NO_GPC = ConsentConfig(
    regimes=(
        RegimeConfig("opt-in", RegimeMode.OPT_IN, OPT_IN_COUNTRIES),
        RegimeConfig("us", RegimeMode.OPT_OUT, frozenset({"US"})),
        RegimeConfig("nogpc", RegimeMode.OPT_OUT, frozenset({"JP"}), gpc_binds=False),
    )
)
NEWEST = ConsentConfig(conflict=ConflictPolicy.NEWEST)


def test_exports() -> None:
    for mod in (resolve_mod, gateway.consent):
        assert all(hasattr(mod, name) for name in mod.__all__)


def cookie_value(
    purposes: Mapping[str, bool],
    issued_at: int = NOW - 60,
    policy_version: int = 1,
    key: CookieKey = K1,
) -> str:
    return sign_cookie(ConsentCookie(SUBJECT, purposes, issued_at, policy_version), [key])


def facts(
    *,
    cookie: str | None = None,
    gpc: str | None = None,
    country: str | None = None,
    cookie_name: str = "cg_consent",
) -> Facts:
    return Facts(
        request_id="r1",
        method="GET",
        host="www.google-analytics.com",
        path="/g/collect",
        query="",
        headers=Headers(() if gpc is None else (("Sec-GPC", gpc),)),
        cookies={} if cookie is None else {cookie_name: cookie},
        country=country,
        now=float(NOW),
    )


# ---------------------------------------------------------------------------
# read_cookie


@pytest.mark.parametrize(
    ("value", "consent", "problem"),
    [
        (None, DEFAULT, None),  # absent is not a problem
        ("", DEFAULT, None),  # nor is a cleared cookie
        (
            cookie_value({"analytics": True}, issued_at=NOW - int(DEFAULT.max_age) - 1),
            DEFAULT,
            "expired",
        ),
        (cookie_value({"analytics": True}, issued_at=0), DEFAULT, "expired"),
        (cookie_value({"analytics": True}), ConsentConfig(max_age=30), "expired"),
        (cookie_value({"analytics": True}), ConsentConfig(policy_version=2), "old-policy"),
        (
            cookie_value({"analytics": True}, issued_at=NOW + int(FUTURE_SKEW) + 1),
            DEFAULT,
            "bad-payload",
        ),
        (cookie_value({"analytics": True}, issued_at=NOW + 86400), DEFAULT, "bad-payload"),
        (cookie_value({"analytics": True}, key=K2), DEFAULT, "unknown-key"),
        (
            cookie_value({"analytics": True}, key=CookieKey("k1", b"x" * 32)),
            DEFAULT,
            "bad-signature",
        ),
        ("garbage", DEFAULT, "malformed"),
        ("k1.e30.AAAA", DEFAULT, "malformed"),
    ],
)
def test_read_cookie_problems(
    value: str | None, consent: ConsentConfig, problem: str | None
) -> None:
    out = read_cookie(facts(cookie=value), consent, COOKIE)
    assert out.answer is None
    assert out.problem == problem


@pytest.mark.parametrize(
    ("issued_at", "policy_version", "consent"),
    [
        (NOW - 60, 1, DEFAULT),
        (NOW - int(DEFAULT.max_age), 1, DEFAULT),  # exactly max_age old: still fresh
        (NOW + int(FUTURE_SKEW), 1, DEFAULT),  # within the allowed clock skew
        (NOW, 3, ConsentConfig(policy_version=2)),  # given under a newer policy
        (NOW, 2, ConsentConfig(policy_version=2)),
    ],
)
def test_read_cookie_fresh(issued_at: int, policy_version: int, consent: ConsentConfig) -> None:
    value = cookie_value(
        {"analytics": True, "advertising": False, "unheard-of": True, NECESSARY: False},
        issued_at=issued_at,
        policy_version=policy_version,
    )
    out = read_cookie(facts(cookie=value), consent, COOKIE)
    assert out == CookieOutcome(
        SourceAnswer(
            source="cookie",
            # purposes not configured, and `necessary`, are not the cookie's to answer
            purposes={"analytics": G, "advertising": D},
            at=float(issued_at),
            policy_version=policy_version,
            subject=SUBJECT,
        ),
        None,
        SUBJECT,
    )


def test_stale_cookie_keeps_its_subject() -> None:
    value = cookie_value({"analytics": True}, issued_at=0)
    assert read_cookie(facts(cookie=value), DEFAULT, COOKIE).subject == SUBJECT


def test_forged_cookie_yields_no_subject() -> None:
    value = cookie_value({"analytics": True}, key=CookieKey("k1", b"x" * 32))
    assert read_cookie(facts(cookie=value), DEFAULT, COOKIE).subject is None


def test_read_cookie_uses_the_configured_name_and_keys() -> None:
    cfg = CookieConfig(name="consent", keys=(K2, K1))
    value = cookie_value({"analytics": True}, key=K1)
    assert read_cookie(facts(cookie=value, cookie_name="consent"), DEFAULT, cfg).answer is not None
    assert read_cookie(facts(cookie=value), DEFAULT, cfg) == CookieOutcome(None, None)


# ---------------------------------------------------------------------------
# resolve: the visitor's situation -> per-purpose state and source


@pytest.mark.parametrize(
    ("consent", "country", "cookie", "gpc", "expect", "regime", "gpc_binding"),
    [
        pytest.param(
            DEFAULT, "DE", None, None,
            {"analytics": (D, "default:opt-in"), "advertising": (D, "default:opt-in")},
            "opt-in", False, id="opt-in unknown -> denied",
        ),
        pytest.param(
            DEFAULT, "US", None, None,
            {"analytics": (G, "default:us"), "advertising": (G, "default:us")},
            "us", False, id="opt-out unknown -> granted",
        ),
        pytest.param(
            DEFAULT, "US", None, "1",
            {"analytics": (G, "default:us"), "advertising": (D, "gpc")},
            "us", True, id="opt-out + GPC -> advertising denied",
        ),
        pytest.param(
            DEFAULT, "US", {"analytics": True, "advertising": True}, "1",
            {"analytics": (G, "cookie"), "advertising": (D, "gpc")},
            "us", True, id="GPC binds over a cookie grant (opt-out)",
        ),
        pytest.param(
            DEFAULT, "FR", {"analytics": True, "advertising": True}, "1",
            {"analytics": (G, "cookie"), "advertising": (D, "gpc")},
            "opt-in", True, id="GPC binds over a cookie grant (opt-in)",
        ),
        pytest.param(
            DEFAULT, "DE", {"analytics": True, "advertising": False}, None,
            {"analytics": (G, "cookie"), "advertising": (D, "cookie")},
            "opt-in", False, id="opt-in explicit answers",
        ),
        pytest.param(
            DEFAULT, "US", {"analytics": False}, None,
            {"analytics": (D, "cookie"), "advertising": (G, "default:us")},
            "us", False, id="opt-out explicit denial, default elsewhere",
        ),
        pytest.param(
            NO_GPC, "JP", None, "1",
            {"analytics": (G, "default:nogpc"), "advertising": (G, "default:nogpc")},
            "nogpc", False, id="gpc_binds false -> GPC ignored",
        ),
        pytest.param(
            NO_GPC, "US", None, "1",
            {"analytics": (G, "default:us"), "advertising": (D, "gpc")},
            "us", True, id="same config, binding regime",
        ),
        pytest.param(
            DEFAULT, "JP", None, None,
            {"analytics": (D, "default:opt-in"), "advertising": (D, "default:opt-in")},
            "opt-in", False, id="country listed nowhere -> default regime",
        ),
        pytest.param(
            DEFAULT, None, None, None,
            {"analytics": (D, "default:opt-in"), "advertising": (D, "default:opt-in")},
            "opt-in", False, id="unknown country -> default regime (opt-in)",
        ),
        pytest.param(
            DEFAULT, "XX", None, None,
            {"analytics": (D, "default:opt-in"), "advertising": (D, "default:opt-in")},
            "opt-in", False, id="placeholder country -> default regime",
        ),
        pytest.param(
            DEFAULT, "us", None, None,
            {"analytics": (G, "default:us"), "advertising": (G, "default:us")},
            "us", False, id="lower-case country normalised",
        ),
        pytest.param(
            DEFAULT, "US", None, "0",
            {"analytics": (G, "default:us"), "advertising": (G, "default:us")},
            "us", False, id="Sec-GPC 0 is no signal",
        ),
        pytest.param(
            DEFAULT, "US", None, "true",
            {"analytics": (G, "default:us"), "advertising": (G, "default:us")},
            "us", False, id="Sec-GPC true is no signal",
        ),
        pytest.param(
            DEFAULT, "US", None, " 1 ",
            {"analytics": (G, "default:us"), "advertising": (D, "gpc")},
            "us", True, id="Sec-GPC with whitespace is a signal",
        ),
        pytest.param(
            ConsentConfig(gpc_purposes=frozenset({"advertising", "personalization"})),
            "US", {"personalization": True}, "1",
            {"analytics": (G, "default:us"), "advertising": (D, "gpc"),
             "personalization": (D, "gpc")},
            "us", True, id="every gpc purpose denied",
        ),
    ],
)  # fmt: skip
def test_resolve_table(
    consent: ConsentConfig,
    country: str | None,
    cookie: Mapping[str, bool] | None,
    gpc: str | None,
    expect: Mapping[str, tuple[ConsentValue, str]],
    regime: str,
    gpc_binding: bool,
) -> None:
    value = None if cookie is None else cookie_value(cookie)
    state, outcome = resolve_request(facts(cookie=value, gpc=gpc, country=country), consent, COOKIE)
    assert outcome.problem is None
    got = {p: (state.purposes[p].state, state.purposes[p].source) for p in expect}
    assert got == expect
    assert state.regime == regime
    assert state.gpc is gpc_binding
    assert state.purposes[NECESSARY].state is G
    assert state.purposes[NECESSARY].source == NECESSARY
    assert set(state.purposes) == set(consent.purposes)
    assert state.subject == (None if cookie is None else SUBJECT)


@pytest.mark.parametrize(
    ("problem_cookie", "problem"),
    [
        (cookie_value({"analytics": True}, issued_at=0), "expired"),
        (cookie_value({"analytics": True}, policy_version=0), "old-policy"),
        (cookie_value({"analytics": True}, key=K2), "unknown-key"),
    ],
)
def test_an_unusable_cookie_counts_as_absent(problem_cookie: str, problem: str) -> None:
    state, outcome = resolve_request(facts(cookie=problem_cookie, country="US"), DEFAULT, COOKIE)
    assert outcome.problem == problem and outcome.answer is None
    assert (state.state("analytics"), state.purposes["analytics"].source) == (G, "default:us")
    state, _ = resolve_request(facts(cookie=problem_cookie, country="DE"), DEFAULT, COOKIE)
    assert (state.state("analytics"), state.purposes["analytics"].source) == (D, "default:opt-in")


# ---------------------------------------------------------------------------
# combining explicit sources


def answer(
    source: str,
    at: float | None,
    subject: str | None = None,
    policy_version: int | None = None,
    **purposes: ConsentValue,
) -> SourceAnswer:
    return SourceAnswer(source, purposes, at, policy_version, subject)


TCF_GRANT_NEW = answer("tcf", 200.0, analytics=G)
CMP_DENY_OLD = answer("onetrust", 100.0, analytics=D)
CMP_GRANT_OLD = answer("onetrust", 100.0, analytics=G)
GCM_DENY_UNDATED = answer("gcm", None, analytics=D)
GCM_GRANT_UNDATED = answer("gcm", None, analytics=G)
CMP_DENY_SAME = answer("cookiebot", 200.0, analytics=D)
TCF_DENY_NEW = answer("tcf", 200.0, analytics=D)


@pytest.mark.parametrize(
    ("consent", "answers", "expect"),
    [
        (DEFAULT, [TCF_GRANT_NEW, CMP_DENY_OLD], (D, "onetrust")),
        (DEFAULT, [CMP_DENY_OLD, TCF_GRANT_NEW], (D, "onetrust")),
        (NEWEST, [TCF_GRANT_NEW, CMP_DENY_OLD], (G, "tcf")),
        (NEWEST, [CMP_DENY_OLD, TCF_GRANT_NEW], (G, "tcf")),
        (DEFAULT, [TCF_GRANT_NEW, CMP_GRANT_OLD], (G, "tcf")),  # all grant: the first grant
        (DEFAULT, [CMP_GRANT_OLD, TCF_GRANT_NEW], (G, "onetrust")),
        (DEFAULT, [TCF_DENY_NEW, CMP_DENY_OLD], (D, "tcf")),  # the first denial
        (NEWEST, [GCM_DENY_UNDATED, CMP_GRANT_OLD], (G, "onetrust")),  # undated is oldest
        (NEWEST, [GCM_GRANT_UNDATED, CMP_DENY_OLD], (D, "onetrust")),
        (NEWEST, [GCM_GRANT_UNDATED, GCM_DENY_UNDATED], (D, "gcm")),  # all undated: a tie
        (NEWEST, [TCF_GRANT_NEW, CMP_DENY_SAME], (D, "cookiebot")),  # tie -> restrictive
        (NEWEST, [CMP_DENY_SAME, TCF_GRANT_NEW], (D, "cookiebot")),
        (NEWEST, [answer("x", float("nan"), analytics=D), CMP_GRANT_OLD], (G, "onetrust")),
        (DEFAULT, [answer("tcf", 1.0, analytics=U), CMP_GRANT_OLD], (G, "onetrust")),
        (DEFAULT, [answer("tcf", 1.0, analytics=U)], (D, "default:opt-in")),
        (DEFAULT, [answer("tcf", 1.0, advertising=G)], (D, "default:opt-in")),
    ],
)
def test_conflicts(
    consent: ConsentConfig, answers: list[SourceAnswer], expect: tuple[ConsentValue, str]
) -> None:
    state = resolve(facts(country="DE"), consent, answers)
    pc = state.purposes["analytics"]
    assert (pc.state, pc.source) == expect


def test_the_winning_answer_keeps_its_timestamp_and_policy_version() -> None:
    state = resolve(facts(), DEFAULT, [answer("store", 123.0, policy_version=4, analytics=G)])
    pc = state.purposes["analytics"]
    assert (pc.state, pc.source, pc.at, pc.policy_version) == (G, "store", 123.0, 4)
    default = state.purposes["advertising"]
    assert (default.at, default.policy_version) == (None, None)


def test_answers_outside_the_configured_purposes_are_ignored() -> None:
    state = resolve(facts(), DEFAULT, [SourceAnswer("tcf", {"measurement": G, NECESSARY: D}, 1.0)])
    assert "measurement" not in state.purposes
    assert state.purposes[NECESSARY].state is G
    assert state.purposes[NECESSARY].source == NECESSARY


C, S = "cookie", "store"


@pytest.mark.parametrize(
    ("answers", "expect"),
    [
        # a store record newer than the cookie wins: withdrawal or consent made elsewhere
        ([answer(C, 100.0, analytics=D), answer(S, 200.0, analytics=G)], (G, "store")),
        ([answer(C, 100.0, analytics=G), answer(S, 200.0, analytics=D)], (D, "store")),
        # a cookie newer than the store (a store write not seen yet) wins too
        ([answer(C, 200.0, analytics=G), answer(S, 100.0, analytics=D)], (G, "cookie")),
        ([answer(C, 200.0, analytics=G), answer(S, None, analytics=D)], (G, "cookie")),
        # the same age: combine as usual
        ([answer(C, 100.0, analytics=G), answer(S, 100.0, analytics=D)], (D, "store")),
        # the own record is still one source among others, combined restrictively
        (
            [answer(C, 100.0, analytics=D), answer(S, 200.0, analytics=G),
             answer("tcf", 300.0, analytics=D)],
            (D, "tcf"),
        ),
        # a purpose the newer record does not mention is not taken from the older one
        ([answer(C, 100.0, analytics=G), answer(S, 200.0)], (D, "default:opt-in")),
    ],
)  # fmt: skip
def test_own_record_newest_stands(
    answers: list[SourceAnswer], expect: tuple[ConsentValue, str]
) -> None:
    pc = resolve(facts(country="DE"), DEFAULT, answers).purposes["analytics"]
    assert (pc.state, pc.source) == expect


def test_subject_is_the_first_answer_carrying_one() -> None:
    answers = [answer("tcf", 1.0), answer("cookie", 2.0, "s1"), answer("store", 3.0, "s2")]
    assert resolve(facts(), DEFAULT, answers).subject == "s1"
    assert resolve(facts(), DEFAULT, []).subject is None


def test_resolve_request_passes_extra_answers_after_the_cookie() -> None:
    value = cookie_value({"analytics": True, "advertising": True})
    extra = [answer("onetrust", 1.0, advertising=D)]
    state, outcome = resolve_request(facts(cookie=value, country="DE"), DEFAULT, COOKIE, extra)
    assert outcome.answer is not None and outcome.problem is None
    assert state.purposes["analytics"].source == "cookie"
    assert (state.state("advertising"), state.purposes["advertising"].source) == (D, "onetrust")
    assert state.subject == SUBJECT


def test_resolve_uses_facts_country_only() -> None:
    # the geo header is the app's to read (with the configured name), never resolve's
    f = Facts("r", "GET", "h", "/", "", headers=Headers((("CF-IPCountry", "US"),)))
    assert resolve(f, DEFAULT, []).regime == "opt-in"


def test_a_gpc_purpose_outside_the_purposes_is_still_denied() -> None:
    consent = ConsentConfig(
        purposes=(NECESSARY, "analytics"), gpc_purposes=frozenset({"advertising"})
    )
    state = resolve(facts(gpc="1", country="US"), consent, [])
    assert state.state("advertising") is D
    assert state.purposes["advertising"].source == "gpc"


# ---------------------------------------------------------------------------
# vendor-level answers: a request needs its purposes granted and its vendor not denied


def vendors_of(source: str, at: float | None, **vendors: tuple[ConsentValue, str]) -> SourceAnswer:
    """An answer carrying only vendor answers: vendor -> (state, purposes a grant answers)."""
    table = {
        v.replace("_", "-"): (state, frozenset(grants.split()) if grants else frozenset())
        for v, (state, grants) in vendors.items()
    }
    return SourceAnswer(source, {}, at, vendors=table)


COOKIE_ANALYTICS = answer("cookie", 200.0, analytics=G)
COOKIE_NO_ANALYTICS = answer("cookie", 200.0, analytics=D)
# Klaro, one analytics service accepted and one refused, each mapped to its vendor
KLARO_ONE = vendors_of("klaro", 150.0, posthog=(G, "analytics"), matomo=(D, ""))
KLARO_DENY_OLD = vendors_of("klaro", 100.0, posthog=(D, ""))
OWN_GRANT_NEW = vendors_of("cookie", 300.0, posthog=(G, ""))
# the visitor's newer own choice: analytics, and posthog explicitly allowed
OWN_ALL_NEW = SourceAnswer("cookie", {"analytics": G}, 300.0, vendors={"posthog": (G, frozenset())})
OWN_DENY = vendors_of("cookie", 200.0, posthog=(D, ""))
_ANALYTICS = frozenset({"analytics"})
_NOTHING: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    ("consent", "country", "gpc", "answers", "posthog", "matomo", "other"),
    [
        # purposes alone: every analytics vendor alike
        (DEFAULT, "DE", None, [COOKIE_ANALYTICS], _NOTHING, _NOTHING, _NOTHING),
        # the gateway's own vendor answer denies one vendor only
        (DEFAULT, "DE", None, [COOKIE_ANALYTICS, OWN_DENY], _ANALYTICS, _NOTHING, _NOTHING),
        # a granted vendor answer of the gateway's own grants no purpose
        (DEFAULT, "DE", None, [OWN_GRANT_NEW], _ANALYTICS, _ANALYTICS, _ANALYTICS),
        # a CMP service standing for a vendor answers analytics for that vendor alone:
        # the refused one and a vendor nobody asked about stay without it (opt-in default)
        (DEFAULT, "DE", None, [KLARO_ONE], _NOTHING, _ANALYTICS, _ANALYTICS),
        # ...but never over an explicit denial for everyone: GPC, the visitor's own choice
        (DEFAULT, "US", "1", [KLARO_ONE], _NOTHING, _ANALYTICS, _NOTHING),  # GPC: advertising
        (DEFAULT, "DE", None, [KLARO_ONE, COOKIE_NO_ANALYTICS], _ANALYTICS, _ANALYTICS, _ANALYTICS),
        # where analytics is granted for everyone, a refused service still denies its vendor
        (DEFAULT, "DE", None, [KLARO_ONE, COOKIE_ANALYTICS], _NOTHING, _ANALYTICS, _NOTHING),
        (DEFAULT, "US", None, [KLARO_ONE], _NOTHING, _ANALYTICS, _NOTHING),  # opt-out default
        # sources that disagree on a vendor combine as purposes do (`consent.conflict`)
        (
            DEFAULT,
            "DE",
            None,
            [OWN_ALL_NEW, KLARO_DENY_OLD],
            _ANALYTICS,
            _NOTHING,
            _NOTHING,
        ),
        (
            NEWEST,
            "DE",
            None,
            [OWN_ALL_NEW, KLARO_DENY_OLD],
            _NOTHING,
            _NOTHING,
            _NOTHING,
        ),
    ],
)
def test_vendor_answers(
    consent: ConsentConfig,
    country: str,
    gpc: str | None,
    answers: list[SourceAnswer],
    posthog: frozenset[str],
    matomo: frozenset[str],
    other: frozenset[str],
) -> None:
    state = resolve(facts(country=country, gpc=gpc), consent, answers)
    missing = {v: state.missing_for(v, _ANALYTICS) for v in ("posthog", "matomo", "heap")}
    assert missing == {"posthog": posthog, "matomo": matomo, "heap": other}


def test_a_vendor_answer_names_its_source() -> None:
    state = resolve(facts(country="DE"), DEFAULT, [OWN_ALL_NEW, KLARO_DENY_OLD])
    choice = state.vendor_choices["posthog"]
    assert (choice.state, choice.source, choice.at) == (D, "klaro", 100.0)
    klaro = resolve(facts(country="DE"), DEFAULT, [KLARO_ONE]).vendor_choices
    assert (klaro["posthog"].state, klaro["posthog"].grants) == (G, _ANALYTICS)
    assert (klaro["matomo"].state, klaro["matomo"].grants) == (D, _NOTHING)


def test_stored_vendor_answers_count_for_server_events_and_only_while_fresh() -> None:
    version = DEFAULT.policy_version
    state = CurrentConsent(
        SUBJECT, {"analytics": True}, version, float(NOW), "api", {"posthog": False}
    )
    judged = resolve_server(facts(), DEFAULT, SUBJECT, state)
    assert judged.missing_for("posthog", _ANALYTICS) == _ANALYTICS
    assert judged.missing_for("heap", _ANALYTICS) == _NOTHING
    stale = CurrentConsent(SUBJECT, {"analytics": True}, version, 0.0, "api", {"posthog": False})
    assert resolve_server(facts(), DEFAULT, SUBJECT, stale).vendor_choices == {}


# ---------------------------------------------------------------------------
# invariants

_PURPOSES = st.sampled_from([*DEFAULT.purposes, "other"])
_ANSWERS = st.lists(
    st.builds(
        SourceAnswer,
        source=st.sampled_from(["cookie", "store", "tcf", "onetrust", "gcm"]),
        purposes=st.dictionaries(_PURPOSES, st.sampled_from(list(ConsentValue))),
        at=st.none() | st.floats(allow_nan=True),
        policy_version=st.none() | st.integers(0, 5),
        subject=st.none() | st.sampled_from(["s1", "s2"]),
    ),
    max_size=5,
)


@given(
    answers=_ANSWERS,
    country=st.none() | st.sampled_from(["DE", "US", "JP", "XX", "us"]),
    gpc=st.none() | st.sampled_from(["1", "0", " 1"]),
    consent=st.sampled_from([DEFAULT, NEWEST, NO_GPC]),
)
def test_resolution_invariants(
    answers: list[SourceAnswer], country: str | None, gpc: str | None, consent: ConsentConfig
) -> None:
    f = facts(gpc=gpc, country=country)
    state = resolve(f, consent, answers)
    # every configured purpose is answered, never unknown; necessary always granted
    assert set(state.purposes) == set(consent.purposes)
    assert all(pc.state in (G, D) for pc in state.purposes.values())
    assert state.purposes[NECESSARY].state is G
    # GPC, where it binds, denies its purposes whatever the sources say
    if state.gpc:
        assert all(state.state(p) is D for p in consent.gpc_purposes)
    # with the restrictive policy, a denial by any source other than an outdated own
    # record is never overturned
    if consent.conflict == "restrictive":
        for a in answers:
            if a.source not in ("cookie", "store"):
                for p, v in a.purposes.items():
                    if v is D and p in consent.purposes and p != NECESSARY:
                        assert state.state(p) is D


# ---------------------------------------------------------------------------
# the store's record (DESIGN §2, §6)


def stored(
    purposes: Mapping[str, bool], at: float, policy_version: int = 1, source: str = "banner"
) -> CurrentConsent:
    return CurrentConsent(SUBJECT, purposes, policy_version, at, source)


@pytest.mark.parametrize(
    ("cookie_at", "store", "expected", "source"),
    [
        # a withdrawal recorded after the cookie was issued wins
        (NOW - 60, stored({"advertising": False}, NOW - 10), D, "store"),
        # a store record older than the cookie (a write not yet seen) does not
        (NOW - 60, stored({"advertising": False}, NOW - 600), G, "cookie"),
        # same age, same record: combined as usual
        (NOW - 60, stored({"advertising": True}, NOW - 60), G, "cookie"),
        # stale store state (older policy) answers nothing but still outdates the cookie
        (NOW - 60, stored({"advertising": True}, NOW - 10, policy_version=0), D, "default:opt-in"),
        # an erased subject: newer, answering nothing
        (NOW - 60, stored({}, NOW - 10, 0, "erasure"), D, "default:opt-in"),
        # no record known now: the cookie stands
        (NOW - 60, None, G, "cookie"),
    ],
)
def test_store_record_newer_than_the_cookie_wins(
    cookie_at: int, store: CurrentConsent | None, expected: ConsentValue, source: str
) -> None:
    f = facts(cookie=cookie_value({"advertising": True}, issued_at=cookie_at))
    state, outcome = resolve_request(f, DEFAULT, COOKIE, stored=store)
    assert outcome.subject == SUBJECT  # whose state the caller looks up
    assert state.purposes["advertising"].state is expected
    assert state.purposes["advertising"].source == source


def test_the_store_is_asked_about_a_stale_cookies_subject() -> None:
    old = cookie_value({"advertising": True}, policy_version=0)
    state, outcome = resolve_request(
        facts(cookie=old),
        DEFAULT,
        COOKIE,
        stored=stored({"advertising": True}, NOW - 5),
    )
    assert outcome.problem == "old-policy"
    assert state.purposes["advertising"] == PurposeConsent(G, "store", NOW - 5, 1)


def test_another_subjects_stored_state_is_ignored() -> None:
    # plain values: the caller passes the state it looked up; one for another subject
    # (a cache mix-up, a race with a new cookie) must not answer for this visitor
    theirs = CurrentConsent("someone-else", {"advertising": True}, 1, NOW - 5, "api")
    state, outcome = resolve_request(facts(), DEFAULT, COOKIE, stored=theirs)
    assert outcome.subject is None
    assert state.purposes["advertising"].state is D


@pytest.mark.parametrize(
    ("record", "country", "gpc", "expected"),
    [
        # only what the stored record grants is granted
        (
            stored({"analytics": True, "advertising": False}, NOW - 10),
            None,
            None,
            {
                "analytics": (G, "store"),
                "advertising": (D, "store"),
                "functional": (D, "store:none"),
            },
        ),
        # an unknown subject has no consent, even where the regime's default grants
        (None, "US", None, {"analytics": (D, "store:none"), "advertising": (D, "store:none")}),
        # stale records count as none
        (
            stored({"analytics": True}, NOW - 10, policy_version=0),
            "US",
            None,
            {"analytics": (D, "store:none")},
        ),
        (
            stored({"analytics": True}, NOW - DEFAULT.max_age - 1),
            None,
            None,
            {"analytics": (D, "store:none")},
        ),
        # GPC binds as for a browser
        (stored({"advertising": True}, NOW - 10), "US", "1", {"advertising": (D, "gpc")}),
    ],
)
def test_server_to_server_is_judged_by_the_store_alone(
    record: CurrentConsent | None,
    country: str | None,
    gpc: str | None,
    expected: dict[str, tuple[ConsentValue, str]],
) -> None:
    # a cookie on the request (granting everything) is not the server event's consent
    f = facts(
        cookie=cookie_value({p: True for p in DEFAULT.purposes if p != NECESSARY}),
        country=country,
        gpc=gpc,
    )
    state = resolve_server(f, DEFAULT, SUBJECT, record)
    assert state.subject == SUBJECT
    assert state.purposes[NECESSARY].state is G
    for purpose, (value, source) in expected.items():
        assert (state.purposes[purpose].state, state.purposes[purpose].source) == (value, source)


@given(
    st.dictionaries(st.sampled_from(["analytics", "advertising", "x"]), st.booleans()),
    st.floats(min_value=0, max_value=2 * NOW),
    st.integers(min_value=0, max_value=3),
)
def test_server_consent_never_grants_what_the_record_does_not(
    purposes: dict[str, bool], at: float, version: int
) -> None:
    state = resolve_server(facts(), DEFAULT, SUBJECT, stored(purposes, at, version))
    for purpose, pc in state.purposes.items():
        if purpose != NECESSARY and pc.state is G:
            assert purposes.get(purpose) is True
            assert version >= DEFAULT.policy_version
