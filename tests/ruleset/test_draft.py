"""gateway.ruleset.draft: a rule drafted from captured URLs or logged path templates loads
with the real loader, its examples hold, and it carries no captured identifier value."""

from __future__ import annotations

import pytest
import yaml

from gateway.config import DEFAULT_PURPOSES
from gateway.examples import run_examples
from gateway.redact import sanitize_path
from gateway.ruleset.draft import (
    CONSENT_SIGNALS,
    PLACEHOLDER,
    SCHEMA_HEADER,
    ParamClass,
    classify_param,
    draft_rule,
    sighting_from_template,
    sighting_from_url,
)
from gateway.ruleset.lint import lint_rules
from gateway.ruleset.match import RuleSet
from gateway.ruleset.parse import parse_rule
from gateway.ruleset.schema import VendorRule
from tests.conftest import RULES_DIR

PURPOSES = frozenset(DEFAULT_PURPOSES)

#: a TC string as a CMP writes it: the visitor's consent, never to be copied into a draft
TC = (
    "CPzHq4APzHq4AAHABBENAgCsAP_AAH_AAAAAIJtf_X__b3_j-_59f_t0eY1P9_7_v-0zjhfdt-8N2f_X_L8X42M7vF36"
    "pq4KuR4Eu3LBIQdlHOHcTUmw6okVrzPsbk2Mr7NKJ7PEmnMbO2dYGH9_n93TuZKY7__8___z_v-v_v____f_7-3_3__5_"
    "X---_e_V399zLv9____39nN___9v-_9_____4IJgEmGpeQBdmWODJtGlUKIEYVhIdAKACigGFoisIHVwU7K4CfUELABAK"
    "gIwIgQYgowYBAAIBAEhEQEgB4IBEARAIAAQAKhEIAGNgEFgBYGAQACgGhYoxQBCBIQZEBEUpgQFSJBQT2VCCUHehphCH"
    "WWAFBo_oqEBGsgYLAyEhYOY4AkBLxZIHmKF8gBGCBAAA"
)
SHA = "f1c9645dbc14efddc7d8a322685f26eb5d1e5f0e4b9c3a1d2e3f4a5b6c7d8e9f"

#: (captured URLs, the values that must not reach the draft, endpoint id -> kind, purpose)
CAPTURES: dict[str, tuple[list[str], list[str], dict[str, str], str]] = {
    "ga4-collect": (
        [
            (
                "https://region1.google-analytics.com/g/collect?v=2&tid=G-8Z2QX1JH4K&gtm=45je4a20v9"
                "&_p=1712345678901&gcs=G111&gcd=13l3l3l3l1&npa=0&dma=0&cid=1180732581.1712345600"
                "&ul=en-gb&sr=1920x1080&sid=1712345600&sct=3&seg=1&dt=Kettle&en=page_view&_ee=1"
                "&dl=https%3A%2F%2Fshop.example%2F%3Fgclid%3DCj0KCQjw8%26utm_source%3Dads"
                "&uid=customer-4711&em=tv.1~em.q2EGDzqnS2qSZKb1kBXrEjrzgiQ25Iqx8Fdc7pTJAH4"
            ),
            "https://www.google-analytics.com/g/collect?v=2&tid=G-8Z2QX1JH4K&en=scroll",
        ],
        ["Cj0KCQjw8", "customer-4711", "q2EGDzqnS2qSZ", "G111", "13l3l3l3l1"],
        {"collect": "beacon"},
        "analytics",
    ),
    "meta-tr": (
        [
            (
                "https://www.facebook.com/tr/?id=1234567890123456&ev=Purchase&fbp=fb.1.17123.118073"
                "&fbc=fb.1.17123.IwAR2xyz&external_id=8f3a9c2e&cd[value]=59.90&gdpr=1"
                f"&gdpr_consent={TC}&ud[em]={SHA}&ud[ph]=%2B4915112345678"
                "&dl=https%3A%2F%2Fshop.example%2Fthank-you%3Femail%3Dalice%2540mail.example"
            ),
            "https://connect.facebook.net/en_US/fbevents.js",
            "https://connect.facebook.net/signals/config/1234567890123456?v=2.9.152&r=stable",
        ],
        ["fb.1.17123", "IwAR2xyz", "8f3a9c2e", TC[:40], SHA, "4915112345678", "alice"],
        {"tr": "pixel", "fbevents": "script", "config": "api"},
        "advertising",
    ),
    "tiktok-pixel": (
        [
            "https://analytics.tiktok.com/i18n/pixel/events.js?sdkid=C4ABCDEFGH1234567890&lib=ttq",
            (
                "https://analytics.tiktok.com/api/v2/pixel?event=CompletePayment&ttclid=E.C.P.Cqg"
                "&_ttp=2abcDEF123&email=alice%40mail.example&us_privacy=1YNN&value=59.9"
            ),
        ],
        ["E.C.P.Cqg", "2abcDEF123", "alice", "1YNN"],
        {"events": "script", "pixel": "pixel"},
        "advertising",
    ),
    "json-api": (
        [
            (
                "https://api.acme-metrics.io/v1/projects/8c1f2e4a9b/events?user_id=42"
                "&email=bob%40mail.example&event=signup&ts=1700000000"
                "&context=%7B%22traits%22%3A%7B%22phone%22%3A%22%2B15551234567%22%7D%7D"
            ),
            "https://api.acme-metrics.io/v1/projects/77ab12cd34/events?event=view",
            "https://api.acme-metrics.io/v1/config?project=acme&sdk=web",
        ],
        ["8c1f2e4a9b", "77ab12cd34", "bob", "15551234567"],
        {"events": "api", "config": "api"},
        "analytics",
    ),
}


