"""gateway.identifiers: the registry of identifier names and shapes, and the invariant it
holds: with every purpose denied, no identifier leaves by any shipped rule, in any position.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote_plus, urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.config import DEFAULT_PURPOSES
from gateway.core import evaluate
from gateway.identifiers import (
    REGISTRY,
    IdKind,
    is_hashed_identifier,
    is_identifier_name,
    is_identifier_value,
    looks_like_url,
    name_in,
    name_kind,
)
from gateway.model import NECESSARY, BodyKind, ConsentValue, Facts, Headers
from gateway.ruleset.load import load_rules
from gateway.ruleset.schema import EndpointSpec, VendorRule
from tests.conftest import RULES_DIR, make_config

SHA256 = "309a0a5c3e211326ae75ca18196d301a9bdbd1a882a4d2569511033da23f0abd"
MD5 = "f1c9645dbc14efddc7d8a322685f26eb"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("gclid", IdKind.CLICK_ID),
        ("GCLID", IdKind.CLICK_ID),
        ("ScCid", IdKind.CLICK_ID),
        ("fbclid", IdKind.CLICK_ID),
        ("_kx", IdKind.CLICK_ID),
        ("irclickid", IdKind.CLICK_ID),
        # the affiliate networks' landing-page click ids (rules/awin.yaml, rules/impact.yaml)
        ("awc", IdKind.CLICK_ID),
        ("im_ref", IdKind.CLICK_ID),
        ("ud[em]", IdKind.USER_DATA),
        ("traits.Email", IdKind.USER_DATA),
        ("user_data.external_id", IdKind.USER_DATA),
        ("em", IdKind.USER_DATA),
        ("uid", IdKind.USER_DATA),
        ("e", IdKind.IN_URL),
        ("token", IdKind.IN_URL),
        ("en", None),
        ("cid", None),
        ("tid", None),
        ("emd", None),
        ("[]", None),
    ],
)
def test_name_kind(name: str, kind: IdKind | None) -> None:
    assert name_kind(name) is kind
    assert is_identifier_name(name) is (kind in (IdKind.CLICK_ID, IdKind.USER_DATA))
    assert is_identifier_name(name, in_url=True) is (kind is not None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jane.doe@mail.example", True),
        ("Contact: jane.doe@mail.example today", True),
        ("tv.1~em.q2EGDzqnS2qSZKb1kBXrEjrzgiQ25Iqx8Fdc7pTJAH4", True),
        ("TV.1~PN.abc", True),
        ("@handle", False),
        ("a@b", False),
        ("page_view", False),
        (SHA256, False),  # a hash is judged with its field's name (is_hashed_identifier)
    ],
)
def test_is_identifier_value(value: str, expected: bool) -> None:
    assert is_identifier_value(value) is expected


@pytest.mark.parametrize(
    ("name", "value", "in_user_data", "expected"),
    [
        ("hashed_email", SHA256, False, True),
        ("sha256_phone", SHA256, False, True),
        ("idValue", SHA256, False, True),
        ("x", SHA256, True, True),
        ("email", MD5, False, True),
        ("event_id", SHA256, False, False),  # an event id that happens to be hex stays
        ("hashed_email", SHA256[:40], False, False),
        ("hashed_email", "z" * 64, False, False),
    ],
)
def test_is_hashed_identifier(name: str, value: str, in_user_data: bool, expected: bool) -> None:
    assert is_hashed_identifier(name, value, in_user_data=in_user_data) is expected


@pytest.mark.parametrize(
    ("name", "names", "expected"),
    [
        ("email", frozenset({"email"}), True),
        ("traits.Email", frozenset({"email"}), True),
        ("u7", frozenset({"u*"}), True),
        ("anything", frozenset({"*"}), True),
        ("phone", frozenset({"email"}), False),
        ("email", frozenset(), False),
    ],
)
def test_name_in(name: str, names: frozenset[str], expected: bool) -> None:
    assert name_in(name, names) is expected


def test_looks_like_url() -> None:
    assert looks_like_url("https://shop.example/?gclid=x")
    assert looks_like_url("HTTP://shop.example/")
    assert not looks_like_url("shop.example/?gclid=x")


def test_registry_names_are_lower_case_and_unique_per_kind() -> None:
    assert all(n == n.lower() and n for n in REGISTRY)
    # the list of click ids and user-data keys, every one in the registry
    for n in "gclid dclid gbraid wbraid fbclid ttclid msclkid li_fat_id twclid sccid".split():
        assert REGISTRY[n] is IdKind.CLICK_ID
    for n in "epik rdt_cid irclickid _kx".split():
        assert REGISTRY[n] is IdKind.CLICK_ID
    for n in "em email ph phone external_id uid hashed_email".split():
        assert REGISTRY[n] is IdKind.USER_DATA


# --- the invariant over every shipped rule -------------------------------------------------

RULES = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))
CONFIG = make_config(Path("/nonexistent-identifiers"))
CLICK_IDS = sorted(n for n, k in REGISTRY.items() if k is IdKind.CLICK_ID)
USER_KEYS = sorted(n for n, k in REGISTRY.items() if k is IdKind.USER_DATA)


def _example_path(rule: VendorRule, ep: EndpointSpec) -> tuple[str, str, str] | None:
    """(host, path, method) of one of the rule's examples this endpoint matches."""
    for ex in rule.examples:
        url = urlsplit(ex.url)
        if ep.matches(url.path, ex.method):
            return url.hostname or "", url.path, ex.method
    return None


