"""gateway.transform: the stage as a whole (`transform`, `removed_fields`), and its
invariants over every strip.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import transform as transform_module
from gateway.errors import TransformError
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
from gateway.transform import removed_fields, transform
from tests.transform_harness import (
    ALL_HEADERS,
    FORM_CT,
    IDS,
    JSON_CT,
    JSON_STRIP,
    KEPT_HEADERS,
    NO_STRIPS,
    encoded_facts,
    json_docs,
    make_decision,
    run,
    values,
)


def test_exports() -> None:
    for name in transform_module.__all__:
        assert hasattr(transform_module, name)


def test_outgoing_shape() -> None:
    out = run(StripSpec(query=frozenset({"cid"})))
    assert (out.method, out.host, out.path) == ("GET", "www.google-analytics.com", "/g/collect")
    assert out.query == "v=2&tid=G-1"
    assert out.body == b""
    assert isinstance(out.headers, tuple)
    assert values(out, "user-agent") == ["Mozilla/5.0"]
    assert values(out, "cookie") == ["_ga=GA1.1.1"]
    assert values(out, "x-forwarded-for") == ["203.0.113.77"]


_header_names = st.sampled_from(
    [n for n, _ in ALL_HEADERS] + ["Content-Encoding", "content-encoding", "COOKIE", "sec-ch-uax"]
)


@given(
    kind=st.sampled_from(BodyKind),
    body=st.binary(max_size=64) | st.builds(orjson.dumps, json_docs),
    headers=st.lists(st.tuples(_header_names, st.text(max_size=12)), max_size=6),
)
def test_transform_raises_only_transform_error(
    kind: BodyKind, body: bytes, headers: list[tuple[str, str]]
) -> None:
    strips = StripSpec(
        query=frozenset({"cid", "up.*"}),
        json=frozenset({"user_id", "data[].em", "[].cid"}),
        cookies=frozenset({"_ga*"}),
        ip=IpPolicy.TRUNCATE,
        referrer=ReferrerPolicy.ORIGIN,
        user_agent=UserAgentPolicy.DROP,
    )
    try:
        out = run(strips, kind, headers=tuple(headers), body=body, method="POST")
    except TransformError:
        return
    allowed = KEPT_HEADERS | {"content-encoding", "x-forwarded-for"}
    names = {n.lower() for n, _ in out.headers}
    assert names <= allowed - {"user-agent"}
    assert not any(n.startswith("sec-ch-ua") for n in names)
    assert values(out, "x-forwarded-for") == ["203.0.113.0"]


@pytest.mark.parametrize(
    ("query", "set_query", "expected"),
    [
        ("v=2&gcs=G111&cid=1", {"gcs": "G100"}, "v=2&cid=1&gcs=G100"),
        ("v=2&gcs=G111&gcs=G111", {"gcs": "G100"}, "v=2&gcs=G100"),
        ("v=2", {"gcs": "G101", "npa": "1"}, "v=2&gcs=G101&npa=1"),
        ("", {"gcs": "G100"}, "gcs=G100"),
        ("%67cs=G111&x=1", {"gcs": "G100"}, "x=1&gcs=G100"),
    ],
)
def test_set_query_replaces_every_occurrence(
    query: str, set_query: dict[str, str], expected: str
) -> None:
    facts = Facts("r", "GET", "www.google-analytics.com", "/g/collect", query)
    decision = make_decision(StripSpec(), Action.FORWARD)
    out = transform(facts, decision, BodyKind.NONE, set_query=set_query)
    assert out.query == expected


def test_url_fields_scrub_query_form_and_batch_values() -> None:
    dl = "https%3A%2F%2Fshop.example%2F%3Fgclid%3DCj0K%26p%3D1"
    facts = Facts(
        "r",
        "POST",
        "www.google-analytics.com",
        "/g/collect",
        f"v=2&dl={dl}&cid=1",
        headers=Headers((("Content-Type", "text/plain"),)),
        body=f"en=a&dl={dl}\nen=b".encode(),
    )
    spec = StripSpec(url_fields=frozenset({"dl"}))
    d = make_decision(spec, Action.STRIP)
    out = transform(facts, d, BodyKind.GA4_BATCH)
    assert "gclid" not in out.query and "Cj0K" not in out.query
    assert "dl=https%3A%2F%2Fshop.example%2F%3Fp%3D1" in out.query and out.query.endswith("cid=1")
    assert b"gclid" not in out.body and out.body.endswith(b"\nen=b")


@pytest.mark.parametrize("coding", ["deflate", "br", "gzip, br"])
def test_removed_fields_looks_inside_a_compressed_body(coding: str) -> None:
    facts = encoded_facts(coding, b'{"user_id":"secret-1","event":"x"}', at_edge=True)
    out = transform(facts, make_decision(JSON_STRIP), BodyKind.JSON)
    assert "json:user_id" in removed_fields(facts, out, BodyKind.JSON)


@pytest.mark.parametrize(
    ("strips", "body_kind", "query", "body", "headers", "expected"),
    [
        (NO_STRIPS, BodyKind.NONE, "v=2&cid=1", b"", (), ()),
        (
            StripSpec(query=frozenset({"gclid", "dclid"})),
            BodyKind.NONE,
            "v=2&gclid=x",
            b"",
            (),
            ("query:gclid",),
        ),
        (
            StripSpec(url_fields=frozenset({"dl"})),
            BodyKind.NONE,
            "dl=https%3A%2F%2Fs.example%2F%3Ffbclid%3Dx",
            b"",
            (),
            ("url:dl",),
        ),
        (IDS, BodyKind.FORM, "v=2", b"en=x&email=a%40b.example", FORM_CT, ("form:email",)),
        (
            IDS,
            BodyKind.JSON,
            "v=2",
            b'{"e":1,"user_data":{"em":"x","fbp":"y"}}',
            JSON_CT,
            ("json:user_data.em", "json:user_data.fbp"),
        ),
        (
            StripSpec(all_cookies=True, ip=IpPolicy.TRUNCATE, user_agent=UserAgentPolicy.DROP),
            BodyKind.NONE,
            "v=2",
            b"",
            (("User-Agent", "Mozilla/5.0"), ("Cookie", "_ga=1")),
            ("cookie:_ga", "ip:truncate", "user_agent:drop"),
        ),
    ],
    ids=["nothing", "listed-and-present-only", "url-value", "form", "json", "cookies-ip-ua"],
)
def test_removed_fields_names_what_this_request_lost(
    strips: StripSpec,
    body_kind: BodyKind,
    query: str,
    body: bytes,
    headers: tuple[tuple[str, str], ...],
    expected: tuple[str, ...],
) -> None:
    facts = Facts(
        request_id="r1",
        method="POST" if body else "GET",
        host="www.google-analytics.com",
        path="/g/collect",
        query=query,
        headers=Headers(headers),
        cookies={
            k: v
            for k, _, v in (c.partition("=") for c in dict(headers).get("Cookie", "").split("; "))
            if k
        },
        body=body,
        client_ip="203.0.113.77",
    )
    out = transform(facts, make_decision(strips), body_kind)
    assert removed_fields(facts, out, body_kind) == expected
