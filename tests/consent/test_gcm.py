"""Google Consent Mode parameters.

Sources of the examples: the researched reference (shared/reference/consent-signals.md
§3: the gcs table, `11p1p1p1p5`, `13r3r3r3r5`, the gcd letter table and bit rule), the
Analytics Debugger "Google Consent Parser" template (analytics-debugger/gtm-template-
server-side-google-consent-parser: the bit rule, test value `13r3r3r3r5`), and hits
captured in public code (`13l3l3l3l1l1`, `13r3r3r2r5l1`, `13p3p3p2p5l1`,
`13t3tPt2t5l1`, `11l1l1l1l1`, `11t1t1p1p5`, `dma_cps=syphamo`, `dma_cps=sypham`).
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.consent import gcm as gcm_mod
from gateway.consent.gcm import (
    GCM_TYPES,
    GcdType,
    consent_params,
    decode_dma,
    decode_dma_cps,
    decode_gcd,
    decode_gcs,
    decode_npa,
    encode_gcs,
    rewrite_gcd,
    signal_answers,
)
from gateway.errors import GCMError, SignalError
from gateway.model import ConsentValue

G = ConsentValue.GRANTED
D = ConsentValue.DENIED
U = ConsentValue.UNKNOWN
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"
REASONS = {
    "malformed",
    "malformed gcs",
    "malformed gcd",
    "undefined gcd state",
    "malformed npa",
    "malformed dma",
    "malformed dma_cps",
}
STATES = st.sampled_from([G, D, U])
EFFECTIVE = st.fixed_dictionaries({name: STATES for name in GCM_TYPES})


def reason(call: object, *args: object) -> str:
    """The reason `call(*args)` fails with; it must be a fixed phrase, never the input."""
    assert callable(call)
    with pytest.raises(GCMError) as e:
        call(*args)
    assert str(e.value) == e.value.reason
    assert e.value.reason in REASONS
    return e.value.reason


def test_exports() -> None:
    assert all(hasattr(gcm_mod, name) for name in gcm_mod.__all__)


def test_gcm_error_is_a_signal_error() -> None:
    assert issubclass(GCMError, SignalError)


# --- gcs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ad_storage", "analytics_storage"),
    [
        ("G111", G, G),  # reference §3: both granted
        ("G110", G, D),  # ads granted, analytics denied
        ("G101", D, G),  # ads denied, analytics granted
        ("G100", D, D),  # both denied (advanced mode cookieless ping)
        ("G1--", U, U),  # `-` = not set
        ("G1-1", U, G),
        ("G10-", D, U),
    ],
)
def test_decode_gcs(value: str, ad_storage: ConsentValue, analytics_storage: ConsentValue) -> None:
    assert dict(decode_gcs(value)) == {
        "ad_storage": ad_storage,
        "analytics_storage": analytics_storage,
    }


@pytest.mark.parametrize(
    "value",
    [
        "",
        "G",
        "G1",
        "G11",
        "G1111",  # only the four-character form is known
        "G11111",
        "g111",
        "G211",
        "G011",
        "1111",
        "G1x1",
        "G1 1",
        "G12-",
        " G111",
        "G111 ",
        "G111\n",
        "G1\u06611",  # ARABIC-INDIC DIGIT ONE is not "1"
        "G1" + "1" * 5000,
    ],
)
def test_decode_gcs_rejects(value: str) -> None:
    reason(decode_gcs, value)


# --- gcd ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "defaults", "updates"),
    [
        # reference §3: denied by default, never updated
        ("11p1p1p1p5", (D, D, D, D), (U, U, U, U)),
        # reference §3 and the Analytics Debugger template's test: denied, then granted
        ("13r3r3r3r5", (D, D, D, D), (G, G, G, G)),
        # no Consent Mode signal at all
        ("11l1l1l1l5", (U, U, U, U), (U, U, U, U)),
        ("11l1l1l1l1", (U, U, U, U), (U, U, U, U)),
        # granted by default for storage, denied for the v2 types
        ("11t1t1p1p5", (G, G, D, D), (U, U, U, U)),
        # withdrawn (granted default, denied update) and update-only letters
        ("11u1v1m1n5", (G, G, U, U), (D, G, D, G)),
        # current tags: a fifth separator/state pair before the final character
        ("13l3l3l3l1l1", (U, U, U, U), (U, U, U, U)),
        ("13r3r3r2r5l1", (D, D, D, D), (G, G, G, G)),
        ("13p3p3p2p5l1", (D, D, D, D), (U, U, U, U)),
        # a captured GA4 hit with a letter where a separator usually is
        ("13t3tPt2t5l1", (G, G, G, G), (U, U, U, U)),
    ],
)
def test_decode_gcd(
    value: str, defaults: tuple[ConsentValue, ...], updates: tuple[ConsentValue, ...]
) -> None:
    state = decode_gcd(value)
    assert list(state.types) == list(GCM_TYPES)
    for name, default, update in zip(GCM_TYPES, defaults, updates, strict=True):
        assert state.types[name] == GcdType(default=default, update=update)
        assert state.effective[name] is (update if update is not U else default)


# reference §3, the published letter table: letter -> (default, update)
LETTER_TABLE = {
    "l": (U, U),
    "p": (D, U),
    "q": (D, D),
    "r": (D, G),
    "t": (G, U),
    "u": (G, D),
    "v": (G, G),
    "m": (U, D),
    "n": (U, G),
}


@pytest.mark.parametrize(("letter", "expect"), sorted(LETTER_TABLE.items()))
def test_letter_table_agrees_with_the_bit_rule(
    letter: str, expect: tuple[ConsentValue, ConsentValue]
) -> None:
    for pos in (2, 4, 6, 8):
        value = list("11l1l1l1l5")
        value[pos] = letter
        state = decode_gcd("".join(value))
        name = GCM_TYPES[pos // 2 - 1]
        assert (state.types[name].default, state.types[name].update) == expect
        # the other types stay "no signal"
        assert all(state.types[other] == GcdType(U, U) for other in GCM_TYPES if other != name)


FIELD = {1: U, 2: D, 3: G}


@pytest.mark.parametrize("char", ALPHABET)
def test_every_character_decodes_by_the_bit_rule(char: str) -> None:
    v = ALPHABET.index(char)
    default, update = (v >> 2) & 3, v & 3
    value = f"11{char}1l1l1l5"
    if default == 0 or update == 0:
        assert reason(decode_gcd, value) == "undefined gcd state"
    else:
        assert decode_gcd(value).types["ad_storage"] == GcdType(FIELD[default], FIELD[update])


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1",
        "11p1p1p1p",  # 9
        "11p1p1p1p5l",  # 11
        "11p1p1p1p5l1l",  # 13
        "11p1p1p1p5l1l1",  # 14: no such layout seen
        "21p1p1p1p5",  # the first character is always 1
        "01p1p1p1p5",
        "11p1p1p1p+",  # outside 0-9a-zA-Z-_
        "11p1p1p1p=",
        "11p1p1p1p ",
        " 11p1p1p1p",
        "11p1p.1p1p",
        "11p1p1p1p\u0665",  # ARABIC-INDIC DIGIT FIVE
        "11\u00e91p1p1p5",
        "110101l1l5",  # '0': default and update 0, undefined
        "11g1l1l1l5",  # 'g' = 16: both fields 0
        "11k1l1l1l5",  # 'k' = 20: update 0
    ],
)
def test_decode_gcd_rejects(value: str) -> None:
    reason(decode_gcd, value)


def test_state_characters_outside_the_table_decode_too() -> None:
    # '_' = 63 = 0b111111: default granted, update granted, whatever the high bits say
    assert decode_gcd("11l1l1l1_5").types["ad_personalization"] == GcdType(G, G)
    # a digit is a character of the alphabet: '5' = 0b000101, nothing set
    assert decode_gcd("1151515155").effective == dict.fromkeys(GCM_TYPES, U)


def test_the_fifth_state_is_ignored() -> None:
    assert decode_gcd("13r3r3r3r5v1") == decode_gcd("13r3r3r3r5l1") == decode_gcd("13r3r3r3r5")


# --- signal_answers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gcs", "gcd", "expect"),
    [
        (None, None, (U, U, U, U)),
        ("G110", None, (G, D, U, U)),
        (None, "13r3r3r3r5", (G, G, G, G)),
        # gcd wins where it answers
        ("G100", "13r3r3r3r5", (G, G, G, G)),
        ("G111", "11p1p1p1p5", (D, D, D, D)),
        # gcs answers where gcd leaves a storage type not set
        ("G110", "11l1p1r1l5", (G, D, G, U)),
        ("G1--", "11l1l1l1l5", (U, U, U, U)),
    ],
)
def test_signal_answers(gcs: str | None, gcd: str | None, expect: tuple[ConsentValue, ...]) -> None:
    assert dict(signal_answers(gcs, gcd)) == dict(zip(GCM_TYPES, expect, strict=True))


@pytest.mark.parametrize(
    ("gcs", "gcd"),
    [("G1", None), (None, "11p1p"), ("G111", "bad"), ("bad", "13r3r3r3r5")],
)
def test_signal_answers_refuses_a_malformed_parameter(gcs: str | None, gcd: str | None) -> None:
    reason(signal_answers, gcs, gcd)


# --- npa, dma, dma_cps --------------------------------------------------------------------


@pytest.mark.parametrize("decode", [decode_npa, decode_dma])
@pytest.mark.parametrize(
    ("value", "expect"),
    [
        ("1", True),
        ("0", False),
        ("", None),
        ("2", None),
        ("true", None),
        ("01", None),
        (" 1", None),
        ("1 ", None),
        ("\u0661", None),
        ("-1", None),
    ],
)
def test_binary_parameters(decode: object, value: str, expect: bool | None) -> None:
    assert callable(decode)
    if expect is None:
        reason(decode, value)
    else:
        assert decode(value) is expect


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        ("syphamo", frozenset("syphamo")),  # reference §3, observed
        ("sypham", frozenset("sypham")),  # a captured GA4 hit
        ("a", frozenset("a")),  # a captured Google Ads hit
        ("aa", frozenset("a")),
        ("abcdefghijklmnopqrstuvwxyz", frozenset("abcdefghijklmnopqrstuvwxyz")),
    ],
)
def test_decode_dma_cps(value: str, expect: frozenset[str]) -> None:
    assert decode_dma_cps(value) == expect


@pytest.mark.parametrize("value", ["", "-", "SY", "sy-p", "sy p", "sy,p", "s1", "\u00e9", "a" * 27])
def test_decode_dma_cps_rejects(value: str) -> None:
    reason(decode_dma_cps, value)


# --- encoders -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ad_storage", "analytics_storage", "expect"),
    [
        (G, G, "G111"),
        (G, D, "G110"),
        (D, G, "G101"),
        (D, D, "G100"),
        (U, U, "G1--"),
        (U, D, "G1-0"),
    ],
)
def test_encode_gcs(ad_storage: ConsentValue, analytics_storage: ConsentValue, expect: str) -> None:
    assert encode_gcs(ad_storage, analytics_storage) == expect
    assert dict(decode_gcs(expect)) == {
        "ad_storage": ad_storage,
        "analytics_storage": analytics_storage,
    }


@pytest.mark.parametrize(
    ("original", "effective", "expect"),
    [
        # canonical form without an original
        (None, (G, G, G, G), "11r1r1r1r5"),
        (None, (D, D, D, D), "11q1q1q1q5"),
        (None, (U, U, U, U), "11l1l1l1l5"),
        (None, (G, D, U, G), "11r1q1l1r5"),
        # an invalid original is not kept
        ("garbage", (G, D, D, D), "11r1q1q1q5"),
        ("11p1p1p1p", (D, D, D, D), "11q1q1q1q5"),
        # a valid original keeps separators, length, final character and defaults
        ("11p1p1p1p5", (G, D, D, D), "11r1p1p1p5"),  # p already denies: kept
        ("13t3tPt2t5l1", (G, D, U, G), "13t3uPl2t5l1"),  # t -> u: granted, then withdrawn
        ("11l1l1l1l5", (G, D, U, U), "11n1m1l1l5"),  # no default: update only
        ("13r3r3r3r5", (G, G, G, G), "13r3r3r3r5"),  # already right: unchanged
        ("13r3r3r3r5", (U, U, U, U), "13l3l3l3l5"),  # not set needs no default either
        ("11_1l1l1l5", (G, U, U, U), "11_1l1l1l5"),  # an unusual letter that is right stays
    ],
)
def test_rewrite_gcd(
    original: str | None, effective: tuple[ConsentValue, ...], expect: str
) -> None:
    wanted = dict(zip(GCM_TYPES, effective, strict=True))
    assert rewrite_gcd(original, wanted) == expect
    assert dict(decode_gcd(expect).effective) == wanted


def test_rewrite_gcd_missing_types_are_unknown() -> None:
    assert rewrite_gcd(None, {"ad_storage": G}) == "11r1l1l1l5"


def test_rewrite_gcd_refuses_a_value_that_is_not_a_consent_value() -> None:
    with pytest.raises(ValueError):
        rewrite_gcd(None, {"ad_storage": "yes"})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("states", "expect"),
    [
        (dict.fromkeys(GCM_TYPES, G), {"gcs": "G111", "gcd": "11r1r1r1r5", "npa": "0"}),
        (dict.fromkeys(GCM_TYPES, D), {"gcs": "G100", "gcd": "11q1q1q1q5", "npa": "1"}),
        # unknown personalisation never permits personalised ads
        (dict.fromkeys(GCM_TYPES, U), {"gcs": "G1--", "gcd": "11l1l1l1l5", "npa": "1"}),
        ({}, {"gcs": "G1--", "gcd": "11l1l1l1l5", "npa": "1"}),
        (
            {"ad_storage": D, "analytics_storage": G, "ad_user_data": D, "ad_personalization": G},
            {"gcs": "G101", "gcd": "11q1r1q1r5", "npa": "0"},
        ),
        # keys that are not Consent Mode types are ignored
        ({"analytics": G, "ad_storage": G}, {"gcs": "G11-", "gcd": "11r1l1l1l5", "npa": "1"}),
    ],
)
def test_consent_params(states: dict[str, ConsentValue], expect: dict[str, str]) -> None:
    assert consent_params(states) == expect


def test_consent_params_keeps_the_original_gcd_layout() -> None:
    states = {"ad_storage": G, "analytics_storage": D, "ad_user_data": D, "ad_personalization": D}
    params = consent_params(states, original_gcd="13p3p3p2p5l1")
    assert params == {"gcs": "G110", "gcd": "13r3p3p2p5l1", "npa": "1"}


# --- properties ---------------------------------------------------------------------------

GCD_LIKE = st.text(alphabet=ALPHABET + "+= .\u0661", min_size=8, max_size=14)


@given(st.one_of(st.text(), GCD_LIKE, st.text(alphabet="G10-", max_size=6)))
def test_decoders_raise_only_gcm_error(value: str) -> None:
    for decode in (decode_gcs, decode_gcd, decode_npa, decode_dma, decode_dma_cps):
        try:
            decode(value)
        except GCMError as e:
            assert e.reason in REASONS


@given(st.one_of(st.none(), st.text(max_size=14), GCD_LIKE), st.one_of(st.none(), st.text()))
def test_signal_answers_raises_only_gcm_error(gcd: str | None, gcs: str | None) -> None:
    try:
        answers = signal_answers(gcs, gcd)
    except GCMError as e:
        assert e.reason in REASONS
    else:
        assert set(answers) == set(GCM_TYPES)


def valid_gcd() -> st.SearchStrategy[str]:
    """gcd values of both layouts, with any separators and defined state characters."""
    defined = [c for c in ALPHABET if (ALPHABET.index(c) >> 2) & 3 and ALPHABET.index(c) & 3]
    char, state = st.sampled_from(ALPHABET), st.sampled_from(defined)
    pairs = st.lists(st.tuples(char, state), min_size=4, max_size=5)
    return st.builds(lambda ps, final: "1" + "".join(a + b for a, b in ps) + final, pairs, char)


@given(st.one_of(st.none(), st.text(max_size=14), valid_gcd()), EFFECTIVE)
def test_rewrite_round_trip(original: str | None, effective: dict[str, ConsentValue]) -> None:
    rewritten = rewrite_gcd(original, effective)
    assert dict(decode_gcd(rewritten).effective) == effective


@given(valid_gcd(), EFFECTIVE)
def test_rewrite_changes_only_state_characters(
    original: str, effective: dict[str, ConsentValue]
) -> None:
    rewritten = rewrite_gcd(original, effective)
    assert len(rewritten) == len(original)
    assert [c for i, c in enumerate(rewritten) if i not in (2, 4, 6, 8)] == [
        c for i, c in enumerate(original) if i not in (2, 4, 6, 8)
    ]
    # a type already in the wanted state keeps its character
    decoded = decode_gcd(original)
    for name, pos in zip(GCM_TYPES, (2, 4, 6, 8), strict=True):
        if decoded.effective[name] is effective[name]:
            assert rewritten[pos] == original[pos]


@given(EFFECTIVE)
def test_consent_params_agree_with_the_states(effective: dict[str, ConsentValue]) -> None:
    params = consent_params(effective)
    assert dict(decode_gcd(params["gcd"]).effective) == effective
    assert dict(decode_gcs(params["gcs"])) == {n: effective[n] for n in GCM_TYPES[:2]}
    assert decode_npa(params["npa"]) is (effective["ad_personalization"] is not G)
    assert dict(signal_answers(params["gcs"], params["gcd"])) == effective
