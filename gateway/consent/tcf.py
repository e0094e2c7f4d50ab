"""IAB TCF v2 TC strings (DESIGN §2): decode, then answer "may vendor V do purpose P?".

A TC string (IAB Tech Lab, "Consent string and vendor list formats v2", TCF v2.2/v2.3) is
`core[.segment]*`: each segment base64url, 6 bits per character, bit 0 the most significant
bit of the first character, trailing bits zero. The core segment comes first; the others
(1 DisclosedVendors, 2 AllowedVendors, 3 PublisherTC) follow in any order, each named by its
first 3 bits.

`decode_tc_string` is total: whatever `str` it is given, it returns a `TCString` or raises
`TCFError`, and nothing else. The caller treats every `TCFError` as "no TCF signal" (fail
closed). Its `reason` is a short phrase that never quotes the input.

What is refused, and why (the IAB reference decoders, iabtcf-es and iabtcf-java, refuse the
same or, where marked, are laxer and we choose the safe side):

- longer than `MAX_TC_STRING_LENGTH` characters, empty, not base64url (`+`/`/` are refused,
  as both references do; `=` padding is accepted, as iabtcf-java does);
- a version other than 2 (a TCF v1.1 string gets its own reason);
- reading past the end of a segment ("truncated"): a bitfield shorter than its MaxVendorId
  (iabtcf-es issue 142), a missing vendor LI section or publisher restrictions section;
- a range entry whose end is before its start, an id 0, or (vendor sections) an id above the
  section's MaxVendorId (iabtcf-java; iabtcf-es silently accepts these);
- a publisher restriction for purpose 0;
- a ConsentLanguage or PublisherCC letter outside A-Z (both references pass such values
  through as punctuation or lower case; refused here so the decoded codes are always two
  letters A-Z);
- a string whose first segment is not the core (iabtcf-es decodes segments wherever they
  are, even without a core);
- a segment after the core that is empty (other than one trailing `.`), of type 0 or 4-7, or
  of a type already seen: the references disagree about which copy of a duplicated segment
  wins (iabtcf-es the last, iabtcf-java the first), so the only safe answer is neither;
- range entries that would expand to more than `MAX_RANGE_IDS` vendor ids in total.

Accepted although iabtcf-es refuses them (iabtcf-java accepts them): `=` padding, one
trailing `.`, a CmpId of 0 or 1 (its model's setter refuses those), and a publisher
restriction of RestrictionType 3 (it cannot store one; we keep it and ignore it).

Work is linear in the input: every field is read once, by a reader that only moves forward
and costs O(bits read) per read; bitfields turn into id sets in O(their length); and range
entries, the one place where output can outgrow input (a 35-bit entry can name 65,535
vendors), are capped at `MAX_RANGE_IDS` ids before they are expanded.

Decoding is not judging: purpose legitimate-interest bits are reported as encoded, and the
policy (no LI for purposes 1 and 3-6) is applied by `vendor_may`.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from types import MappingProxyType

from gateway.consent.tcf_bits import (
    EPOCH,
    BitReader,
    IdSet,
    id_range,
    ids_of,
    letters,
    split_fields,
)
from gateway.errors import TCFError
from gateway.memo import Memo

__all__ = [
    "KEPT_STRINGS",
    "MAX_RANGE_IDS",
    "MAX_TC_STRING_LENGTH",
    "V1_REASON",
    "RestrictionType",
    "TCString",
    "decode_tc_string",
    "decode_tc_string_kept",
    "vendor_disclosed",
    "vendor_may",
]

#: longer values are refused before any work (real strings run from about 40 characters to
#: a few thousand; a bitfield naming vendor 65535 takes 10,923)
MAX_TC_STRING_LENGTH = 16 * 1024

#: the most vendor ids that all range entries of one string may expand to, counted before
#: expansion (a full GVL restricted for every purpose and restriction type stays far below)
MAX_RANGE_IDS = 1 << 17

#: the reason given for a TCF v1.1 string (version 1, first character `B`)
V1_REASON = "TCF v1 string: the consent string format v1.1 is no longer valid"

# Purposes that may never rest on legitimate interest: 1 (TCF v2.0 onwards) and 3-6
# (TCF v2.2, "removed legitimate interest for purposes 3 to 6").
_CONSENT_ONLY_PURPOSES = frozenset({1, 3, 4, 5, 6})

# Policy version 5 is TCF v2.3, which made the DisclosedVendors segment mandatory.
_DISCLOSED_VENDORS_MANDATORY_FROM = 5


class RestrictionType(IntEnum):
    """A publisher restriction's RestrictionType (2 bits)."""

    #: purpose flatly not allowed for the listed vendors
    NOT_ALLOWED = 0
    #: the listed vendors must rely on consent for the purpose
    REQUIRE_CONSENT = 1
    #: the listed vendors must rely on legitimate interest for the purpose
    REQUIRE_LI = 2
    #: reserved by the spec: kept in the decoded data, ignored by decisions
    UNDEFINED = 3


