"""decide(match, consent) -> Decision: the rule of DESIGN §5, and nothing else.

- no matching rule: REJECT (the gateway is not an open proxy);
- every required purpose granted: FORWARD with the rule's `always` strips;
- some missing, each with a `when_denied` strip: STRIP (always + those strips);
- otherwise: DROP.

`report_only` (global or per vendor) keeps the action for the log but tells
the pipeline to forward with only the `always` strips.
"""

from __future__ import annotations

import dataclasses

from gateway.memo import Memo
from gateway.model import NECESSARY, Action, ConsentState, ConsentValue, Decision, StripSpec
from gateway.ruleset.match import Match

__all__ = ["decide", "reject"]

_EMPTY = StripSpec()


def reject(reason: str, vendor: str | None = None) -> Decision:
    """A REJECT decision: never forwarded, answered with a 4xx."""
    return Decision(
        action=Action.REJECT,
        vendor=vendor,
        endpoint=None,
        required=frozenset(),
        missing=frozenset(),
        strips=_EMPTY,
        reason=reason,
    )


def decide(match: Match | None, consent: ConsentState, *, report_only: bool = False) -> Decision:
    """The action for a request, with the complete strip spec to apply.

    A purpose counts as missing unless it is explicitly granted: `unknown`
    means no consent (fail closed).

    Decisions are kept per (match, consent) object pair: both come from caches
    (`RuleSet.match`, `resolve_with_signals`), so a visitor's repeated hit is decided by
    a lookup. The entry holds both objects and is used only for those very objects.
    """
    if match is None:
        return reject("no rule lists this destination")
    key = (id(match), id(consent), report_only)
    kept = _KEPT.get(key)
    if kept is not None and kept[0] is match and kept[1] is consent:
        return kept[2]
    return _KEPT.put(key, (match, consent, _decide(match, consent, report_only)))[2]


#: (id(match), id(consent), report_only) -> (match, consent, decision); holding the
#: objects keeps their ids from being reused while the entry lives
_KEPT: Memo[tuple[int, int, bool], tuple[Match, ConsentState, Decision]] = Memo(16384)


def _decide(match: Match | None, consent: ConsentState, report_only: bool) -> Decision:
    if match is None:
        return reject("no rule lists this destination")
    vendor, endpoint = match.vendor, match.endpoint
    required = frozenset(endpoint.purposes) - {NECESSARY}
    if endpoint.retired:
        # Whatever the consent: the service is gone, so nothing it receives does any good.
        return Decision(
            action=Action.DROP,
            vendor=vendor.vendor,
            endpoint=endpoint.id,
            required=required,
            missing=frozenset(),
            strips=_EMPTY,
            reason="the vendor retired this service: never forwarded",
            report_only=False,
        )
    # The visitor's own answer for this vendor: denied, it lacks every purpose; granted by
    # a CMP service standing for it, it may have purposes nobody else answered.
    missing = consent.missing_for(vendor.vendor, required)
    choice = consent.vendor_choices.get(vendor.vendor)
    note = ""
    if choice is not None and choice.state is ConsentValue.DENIED and missing:
        note = f" (vendor {vendor.vendor} denied: {choice.source})"
    vendor_denied: frozenset[str] = frozenset()
    if vendor.tcf_vendor_id is not None and consent.vendors is not None:
        # TCF: the purpose's consent is not enough; this vendor needs its own, and no
        # publisher restriction may stand against it.
        vendor_denied = consent.vendors.denied(vendor.tcf_vendor_id, required) - missing
        missing |= vendor_denied
    if vendor_denied:
        denied = ", ".join(sorted(vendor_denied))
        note += f" (TCF: vendor {vendor.tcf_vendor_id} not permitted for {denied})"
    ro = report_only or vendor.report_only
    if not missing:
        strips = endpoint.always
        if not required and any(not consent.granted(p) for p in consent.purposes if p != NECESSARY):
            # SECURITY: an endpoint that needs no consent (a consent API, a loader) still
            # carries nothing that identifies a visitor who refused a purpose.
            strips = dataclasses.replace(strips, identifiers=True)
        return Decision(
            action=Action.FORWARD,
            vendor=vendor.vendor,
            endpoint=endpoint.id,
            required=required,
            missing=missing,
            strips=strips,
            reason="all required purposes granted" if required else "needs no consent",
            report_only=ro,
        )
    unstrippable = sorted(p for p in missing if p not in endpoint.when_denied)
    if unstrippable:
        return Decision(
            action=Action.DROP,
            vendor=vendor.vendor,
            endpoint=endpoint.id,
            required=required,
            missing=missing,
            strips=_EMPTY,
            reason=(
                f"no consent for {', '.join(unstrippable)} and no strip that makes it safe{note}"
            ),
            report_only=ro,
        )
    specs = [endpoint.when_denied[p] for p in sorted(missing)]
    strips = endpoint.always
    for spec in specs:
        strips = strips.merge(spec)
    # SECURITY: a rule lists its vendor's fields; identifiers it did not foresee (another
    # platform's click id, a hashed e-mail in a custom field) go too (gateway.identifiers),
    # but for what every denied purpose's strip keeps.
    keep = frozenset.intersection(*(spec.keep for spec in specs))
    strips = dataclasses.replace(strips, identifiers=True, keep=keep)
    return Decision(
        action=Action.STRIP,
        vendor=vendor.vendor,
        endpoint=endpoint.id,
        required=required,
        missing=missing,
        strips=strips,
        reason=f"no consent for {', '.join(sorted(missing))}: identifiers stripped{note}",
        report_only=ro,
    )