def load(text: str) -> VendorRule:
    rule, problems = parse_rule(text, "draft.yaml", PURPOSES)
    assert problems == [], "\n".join(str(p) for p in problems)
    assert rule is not None
    return rule


@pytest.mark.parametrize("name", list(CAPTURES))
def test_a_draft_from_real_captures_loads_and_its_examples_hold(name: str) -> None:
    urls, secrets, kinds, purpose = CAPTURES[name]
    text = draft_rule([sighting_from_url(u) for u in urls])
    rule = load(text)
    assert {e.id: str(e.kind) for e in rule.endpoints} == kinds
    assert rule.purposes == {purpose}
    assert run_examples(RuleSet([rule])) == []
    assert lint_rules([rule]) == []
    expects = sorted(str(ex.expect) for ex in rule.examples)
    assert expects == sorted(["forward", "drop"] * len(kinds) + ["reject"])
    for secret in secrets:
        assert secret not in text, secret
    assert PLACEHOLDER in text


def test_identifiers_are_proposed_as_a_commented_strip() -> None:
    urls = CAPTURES["meta-tr"][0]
    text = draft_rule([sighting_from_url(u) for u in urls])
    commented = "\n".join(
        line[2:]
        for line in text.splitlines()
        if line.startswith("#   ") or line == "# when_denied:"
    )
    proposed = yaml.safe_load(commented)
    assert proposed == {
        "when_denied": {
            "advertising": {
                "query": ["external_id", "fbc", "fbp", "ud[em]", "ud[ph]"],
                "url_fields": ["dl"],
            }
        }
    }
    # uncommented, the strip loads too
    rule = load(text.replace("# when_denied:", "when_denied:").replace("#   ", "  "))
    assert set(rule.endpoint("tr").when_denied["advertising"].query) >= {"fbp", "ud[em]"}  # type: ignore[union-attr]


def test_consent_signals_are_named_in_the_endpoint_and_left_out_of_examples() -> None:
    text = draft_rule([sighting_from_url(u) for u in CAPTURES["ga4-collect"][0]])
    assert "    # consent signal: dma, gcd, gcs, npa" in text
    rule = load(text)
    for ex in rule.examples:
        assert not {"gcs", "gcd", "npa", "dma"} & {p.split("=")[0] for p in ex.query.split("&")}


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("gclid", "Cj0K", ParamClass.IDENTIFIER),  # the registry, by name
        ("ud[em]", "x", ParamClass.IDENTIFIER),  # by its last part
        ("_fbp", "fb.1.2.3", ParamClass.IDENTIFIER),
        ("q", "alice@mail.example", ParamClass.IDENTIFIER),  # by value: an e-mail address
        ("ec", "tv.1~em.abc", ParamClass.IDENTIFIER),  # Google's hashed marker
        ("hashed_mail", SHA, ParamClass.IDENTIFIER),  # a hash in a contact field
        ("ctx", '{"traits": {"email": "a@b.example"}}', ParamClass.IDENTIFIER),  # JSON
        ("gdpr_consent", TC, ParamClass.CONSENT_SIGNAL),
        ("gcs", "G111", ParamClass.CONSENT_SIGNAL),
        ("dma", "1", ParamClass.CONSENT_SIGNAL),
        ("US_PRIVACY", "1YNN", ParamClass.CONSENT_SIGNAL),
        ("en", "page_view", ParamClass.ORDINARY),
        ("e", "click", ParamClass.ORDINARY),  # an identifier only inside a URL's query
        ("v", SHA, ParamClass.ORDINARY),  # a hash in a field that says nothing of contact data
        ("dl", "https://shop.example/?gclid=1", ParamClass.ORDINARY),  # a URL: scrubbed
        ("uid", None, ParamClass.IDENTIFIER),  # a template's parameter: its name alone
        ("src", None, ParamClass.ORDINARY),
    ],
)
def test_classify_param(name: str, value: str | None, kind: ParamClass) -> None:
    assert classify_param(name, value) is kind


def test_consent_signals_are_the_gateways_own() -> None:
    assert {"gcs", "gcd", "gdpr", "gdpr_consent", "us_privacy", "gpp", "gpp_sid", "npa", "dma"} <= (
        CONSENT_SIGNALS
    )