@dataclass(frozen=True, slots=True)
class TCString:
    """A decoded TC string. Field names are also the keys of `to_json()`.

    Id sets hold 1-based ids (purposes, special features, vendors); decoded, they are
    `IdSet`s (bits of an int), equal to frozensets of the same ids. Every field comes
    straight from the string; nothing is judged here (see `vendor_may`).
    """

    #: always 2 (other versions are refused)
    version: int
    #: Created and LastUpdated, UTC, decisecond resolution
    created: datetime
    last_updated: datetime
    cmp_id: int
    cmp_version: int
    consent_screen: int
    #: two letters A-Z, e.g. "EN"
    consent_language: str
    vendor_list_version: int
    #: TcfPolicyVersion: 2 for TCF v2.0/2.1, 4 for v2.2, 5 for v2.3
    policy_version: int
    is_service_specific: bool
    use_non_standard_texts: bool
    special_feature_optins: AbstractSet[int]
    purpose_consents: AbstractSet[int]
    #: PurposesLITransparency as encoded, even for purposes that may not use LI
    purpose_legitimate_interests: AbstractSet[int]
    purpose_one_treatment: bool
    #: two letters A-Z, e.g. "FR"; "AA" is the usual placeholder
    publisher_country_code: str
    vendor_consents: AbstractSet[int]
    vendor_legitimate_interests: AbstractSet[int]
    #: (purpose_id, restriction_type) -> vendors; repeated pairs are merged (union), pairs
    #: that list no vendor are left out. Not part of the hash (a mapping is not hashable).
    publisher_restrictions: Mapping[tuple[int, int], AbstractSet[int]] = field(hash=False)
    #: None when the string has no DisclosedVendors segment (absent is not empty)
    disclosed_vendors: AbstractSet[int] | None
    #: None when the string has no AllowedVendors segment (legacy; decoded, not used)
    allowed_vendors: AbstractSet[int] | None
    #: the PublisherTC segment; all four empty when it is absent
    publisher_consents: AbstractSet[int]
    publisher_legitimate_interests: AbstractSet[int]
    custom_purpose_consents: AbstractSet[int]
    custom_purpose_legitimate_interests: AbstractSet[int]

    def to_json(self) -> dict[str, object]:
        """The JSON object of `consent-gateway decode --json`, keys in field order.

        Id sets become ascending int lists (`disclosed_vendors`/`allowed_vendors` stay null
        when absent). Times become ISO-8601 UTC with a `Z`: `2020-01-26T17:01:00Z`, with one
        fractional digit only when the deciseconds are not zero (`2017-11-07T19:15:55.4Z`),
        since the string carries nothing finer. `publisher_restrictions` becomes a list of
        `{"purpose_id", "restriction_type", "vendors"}` sorted by purpose, then type.
        """
        return {
            "version": self.version,
            "created": _iso(self.created),
            "last_updated": _iso(self.last_updated),
            "cmp_id": self.cmp_id,
            "cmp_version": self.cmp_version,
            "consent_screen": self.consent_screen,
            "consent_language": self.consent_language,
            "vendor_list_version": self.vendor_list_version,
            "policy_version": self.policy_version,
            "is_service_specific": self.is_service_specific,
            "use_non_standard_texts": self.use_non_standard_texts,
            "special_feature_optins": sorted(self.special_feature_optins),
            "purpose_consents": sorted(self.purpose_consents),
            "purpose_legitimate_interests": sorted(self.purpose_legitimate_interests),
            "purpose_one_treatment": self.purpose_one_treatment,
            "publisher_country_code": self.publisher_country_code,
            "vendor_consents": sorted(self.vendor_consents),
            "vendor_legitimate_interests": sorted(self.vendor_legitimate_interests),
            "publisher_restrictions": [
                {"purpose_id": purpose, "restriction_type": kind, "vendors": sorted(vendors)}
                for (purpose, kind), vendors in sorted(self.publisher_restrictions.items())
            ],
            "disclosed_vendors": _sorted_or_none(self.disclosed_vendors),
            "allowed_vendors": _sorted_or_none(self.allowed_vendors),
            "publisher_consents": sorted(self.publisher_consents),
            "publisher_legitimate_interests": sorted(self.publisher_legitimate_interests),
            "custom_purpose_consents": sorted(self.custom_purpose_consents),
            "custom_purpose_legitimate_interests": sorted(self.custom_purpose_legitimate_interests),
        }


