"""gateway.transform_headers: the header allow-list, cookies, address, user agent and
referrer.
"""

from __future__ import annotations

import pytest

from gateway.model import (
    Action,
    BodyKind,
    Facts,
    Headers,
    IpPolicy,
    ReferrerPolicy,
    StripSpec,
    UserAgentPolicy,
)
from gateway.transform import transform
from gateway.transform_headers import truncate_ip
from tests.transform_harness import (
    ALL_HEADERS,
    CONSENT_COOKIE,
    KEPT_HEADERS,
    make_decision,
    make_facts,
    run,
    values,
)

# --- headers -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), ALL_HEADERS)
def test_header_allow_list(name: str, value: str) -> None:
    out = run(headers=ALL_HEADERS, client_ip=None)
    kept = name.lower() in KEPT_HEADERS
    assert values(out, name) == ([value] if kept else [])


def test_allowed_headers_keep_received_names_and_order() -> None:
    out = run(headers=ALL_HEADERS, client_ip=None)
    assert [n for n, _ in out.headers] == [n for n, _ in ALL_HEADERS if n.lower() in KEPT_HEADERS]


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\x00b"])
def test_header_with_unsafe_value_is_dropped(value: str) -> None:
    out = run(headers=(("Accept", value), ("DNT", "1")))
    assert values(out, "accept") == []
    assert values(out, "dnt") == ["1"]


HEADER_STRIP_CASES = [
    # (strips.headers, headers that must be gone)
    ({"origin"}, {"origin"}),
    ({"cookie"}, {"cookie"}),
    ({"x-forwarded-for"}, {"x-forwarded-for"}),
    ({"sec-ch-ua*"}, {"sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform"}),
    ({"accept-language", "dnt"}, {"accept-language", "dnt"}),
]


@pytest.mark.parametrize(("names", "gone"), HEADER_STRIP_CASES)
def test_strip_headers(names: set[str], gone: set[str]) -> None:
    out = run(StripSpec(headers=frozenset(names)), headers=ALL_HEADERS)
    present = {n.lower() for n, _ in out.headers}
    assert not present & gone
    assert present == (KEPT_HEADERS | {"x-forwarded-for"}) - gone


# --- cookies -----------------------------------------------------------------------------
COOKIE_CASES = [
    # (Cookie headers, strips.cookies, all_cookies, own_cookies, expected Cookie values)
    (["_ga=GA1.1.1; cg_consent=x; _fbp=fb.1"], {"_ga"}, False, CONSENT_COOKIE, ["_fbp=fb.1"]),
    (["_ga=1; _ga_ABC=2; _gid=3; x=4"], {"_ga*"}, False, frozenset(), ["_gid=3; x=4"]),
    (["_ga=1; x=2"], set(), True, frozenset(), []),
    (["a=1;b=2"], {"c"}, False, frozenset(), ["a=1;b=2"]),
    (["a=1; cg_consent=v1.abc"], set(), False, CONSENT_COOKIE, ["a=1"]),
    (["cg_consent=v1.abc"], set(), False, CONSENT_COOKIE, []),
    (["_ga=1; _fbp=2"], {"_ga", "_fbp"}, False, frozenset(), []),
    (["a=b=c; _ga=1; d="], {"_ga"}, False, frozenset(), ["a=b=c; d="]),
    (["a=1", "cg_consent=x; b=2"], set(), False, CONSENT_COOKIE, ["a=1; b=2"]),
    (["a=1", "b=2"], set(), False, CONSENT_COOKIE, ["a=1; b=2"]),
    ([" cg_consent =x ;; a=1 "], set(), False, CONSENT_COOKIE, ["a=1"]),
    (["CG_CONSENT=x"], set(), False, CONSENT_COOKIE, ["CG_CONSENT=x"]),
    (["flag; _ga=1"], {"_ga"}, False, frozenset(), ["flag"]),
]


@pytest.mark.parametrize(("cookies", "names", "all_", "own", "expected"), COOKIE_CASES)
def test_cookies(
    cookies: list[str], names: set[str], all_: bool, own: frozenset[str], expected: list[str]
) -> None:
    strips = StripSpec(cookies=frozenset(names), all_cookies=all_)
    headers = tuple(("Cookie", c) for c in cookies)
    out = run(strips, headers=headers, own_cookies=own)
    assert values(out, "cookie") == expected


def test_consent_cookie_removed_on_forward_without_strips() -> None:
    facts = make_facts()
    out = transform(
        facts, make_decision(action=Action.FORWARD), BodyKind.NONE, own_cookies=CONSENT_COOKIE
    )
    assert values(out, "cookie") == ["_ga=GA1.1.1"]


# --- IP, user agent, referrer ------------------------------------------------------------
IP_CASES = [
    # (client_ip, policy, expected X-Forwarded-For or None)
    ("203.0.113.77", IpPolicy.KEEP, "203.0.113.77"),
    ("203.0.113.77", IpPolicy.TRUNCATE, "203.0.113.0"),
    ("203.0.113.77", IpPolicy.DROP, None),
    ("2001:db8:abcd:12::1", IpPolicy.KEEP, "2001:db8:abcd:12::1"),
    ("2001:db8:abcd:12::1", IpPolicy.TRUNCATE, "2001:db8:abcd::"),
    ("2001:db8:abcd:12::1", IpPolicy.DROP, None),
    ("2001:0DB8:ABCD:0012:0:0:0:1", IpPolicy.KEEP, "2001:db8:abcd:12::1"),
    ("::ffff:203.0.113.77", IpPolicy.KEEP, "203.0.113.77"),
    ("::ffff:203.0.113.77", IpPolicy.TRUNCATE, "203.0.113.0"),
    ("2002:cb00:714d::1", IpPolicy.TRUNCATE, "203.0.113.0"),
    ("fe80::1%eth0", IpPolicy.KEEP, "fe80::1"),
    ("fe80::1%eth0", IpPolicy.TRUNCATE, "fe80::"),
    (None, IpPolicy.KEEP, None),
    (None, IpPolicy.TRUNCATE, None),
    ("unknown", IpPolicy.KEEP, None),
    ("203.0.113.77, 10.0.0.1", IpPolicy.TRUNCATE, None),
    ("", IpPolicy.KEEP, None),
]


