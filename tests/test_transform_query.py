"""gateway.transform_query: the strips on pairs (query, path parameters)."""

from __future__ import annotations

from urllib.parse import unquote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.model import (
    BodyKind,
    Facts,
    StripSpec,
)
from gateway.transform import transform
from gateway.transform_query import strip_query
from tests.transform_harness import (
    IDS,
    NO_STRIPS,
    SHA,
    make_decision,
    run,
)

# --- query -------------------------------------------------------------------------------
QUERY_CASES = [
    # (raw query, names to strip, expected raw query)
    ("v=2&cid=1&tid=G", {"cid"}, "v=2&tid=G"),
    ("cid2=1&cid=2&xcid=3", {"cid"}, "cid2=1&xcid=3"),
    ("CID=1&cid=2", {"cid"}, "CID=1"),
    ("up.a=1&upn.b=2&up.c=3&ep.x=4", {"up.*"}, "upn.b=2&ep.x=4"),
    ("up.a=1&upn.b=2&ep.x=4&epn.y=5&en=e", {"up.*", "upn.*", "ep.*"}, "epn.y=5&en=e"),
    ("up=1&up.=2", {"up.*"}, "up=1"),
    ("cid=1&a=2&cid=3&cid", {"cid"}, "a=2"),
    ("%67clid=abc&v=2", {"gclid"}, "v=2"),
    ("gc%6Cid=abc&gc%6cid=def&v=2", {"gclid"}, "v=2"),
    ("%75p.email=x&v=2", {"up.*"}, "v=2"),
    ("my+name=1&my%20name=2&my%2Bname=3", {"my name"}, "my%2Bname=3"),
    ("a=&cid=1&b&c=", {"cid"}, "a=&b&c="),
    ("cid&v=2", {"cid"}, "v=2"),
    ("cid=&v=2", {"cid"}, "v=2"),
    ("cid=a=b&x=c=d", {"cid"}, "x=c=d"),
    ("ci%3Dd=1&cid=2", {"cid"}, "ci%3Dd=1"),
    (
        "dl=https%3A%2F%2Fx.test%2F%3Fq%3D1&cid=1&dt=Hello+World%21&x=%E2%82%AC&y=%2f&z=a+b",
        {"cid"},
        "dl=https%3A%2F%2Fx.test%2F%3Fq%3D1&dt=Hello+World%21&x=%E2%82%AC&y=%2f&z=a+b",
    ),
    ("a=1&&cid=2&", {"cid"}, "a=1"),
    ("a=1&&b=2&", {"cid"}, "a=1&&b=2&"),
    ("a=1&cid=2", set(), "a=1&cid=2"),
    ("a=1&b=2", {"*"}, ""),
    ("", {"cid"}, ""),
    ("%E2%82%AC=1&%FF=2&%=3&cid=4", {"€"}, "%FF=2&%=3&cid=4"),
]


@pytest.mark.parametrize(("raw", "names", "expected"), QUERY_CASES)
def test_strip_query(raw: str, names: set[str], expected: str) -> None:
    assert strip_query(raw, frozenset(names)) == expected
    assert run(StripSpec(query=frozenset(names)), query=raw).query == expected


def test_strip_query_returns_input_when_nothing_removed() -> None:
    raw = "a=1&&b=%2f"
    assert strip_query(raw, frozenset({"cid"})) is raw


# --- invariants --------------------------------------------------------------------------
_NAME_CHARS = "abcup._ é€=&+%*"


@st.composite
def encoded_name(draw: st.DrawFn) -> tuple[str, str]:
    """(decoded name, one of its many possible encodings in a query string)."""
    name = draw(st.text(alphabet=_NAME_CHARS, min_size=1, max_size=6))
    out = []
    for ch in name:
        if ch == " ":
            out.append(draw(st.sampled_from(["+", "%20"])))
        elif ch in "=&+%" or draw(st.booleans()):
            hexdigits = "%{:02X}" if draw(st.booleans()) else "%{:02x}"
            out.append("".join(hexdigits.format(b) for b in ch.encode()))
        else:
            out.append(ch)
    return name, "".join(out)


_values = st.none() | st.text(st.characters(exclude_characters="&"), max_size=6)


