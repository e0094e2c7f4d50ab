"""The report endpoints on the public app: what pages tried to reach around the gateway.

| route            | reads                                                             |
|------------------|-------------------------------------------------------------------|
| POST /csp-report | CSP violation reports: `application/csp-report` (`report-uri`)    |
|                  | and `application/reports+json` (`report-to`)                      |
| POST /cg-report  | the router's reports (`text/plain` JSON from `sendBeacon`)        |

Both take visitor input from anyone, so each is bounded before it is read: a body of at
most `BODY_LIMIT` bytes (413) received within `server.read_timeout` (408), and
`PER_MINUTE` reports per client network (`gateway.ratelimit`, 429). The body is parsed
by `gateway.violations` (400 for what it cannot read), which keeps two names per report:
the blocked host and the page's templated path. Each is counted
(`consent_gateway_bypass_reports_total{source, vendor}`, vendor `-` for an unlisted host: never a
visitor-chosen label) and queued for the decision log's aggregated `bypasses` table,
which the admin's Bypasses page shows. A well-formed body is answered 204, whatever it
held: the endpoint tells a sender nothing back.

CORS: the Reporting API (`report-to`) uploads in CORS mode, so a gateway on another
origin than the site's pages (`cg.example.com`) must approve the upload's preflight.
`/csp-report` answers `OPTIONS` and its `POST`s with `Access-Control-Allow-Origin` for
an origin `server.allowed_origins` names, and for no other (no credentials are ever
allowed: reports carry none). Legacy `report-uri` reports and the router's `text/plain`
beacons need no preflight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from aiohttp import hdrs, web

from gateway import cors, edges
from gateway.decision_log.bypasses import Seen
from gateway.errors import ClientGone
from gateway.ratelimit import NetworkLimiter
from gateway.state import Gateway
from gateway.violations import BadReport, Source, classify, parse_reports

__all__ = [
    "BODY_LIMIT",
    "PER_MINUTE",
    "REPORTS",
    "ReportAPI",
    "add_report_routes",
]

#: the largest report body read; a Reporting API batch of a few reports is a few KiB
BODY_LIMIT: Final = 16 * 1024
#: reports a client network may post a minute: a page blocking several tags on each
#: load sends several; past it, reports are refused (they are samples, not records)
PER_MINUTE: Final = 120


@dataclass(frozen=True)
class ReportAPI:
    """What the report handlers share, under `REPORTS` on the public app."""

    gw: Gateway
    limiter: NetworkLimiter


REPORTS = web.AppKey("reports", ReportAPI)


def add_report_routes(app: web.Application, gw: Gateway) -> None:
    """Serve `/csp-report` and `/cg-report` on `app`; add it before any catch-all route."""
    app[REPORTS] = ReportAPI(gw, NetworkLimiter(PER_MINUTE))
    app.router.add_post("/csp-report", _csp_report)
    app.router.add_route("OPTIONS", "/csp-report", _preflight)
    app.router.add_post("/cg-report", _router_report)


async def _preflight(request: web.Request) -> web.StreamResponse:
    """The Reporting API's preflight: POST with `Content-Type`, from an allowed origin."""
    return cors.preflight(
        request, request.app[REPORTS].gw.config.server.allowed_origins, ["POST"], cors.Kind.REPORT
    )


async def _csp_report(request: web.Request) -> web.StreamResponse:
    # gateway.cors answers for an allowed origin (the Reporting API's uploads are CORS)
    request[cors.KIND] = cors.Kind.REPORT
    return await _receive(request, "csp")


async def _router_report(request: web.Request) -> web.Response:
    return await _receive(request, "router")


async def _receive(request: web.Request, source: Source) -> web.Response:
    api = request.app[REPORTS]
    gw = api.gw
    trusted = gw.config.server.trusted_proxies
    message = "too many reports from this network; retry later"
    if (limited := edges.over_limit(request, api.limiter, trusted, message)) is not None:
        return limited
    try:
        body = await edges.read_body(request, BODY_LIMIT, gw.config.server.read_timeout)
    except ClientGone:
        gw.metrics.client_disconnects.labels("request").inc()
        return web.Response(status=400)
    try:
        found = parse_reports(source, request.content_type, body)
    except BadReport as e:
        return edges.error_response(400, str(e))
    rules, ts = gw.rules.current, time.time()
    for host, page in found:
        sighting = classify(source, host, page, rules)
        gw.metrics.bypass_reports.labels(source, sighting.vendor or "-").inc()
        gw.decision_log.submit_sighting(Seen(sighting, ts))
    return web.Response(status=204, headers={hdrs.CACHE_CONTROL: "no-store"})