SPOOFED = (("X-Forwarded-For", "198.51.100.9, 203.0.113.77"), ("x-forwarded-for", "192.0.2.1"))


@pytest.mark.parametrize(("client_ip", "policy", "expected"), IP_CASES)
def test_forwarded_for(client_ip: str | None, policy: IpPolicy, expected: str | None) -> None:
    out = run(StripSpec(ip=policy), headers=SPOOFED, client_ip=client_ip)
    # the visitor's own X-Forwarded-For never survives, whatever the policy
    assert values(out, "x-forwarded-for") == ([] if expected is None else [expected])


TRUNCATE_CASES = [
    ("203.0.113.77", "203.0.113.0"),
    ("10.1.2.3", "10.1.2.0"),
    ("2001:db8:abcd:12::1", "2001:db8:abcd::"),
    ("2001:db8:abcd:ffff:ffff:ffff:ffff:ffff", "2001:db8:abcd::"),
    ("::1", "::"),
    ("::ffff:198.51.100.200", "198.51.100.0"),
    ("2002:c633:64c8::", "198.51.100.0"),
    (" 203.0.113.77 ", "203.0.113.0"),
    ("203.0.113.256", None),
    ("01.2.3.4", None),
    ("1.2.3", None),
    ("1.2.3.4\x00", None),
    ("2001:db8::1%", "2001:db8::"),
    ("example.com", None),
]


@pytest.mark.parametrize(("ip", "expected"), TRUNCATE_CASES)
def test_truncate_ip(ip: str, expected: str | None) -> None:
    assert truncate_ip(ip) == expected


UA_HEADERS = (
    ("User-Agent", "Mozilla/5.0"),
    ("Sec-CH-UA", '"Chromium";v="130"'),
    ("sec-ch-ua-full-version-list", '"Chromium";v="130.0.1"'),
    ("Sec-CH-UA-Platform", '"Linux"'),
    ("Accept", "*/*"),
)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (UserAgentPolicy.KEEP, [n for n, _ in UA_HEADERS]),
        (UserAgentPolicy.DROP, ["Accept"]),
    ],
)
def test_user_agent(policy: UserAgentPolicy, expected: list[str]) -> None:
    out = run(StripSpec(user_agent=policy), headers=UA_HEADERS, client_ip=None)
    assert [n for n, _ in out.headers] == expected


REFERRER_CASES = [
    # (Referer, policy, expected Referer or None)
    (
        "https://shop.test/p?email=a@b.test",
        ReferrerPolicy.KEEP,
        "https://shop.test/p?email=a@b.test",
    ),
    ("https://shop.test/p?email=a@b.test", ReferrerPolicy.ORIGIN, "https://shop.test/"),
    ("https://shop.test/p?email=a@b.test", ReferrerPolicy.DROP, None),
    ("http://shop.test:8080/x#y", ReferrerPolicy.ORIGIN, "http://shop.test:8080/"),
    ("https://user:pw@shop.test/x", ReferrerPolicy.ORIGIN, "https://shop.test/"),
    ("https://[2001:db8::1]:8443/a", ReferrerPolicy.ORIGIN, "https://[2001:db8::1]:8443/"),
    ("HTTPS://Shop.Test/a", ReferrerPolicy.ORIGIN, "https://shop.test/"),
    ("not a url", ReferrerPolicy.ORIGIN, None),
    ("/relative/path", ReferrerPolicy.ORIGIN, None),
    ("https://shop.test:99999/", ReferrerPolicy.ORIGIN, None),
    ("https://[::1/", ReferrerPolicy.ORIGIN, None),
    ("android-app://com.example/", ReferrerPolicy.ORIGIN, None),
]


@pytest.mark.parametrize(("referer", "policy", "expected"), REFERRER_CASES)
def test_referrer(referer: str, policy: ReferrerPolicy, expected: str | None) -> None:
    out = run(StripSpec(referrer=policy), headers=(("Referer", referer), ("Origin", "x")))
    assert values(out, "referer") == ([] if expected is None else [expected])
    assert values(out, "origin") == ["x"]


def test_forward_headers_extend_the_allow_list_for_one_request() -> None:
    facts = Facts(
        "r",
        "POST",
        "business-api.tiktok.com",
        "/open_api/v1.3/event/track/",
        "",
        headers=Headers(
            (("Access-Token", "tok"), ("Authorization", "Basic site"), ("X-Other", "1"))
        ),
    )
    d = make_decision(StripSpec(), Action.FORWARD)
    plain = transform(facts, d, BodyKind.NONE)
    assert [n for n, _ in plain.headers] == []
    out = transform(facts, d, BodyKind.NONE, forward_headers=frozenset({"access-token"}))
    assert out.headers == (("Access-Token", "tok"),)  # only what the rule names
