"""gateway.transform_body: form, GA4 batch and JSON bodies, compressed or not."""

from __future__ import annotations

import copy
from urllib.parse import unquote_plus

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import TransformError
from gateway.model import (
    Action,
    BodyKind,
    Facts,
    Headers,
    IpPolicy,
    StripSpec,
)
from gateway.transform import transform
from gateway.transform_body import strip_json
from tests.transform_harness import (
    CODINGS,
    FORM_CT,
    IDS,
    JSON_CT,
    JSON_STRIP,
    NO_STRIPS,
    SHA,
    encoded_facts,
    json_docs,
    make_decision,
    run,
    values,
)

# --- form and GA4 batch bodies -----------------------------------------------------------
FORM = ("Content-Type", "application/x-www-form-urlencoded")


BODY_CASES = [
    # (body kind, body, query names to strip, expected body)
    (BodyKind.FORM, b"v=2&cid=1&en=page_view", {"cid"}, b"v=2&en=page_view"),
    (BodyKind.FORM, b"%63id=1&en=x&up.a=1", {"cid", "up.*"}, b"en=x"),
    (BodyKind.FORM, b"a=\xff\xfe&cid=1&b=caf\xc3\xa9", {"cid"}, b"a=\xff\xfe&b=caf\xc3\xa9"),
    (BodyKind.FORM, b"a=1&&b=2", {"cid"}, b"a=1&&b=2"),
    (BodyKind.FORM, b"a=1", set(), b"a=1"),
    (
        BodyKind.GA4_BATCH,
        b"en=page_view&_et=1&up.x=1\nen=scroll&uid=42&epn.percent=90\nen=click&uid=42&up.y=2",
        {"uid", "up.*"},
        b"en=page_view&_et=1\nen=scroll&epn.percent=90\nen=click",
    ),
    (BodyKind.GA4_BATCH, b"en=a&uid=1\r\nen=b&uid=2\r\n", {"uid"}, b"en=a\r\nen=b\r\n"),
    (BodyKind.GA4_BATCH, b"uid=1\nen=b\n", {"uid"}, b"\nen=b\n"),
    (BodyKind.GA4_BATCH, b"en=a\nen=b", {"uid"}, b"en=a\nen=b"),
    # query strips do not touch JSON bodies, nor json strips form bodies
    (BodyKind.JSON, b'{"cid": 1}', {"cid"}, b'{"cid": 1}'),
]


@pytest.mark.parametrize(("kind", "body", "names", "expected"), BODY_CASES)
def test_pair_bodies(kind: BodyKind, body: bytes, names: set[str], expected: bytes) -> None:
    out = run(StripSpec(query=frozenset(names)), kind, body=body, headers=(FORM,), method="POST")
    assert out.body == expected


def test_form_body_ignores_json_strips() -> None:
    body = b"data=%7B%22em%22%3A1%7D"
    out = run(StripSpec(json=frozenset({"em"})), BodyKind.FORM, body=body, headers=(FORM,))
    assert out.body == body


