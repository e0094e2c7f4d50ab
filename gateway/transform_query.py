"""The strips on `name=value` pairs: query strings, form bodies and `;` path parameters.

A pair is removed when its decoded name (percent-decoding, `+` as a space) is in the
strip's name set; every other pair is kept byte-for-byte, in order, so the vendor gets
exactly what the tag sent minus the stripped fields. URL-valued pairs (`url_fields`) keep
their name but have identifiers scrubbed from their value (`gateway.identifiers`).

Name sets follow `StripSpec`: exact and case-sensitive, and a name ending in `*` is a
prefix (`up.*`); `name_set` compiles one once (cached), and every strip of the transform
stage (`gateway.transform`, `transform_body`, `transform_headers`) matches names with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from gateway.identifiers import decode_name, drop_identifiers, scrubbed_pair

__all__ = [
    "NO_NAMES",
    "NO_SCRUB",
    "NameSet",
    "edit_pairs",
    "name_set",
    "scrub_pairs",
    "strip_path_params",
    "strip_query",
]


@dataclass(frozen=True, slots=True)
class NameSet:
    """A `StripSpec` name set split once into exact names and `*` prefixes."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    def __contains__(self, name: str) -> bool:
        return name in self.exact or name.startswith(self.prefixes)


@lru_cache(maxsize=1024)
def name_set(names: frozenset[str]) -> NameSet:
    """The compiled form of a name set; rules reuse the same frozensets, so this is cached."""
    prefixes = tuple(sorted(n[:-1] for n in names if n.endswith("*")))
    return NameSet(frozenset(n for n in names if not n.endswith("*")), prefixes)


# --- pairs: query strings, form bodies, path parameters ----------------------------------


def _strip_pairs(raw: str, names: NameSet) -> str:
    # Hot path (every query and form body): one loop, no call per pair unless it is encoded.
    exact, prefixes = names.exact, names.prefixes
    kept: list[str] = []
    removed = False
    for pair in raw.split("&"):
        if pair:
            name = pair.partition("=")[0]
            if "%" in name or "+" in name:
                name = decode_name(name)
            if name in exact or name.startswith(prefixes):
                removed = True
                continue
            kept.append(pair)
    # nothing removed: `raw` itself, not even an empty piece normalised away
    return "&".join(kept) if removed else raw


def strip_query(raw: str, names: frozenset[str]) -> str:
    """`raw` (a query string without '?', or a form body) without the named pairs.

    A pair is removed when its name, percent-decoded with '+' as a space, is in
    `names` (a name ending in `*` is a prefix); every occurrence is removed.
    Every other pair is kept exactly as received, in order, blank values and
    pairs without '=' included; empty pieces (from `&&`) may be dropped. When
    nothing is removed, `raw` itself is returned.
    """
    if not names or not raw:
        return raw
    return _strip_pairs(raw, name_set(names))


#: `keep` argument meaning "no identifier scrub" (StripSpec.identifiers is off)
NO_SCRUB: Final = None


def edit_pairs(
    raw: str, names: NameSet, urls: NameSet, keep: frozenset[str] | None = NO_SCRUB
) -> str:
    """Named pairs removed, identifiers scrubbed from URL-valued pairs, and unless `keep`
    is None every pair that is an identifier by name or shape removed (but those named
    in `keep`)."""
    out = _strip_pairs(raw, names) if names.exact or names.prefixes else raw
    out = scrub_pairs(out, urls) if urls.exact or urls.prefixes else out
    return out if keep is None else drop_identifiers(out, keep)


NO_NAMES: Final = NameSet(frozenset(), ())


def scrub_pairs(raw: str, urls: NameSet) -> str:
    """Scrub the values of pairs named in `urls` as URLs; `raw` itself when unchanged."""
    out: list[str] = []
    changed = False
    for pair in raw.split("&"):
        name, eq, value = pair.partition("=")
        dname = decode_name(name) if "%" in name or "+" in name else name
        if eq and (dname in urls.exact or dname.startswith(urls.prefixes)):
            scrubbed = scrubbed_pair(name, value)
            if scrubbed is not None:
                pair, changed = scrubbed, True
        out.append(pair)
    return "&".join(out) if changed else raw


def strip_path_params(path: str, names: frozenset[str], urls: frozenset[str]) -> str:
    """`path` without the `;name=value` parameters named in `names`, and with the values
    of those named in `urls` scrubbed as URLs (Floodlight's `~oref`). `path` itself when
    nothing changes."""
    if ";" not in path or not (names or urls):
        return path
    first, *params = path.split(";")
    drop, scrub = name_set(names), name_set(urls)
    kept: list[str] = []
    changed = False
    for param in params:
        name, eq, value = param.partition("=")
        dname = decode_name(name)
        if dname in drop.exact or dname.startswith(drop.prefixes):
            changed = True
            continue
        if eq and (dname in scrub.exact or dname.startswith(scrub.prefixes)):
            scrubbed = scrubbed_pair(name, value)
            if scrubbed is not None:
                param, changed = scrubbed, True
        kept.append(param)
    return ";".join([first, *kept]) if changed else path