def _iso(moment: datetime) -> str:
    tenths = moment.microsecond // 100_000
    fraction = f".{tenths}" if tenths else ""
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}{fraction}Z"


def _sorted_or_none(ids: AbstractSet[int] | None) -> list[int] | None:
    return None if ids is None else sorted(ids)


class _RangeBudget:
    """How many more vendor ids range entries may expand to (`MAX_RANGE_IDS` in all)."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_RANGE_IDS

    def take(self, count: int) -> None:
        # SECURITY: checked before expansion, so the cap bounds the work, not only the result.
        if count > self.left:
            raise TCFError("too many vendor ids in ranges")
        self.left -= count


#: the core's fields after Version, in order, and their widths
_HEADER_WIDTHS = (36, 36, 12, 12, 6, 6, 6, 12, 6, 1, 1, 12, 24, 24, 1, 6, 6)
_HEADER_BITS = sum(_HEADER_WIDTHS)


def _range_entries(reader: BitReader, budget: _RangeBudget, max_vendor_id: int | None) -> IdSet:
    """NumEntries (12) then that many {IsARange 1, StartOrOnlyVendorId 16, [EndVendorId 16]}.

    `max_vendor_id` is the section's MaxVendorId (None in publisher restrictions, which
    have none). Overlapping entries are allowed and merged: each is OR-ed into the set's
    bits (at most 1,024 machine words each, ids being 16-bit).
    """
    bits = 0
    read, count = reader.read, reader.read(12)
    whole, total, pos = reader._int or 0, reader._total, reader.pos
    # Within a one-int segment (33 bits an entry at most), fields are read with shifts on
    # locals, not a method call each: IAB's encoder writes most vendor sections this way.
    fast = reader._int is not None and pos + 33 * count <= reader._size
    for _ in range(count):
        if fast:
            pos += 17
            head = (whole >> (total - pos)) & 0x1FFFF  # IsARange, then StartOrOnlyVendorId
            end = start = head & 0xFFFF
            if head >> 16:
                pos += 16
                end = (whole >> (total - pos)) & 0xFFFF
        else:
            head = read(17)
            start = head & 0xFFFF
            end = read(16) if head >> 16 else start
        if start == 0:
            raise TCFError("vendor id 0")
        if end < start:
            raise TCFError("range ends before it starts")
        if max_vendor_id is not None and end > max_vendor_id:
            raise TCFError("vendor id above MaxVendorId")
        budget.take(end - start + 1)
        bits |= id_range(start, end)
    if fast:
        reader.pos = pos
    return IdSet(bits)


def _vendor_section(reader: BitReader, budget: _RangeBudget) -> IdSet:
    """MaxVendorId (16), IsRangeEncoding (1), then a MaxVendorId-bit field or range entries."""
    max_vendor_id = reader.read(16)
    if reader.read_bool():
        return _range_entries(reader, budget, max_vendor_id)
    # A bitfield shorter than MaxVendorId is "truncated" here (iabtcf-es issue 142).
    return reader.read_ids(max_vendor_id)


def _publisher_restrictions(
    reader: BitReader, budget: _RangeBudget
) -> Mapping[tuple[int, int], IdSet]:
    """NumPubRestrictions (12), each {PurposeId 6, RestrictionType 2, range entries}."""
    merged: dict[tuple[int, int], int] = {}
    for _ in range(reader.read(12)):
        purpose = reader.read(6)
        kind = reader.read(2)
        if purpose == 0:
            raise TCFError("restriction for purpose 0")
        vendors = _range_entries(reader, budget, None)
        if vendors:
            # The spec does not forbid a repeated (purpose, type) pair; like iabtcf-es, which
            # keys restrictions by pair, take the union.
            merged[(purpose, kind)] = merged.get((purpose, kind), 0) | vendors.bits
    return MappingProxyType({key: IdSet(bits) for key, bits in sorted(merged.items())})


def decode_tc_string(value: str) -> TCString:
    """The TC string in `value`, fully decoded and checked.

    Raises TCFError, and nothing else whatever `value` holds, when the value is not a
    well-formed TCF v2 TC string (see the module docstring for what is refused). A v1.1
    string is refused with `reason == V1_REASON`. Linear time in `len(value)`.
    """
    # SECURITY: bound the work an attacker can cause before anything else is done.
    if not isinstance(value, str):
        raise TCFError("not a string")
    if len(value) > MAX_TC_STRING_LENGTH:
        raise TCFError("too long")
    if not value:
        raise TCFError("empty")
    parts = value.split(".")
    if len(parts) > 1 and not parts[-1]:
        parts.pop()  # one trailing `.` (an empty last segment) is tolerated
    if len(parts) > 4:
        raise TCFError("too many segments")  # the core plus three distinct segment types

    budget = _RangeBudget()
    core = BitReader(parts[0])
    version = core.read(6)
    if version == 1:
        raise TCFError(V1_REASON)
    if version >> 3 in (1, 2, 3):
        # The first 3 bits name another segment type: the core is not first (or missing).
        raise TCFError("core segment not first")
    if version != 2:
        raise TCFError(f"unsupported version {version}")
    if core.left >= _HEADER_BITS:
        # The whole header in one read, split by shifts (every field is in range: only
        # the letters are checked, in the order the field-by-field reads check them).
        (
            created_ds,
            updated_ds,
            cmp_id,
            cmp_version,
            consent_screen,
            lang_1,
            lang_2,
            vendor_list_version,
            policy_version,
            service_specific,
            non_standard,
            features,
            purposes,
            purposes_li,
            purpose_one,
            country_1,
            country_2,
        ) = split_fields(core.read(_HEADER_BITS), _HEADER_WIDTHS)
        created = EPOCH + timedelta(milliseconds=100 * created_ds)
        last_updated = EPOCH + timedelta(milliseconds=100 * updated_ds)
        consent_language = letters(lang_1, lang_2)
        is_service_specific = service_specific == 1
        use_non_standard_texts = non_standard == 1
        special_feature_optins = ids_of(features, 12)
        purpose_consents = ids_of(purposes, 24)
        purpose_legitimate_interests = ids_of(purposes_li, 24)
        purpose_one_treatment = purpose_one == 1
        publisher_country_code = letters(country_1, country_2)
    else:  # short: read field by field, so the first field past the end is the error
        created = core.read_time()
        last_updated = core.read_time()
        cmp_id = core.read(12)
        cmp_version = core.read(12)
        consent_screen = core.read(6)
        consent_language = core.read_letters()
        vendor_list_version = core.read(12)
        policy_version = core.read(6)
        is_service_specific = core.read_bool()
        use_non_standard_texts = core.read_bool()
        special_feature_optins = core.read_ids(12)
        purpose_consents = core.read_ids(24)
        purpose_legitimate_interests = core.read_ids(24)
        purpose_one_treatment = core.read_bool()
        publisher_country_code = core.read_letters()
    vendor_consents = _vendor_section(core, budget)
    # Required, not optional: a core that ends here is "truncated" (go-gdpr
    # TestParseLegitIntSetWithBitField).
    vendor_legitimate_interests = _vendor_section(core, budget)
    publisher_restrictions = _publisher_restrictions(core, budget)
    # Whatever follows in the core is zero fill and is not read.

    disclosed: IdSet | None = None
    allowed: IdSet | None = None
    publisher: tuple[IdSet, ...] = (IdSet(),) * 4
    seen: set[int] = set()
    for part in parts[1:]:
        reader = BitReader(part)
        segment_type = reader.read(3)
        if segment_type in seen:
            raise TCFError("duplicate segment")
        seen.add(segment_type)
        match segment_type:
            case 1:
                disclosed = _vendor_section(reader, budget)
            case 2:
                allowed = _vendor_section(reader, budget)
            case 3:
                consents = reader.read_ids(24)
                legitimate_interests = reader.read_ids(24)
                custom = reader.read(6)
                publisher = (
                    consents,
                    legitimate_interests,
                    reader.read_ids(custom),
                    reader.read_ids(custom),
                )
            case 0:
                raise TCFError("core segment out of place")
            case _:
                raise TCFError("unknown segment type")

    return TCString(
        version=version,
        created=created,
        last_updated=last_updated,
        cmp_id=cmp_id,
        cmp_version=cmp_version,
        consent_screen=consent_screen,
        consent_language=consent_language,
        vendor_list_version=vendor_list_version,
        policy_version=policy_version,
        is_service_specific=is_service_specific,
        use_non_standard_texts=use_non_standard_texts,
        special_feature_optins=special_feature_optins,
        purpose_consents=purpose_consents,
        purpose_legitimate_interests=purpose_legitimate_interests,
        purpose_one_treatment=purpose_one_treatment,
        publisher_country_code=publisher_country_code,
        vendor_consents=vendor_consents,
        vendor_legitimate_interests=vendor_legitimate_interests,
        publisher_restrictions=publisher_restrictions,
        disclosed_vendors=disclosed,
        allowed_vendors=allowed,
        publisher_consents=publisher[0],
        publisher_legitimate_interests=publisher[1],
        custom_purpose_consents=publisher[2],
        custom_purpose_legitimate_interests=publisher[3],
    )


def vendor_may(
    tc: TCString, vendor_id: int, purpose: int, *, legitimate_interest_allowed: bool = False
) -> bool:
    """True iff `tc` lets vendor `vendor_id` process data for TCF purpose `purpose`.

    `legitimate_interest_allowed` says whether the vendor may rely on legitimate interest
    for this purpose at all (the GVL declares it so, or the caller's config does); without
    it only consent counts. The rule (spec, "What are publisher restrictions?"; TCF
    Implementation Guidelines, "evaluate publisher restrictions prior to any other signal"):

    - a RestrictionType 0 (not allowed) restriction for (purpose, vendor): False, whatever
      else the string says;
    - the consent basis holds when PurposesConsent has the purpose and VendorConsents has the
      vendor;
    - the legitimate-interest basis holds when the purpose is not 1 or 3-6 (consent-only
      since TCF v2.2), PurposesLITransparency has the purpose and VendorLegitimateInterests
      has the vendor;
    - a type 1 (require consent) restriction for the vendor makes the consent basis the only
      one, a type 2 (require LI) restriction the LI basis the only one, whatever
      `legitimate_interest_allowed` says; a vendor listed under both must satisfy both
      (contradictory restrictions: fail closed);
    - otherwise: consent, or LI when `legitimate_interest_allowed`.

    Type 3 restrictions are ignored. Whether the vendor was disclosed is a separate
    question: see `vendor_disclosed`.
    """
    restrictions = tc.publisher_restrictions
    empty = IdSet()
    if vendor_id in restrictions.get((purpose, RestrictionType.NOT_ALLOWED), empty):
        return False
    by_consent = purpose in tc.purpose_consents and vendor_id in tc.vendor_consents
    by_li = (
        purpose not in _CONSENT_ONLY_PURPOSES
        and purpose in tc.purpose_legitimate_interests
        and vendor_id in tc.vendor_legitimate_interests
    )
    need_consent = vendor_id in restrictions.get((purpose, RestrictionType.REQUIRE_CONSENT), empty)
    need_li = vendor_id in restrictions.get((purpose, RestrictionType.REQUIRE_LI), empty)
    if need_consent or need_li:
        return (by_consent or not need_consent) and (by_li or not need_li)
    return by_consent or (legitimate_interest_allowed and by_li)


def vendor_disclosed(tc: TCString, vendor_id: int) -> bool:
    """Whether the CMP disclosed vendor `vendor_id` to the user.

    With a DisclosedVendors segment: whether the segment lists the vendor (a vendor absent
    from it is not disclosed). Without one, by the string's policy version:

    - TcfPolicyVersion >= 5 (TCF v2.3): False. The spec's v2.3 revision (Apr 2025) made
      DisclosedVendors "a mandatory segment" that "records which vendors have been disclosed
      to a given user by a CMP", so a v2.3 string without it discloses no vendor;
    - older policy versions: True. Before v2.3 the segment was optional and was not sent to
      vendors, so its absence says nothing, and disclosure is left to the consent and LI
      signals (a vendor that was never disclosed has neither).
    """
    if tc.disclosed_vendors is not None:
        return vendor_id in tc.disclosed_vendors
    return tc.policy_version < _DISCLOSED_VENDORS_MANDATORY_FROM


#: how many TC strings `decode_tc_string_kept` keeps decoded, and the longest it keeps
KEPT_STRINGS = 4096
_KEPT_LENGTH = 4096
_KEPT: Memo[str, TCString | str] = Memo(KEPT_STRINGS)


def decode_tc_string_kept(value: str) -> TCString:
    """`decode_tc_string`, answered from a bounded cache for a string seen before: a site's
    visitors send the same TC string on every hit. A string that does not decode is kept
    too (as its reason) and raises TCFError again, never re-parsed."""
    kept = _KEPT.get(value)
    if kept is None:
        try:
            kept = decode_tc_string(value)
        except TCFError as e:
            kept = e.reason
        if len(value) <= _KEPT_LENGTH:
            _KEPT.put(value, kept)
    if isinstance(kept, str):
        raise TCFError(kept)
    return kept
