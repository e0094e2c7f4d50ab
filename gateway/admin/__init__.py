"""The operators' admin page under `/_admin/`: the decision-log viewer and its JSON API.

- `auth`: the token, login sessions, CSRF and the failure limit;
- `views`: the sub-app, its routes, pages (Jinja2 templates in `templates/`) and API;
- `charts`: the overview's server-rendered SVG bar charts.

`gateway.app` mounts `build_admin_app(gw)` at `ADMIN_PREFIX`.
"""

from gateway.admin.views import ADMIN_PREFIX, build_admin_app

__all__ = ["ADMIN_PREFIX", "build_admin_app"]
