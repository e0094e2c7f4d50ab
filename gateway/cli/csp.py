"""`consent-gateway csp`: the header lines that lock a site's pages to the gateway.

Standard output holds exactly the lines to paste into the site's page responses (the
policy and its `Reporting-Endpoints`), so `consent-gateway csp > csp.txt` is usable as
is; what the policy means goes to standard error. The policy is `gateway.csp`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from gateway.config import GatewayConfig
from gateway.csp import CspError, build_policy
from gateway.errors import ConfigError
from gateway.ruleset.load import configured_rules

__all__ = ["run_csp"]


def run_csp(
    cfg: GatewayConfig,
    *,
    gateway: str,
    allow: Sequence[str],
    report_only: bool,
    report_to: bool = True,
    out: TextIO,
    err: TextIO,
) -> int:
    """Print the policy for `cfg`'s rules; 1 if the rules do not load, 2 for a bad
    `--gateway` or `--allow` (the message says why)."""
    try:
        rules = configured_rules(cfg)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=err)
        return 1
    try:
        policy = build_policy(
            rules,
            gateway=gateway,
            allow=allow,
            base_path=cfg.server.base_path,
            report_only=report_only,
            report_to=report_to,
        )
    except CspError as e:
        print(e, file=err)
        return 2
    hosts = sum(len(r.hosts) for r in rules.rules)
    print(
        f"# forbids direct requests to the {hosts} host(s) of {len(rules.rules)} vendor rule(s);"
        f" reports go to {policy.report_url}",
        file=err,
    )
    for line in policy.header_lines():
        print(line, file=out)
    return 0