@given(
    pairs=st.lists(st.tuples(encoded_name(), _values), max_size=12),
    data=st.data(),
)
def test_strip_query_invariant(
    pairs: list[tuple[tuple[str, str], str | None]], data: st.DataObject
) -> None:
    names = sorted({n for (n, _), _ in pairs})
    chosen = data.draw(st.sets(st.sampled_from(names)) if names else st.just(set[str]()))
    cut = data.draw(st.sets(st.sampled_from(names)) if names else st.just(set[str]()))
    strip = frozenset(chosen | {p[: data.draw(st.integers(0, len(p)))] + "*" for p in cut})
    # the spec's reading: a name ending in `*` is a prefix, even one drawn as a whole name
    exact = {n for n in strip if not n.endswith("*")}
    prefixes = tuple(n[:-1] for n in strip if n.endswith("*"))

    def stripped(decoded: str) -> bool:
        return decoded in exact or decoded.startswith(prefixes)

    pieces = [enc if v is None else f"{enc}={v}" for (_, enc), v in pairs]
    out = strip_query("&".join(pieces), strip)
    out_pieces = [p for p in out.split("&") if p]
    for piece in out_pieces:
        assert not stripped(unquote_plus(piece.partition("=")[0]))
    assert out_pieces == [
        p for p, ((decoded, _), _) in zip(pieces, pairs, strict=True) if not stripped(decoded)
    ]


# --- path parameters ---------------------------------------------------------------------
FLOODLIGHT = (
    "/activity;src=1234567;type=sales;cat=purch0;ord=ORDER-991;u1=alice%40example.com;"
    "auiddc=1180732581.1712345600;~oref=https%3A%2F%2Fshop.example%2Fthanks%3Fgclid%3DCj0K%26step%3D3"
)


@pytest.mark.parametrize(
    ("names", "urls", "expected"),
    [
        (set(), set(), FLOODLIGHT),
        (
            {"u*", "auiddc", "ord", "~oref"},
            set(),
            "/activity;src=1234567;type=sales;cat=purch0",
        ),
        (
            {"u*"},
            {"~oref"},
            (
                "/activity;src=1234567;type=sales;cat=purch0;ord=ORDER-991;"
                "auiddc=1180732581.1712345600;~oref=https%3A%2F%2Fshop.example%2Fthanks%3Fstep%3D3"
            ),
        ),
        ({"nothing"}, set(), FLOODLIGHT),
    ],
)
def test_strip_path_params(names: set[str], urls: set[str], expected: str) -> None:
    from gateway.transform_query import strip_path_params

    out = strip_path_params(FLOODLIGHT, frozenset(names), frozenset(urls))
    assert out == expected
    if expected == FLOODLIGHT:
        assert out is FLOODLIGHT


# --- the identifier scrub (StripSpec.identifiers, gateway.identifiers) -------------------


@pytest.mark.parametrize(
    ("strips", "query", "expected"),
    [
        (IDS, "v=2&fbclid=IwAR1&en=x", "v=2&en=x"),
        (IDS, "v=2&FbClId=IwAR1&ScCid=1&irclickid=9", "v=2"),
        (IDS, "v=2&em=tv.1~em.abc&x=jane%40mail.example", "v=2"),
        (IDS, "v=2&ud%5Bem%5D=abc&ud%5Bct%5D=paris", "v=2&ud%5Bct%5D=paris"),
        (IDS, f"v=2&hashed_email={SHA}&event_id={SHA}", f"v=2&event_id={SHA}"),
        (
            IDS,
            "dl=https%3A%2F%2Fs.example%2F%3Fgclid%3Dx%26a%3D1&v=2",
            "dl=https%3A%2F%2Fs.example%2F%3Fa%3D1&v=2",
        ),
        (IDS, "e=pageview&token=x", "e=pageview&token=x"),  # URL-only names: fields here
        (
            StripSpec(identifiers=True, keep=frozenset({"email"})),
            "email=jane%40mail.example&gclid=1",
            "email=jane%40mail.example",
        ),
        (
            StripSpec(identifiers=True, keep=frozenset({"gclid"})),
            "gclid=1&v=2",
            "v=2",
        ),  # never kept
        (NO_STRIPS, "v=2&fbclid=IwAR1", "v=2&fbclid=IwAR1"),  # off on a FORWARD
    ],
)
def test_identifier_scrub_in_the_query(strips: StripSpec, query: str, expected: str) -> None:
    assert run(strips, query=query).query == expected


def test_identifier_scrub_in_path_parameters() -> None:
    facts = Facts(
        "r",
        "GET",
        "ad.doubleclick.net",
        "/activity;src=1;em=tv.1~em.abc;u3=jane%40mail.example;type=sales;fbclid=x",
        "",
    )
    out = transform(facts, make_decision(IDS), BodyKind.NONE)
    assert out.path == "/activity;src=1;type=sales"
