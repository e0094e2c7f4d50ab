"""gateway.model: the values of the pipeline."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.model import (
    NECESSARY,
    Action,
    ConsentState,
    ConsentValue,
    Decision,
    Facts,
    Headers,
    IpPolicy,
    PurposeConsent,
    ReferrerPolicy,
    StripSpec,
    UserAgentPolicy,
)


@pytest.mark.parametrize(
    ("a", "b", "merged"),
    [
        (StripSpec(), StripSpec(), StripSpec()),
        (
            StripSpec(query=frozenset({"a"}), ip=IpPolicy.TRUNCATE),
            StripSpec(query=frozenset({"b"}), ip=IpPolicy.KEEP),
            StripSpec(query=frozenset({"a", "b"}), ip=IpPolicy.TRUNCATE),
        ),
        (
            StripSpec(ip=IpPolicy.DROP, referrer=ReferrerPolicy.ORIGIN),
            StripSpec(ip=IpPolicy.TRUNCATE, referrer=ReferrerPolicy.DROP),
            StripSpec(ip=IpPolicy.DROP, referrer=ReferrerPolicy.DROP),
        ),
        (
            StripSpec(cookies=frozenset({"_ga"})),
            StripSpec(all_cookies=True, user_agent=UserAgentPolicy.DROP),
            StripSpec(
                cookies=frozenset({"_ga"}), all_cookies=True, user_agent=UserAgentPolicy.DROP
            ),
        ),
    ],
)
def test_merge_is_union_and_stricter_policy(a: StripSpec, b: StripSpec, merged: StripSpec) -> None:
    assert a.merge(b) == merged
    assert b.merge(a) == merged


_specs = st.builds(
    StripSpec,
    query=st.frozensets(st.sampled_from("abcde")),
    json=st.frozensets(st.sampled_from(["x", "y.z"])),
    all_cookies=st.booleans(),
    ip=st.sampled_from(list(IpPolicy)),
    user_agent=st.sampled_from(list(UserAgentPolicy)),
    referrer=st.sampled_from(list(ReferrerPolicy)),
)


@given(_specs, _specs, _specs)
def test_merge_is_associative_commutative_idempotent(
    a: StripSpec, b: StripSpec, c: StripSpec
) -> None:
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a


def test_field_names_never_values() -> None:
    spec = StripSpec(query=frozenset({"cid"}), json=frozenset({"user.em"}), ip=IpPolicy.TRUNCATE)
    assert spec.field_names() == ["query:cid", "json:user.em", "ip:truncate"]
    assert StripSpec().is_empty and not spec.is_empty
    assert spec.touches_body and not StripSpec(ip=IpPolicy.DROP).touches_body


def test_headers_are_case_insensitive_and_never_shown() -> None:
    h = Headers((("Cookie", "secret=1"), ("X-A", "1"), ("x-a", "2")))
    assert h["cookie"] == "secret=1" and h["X-A"] == "1" and "COOKIE" in h
    assert len(h) == 2 and h.items_all()[2] == ("x-a", "2")
    assert "secret" not in repr(h)


_HEADER_NAMES = st.sampled_from(["Cookie", "cookie", "X-A", "x-a", "Sec-GPC", "sec-gpc", "Host"])


@given(
    st.lists(st.tuples(_HEADER_NAMES, st.sampled_from(["1", "2", " 1 ", ""])), max_size=6),
    _HEADER_NAMES,
)
def test_headers_answer_alike_with_aiohttps_lookup(items: list[tuple[str, str]], name: str) -> None:
    """The edge hands aiohttp's case-insensitive multidict over as the lookup: every
    answer is the one the index built from the same items gives."""
    from multidict import CIMultiDict, CIMultiDictProxy

    given_items = tuple(items)
    plain = Headers(given_items)
    backed = Headers.over(CIMultiDictProxy(CIMultiDict(given_items)))
    assert (name in backed) == (name in plain)
    assert backed.get(name) == plain.get(name)
    assert len(backed) == len(plain) and sorted(backed) == sorted(plain)
    assert repr(backed) == repr(plain) and backed.items_all() == plain.items_all()
    assert object() not in backed


def test_facts_repr_hides_personal_data() -> None:
    f = Facts("r", "GET", "h.example", "/p", "email=a@b.c", client_ip="203.0.113.9", body=b"x")
    assert "a@b.c" not in repr(f) and "203.0.113.9" not in repr(f)


def test_consent_state_necessary_always_granted_and_missing_is_unknown() -> None:
    state = ConsentState(
        purposes={"analytics": PurposeConsent(ConsentValue.DENIED, "cookie")}, regime="opt-in"
    )
    assert state.granted(NECESSARY)
    assert state.state("analytics") is ConsentValue.DENIED
    assert state.state("advertising") is ConsentValue.UNKNOWN
    assert state.sources() == {"analytics": "cookie"}


@pytest.mark.parametrize(
    ("action", "report_only", "effective", "sends"),
    [
        (Action.FORWARD, False, Action.FORWARD, True),
        (Action.STRIP, False, Action.STRIP, True),
        (Action.DROP, False, Action.DROP, False),
        (Action.REJECT, False, Action.REJECT, False),
        # report-only: logged as decided, forwarded with the `always` strips
        (Action.FORWARD, True, Action.FORWARD, True),
        (Action.STRIP, True, Action.FORWARD, True),
        (Action.DROP, True, Action.FORWARD, True),
        (Action.REJECT, True, Action.REJECT, False),  # an unknown destination never leaves
    ],
)
def test_effective_action_and_whether_anything_leaves(
    action: Action, report_only: bool, effective: Action, sends: bool
) -> None:
    d = Decision(
        action=action,
        vendor="v",
        endpoint="e",
        required=frozenset(),
        missing=frozenset(),
        strips=StripSpec(),
        reason="r",
        report_only=report_only,
    )
    assert (d.effective, d.sends) == (effective, sends)


def test_equal_purpose_answers_share_one_frozen_mapping() -> None:
    from gateway.model import frozen_purposes

    a = frozen_purposes({"analytics": True, "advertising": False})
    b = frozen_purposes({"analytics": True, "advertising": False})
    assert a is b and dict(a) == {"analytics": True, "advertising": False}
    assert frozen_purposes({"advertising": False, "analytics": True}) == a  # order aside
    assert frozen_purposes({"analytics": False}) is not a