# --- JSON and text bodies ----------------------------------------------------------------
JSON_CASES = [
    # (document, paths, expected document)
    (
        {"user_data": {"em": "h", "ph": "p"}, "x": 1},
        {"user_data.em"},
        {"user_data": {"ph": "p"}, "x": 1},
    ),
    ({"user_id": 1, "client_id": 2}, {"user_id", "user_properties"}, {"client_id": 2}),
    (
        {
            "data": [
                {"user_data": {"em": ["h"], "fn": "a"}},
                {"user_data": {"em": "z"}},
                {"o": 1},
                5,
            ]
        },
        {"data[].user_data.em"},
        {"data": [{"user_data": {"fn": "a"}}, {"user_data": {}}, {"o": 1}, 5]},
    ),
    (
        {"events": [{"name": "a", "params": {"user_id": 1, "v": 2}}, {"params": None}]},
        {"events[].params.user_id"},
        {"events": [{"name": "a", "params": {"v": 2}}, {"params": None}]},
    ),
    (
        {"a": [{"b": [{"c": 1, "d": 2}, {"c": 3}]}, {"b": {"c": 4}}, {"b": [7]}]},
        {"a[].b[].c"},
        {"a": [{"b": [{"d": 2}, {}]}, {"b": {"c": 4}}, {"b": [7]}]},
    ),
    ({"m": [[{"id": 1}], [{"id": 2}, 3]]}, {"m[][].id"}, {"m": [[{}], [{}, 3]]}),
    ([{"user_id": 1, "k": 2}, {"user_id": 3}, "x"], {"[].user_id"}, [{"k": 2}, {}, "x"]),
    ({"up_a": 1, "up_b": {"c": 2}, "x": 3}, {"up_*"}, {"x": 3}),
    (
        {"p1": {"id": 1}, "p2": {"id": 2, "k": 0}, "q": {"id": 3}},
        {"p*.id"},
        {"p1": {}, "p2": {"k": 0}, "q": {"id": 3}},
    ),
    (
        {"user_data": {"sha256_email_address": ["a", "b"], "x": 1}},
        {"user_data.sha256_email_address[]"},
        {"user_data": {"x": 1}},
    ),
    ({"a": {"b": 1}}, {"a", "a.b"}, {}),
]


MISSING_CASES = [
    # (document, paths): nothing resolves, nothing is removed, no error
    ({"a": 1}, {"a.b.c"}),
    ({"a": [1, 2]}, {"a.b"}),
    ({"data": {"user_data": {"em": 1}}}, {"data[].user_data.em"}),
    ([1, 2], {"user_id"}),
    ("text", {"a"}),
    (None, {"a[].b"}),
    ({"a": {"b": 1}}, {"a.c", "b"}),
    ({"x": [{"em": 1}]}, {"[].em"}),
]


@pytest.mark.parametrize(("doc", "paths", "expected"), JSON_CASES)
def test_strip_json(doc: object, paths: set[str], expected: object) -> None:
    doc = copy.deepcopy(doc)
    assert strip_json(doc, frozenset(paths)) is True
    assert doc == expected


@pytest.mark.parametrize(("doc", "paths"), MISSING_CASES)
def test_strip_json_missing(doc: object, paths: set[str]) -> None:
    doc = copy.deepcopy(doc)
    before = orjson.dumps(doc)
    assert strip_json(doc, frozenset(paths)) is False
    assert orjson.dumps(doc) == before


@pytest.mark.parametrize("kind", [BodyKind.JSON, BodyKind.TEXT])
@pytest.mark.parametrize(("doc", "paths", "expected"), JSON_CASES)
def test_json_bodies(kind: BodyKind, doc: object, paths: set[str], expected: object) -> None:
    ctype = ("Content-Type", "application/json" if kind is BodyKind.JSON else "text/plain")
    body = orjson.dumps(doc)
    out = run(StripSpec(json=frozenset(paths)), kind, body=body, headers=(ctype,), method="POST")
    assert orjson.loads(out.body) == expected


@pytest.mark.parametrize("kind", [BodyKind.JSON, BodyKind.TEXT])
def test_json_body_is_reencoded_even_when_nothing_matched(kind: BodyKind) -> None:
    # A duplicate key hides a value from a last-key-wins parser (ours); a vendor whose
    # parser keeps the first must not get the original bytes.
    body = b'{"user_data": {"em": "secret@x"}, "user_data": {}}'
    out = run(StripSpec(json=frozenset({"user_data.em"})), kind, body=body)
    assert b"secret" not in out.body
    assert orjson.loads(out.body) == {"user_data": {}}


# --- bodies that cannot be read ----------------------------------------------------------
QUERY_STRIP = StripSpec(query=frozenset({"cid"}))


GZIP = ("Content-Encoding", "gzip")