ENDPOINTS = [
    (rule, ep, found)
    for rule in RULES.rules
    for ep in rule.endpoints
    if not ep.retired and (found := _example_path(rule, ep)) is not None
]
POSITIONS = ("query", "path_param", "body", "url_value")


def _sends_something(rule: VendorRule, ep: EndpointSpec, found: tuple[str, str, str]) -> bool:
    host, path, method = found
    facts = Facts("probe", method, host, path, "v=2", now=1_800_000_000.0)
    return evaluate(facts, CONFIG, RULES).outgoing is not None


#: the endpoints that still send something to the vendor with every purpose denied (STRIP,
#: or no consent needed): where an identifier could leak. The rest drop, which the
#: property checks too, but they are not where it needs its examples.
SENDING = [c for c in ENDPOINTS if _sends_something(*c)]


@dataclass(frozen=True)
class Plant:
    """One identifier planted in a request: its field name, value and position."""

    name: str
    value: str
    position: str
    #: a user-data plant (not a click id): a rule's `keep` may declare it the visitor's own
    user_data: bool


@st.composite
def plants(draw: st.DrawFn) -> list[Plant]:
    out: list[Plant] = []
    for i in range(draw(st.integers(1, 6))):
        position = draw(st.sampled_from(POSITIONS))
        shape = draw(st.sampled_from(["click", "user", "email", "marker", "hash"]))
        tag = f"plnt{i}x"
        if shape == "click":
            out.append(Plant(draw(st.sampled_from(CLICK_IDS)), f"CLK{tag}", position, False))
        elif shape == "user":
            out.append(Plant(draw(st.sampled_from(USER_KEYS)), f"USR{tag}", position, True))
        elif shape == "email":
            out.append(Plant(f"zz_note{i}", f"{tag}@mail.example", position, True))
        elif shape == "marker":
            out.append(Plant(f"zz_custom{i}", f"tv.1~em.{tag}HASH", position, True))
        else:
            out.append(Plant(f"zz_hashed_email{i}", SHA256[:-8] + f"{i:08x}", position, True))
    return out


