"""The operators' admin page under `/_admin/`: the decision-log viewer and its JSON API.

- `app`: the sub-app: its routes, the guard (credentials, security headers, errors),
  login, logout and static files;
- `auth`: the token, login sessions, CSRF and the failure limit;
- `answers`: the state every handler shares and its answers (JSON, pages, errors);
- `params`: query parameters, parsed and checked, and the record filters;
- `queries`: the decision-log reads the pages and the API share (off the event loop);
- `present`: records, counts, rules and consent records as pages and the API show them;
- `pages`: the HTML pages (Jinja2 templates in `templates/`);
- `api`: the JSON API;
- `stream`: the live tail (Server-Sent Events);
- `charts`: the overview's server-rendered SVG bar charts.

`gateway.app` mounts `build_admin_app(gw)` at `ADMIN_PREFIX`.
"""

from gateway.admin.answers import ADMIN_PREFIX
from gateway.admin.app import build_admin_app

__all__ = ["ADMIN_PREFIX", "build_admin_app"]