ERROR_CASES = [
    # (body kind, strips, headers, body)
    (BodyKind.JSON, JSON_STRIP, (), b'{"user_id": "secret-1"'),
    (BodyKind.JSON, JSON_STRIP, (), b'{"user_id": "secret-1\xff"}'),
    (BodyKind.JSON, JSON_STRIP, (), b"\xef\xbb\xbf{}"),
    (BodyKind.TEXT, JSON_STRIP, (), b"user_id=secret-1"),
    (BodyKind.TEXT, JSON_STRIP, (), b"   "),
    (BodyKind.FORM, QUERY_STRIP, (GZIP,), b"cid=secret-1"),
    (BodyKind.GA4_BATCH, QUERY_STRIP, (GZIP,), b"cid=secret-1"),
    (BodyKind.JSON, JSON_STRIP, (("content-encoding", "br"),), b'{"user_id":"secret-1"}'),
    (BodyKind.FORM, QUERY_STRIP, (("Content-Encoding", "identity, gzip"),), b"cid=secret-1"),
    (
        BodyKind.FORM,
        QUERY_STRIP,
        (("Content-Encoding", "identity"), ("Content-Encoding", "gzip")),
        b"cid=secret-1",
    ),
    (BodyKind.NONE, QUERY_STRIP, (), b"cid=secret-1"),
    (BodyKind.NONE, JSON_STRIP, (), b'{"user_id":"secret-1"}'),
    (BodyKind.FORM, QUERY_STRIP, (("Content-Type", "multipart/form-data; b=x"),), b"secret-1"),
]


@pytest.mark.parametrize(("kind", "strips", "headers", "body"), ERROR_CASES)
def test_unreadable_body_raises(
    kind: BodyKind, strips: StripSpec, headers: tuple[tuple[str, str], ...], body: bytes
) -> None:
    with pytest.raises(TransformError) as info:
        run(strips, kind, headers=headers, body=body, method="POST")
    assert "secret" not in str(info.value)


PASS_CASES = [
    # (body kind, strips, headers, body): the body is forwarded as received
    (BodyKind.FORM, QUERY_STRIP, (("Content-Encoding", "identity"),), b"a=1"),
    (BodyKind.NONE, StripSpec(ip=IpPolicy.DROP, headers=frozenset({"cookie"})), (), b"x"),
    (BodyKind.NONE, QUERY_STRIP, (), b""),
    (BodyKind.JSON, JSON_STRIP, (GZIP,), b""),
    (BodyKind.FORM, StripSpec(), (GZIP,), b"\x1f\x8b\x08\x00"),
    # strips that do not apply to the body's kind leave it unread
    (BodyKind.JSON, QUERY_STRIP, (GZIP,), b"\x1f\x8b\x08\x00"),
    (BodyKind.TEXT, QUERY_STRIP, (), b"not json"),
    (BodyKind.FORM, JSON_STRIP, (GZIP,), b"\x1f\x8b\x08\x00"),
]


@pytest.mark.parametrize(("kind", "strips", "headers", "body"), PASS_CASES)
def test_body_passes_through(
    kind: BodyKind, strips: StripSpec, headers: tuple[tuple[str, str], ...], body: bytes
) -> None:
    out = run(strips, kind, headers=headers, body=body, method="POST")
    assert out.body == body


def test_encoded_body_keeps_its_content_encoding() -> None:
    out = run(StripSpec(), BodyKind.JSON, headers=(GZIP,), body=b"\x1f\x8b\x08\x00")
    assert values(out, "content-encoding") == ["gzip"]


# --- invariants --------------------------------------------------------------------------

_segment = st.builds(
    lambda key, star, arrays: key + ("*" if star else "") + "[]" * arrays,
    st.text(alphabet="abcd", min_size=0, max_size=2),
    st.booleans(),
    st.integers(0, 2),
).filter(lambda s: s not in ("", "*"))


_path = st.builds(
    lambda root, segs: ("[]." if root else "") + ".".join(segs),
    st.booleans(),
    st.lists(_segment.filter(lambda s: not s.startswith("[")), min_size=1, max_size=4),
)