def _request(
    host: str, path: str, method: str, ep: EndpointSpec, planted: list[Plant]
) -> tuple[Facts, list[Plant]]:
    """The request carrying `planted`, and the plants that made it in (a position the
    endpoint cannot carry, such as a body on a GET, is left out)."""
    query = ["v=2", "en=page_view"]
    params: list[str] = []
    pairs: list[tuple[str, str]] = []
    doc: dict[str, object] = {"event": "x", "user_data": {}}
    carried: list[Plant] = []
    for p in planted:
        if p.position == "url_value":
            url = f"https://shop.example/p?{p.name}={quote(p.value, safe='')}"
            query.append(f"zz_page={quote(url, safe='')}")
        elif p.position == "query":
            query.append(f"{quote(p.name, safe='[]')}={quote(p.value, safe='~@')}")
        elif p.position == "path_param":
            params.append(f"{p.name}={p.value}")
        else:
            pairs.append((p.name, p.value))
            # in JSON: at the top and inside a user-data object
            doc[p.name] = p.value
            user = doc["user_data"]
            assert isinstance(user, dict)
            user[p.name] = [p.value]
        carried.append(p)
    full_path = path + "".join(f";{x}" for x in params)
    if params and not ep.matches(full_path, method):
        carried = [p for p in carried if p.position != "path_param"]
        full_path = path
    body, ctype = b"", ""
    if pairs and method == "POST":
        if ep.body in (BodyKind.FORM, BodyKind.GA4_BATCH):
            body = "&".join(f"{n}={quote(v, safe='')}" for n, v in pairs).encode()
            ctype = "application/x-www-form-urlencoded"
        elif ep.body is BodyKind.FORM_JSON:
            body = f"data={quote(orjson.dumps([doc]).decode(), safe='')}".encode()
            ctype = "application/x-www-form-urlencoded"
        else:
            body, ctype = orjson.dumps(doc), "application/json"
    elif pairs:
        carried = [p for p in carried if p.position != "body"]
    facts = Facts(
        request_id="ids",
        method=method,
        host=host,
        path=full_path,
        query="&".join(query),
        headers=Headers((("Content-Type", ctype),) if ctype else ()),
        body=body,
        client_ip="203.0.113.7",
        now=1_800_000_000.0,
    )
    return facts, carried


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(SENDING) | st.sampled_from(ENDPOINTS),
    planted=plants(),
)
def test_with_every_purpose_denied_no_identifier_leaves_by_any_rule(
    case: tuple[VendorRule, EndpointSpec, tuple[str, str, str]], planted: list[Plant]
) -> None:
    rule, ep, (host, path, method) = case
    facts, carried = _request(host, path, method, ep, planted)
    ev = evaluate(facts, CONFIG, RULES)
    assert ev.consent is not None
    assert all(
        pc.state is not ConsentValue.GRANTED
        for p, pc in ev.consent.purposes.items()
        if p != NECESSARY
    )
    out = ev.outgoing
    event(f"{ev.decision.action.value}, {len(carried)} planted")
    if out is None:
        return  # dropped or refused: nothing left
    sent = "\n".join(
        [out.path, out.query, out.body.decode("utf-8", "replace"), *(v for _, v in out.headers)]
    )
    seen = sent + "\n" + unquote_plus(unquote_plus(sent))
    keep = ev.decision.strips.keep
    for p in carried:
        if p.user_data and name_in(p.name, keep):
            continue  # the rule declares this field the visitor's own submission
        assert p.value not in seen, (rule.vendor, ep.id, p)


def test_the_property_reaches_endpoints_that_send() -> None:
    # a regression that made every endpoint DROP would leave the property nothing to check
    assert len(SENDING) >= 15 and len({r.vendor for r, _, _ in SENDING}) >= 8


def test_every_rule_with_an_example_is_covered() -> None:
    # the property samples endpoints that have an example to borrow a path from: most do
    covered = {(r.vendor, e.id) for r, e, _ in ENDPOINTS}
    assert len(covered) >= 0.8 * sum(
        1 for r in RULES.rules for e in r.endpoints if not e.retired
    ), "fewer than 80% of live endpoints are exercised"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://shop.example/", "https://shop.example/"),
        ("https://shop.example/?gclid=abc&x=1", "https://shop.example/?x=1"),
        ("https://shop.example/?FBCLID=abc", "https://shop.example/"),
        ("https://shop.example/?x=1&msclkid=m&ttclid=t&_gl=1*abc", "https://shop.example/?x=1"),
        ("https://shop.example/?ref=a%40b.example&y=2", "https://shop.example/?y=2"),
        ("https://shop.example/?who=a@b.example", "https://shop.example/"),
        ("https://shop.example/u/a@b.example/x?z=1", "https://shop.example/u//x?z=1"),
        ("https://shop.example/#gclid=abc&tab=2", "https://shop.example/#tab=2"),
        ("https://shop.example/#section-2", "https://shop.example/#section-2"),
    ],
)
def test_scrub_url(url: str, expected: str) -> None:
    from gateway.identifiers import scrub_url

    assert scrub_url(url) == expected
