"""The admin's HTML pages: Blocked requests, Overview, Rules, Unknown destinations,
Bypasses, Explain and Consent records.

Each handler parses its query (`params`), reads through `queries` or the consent
store, and renders a template with what `present` makes of the result. A bad
parameter is a 400 page naming the parameter, never echoing its value.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from urllib.parse import quote, urlencode

from aiohttp import web

from gateway.admin.answers import ACCESS, ADMIN, error, render
from gateway.admin.params import (
    ACTIONS,
    BYPASS_KINDS,
    BYPASS_LIMIT,
    DRAFT_PATHS,
    EXPLAIN_FIELDS,
    EXPLAIN_METHODS,
    GROUP_LIMIT,
    MAX_ID,
    MAX_SUBJECT,
    OVERVIEW_WINDOWS,
    PAGE_SIZE,
    TIMELINE_POINTS,
    UNKNOWN_LIMIT,
    VIEWS,
    WINDOWS,
    BadParameter,
    explain_form,
    group_params,
    host_param,
    int_param,
    kind_param,
    record_filters,
    record_id_param,
    search_param,
    since_param,
    view_param,
    window_param,
)
from gateway.admin.present import (
    ACTION_LABELS,
    bypass_row,
    charts,
    consent_row,
    consent_share_rows,
    current_view,
    erase_command,
    format_time,
    group_row,
    record_detail,
    record_row,
    rules_doc,
    timeline_svg,
    unknown_draft,
    vendor_share_rows,
)
from gateway.admin.queries import (
    load_page,
    log_off,
    log_reader,
    read_bypasses,
    read_counts,
    read_groups,
    read_hosts,
    read_paths,
    read_record,
    read_rollups,
)
from gateway.errors import RequestError
from gateway.explain import explain, render_text, subjects_of
from gateway.ruleset.schema import is_dns_name
from gateway.state import Gateway
from gateway.store.base import ERASED_PREFIX, CurrentConsent, StoreError, subject_history

__all__ = [
    "blocked_page",
    "bypasses_page",
    "explain_page",
    "overview_page",
    "record_page",
    "rules_page",
    "subjects_page",
    "unknown_draft_page",
    "unknown_page",
]

log = logging.getLogger(__name__)


def _bad_page(request: web.Request, e: BadParameter) -> web.Response:
    return error(request, 400, str(e), api=False)


async def blocked_page(request: web.Request) -> web.Response:
    """Blocked requests: identical records grouped (the default view) or the records
    themselves, newest first and paged, with a live tail on the newest page. A group
    links to its records (`group_*` parameters, which also select the records view)."""
    gw = request.app[ADMIN].gw
    prefix = request.app[ADMIN].prefix
    try:
        f = record_filters(request, any_time=True)
        view = "records" if f.group is not None else view_param(request.query)
        before_id = int_param(request.query, "before_id", 1, MAX_ID)
    except BadParameter as e:
        return _bad_page(request, e)
    cfg = gw.config
    context: dict[str, object] = {
        "title": "Blocked requests",
        "view": view,
        "filters": f,
        "windows": [*WINDOWS, "all"],
        # A vendor filtered on may be gone from the rules; its records are not.
        "vendors": sorted({r.vendor for r in gw.rules.current.rules} | {f.vendor or ""} - {""}),
        "purposes": cfg.consent.purposes,
        "actions": ACTIONS,
        "regimes": [r.name for r in cfg.consent.regimes],
        "log_off": log_off(request),
        "group": group_row(f.group) if f.group is not None else None,
        "view_urls": {
            v: f"{prefix}/?{urlencode({**replace(f, group=None).params(), 'view': v})}"
            for v in VIEWS
        },
    }
    if view == "groups":
        groups = await read_groups(request, f.query(GROUP_LIMIT))
        plain = replace(f, group=None).params()
        context["groups"] = [
            {
                **group_row(g.key),
                "count": g.count,
                "first": format_time(g.first_seen),
                "last": format_time(g.last_seen),
                "records_url": f"{prefix}/?"
                + urlencode({**plain, "view": "records", **group_params(g.key)}),
            }
            for g in groups
        ]
        context["group_limit"] = GROUP_LIMIT
        return render(request, "blocked.html", context)
    page = await load_page(log_reader(request), f, PAGE_SIZE, before_id, True)

    def link(cursor: int | None) -> str:
        params = {**f.params(), "view": "records"}
        if cursor is not None:
            params["before_id"] = str(cursor)
        return f"{prefix}/?{urlencode(params)}"

    context |= {
        "rows": [record_row(r) for r in page.records],
        "next_url": link(page.next_before_id) if page.next_before_id is not None else None,
        "prev_url": link(page.prev_before_id) if page.has_prev else None,
        # the tail matches the filter form's fields; a group's rows are not live
        "live": before_id is None and f.group is None,
    }
    return render(request, "blocked.html", context)


async def record_page(request: web.Request) -> web.Response:
    """One record in full (`?id=`): per-purpose consent sources, regime, request id and
    the fields actually removed. 404 when no record has that id."""
    gw = request.app[ADMIN].gw
    try:
        record_id = record_id_param(request.query)
    except BadParameter as e:
        return _bad_page(request, e)
    found = await read_record(request, record_id)
    if found is None:
        return error(request, 404, "no record with this id (it may have expired)", api=False)
    detail = record_detail(found, gw.config.consent.purposes)
    return render(request, "record.html", {"title": f"Record {record_id}", "r": detail})


async def overview_page(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    try:
        window, since, until = window_param(request)
    except BadParameter as e:
        return _bad_page(request, e)
    counts = await read_counts(request, since)
    by_vendor, by_purpose = charts(counts, state.gw.config.consent.purposes)
    rolled = await read_rollups(request, since, until, TIMELINE_POINTS)
    totals = {a: sum(b.counts.get(a, 0) for b in rolled.timeline.buckets) for a in ACTIONS}
    return render(
        request,
        "overview.html",
        {
            "title": "Overview",
            "window": window,
            "windows": list(OVERVIEW_WINDOWS),
            "total": counts.total,
            "requests": rolled.timeline.total,
            "action_totals": [(a, ACTION_LABELS[a], totals[a]) for a in ACTIONS],
            "chart_timeline": timeline_svg(rolled.timeline),
            "bucket_minutes": rolled.timeline.width // 60,
            "vendor_shares": vendor_share_rows(rolled.vendors),
            "consent_shares": consent_share_rows(rolled.consent),
            "chart_vendor": by_vendor,
            "chart_purpose": by_purpose,
            "log_off": log_off(request),
        },
    )


async def rules_page(request: web.Request) -> web.Response:
    """The rules in force, searchable (`q`: vendor, host or purpose), with the hosts the
    config adds and when the rules were last (re)loaded."""
    gw = request.app[ADMIN].gw
    try:
        q = search_param(request.query)
    except BadParameter as e:
        return _bad_page(request, e)
    doc = rules_doc(gw, q)
    last = gw.rules.last_reload
    context = {
        **doc,
        "title": "Rules",
        "q": q,
        "loaded": format_time(gw.rules.loaded_at),
        "reload": None if last is None else (format_time(last[0]), last[1]),
    }
    return render(request, "rules.html", context)


async def unknown_page(request: web.Request) -> web.Response:
    try:
        since, since_ts = since_param(request.query.get("since"), "1w", any_time=False)
    except BadParameter as e:
        return _bad_page(request, e)
    hosts = await read_hosts(request, since_ts, UNKNOWN_LIMIT)
    draft = f"{request.app[ADMIN].prefix}/unknown/draft?"
    rows = [
        {
            "host": h.host,
            "count": h.count,
            "first": format_time(h.first_seen),
            "last": format_time(h.last_seen),
            # a `{…}` row (an address, a name no rule could list) has nothing to draft
            "draft_url": draft + urlencode({"host": h.host, "since": since})
            if is_dns_name(h.host)
            else None,
        }
        for h in hosts
    ]
    return render(
        request,
        "unknown.html",
        {
            "title": "Unknown destinations",
            "since": since,
            "windows": [*WINDOWS, "all"],
            "rows": rows,
            "limit": UNKNOWN_LIMIT,
            "log_off": log_off(request),
        },
    )


async def unknown_draft_page(request: web.Request) -> web.Response:
    """A rule drafted for a host the Unknown destinations page lists, from the methods and
    path templates the decision log kept of its requests (never a value), as YAML to
    review: what `consent-gateway new-rule` drafts from captured URLs. 404 when the log
    holds no rejected request to the host in the period."""
    gw = request.app[ADMIN].gw
    try:
        since, since_ts = since_param(request.query.get("since"), "1w", any_time=False)
        host = host_param(request.query)
    except BadParameter as e:
        return _bad_page(request, e)
    paths = await read_paths(request, host, since_ts, DRAFT_PATHS)
    draft = unknown_draft(host, paths, gw.config.consent.purposes)
    listed = gw.rules.current.vendor_for_host(host)
    context = {
        "title": "Draft rule",
        "host": host,
        "since": since,
        "shapes": len(paths),
        "draft": draft,
        "listed": listed.vendor if listed is not None else None,
        "log_off": log_off(request),
    }
    return render(request, "unknown_draft.html", context, status=200 if draft else 404)


async def bypasses_page(request: web.Request) -> web.Response:
    """Hosts the site's pages tried to reach around the gateway: listed vendor hosts a
    CSP blocked (`/csp-report`), and hosts no rule lists the router saw (`/cg-report`)."""
    try:
        since, since_ts = since_param(request.query.get("since"), "1w", any_time=False)
        kind = kind_param(request.query)
    except BadParameter as e:
        return _bad_page(request, e)
    rows = await read_bypasses(request, since_ts, BYPASS_LIMIT, kind)
    return render(
        request,
        "bypasses.html",
        {
            "title": "Bypasses",
            "since": since,
            "kind": kind or "",
            "kinds": BYPASS_KINDS,
            "windows": [*WINDOWS, "all"],
            "rows": [bypass_row(b) for b in rows],
            "limit": BYPASS_LIMIT,
            "log_off": log_off(request),
        },
    )


async def explain_page(request: web.Request) -> web.Response:
    """What `consent-gateway explain` prints for a request described in a form, with the
    rules and config in force (and the store's state of its subject, as live traffic).

    GET shows the form; the form POSTs (its values, a cookie among them, stay out of URLs
    and the access log), CSRF-checked for a login session as logout is. Nothing is sent
    anywhere and nothing is logged: the output is text, escaped into the page.
    """
    state = request.app[ADMIN]
    gw = state.gw
    context: dict[str, object] = {
        "title": "Explain",
        "form": dict.fromkeys(EXPLAIN_FIELDS, "") | {"method": "GET"},
        "methods": EXPLAIN_METHODS,
        "purposes": gw.config.consent.purposes,
        "cookie_name": gw.config.cookie.name,
        "error": None,
        "output": None,
    }
    if request.method != "POST":
        return render(request, "explain.html", context)
    form = await request.post()
    session = request[ACCESS].session
    if session is not None and not state.auth.check_csrf(session, form.get("csrf")):
        return error(request, 403, "the form's CSRF token does not match the session", api=False)
    try:
        fields, req = explain_form(form, gw.config.consent.purposes)
    except BadParameter as e:
        context["error"] = str(e)
        return render(request, "explain.html", context, status=400)
    context["form"] = fields
    try:
        stored = await _stored_states(gw, subjects_of(req, gw.config))
        facts, ev = explain(replace(req, stored=stored), gw.config, gw.rules.current)
        context["output"] = render_text(facts, ev)
    except RequestError as e:
        context["output"] = f"decision  REJECT: {e.message}"
    return render(request, "explain.html", context)


async def _stored_states(gw: Gateway, subjects: list[str]) -> dict[str, CurrentConsent | None]:
    """The store's state of each subject (a failing store reads as no record)."""
    book = gw.book
    if book is None:
        return {}
    return {s: await book.lookup(s) for s in subjects}


async def subjects_page(request: web.Request) -> web.Response:
    """Consent records: one subject's current state and full history, oldest first (what
    `api/subjects/{subject}/records` exports), for operators answering an access request.

    Read-only: erasure stays with the bearer-token API and the CLI, so no form here
    changes anything (no CSRF surface). The subject comes in the query string, which the
    access log never keeps; this handler never logs it either.
    """
    gw = request.app[ADMIN].gw
    subject = request.query.get("subject", "")
    context: dict[str, object] = {
        "title": "Consent records",
        "subject": "",
        "cookie_name": gw.config.cookie.name,
        "erased_prefix": ERASED_PREFIX,
        "error": None,
        "result": None,
    }
    if not subject:
        return render(request, "subjects.html", context)
    if len(subject) > MAX_SUBJECT:
        # Not echoed back (nor put in the form): most likely a whole cookie value.
        context["error"] = (
            f"subject: at most {MAX_SUBJECT} characters (a subject id or an "
            f"{ERASED_PREFIX}… token, not a whole cookie value)"
        )
        return render(request, "subjects.html", context, status=400)
    context["subject"] = subject
    book = gw.book
    if book is None:
        context["error"] = "the consent store is not open"
        return render(request, "subjects.html", context, status=503)
    try:
        current, records = await subject_history(book.store, subject)
    except StoreError as e:
        # SECURITY: a driver's message may quote a parameter; the subject stays out of logs.
        log.warning("admin: the consent store cannot be read: %s", str(e).replace(subject, "-"))
        context["error"] = "the consent store cannot be read; try again later"
        return render(request, "subjects.html", context, status=503)
    token = subject.startswith(ERASED_PREFIX)
    encoded = quote(subject, safe="")
    api = request.app[ADMIN].prefix + "/api/"
    context["result"] = {
        "token": token,
        "current": current_view(current, gw.config.consent),
        "records": [consent_row(r, gw.config.consent.purposes) for r in records],
        "export_url": f"{api}subjects/{encoded}/records",
        # How to erase, while records are linked to the id (a token's already are not).
        "erase_url": f"{api}subjects/{encoded}/erase" if records and not token else None,
        "erase_cli": erase_command(subject),
    }
    return render(request, "subjects.html", context)