def _resolves(doc: object, path: str) -> bool:
    """Whether `path` names something in `doc` (the test's own reading of the path language)."""
    parts = path.split(".")
    level = [doc]
    for i, part in enumerate(parts):
        arrays = 0
        while part.endswith("[]"):
            part, arrays = part[:-2], arrays + 1
        last = i == len(parts) - 1
        found: list[object] = []
        for value in level:
            if not part:
                found.append(value)
                continue
            if not isinstance(value, dict):
                continue
            if part.endswith("*"):
                keys = [k for k in value if k.startswith(part[:-1])]
            else:
                keys = [part] if part in value else []
            if last:
                if keys:
                    return True
                continue
            found.extend(value[k] for k in keys)
        if not last or not part:
            for _ in range(arrays):
                found = [e for v in found if isinstance(v, list) for e in v]
        level = found
    return False


@given(doc=json_docs, paths=st.frozensets(_path, max_size=4))
def test_strip_json_invariant(doc: object, paths: frozenset[str]) -> None:
    resolved_before = any(_resolves(doc, p) for p in paths)
    assert strip_json(doc, paths) is resolved_before
    assert not any(_resolves(doc, p) for p in paths)


# --- compressed bodies: stripped as decoded, forwarded in the codings they came in -------


def test_gzip_body_is_inflated_stripped_and_deflated() -> None:
    import gzip as gz

    body = gz.compress(b'{"user_data": {"em": "x"}, "keep": 1}')
    facts = Facts(
        "r",
        "POST",
        "graph.facebook.com",
        "/v19.0/1/events",
        "",
        headers=Headers((("Content-Type", "application/json"), ("Content-Encoding", "gzip"))),
        body=body,
    )
    spec = StripSpec(json=frozenset({"user_data"}))
    d = make_decision(spec, Action.STRIP)
    out = transform(facts, d, BodyKind.JSON)
    assert orjson.loads(gz.decompress(out.body)) == {"keep": 1}
    assert ("Content-Encoding", "gzip") in out.headers


@pytest.mark.parametrize(
    "body",
    [
        b"not gzip at all",
        __import__("gzip").compress(b"{}")[:-6],  # truncated
        __import__("gzip").compress(b"0" * (9 * 1024 * 1024)),  # inflates past the cap
    ],
    ids=["not-gzip", "truncated", "inflates-past-the-cap"],
)
def test_bad_or_huge_gzip_is_refused(body: bytes) -> None:
    facts = Facts(
        "r",
        "POST",
        "h.example",
        "/",
        "",
        headers=Headers((("Content-Encoding", "gzip"),)),
        body=body,
    )
    d = make_decision(StripSpec(json=frozenset({"a"})), Action.STRIP)
    with pytest.raises(TransformError):
        transform(facts, d, BodyKind.JSON)


EMAIL_IN_FORM_JSON = b"a=1&data=%7B%22em%22%3A%22jane%40mail.example%22%7D"


STRIPPED_BODIES = [
    # (body kind, strips, plain body, plain body the vendor must read)
    (BodyKind.JSON, JSON_STRIP, b'{"user_id":"secret-1","event":"x"}', b'{"event":"x"}'),
    (
        BodyKind.TEXT,
        StripSpec(identifiers=True),
        b'{"event":"x","note":"jane@mail.example"}',
        b'{"event":"x"}',
    ),
    (BodyKind.FORM, QUERY_STRIP, b"cid=secret-1&en=x", b"en=x"),
    (BodyKind.GA4_BATCH, StripSpec(identifiers=True), b"en=a&gclid=x\nen=b", b"en=a\nen=b"),
    (BodyKind.FORM_JSON, StripSpec(identifiers=True), EMAIL_IN_FORM_JSON, b"a=1&data=%7B%7D"),
]


