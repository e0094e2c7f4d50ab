"""The admin's JSON API: records, their groups, overview, rules, unknown hosts, bypasses, and a
subject's consent records and erasure.

Every answer is a JSON object; a bad parameter is a 400 `{"error": "<parameter>: ..."}`
that never echoes the value. The API shares its queries and documents with the pages.
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.admin.answers import ACCESS, ADMIN, json_response
from gateway.admin.params import (
    API_MAX_LIMIT,
    BYPASS_LIMIT,
    DRAFT_PATHS,
    GROUP_LIMIT,
    MAX_ID,
    MAX_SUBJECT,
    PAGE_SIZE,
    TIMELINE_POINTS,
    UNKNOWN_LIMIT,
    BadParameter,
    host_param,
    int_param,
    kind_param,
    record_filters,
    search_param,
    since_param,
    window_param,
)
from gateway.admin.present import (
    bypasses_doc,
    groups_doc,
    overview_doc,
    purpose_shares,
    rollups_doc,
    rules_doc,
    unknown_doc,
    unknown_draft,
)
from gateway.admin.queries import (
    load_page,
    log_reader,
    read_bypasses,
    read_counts,
    read_groups,
    read_hosts,
    read_paths,
    read_rollups,
)
from gateway.decision_log.record import record_to_dict
from gateway.store.base import StoreError, subject_export
from gateway.store.cache import ConsentBook

__all__ = [
    "api_bypasses",
    "api_groups",
    "api_overview",
    "api_records",
    "api_rules",
    "api_subject_erase",
    "api_subject_records",
    "api_unknown",
    "api_unknown_draft",
    "bad_parameter",
]

log = logging.getLogger(__name__)


def bad_parameter(e: BadParameter) -> web.Response:
    return json_response({"error": str(e)}, status=400)


async def api_records(request: web.Request) -> web.Response:
    try:
        f = record_filters(request, any_time=True)
        before_id = int_param(request.query, "before_id", 1, MAX_ID)
        limit = int_param(request.query, "limit", 1, API_MAX_LIMIT) or PAGE_SIZE
    except BadParameter as e:
        return bad_parameter(e)
    page = await load_page(log_reader(request), f, limit, before_id, False)
    return json_response(
        {
            "records": [record_to_dict(r) for r in page.records],
            "next_before_id": page.next_before_id,
        }
    )


async def api_groups(request: web.Request) -> web.Response:
    """`{"groups": [...]}`: identical records grouped, as the Blocked page shows them."""
    try:
        f = record_filters(request, any_time=True)
        limit = int_param(request.query, "limit", 1, API_MAX_LIMIT) or GROUP_LIMIT
    except BadParameter as e:
        return bad_parameter(e)
    return json_response({"groups": groups_doc(await read_groups(request, f.query(limit)))})


async def api_overview(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    try:
        window, since, until = window_param(request)
    except BadParameter as e:
        return bad_parameter(e)
    counts = await read_counts(request, since)
    doc = overview_doc(window, since, counts, purpose_shares(state.gw), state.started)
    r = await read_rollups(request, since, until, TIMELINE_POINTS)
    doc["rollups"] = rollups_doc(since, until, r.timeline, r.vendors, r.consent)
    return json_response(doc)


async def api_rules(request: web.Request) -> web.Response:
    try:
        q = search_param(request.query)
    except BadParameter as e:
        return bad_parameter(e)
    return json_response(rules_doc(request.app[ADMIN].gw, q))


async def api_unknown(request: web.Request) -> web.Response:
    try:
        since, since_ts = since_param(request.query.get("since"), "1w", any_time=True)
        limit = int_param(request.query, "limit", 1, API_MAX_LIMIT) or UNKNOWN_LIMIT
    except BadParameter as e:
        return bad_parameter(e)
    return json_response(unknown_doc(since, since_ts, await read_hosts(request, since_ts, limit)))


async def api_unknown_draft(request: web.Request) -> web.Response:
    """`{"host", "since", "rule"}`: the rule the Unknown destinations page drafts for
    `host` (YAML text), or 404 when the log holds no rejected request to it."""
    try:
        since, since_ts = since_param(request.query.get("since"), "1w", any_time=True)
        host = host_param(request.query)
    except BadParameter as e:
        return bad_parameter(e)
    paths = await read_paths(request, host, since_ts, DRAFT_PATHS)
    draft = unknown_draft(host, paths, request.app[ADMIN].gw.config.consent.purposes)
    if draft is None:
        return json_response({"error": "host: no rejected request to it in this period"}, 404)
    return json_response({"host": host, "since": since, "rule": draft})


async def api_bypasses(request: web.Request) -> web.Response:
    try:
        since, since_ts = since_param(request.query.get("since"), "1w", any_time=True)
        kind = kind_param(request.query)
        limit = int_param(request.query, "limit", 1, API_MAX_LIMIT) or BYPASS_LIMIT
    except BadParameter as e:
        return bad_parameter(e)
    rows = await read_bypasses(request, since_ts, limit, kind)
    return json_response(bypasses_doc(since, since_ts, kind, rows))


def _book(request: web.Request) -> ConsentBook:
    book = request.app[ADMIN].gw.book
    if book is None:
        raise web.HTTPServiceUnavailable(reason="the consent store is not open")
    return book


def _subject_param(request: web.Request) -> str:
    subject = request.match_info["subject"]
    if not 0 < len(subject) <= MAX_SUBJECT:
        raise web.HTTPBadRequest(reason="subject must be 1-256 characters")
    return subject


async def api_subject_records(request: web.Request) -> web.Response:
    """A subject's full consent history and current state: the proof of consent, for
    audits and access requests (`consent-gateway records SUBJECT` prints the same)."""
    subject = _subject_param(request)
    try:
        doc = await subject_export(_book(request).store, subject)
    except StoreError as e:
        log.warning("admin: the consent store cannot be read: %s", str(e).replace(subject, "-"))
        return json_response({"error": "the consent store cannot be read"}, status=503)
    return json_response(doc)


async def api_subject_erase(request: web.Request) -> web.Response:
    """Unlink a subject (its id becomes a one-way token; the records stay). Bearer token
    only: a browser session cannot be made to erase someone by another site."""
    # SECURITY: no cookie-authenticated POST here, so no CSRF exposure.
    if request[ACCESS].session is not None:
        return json_response({"error": "use the bearer token (Authorization header)"}, status=403)
    subject = _subject_param(request)
    try:
        token = await _book(request).erase(subject)
    except StoreError as e:
        log.warning("admin: erasure failed: %s", str(e).replace(subject, "-"))
        return json_response({"error": "the consent store cannot be written"}, status=503)
    # The subject is not logged: the log would keep what erasure removes.
    log.info("admin: a subject was erased")
    return json_response({"erased": True, "token": token})