@pytest.mark.parametrize(
    ("paths", "matchers"),
    [
        (["/g/collect"], [("path", "/g/collect")]),
        (["/tr", "/tr/"], [("path", "/tr"), ("path", "/tr/")]),
        # ids, hashes and long numbers in segments: one endpoint, a regex
        (
            ["/v1/u/8c1f2e4a9b/events", "/v1/u/77ab12cd34/events"],
            [("path_regex", "/v1/u/[^/]+/events")],
        ),
        (["/td/rul/987654321"], [("path_regex", "/td/rul/[^/]+")]),
        # exact paths come first: a regex listed before would take their requests
        (["/s/c/123456789", "/s/z"], [("path", "/s/z"), ("path_regex", "/s/c/[^/]+")]),
        (["/activity;src=1;u1=x"], [("path_regex", "/activity(?:;[^/]*)?")]),
        (["/"], [("path", "/")]),
    ],
)
def test_endpoints_by_path_shape(paths: list[str], matchers: list[tuple[str, str]]) -> None:
    text = draft_rule([sighting_from_url(f"https://t.acme.example{p}?a=1") for p in paths])
    rule = load(text)
    got = [
        ("path", e.path) if e.path else ("path_regex", e.path_regex.pattern)  # type: ignore[union-attr]
        for e in rule.endpoints
    ]
    assert got == matchers
    assert run_examples(RuleSet([rule])) == []


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/gtag/js", "script"),
        ("/en_US/fbevents.js", "script"),
        ("/p.gif", "pixel"),
        ("/i18n/pixel/track", "pixel"),
        ("/tr/", "pixel"),
        ("/g/collect", "beacon"),
        ("/v1/beacon", "beacon"),
        ("/v1/track", "beacon"),
        ("/api/v2/events", "api"),
    ],
)
def test_kind_guessed_from_the_path(path: str, kind: str) -> None:
    rule = load(draft_rule([sighting_from_url(f"https://t.acme.example{path}")]))
    assert [str(e.kind) for e in rule.endpoints] == [kind]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://t.acme.example/x",
        "https://10.0.0.1/collect?email=alice%40mail.example",
        "https://user:secret@t.acme.example/x",
        "https://t.acme.example:8443/x",
        "https://t.acme.example/a/../b?uid=alice",
        "not a url at all alice@mail.example",
    ],
)
def test_urls_that_cannot_be_drafted_from(url: str) -> None:
    with pytest.raises(ValueError) as info:
        sighting_from_url(url)
    assert "alice" not in str(info.value) and "secret" not in str(info.value)


def test_vendor_id_from_the_registered_domain_or_given() -> None:
    sightings = [sighting_from_url("https://eu.cdn.acme-metrics.co.uk/v1/e")]
    assert load(draft_rule(sightings)).vendor == "acme-metrics"
    assert load(draft_rule(sightings, "acme")).vendor == "acme"
    with pytest.raises(ValueError):
        draft_rule(sightings, "Not A Slug")
    with pytest.raises(ValueError):
        draft_rule([])


def test_a_name_that_could_break_out_of_a_comment_is_shown_harmlessly() -> None:
    url = "https://t.acme.example/x?ok=1&a%0Avendor%3A%20evil=1&alice%40mail.example=1"
    text = draft_rule([sighting_from_url(url)])
    rule = load(text)
    assert rule.vendor == "acme"
    assert "alice" not in text


def test_a_draft_from_the_decision_logs_templates() -> None:
    """The Unknown destinations page drafts from methods and path templates alone."""
    logged = [
        ("POST", sanitize_path("/v1/projects/8c1f2e4a9b/events")),
        ("GET", sanitize_path("/px.gif")),
        ("GET", sanitize_path("/activity;src=1234567;u1=alice%40mail.example")),
        ("HEAD", "/v1/config"),
        ("OPTIONS", "/v1/config"),  # a preflight: not the vendor's method
    ]
    sightings = [sighting_from_template("t.acme.example", m, p) for m, p in logged]
    assert all(s is not None for s in sightings)
    rule = load(draft_rule([s for s in sightings if s is not None]))
    by_id = {e.id: e for e in rule.endpoints}
    assert by_id["events"].methods == {"POST"}
    assert by_id["config"].methods == {"GET"}
    assert by_id["px"].path == "/px.gif"
    assert run_examples(RuleSet([rule])) == []


@pytest.mark.parametrize("path", ["/x/y…", "v1/x", "/a?b"])
def test_templates_that_cannot_be_drafted_from(path: str) -> None:
    assert sighting_from_template("t.acme.example", "GET", path) is None


def test_a_draft_and_every_shipped_rule_name_the_schema_for_editors() -> None:
    """The first line tells editors (yaml-language-server) which schema the file obeys."""
    draft = draft_rule([sighting_from_url("https://t.example.com/collect?cid=1")])
    assert draft.splitlines()[0] == SCHEMA_HEADER
    for path in sorted(RULES_DIR.glob("*.yaml")):
        assert path.read_text(encoding="utf-8").splitlines()[0] == SCHEMA_HEADER, path.name