@pytest.mark.parametrize("at_edge", [True, False], ids=["decoded-at-edge", "decoded-here"])
@pytest.mark.parametrize("coding", list(CODINGS))
@pytest.mark.parametrize(("kind", "strips", "plain", "expected"), STRIPPED_BODIES)
def test_a_compressed_body_is_stripped_decoded_and_sent_in_its_codings(
    kind: BodyKind, strips: StripSpec, plain: bytes, expected: bytes, coding: str, at_edge: bool
) -> None:
    """Issue 10, defect 4: the strip reads the decoded content (no identifier slips past
    it inside a compressed body) and the body leaves in the codings its header names."""
    facts = encoded_facts(coding, plain, at_edge=at_edge)
    out = transform(facts, make_decision(strips), kind)
    assert values(out, "content-encoding") == [coding]
    assert "content-length" not in {n.lower() for n, _ in out.headers}
    assert CODINGS[coding][1](out.body) == expected


@pytest.mark.parametrize("coding", list(CODINGS))
@pytest.mark.parametrize(
    ("kind", "strips", "plain"),
    [
        (BodyKind.FORM, QUERY_STRIP, b"en=x&n=1"),  # read, nothing to remove
        (BodyKind.JSON, StripSpec(ip=IpPolicy.DROP), b'{"event":"x"}'),  # no body strip
        (BodyKind.NONE, NO_STRIPS, b"\x00opaque"),  # never read
    ],
    ids=["form-unchanged", "json-unread", "opaque"],
)
def test_an_unchanged_compressed_body_leaves_byte_for_byte(
    coding: str, kind: BodyKind, strips: StripSpec, plain: bytes
) -> None:
    facts = encoded_facts(coding, plain, at_edge=True)
    out = transform(facts, make_decision(strips), kind)
    assert out.body is facts.body  # not re-encoded: exactly what the SDK sent
    assert values(out, "content-encoding") == [coding]


@pytest.mark.parametrize("coding", list(CODINGS))
@pytest.mark.parametrize(
    ("strips", "expected"),
    [
        (NO_STRIPS, {"user_id": "secret-1", "event": "x", "limited_data_use": True}),
        (JSON_STRIP, {"event": "x", "limited_data_use": True}),
    ],
    ids=["untouched", "stripped"],
)
def test_consent_fields_are_set_inside_a_compressed_body(
    coding: str, strips: StripSpec, expected: dict[str, object]
) -> None:
    """A vendor consent flag (TikTok's limited_data_use) set in a compressed body: before,
    every compressed hit of such a vendor was dropped."""
    facts = encoded_facts(coding, b'{"user_id":"secret-1","event":"x"}', at_edge=True)
    out = transform(
        facts, make_decision(strips), BodyKind.JSON, set_json={"limited_data_use": True}
    )
    assert orjson.loads(CODINGS[coding][1](out.body)) == expected
    assert values(out, "content-encoding") == [coding]


# --- consent fields and JSON in a form field ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b'{"event": "x"}', (), {"event": "x", "limited_data_use": True}),
        (b'{"limited_data_use": false}', (), {"limited_data_use": True}),
    ],
)
def test_set_json_sets_top_level_fields(
    body: bytes, headers: tuple[tuple[str, str], ...], expected: dict[str, object]
) -> None:
    facts = Facts(
        "r", "POST", "business-api.tiktok.com", "/e", "", headers=Headers(headers), body=body
    )
    d = make_decision(StripSpec(), Action.FORWARD)
    out = transform(facts, d, BodyKind.JSON, set_json={"limited_data_use": True})
    assert orjson.loads(out.body) == expected


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json"])
def test_set_json_fails_closed_on_bodies_it_cannot_edit(body: bytes) -> None:
    facts = Facts("r", "POST", "h.example", "/e", "", body=body)
    d = make_decision(StripSpec(), Action.FORWARD)
    with pytest.raises(TransformError):
        transform(facts, d, BodyKind.JSON, set_json={"limited_data_use": True})


