"""Google Consent Mode: the `gcs`, `gcd`, `npa`, `dma` and `dma_cps` hit parameters.

Google documents the consent types and modes, not these parameters; the layouts here
are the practitioners' consistent reconstruction (Analytics Debugger "Google Consent
Parser", Simo Ahava / Markus Baersch, Commanders Act), checked against hits seen in
the wild. Every decoder is total: whatever it is given, it returns a value or raises
`GCMError`, whose `reason` never quotes the input. A caller treats a `GCMError` as "no
Consent Mode signal" (DESIGN §9: unreadable consent is no consent), never as consent.

Decoding:

- `decode_gcs`: `G1` + `<ad_storage><analytics_storage>`, each `1` granted, `0` denied,
  `-` not set;
- `decode_gcd`: the four consent types' default and update states (`GcdState`);
- `signal_answers`: the effective state per type from whichever of the two a hit carries;
- `decode_npa`, `decode_dma`, `decode_dma_cps`: the other consent-related parameters.

Encoding (so that a forwarded hit states what the gateway resolved, never more):
`encode_gcs`, `rewrite_gcd`, `consent_params`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.errors import GCMError
from gateway.model import ConsentValue

__all__ = [
    "GCD_CANONICAL_FINAL",
    "GCD_CANONICAL_SEPARATOR",
    "GCM_TYPES",
    "HIT_PARAMS",
    "GcdState",
    "GcdType",
    "consent_params",
    "decode_dma",
    "decode_dma_cps",
    "decode_gcd",
    "decode_gcs",
    "decode_npa",
    "encode_gcs",
    "rewrite_gcd",
    "signal_answers",
]

#: the Consent Mode types Google's tags read, in their `gcd` order (Consent Mode v2)
GCM_TYPES = ("ad_storage", "analytics_storage", "ad_user_data", "ad_personalization")

#: the hit parameters this module reads (`decode_*`)
HIT_PARAMS = frozenset({"gcs", "gcd", "npa", "dma", "dma_cps"})

#: what `rewrite_gcd` writes between letters, and last, when it has no valid original
GCD_CANONICAL_SEPARATOR = "1"
GCD_CANONICAL_FINAL = "5"

_GRANTED = ConsentValue.GRANTED
_DENIED = ConsentValue.DENIED
_UNKNOWN = ConsentValue.UNKNOWN

# gcs: "G1" + one character for ad_storage, one for analytics_storage.
_GCS_LENGTH = 4
_GCS_PREFIX = "G1"
_GCS_TYPES = GCM_TYPES[:2]
_GCS_DECODE = {"1": _GRANTED, "0": _DENIED, "-": _UNKNOWN}
_GCS_ENCODE = {_GRANTED: "1", _DENIED: "0", _UNKNOWN: "-"}

# gcd: each state character is an index into this alphabet (Analytics Debugger's
# "Google Consent Parser" template: default = (v >> 2) & 3, update = v & 3).
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
# 1 = not set, 2 = denied, 3 = granted. 0 is defined by no source and seen in no hit:
# a string carrying it is not one we understand, so it is refused whole (GCMError)
# rather than read as "not set" while its other letters are trusted.
_FIELD = {1: _UNKNOWN, 2: _DENIED, 3: _GRANTED}
_FIELD_OF = {_UNKNOWN: 1, _DENIED: 2, _GRANTED: 3}
# Letters the rule produces carry 0b01 in the two high bits, as every letter in the
# published table does (l m n p q r t u v); the rule ignores those bits when decoding.
_LETTER_BASE = 0b010000

# Layout: "1" + N x (<separator><state>) + <final>. N = 4 is the published layout
# (`11p1p1p1p5`, `13r3r3r3r5`); N = 5 is what current tags send (`13l3l3l3l1l1`,
# `13r3r3r2r5l1` in captured GA4 and Google Ads hits). The fifth state is
# undocumented: it is checked against the alphabet and otherwise ignored. Separators
# and the final character are undocumented too ("1", "2", "3", "5" and, in one
# captured GA4 hit, "P"), so only their alphabet is checked, never their value.
_GCD_LENGTHS = (10, 12)
_GCD_VERSION = "1"
# consent type -> 0-based position of its state character
_GCD_STATE_AT = dict(zip(GCM_TYPES, (2, 4, 6, 8), strict=True))

_BINARY = {"1": True, "0": False}
_MAX_DMA_CPS = 26
_DMA_CPS_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, slots=True)
class GcdType:
    """One consent type's state as a `gcd` string states it.

    `default` is what `gtag('consent', 'default', ...)` set, `update` what a later
    `gtag('consent', 'update', ...)` set; either is UNKNOWN when the page never set it.
    """

    default: ConsentValue
    update: ConsentValue

    @property
    def effective(self) -> ConsentValue:
        """The state the tag acts on: the update if set, else the default, else UNKNOWN."""
        return self.update if self.update is not _UNKNOWN else self.default


@dataclass(frozen=True, slots=True)
class GcdState:
    """A decoded `gcd`: per consent type (all four of `GCM_TYPES`), default and update."""

    #: consent type -> its states, in `GCM_TYPES` order
    types: Mapping[str, GcdType]

    @property
    def effective(self) -> Mapping[str, ConsentValue]:
        """consent type -> the state the tag acts on (see `GcdType.effective`)."""
        return MappingProxyType({name: t.effective for name, t in self.types.items()})


def _require_str(value: object, max_length: int) -> str:
    # SECURITY: bound the work before anything else; hit parameters are visitor input.
    if not isinstance(value, str) or len(value) > max_length or not value.isascii():
        raise GCMError("malformed")
    return value


def decode_gcs(value: str) -> Mapping[str, ConsentValue]:
    """`ad_storage` and `analytics_storage` as a `gcs` value states them.

    `G111` both granted, `G110` ad_storage granted and analytics_storage denied,
    `G101` the reverse, `G100` both denied; `-` in either place means not set (UNKNOWN).
    Only this four-character form is known. Raises GCMError for anything else.
    """
    value = _require_str(value, _GCS_LENGTH)
    if len(value) != _GCS_LENGTH or not value.startswith(_GCS_PREFIX):
        raise GCMError("malformed gcs")
    try:
        states = [_GCS_DECODE[c] for c in value[len(_GCS_PREFIX) :]]
    except KeyError:
        raise GCMError("malformed gcs") from None
    return MappingProxyType(dict(zip(_GCS_TYPES, states, strict=True)))


def _decode_state(char: str) -> GcdType:
    v = _INDEX.get(char)
    if v is None:
        raise GCMError("malformed gcd")
    default, update = _FIELD.get((v >> 2) & 3), _FIELD.get(v & 3)
    if default is None or update is None:
        raise GCMError("undefined gcd state")
    return GcdType(default=default, update=update)


def decode_gcd(value: str) -> GcdState:
    """The four consent types' default and update states as a `gcd` value states them.

    Layout: `1`, then per type a separator and a state character, then a final
    character (`11p1p1p1p5`); current tags add one more separator/state pair before the
    final character (`13l3l3l3l1l1`), which is accepted and ignored. Each state
    character is decoded by the bit rule, never a lookup table. Raises GCMError when the
    length is not 10 or 12, the first character is not `1`, any character is outside
    `0-9a-zA-Z-_`, or a state uses the undefined field value 0.
    """
    value = _require_str(value, max(_GCD_LENGTHS))
    if len(value) not in _GCD_LENGTHS or value[0] != _GCD_VERSION:
        raise GCMError("malformed gcd")
    if any(c not in _INDEX for c in value):
        raise GCMError("malformed gcd")
    types = {name: _decode_state(value[pos]) for name, pos in _GCD_STATE_AT.items()}
    return GcdState(types=MappingProxyType(types))


def signal_answers(gcs: str | None, gcd: str | None) -> Mapping[str, ConsentValue]:
    """Each of `GCM_TYPES` -> its effective state on a hit carrying `gcs` and/or `gcd`.

    `gcd` wins over `gcs` for every type it answers (granted or denied): it is the newer
    parameter and states all four types. `gcs` answers `ad_storage` and
    `analytics_storage` only where `gcd` is absent or leaves them not set. A type neither
    answers is UNKNOWN (with neither parameter, all four are). Both parameters come from
    the same tag on the same hit, so they disagree only when a hit was altered; the
    visitor controls both anyway, so no merge rule could make a forged hit safe.

    Raises GCMError when a parameter that is present (not None) is malformed: the caller
    then treats the hit as carrying no Consent Mode signal at all.
    """
    answers = dict.fromkeys(GCM_TYPES, _UNKNOWN)
    if gcs is not None:
        answers.update(decode_gcs(gcs))
    if gcd is not None:
        for name, state in decode_gcd(gcd).effective.items():
            if state is not _UNKNOWN:
                answers[name] = state
    return MappingProxyType(answers)


def _decode_binary(value: str, name: str) -> bool:
    value = _require_str(value, 1)
    try:
        return _BINARY[value]
    except KeyError:
        raise GCMError(f"malformed {name}") from None


def decode_npa(value: str) -> bool:
    """True when a hit asks for non-personalised ads (`npa=1`), False for `npa=0`.

    Google's tags send `npa=1` when ad_personalization is denied or ad personalisation
    signals are switched off. Raises GCMError for any other value.
    """
    return _decode_binary(value, "npa")


def decode_dma(value: str) -> bool:
    """True when the hit says the Digital Markets Act applies to it (`dma=1`), False for `0`.

    Raises GCMError for any other value.
    """
    return _decode_binary(value, "dma")


def decode_dma_cps(value: str) -> frozenset[str]:
    """The DMA core-platform-service letters a `dma_cps` value lists (e.g. `syphamo`).

    The letters' meanings are not officially documented; they are returned as they are.
    Raises GCMError unless the value is 1-26 lower-case ASCII letters.
    """
    value = _require_str(value, _MAX_DMA_CPS)
    if not value or any(c not in _DMA_CPS_CHARS for c in value):
        raise GCMError("malformed dma_cps")
    return frozenset(value)


def _state_of(states: Mapping[str, ConsentValue], name: str) -> ConsentValue:
    try:
        return ConsentValue(states.get(name, _UNKNOWN))
    except ValueError:
        raise ValueError(f"{name}: not a ConsentValue") from None


def encode_gcs(ad_storage: ConsentValue, analytics_storage: ConsentValue) -> str:
    """The `gcs` value stating these two states: `G1` + `1` granted / `0` denied / `-` unknown.

    UNKNOWN is written as "not set", which Google's tags treat as unrestricted: pass
    states with the regime's defaults already applied unless that is what is meant.
    """
    states = {"ad_storage": ad_storage, "analytics_storage": analytics_storage}
    return _GCS_PREFIX + "".join(_GCS_ENCODE[_state_of(states, name)] for name in _GCS_TYPES)


def _letter(default: int, update: int) -> str:
    return _ALPHABET[_LETTER_BASE | default << 2 | update]


def rewrite_gcd(original: str | None, effective: Mapping[str, ConsentValue]) -> str:
    """A `gcd` value whose effective state for each of `GCM_TYPES` is `effective[type]`.

    A type missing from `effective` counts as UNKNOWN. When `original` is a valid `gcd`,
    its length, separators and final character are kept, and per type:

    - its state character, if it already yields the wanted effective state;
    - else, for GRANTED or DENIED, a letter with the original default and that update
      (`p` -> `r` or `q`, `t` -> `u`, `l` -> `n` or `m`), so the page's default survives;
    - else (UNKNOWN) `l`, the only way to state "not set" (no default, no update).

    With no valid `original` the canonical form `11<L>1<L>1<L>1<L>5` is written, with
    `r` for GRANTED and `q` for DENIED (the usual letters: denied by default, then
    updated) and `l` for UNKNOWN. Either way `decode_gcd` of the result gives exactly
    `effective`. As with `encode_gcs`, UNKNOWN reads to Google as unrestricted.
    Raises ValueError when a value in `effective` is not a ConsentValue (a caller's bug).
    """
    wanted = {name: _state_of(effective, name) for name in GCM_TYPES}
    try:
        decoded = None if original is None else decode_gcd(original)
    except GCMError:
        decoded = None
    if decoded is None or original is None:
        sep = GCD_CANONICAL_SEPARATOR
        letters = [
            _letter(1, 1) if state is _UNKNOWN else _letter(2, _FIELD_OF[state])
            for state in wanted.values()
        ]
        return _GCD_VERSION + sep + sep.join(letters) + GCD_CANONICAL_FINAL
    chars = list(original)
    for name, pos in _GCD_STATE_AT.items():
        current = decoded.types[name]
        state = wanted[name]
        if current.effective is state:
            continue
        if state is _UNKNOWN:
            chars[pos] = _letter(1, 1)
        else:
            chars[pos] = _letter(_FIELD_OF[current.default], _FIELD_OF[state])
    return "".join(chars)


def consent_params(
    states: Mapping[str, ConsentValue], *, original_gcd: str | None = None
) -> dict[str, str]:
    """The Google hit parameters that state `states` (keys from `GCM_TYPES`; others ignored).

    `{"gcs": ..., "gcd": ..., "npa": ...}`: `gcs` from `encode_gcs`, `gcd` from
    `rewrite_gcd(original_gcd, states)`, and `npa` `"1"` (non-personalised ads) unless
    ad_personalization is GRANTED: an unknown answer never permits personalised ads.
    A type missing from `states` counts as UNKNOWN. Raises ValueError when a value is
    not a ConsentValue (a caller's bug).
    """
    ad_storage = _state_of(states, "ad_storage")
    analytics_storage = _state_of(states, "analytics_storage")
    personalization = _state_of(states, "ad_personalization")
    return {
        "gcs": encode_gcs(ad_storage, analytics_storage),
        "gcd": rewrite_gcd(original_gcd, states),
        "npa": "0" if personalization is _GRANTED else "1",
    }