@pytest.mark.parametrize("b64", [False, True])
def test_form_json_data_field(b64: bool) -> None:
    import base64
    from urllib.parse import parse_qs, quote

    doc = b'{"event": "Signup", "properties": {"distinct_id": "u-1", "$email": "a@b.example"}}'
    data = base64.b64encode(doc).decode() if b64 else doc.decode()
    body = f"data={quote(data, safe='')}&verbose=1&ip=1".encode()
    facts = Facts("r", "POST", "api-js.mixpanel.com", "/track/", "", body=body)
    spec = StripSpec(json=frozenset({"properties.$email"}), query=frozenset({"ip"}))
    d = make_decision(spec, Action.STRIP)
    out = transform(facts, d, BodyKind.FORM_JSON)
    form = parse_qs(out.body.decode())
    assert "ip" not in form and form["verbose"] == ["1"]
    raw = form["data"][0]
    decoded = base64.b64decode(raw) if b64 else raw.encode()
    assert orjson.loads(decoded) == {"event": "Signup", "properties": {"distinct_id": "u-1"}}


def test_form_json_unreadable_data_fails_closed() -> None:
    facts = Facts("r", "POST", "h.example", "/track/", "", body=b"data=%%%not-base64%%%")
    spec = StripSpec(json=frozenset({"x"}))
    d = make_decision(spec, Action.STRIP)
    with pytest.raises(TransformError):
        transform(facts, d, BodyKind.FORM_JSON)


# --- the identifier scrub (StripSpec.identifiers, gateway.identifiers) -------------------


@pytest.mark.parametrize(
    ("body_kind", "headers", "body", "gone", "kept"),
    [
        (
            BodyKind.JSON,
            JSON_CT,
            orjson.dumps(
                {
                    "event": "Purchase",
                    "user_data": {"external_id": "u1", "x": [SHA], "fbp": "fb.1.2"},
                    "note": "call jane@mail.example",
                    "page": "https://s.example/?ttclid=T1&q=kettle",
                    "items": [{"id": "k", "msclkid": "M1"}],
                }
            ),
            ["external_id", SHA, "fb.1.2", "jane@mail.example", "T1", "M1"],
            ["Purchase", "kettle", '"id":"k"'],
        ),
        (
            BodyKind.FORM,
            FORM_CT,
            b"en=x&gclid=G1&email=jane%40mail.example&dl=https%3A%2F%2Fs.example%2F%3Ftwclid%3DW1",
            ["G1", "jane", "W1"],
            ["en=x", "dl="],
        ),
        (
            BodyKind.FORM,
            FORM_CT,
            b"user_data=%7B%22email%22%3A%22jane%40mail.example%22%2C%22plan%22%3A%22pro%22%7D",
            ["jane"],
            ["plan"],
        ),
        (
            BodyKind.GA4_BATCH,
            (("Content-Type", "text/plain"),),
            b"en=page_view&_et=5\r\nen=purchase&em=tv.1~em.abc&fbclid=F1",
            ["tv.1", "F1"],
            ["en=purchase", "_et=5\r\n"],
        ),
        (
            BodyKind.FORM_JSON,
            FORM_CT,
            b"data=%5B%7B%22event%22%3A%22x%22%2C%22properties%22%3A%7B%22gclid%22%3A%22G9%22%7D%7D%5D",
            ["G9"],
            ["event"],
        ),
    ],
    ids=["json", "form", "json-in-form-field", "ga4-batch", "form-json-data"],
)
def test_identifier_scrub_in_bodies(
    body_kind: BodyKind,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    gone: list[str],
    kept: list[str],
) -> None:
    out = run(IDS, body_kind, headers=headers, body=body, method="POST")
    text = unquote_plus(out.body.decode())
    assert [g for g in gone if g in text] == []
    assert [k for k in kept if k not in text] == []


def test_a_kept_field_keeps_its_value_but_not_the_click_ids_in_its_url() -> None:
    strips = StripSpec(identifiers=True, keep=frozenset({"*"}))
    body = b"email=jane%40mail.example&page=https%3A%2F%2Fs.example%2F%3Fgclid%3DG1"
    out = run(strips, BodyKind.FORM, headers=FORM_CT, body=body, method="POST")
    assert out.body == b"email=jane%40mail.example&page=https%3A%2F%2Fs.example%2F"
