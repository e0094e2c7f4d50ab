"""`consent-gateway`: serve | check | explain | new-rule | csp | logs | decode | sign |
keygen | migrate | records | erase | webhooks.

Exit codes: 0 success, 1 a check found problems or a command failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from gateway import __version__
from gateway.cli.new_rule import add_command as add_new_rule
from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError, Problem, StoreError
from gateway.store.base import ConsentStore, CurrentConsent

if TYPE_CHECKING:
    pass

__all__ = ["main"]


DEFAULT_CONFIG = "config.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    code: int = args.func(args)
    return code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="consent-gateway",
        description="Enforce visitor consent on third-party tracking requests.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(metavar="COMMAND")

    def config_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--config",
            default=os.environ.get("CONSENT_GATEWAY_CONFIG", DEFAULT_CONFIG),
            help="config file (default: $CONSENT_GATEWAY_CONFIG or ./config.yaml)",
        )

    s = sub.add_parser("serve", help="run the gateway")
    config_arg(s)
    s.add_argument("--host", help="listen address (overrides server.host)")
    s.add_argument("--port", type=int, help="listen port (overrides server.port)")
    s.add_argument(
        "--admin-host", help="the operators' listener address (overrides server.admin_host)"
    )
    s.add_argument(
        "--admin-port", type=int, help="the operators' listener port (overrides server.admin_port)"
    )
    s.add_argument("--workers", type=int, help="processes sharing the port (server.workers)")
    s.set_defaults(func=_cmd_serve)

    c = sub.add_parser("check", help="validate the config and every rule file")
    config_arg(c)
    c.add_argument("rules", nargs="*", help="rule files or directories (default: from config)")
    c.add_argument("--strict", action="store_true", help="lint warnings fail the check too")
    c.set_defaults(func=_cmd_check)

    lg = sub.add_parser("logs", help="show the decision log (blocked and altered requests)")
    config_arg(lg)
    lg.add_argument("--since", help="e.g. 15m, 1h, 2d or an ISO-8601 time")
    lg.add_argument("--vendor")
    lg.add_argument("--action", choices=["forward", "strip", "drop", "reject"])
    lg.add_argument("--purpose", help="records missing this purpose")
    lg.add_argument("--limit", type=int, default=100)
    lg.add_argument("--json", action="store_true", help="one JSON object per line")
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    lg.set_defaults(func=_cmd_logs)

    sg = sub.add_parser("sign", help="mint a consent cookie value (testing, back ends)")
    config_arg(sg)
    sg.add_argument(
        "purposes",
        nargs="*",
        metavar="PURPOSE=granted|denied",
        help="e.g. analytics=granted advertising=denied",
    )
    sg.add_argument("--subject", help="subject id (default: a new random one)")
    sg.add_argument("--source", default="cli")
    sg.set_defaults(func=_cmd_sign)

    ex = sub.add_parser("explain", help="what the gateway would do with a request, and why")
    config_arg(ex)
    ex.add_argument("url", metavar="URL", help="the vendor URL the tag calls")
    ex.add_argument("--method", default="GET")
    ex.add_argument("--body", metavar="FILE", help="request body from a file")
    who = ex.add_mutually_exclusive_group()
    who.add_argument(
        "--consent",
        metavar="P=STATE,...",
        help="e.g. analytics=granted,advertising=denied (signed into a gateway cookie)",
    )
    who.add_argument("--cookie", metavar="VALUE", help="a cg_consent cookie value")
    ex.add_argument("--header", action="append", default=[], metavar="K:V", help="a request header")
    ex.add_argument("--json", action="store_true", help="one JSON object")
    rules_help = "a rule file or directory to explain against instead of the configured rules"
    ex.add_argument("--rules", action="append", type=Path, metavar="FILE_OR_DIR", help=rules_help)
    ex.add_argument(
        "--store",
        action="store_true",
        help="read the subject's stored consent from the consent store, as live traffic does",
    )
    ex.set_defaults(func=_cmd_explain)

    cs = sub.add_parser("csp", help="the Content-Security-Policy that locks pages to the gateway")
    config_arg(cs)
    cs.add_argument(
        "--gateway",
        default="'self'",
        metavar="ORIGIN",
        help="the gateway's origin, e.g. https://cg.example.com (default: 'self', the site's own)",
    )
    cs.add_argument(
        "--allow", action="append", default=[], metavar="SOURCE", help="another origin or host"
    )
    cs.add_argument("--report-only", action="store_true", help="report, do not block")
    cs.add_argument(
        "--no-report-to",
        dest="report_to",
        action="store_false",
        help="report-uri only (Chromium ignores it beside report-to, whose reports come later)",
    )
    cs.set_defaults(func=_cmd_csp)

    d = sub.add_parser("decode", help="decode a TCF, GPP, us_privacy, gcs/gcd or CMP cookie value")
    d.add_argument("value", metavar="STRING")
    d.add_argument("--json", action="store_true", help="one JSON object")
    d.set_defaults(func=_cmd_decode)

    k = sub.add_parser("keygen", help="print a new cookie signing key")
    k.set_defaults(func=_cmd_keygen)

    m = sub.add_parser("migrate", help="bring the consent store's schema up to date")
    config_arg(m)
    m.set_defaults(func=_cmd_migrate)

    rc = sub.add_parser("records", help="a subject's consent history (the proof of consent)")
    config_arg(rc)
    rc.add_argument("subject", metavar="SUBJECT", help="the subject id (or an erasure token)")
    rc.add_argument("--json", action="store_true", help="one JSON document")
    rc.set_defaults(func=_cmd_records)

    er = sub.add_parser(
        "erase", help="unlink a subject: its id becomes a one-way token, the records stay"
    )
    config_arg(er)
    er.add_argument("subject", metavar="SUBJECT")
    er.set_defaults(func=_cmd_erase)

    wh = sub.add_parser("webhooks", help="webhook delivery")
    wsub = wh.add_subparsers(metavar="ACTION")
    ws = wsub.add_parser("status", help="each endpoint's delivery state and backlog")
    config_arg(ws)
    ws.add_argument("--json", action="store_true", help="one JSON document")
    ws.set_defaults(func=_cmd_webhooks_status)
    add_new_rule(sub)
    return p


def _load(path: str) -> GatewayConfig | None:
    try:
        return load_config(path)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return None


# -- serve -------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 1
    overrides = {
        k: v
        for k, v in (
            ("host", args.host),
            ("port", args.port),
            ("workers", args.workers),
            ("admin_host", args.admin_host),
            ("admin_port", args.admin_port),
        )
        if v is not None
    }
    if args.workers is not None and args.workers < 1:
        print("--workers must be >= 1", file=sys.stderr)
        return 2
    cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, **overrides))
    if cfg.cookie.dev_key and cfg.server.workers > 1:
        from gateway.config import dev_key_refused

        print(
            f"{args.config}: {dev_key_refused(f'{cfg.server.workers} worker processes')}",
            file=sys.stderr,
        )
        return 1
    from gateway.serve import serve

    return serve(cfg, args.config, overrides)


# -- check -------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    from gateway.config import DEFAULT_PURPOSES
    from gateway.examples import run_examples
    from gateway.ruleset.lint import lint_rules, unknown_cmp_vendors, unused_overrides
    from gateway.ruleset.load import load_rules

    problems: list[Problem] = []
    cfg: GatewayConfig | None = None
    config_given = args.config != DEFAULT_CONFIG or Path(args.config).exists()
    if config_given:
        try:
            cfg = load_config(args.config)
        except ConfigError as e:
            problems += e.problems
    purposes = frozenset(cfg.consent.purposes if cfg else DEFAULT_PURPOSES)
    paths = [Path(p) for p in args.rules] or (list(cfg.rules.paths) if cfg else [Path("rules")])
    count = examples = 0
    warnings: list[Problem] = []
    try:
        ruleset = load_rules(
            paths,
            purposes,
            cfg.rules.vendor_hosts if cfg else (),
            # the configured rules only: another set need not have the routed vendors
            cfg.rules.router_vendors if cfg and not args.rules else (),
        )
        count = len(ruleset.rules)
        warnings = lint_rules(ruleset.rules)
    except ConfigError as e:
        problems += e.problems
    else:
        if cfg is not None:
            problems += unused_overrides(cfg, ruleset, str(args.config))
            warnings += unknown_cmp_vendors(cfg, ruleset, str(args.config))
        # each rule's acceptance table, through the real decision and transform code
        problems += run_examples(ruleset, cfg)
        examples = sum(len(r.examples) for r in ruleset.rules)
    for problem in problems + warnings:
        print(problem)
    if problems or (warnings and args.strict):
        print(f"{len(problems)} problem(s), {len(warnings)} warning(s)", file=sys.stderr)
        return 1
    lint = f", {len(warnings)} lint warning(s)" if warnings else ""
    checked = f"{count} vendor rule(s), {examples} example(s) as expected{lint}"
    print(f"ok: config {'valid' if cfg else 'not checked'}, {checked}")
    return 0


# -- logs ---------------------------------------------------------------------------


def _cmd_logs(args: argparse.Namespace) -> int:
    from gateway.cli.logs import run_logs, run_pg_logs

    cfg = _load(args.config)
    if cfg is None:
        return 1
    filters = {
        "since": args.since,
        "vendor": args.vendor,
        "action": args.action,
        "purpose": args.purpose,
        "as_json": args.json,
        "follow": args.follow,
        "limit": args.limit,
        "out": sys.stdout,
    }
    if cfg.decision_log.postgres_dsn is not None:  # set for backend postgres only
        return run_pg_logs(cfg.decision_log.postgres_dsn, **filters)
    if cfg.decision_log.sqlite_path is None:
        print("decision_log.sqlite_path is not set: nothing to read", file=sys.stderr)
        return 1
    try:
        return run_logs(cfg.decision_log.sqlite_path, **filters)
    except KeyboardInterrupt:
        return 0


# -- sign / keygen --------------------------------------------------------------------


def _cmd_sign(args: argparse.Namespace) -> int:
    from gateway.consent.cookie import ConsentCookie, new_subject_id, sign_cookie

    cfg = _load(args.config)
    if cfg is None:
        return 1
    purposes: dict[str, bool] = {}
    for item in args.purposes:
        name, sep, value = item.partition("=")
        if not sep or value not in ("granted", "denied"):
            print(f"expected PURPOSE=granted|denied, got {item!r}", file=sys.stderr)
            return 2
        if name not in cfg.consent.purposes:
            known = ", ".join(cfg.consent.purposes)
            print(f"unknown purpose {name!r}; known: {known}", file=sys.stderr)
            return 2
        purposes[name] = value == "granted"
    try:
        cookie = ConsentCookie(
            subject=args.subject or new_subject_id(),
            purposes=purposes,
            issued_at=int(time.time()),
            policy_version=cfg.consent.policy_version,
            source=args.source,
        )
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    print(sign_cookie(cookie, cfg.cookie.keys))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    import orjson

    from gateway.errors import RequestError
    from gateway.explain import (
        ExplainRequest,
        explain,
        parse_consent,
        parse_header,
        render_text,
        subjects_of,
        to_json,
    )
    from gateway.ruleset.load import configured_rules

    cfg = _load(args.config)
    if cfg is None:
        return 1
    try:
        consent = (
            None if args.consent is None else parse_consent(args.consent, cfg.consent.purposes)
        )
    except ValueError as e:
        print(f"--consent: {e}", file=sys.stderr)
        return 2
    try:
        headers = [parse_header(h) for h in args.header]
    except ValueError as e:
        print(f"--header: {e}", file=sys.stderr)
        return 2
    body = b""
    if args.body:
        try:
            body = Path(args.body).read_bytes()
        except OSError as e:
            print(f"--body: {e.strerror}", file=sys.stderr)
            return 2
    try:
        rules = configured_rules(cfg, args.rules or ())
        req = ExplainRequest(args.url, args.method, body, consent, args.cookie, headers)
        if args.store:
            stored = _stored_states(args, cfg, subjects_of(req, cfg))
            if stored is None:
                return 1
            req = dataclasses.replace(req, stored=stored)
        facts, ev = explain(req, cfg, rules)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return 1
    except RequestError as e:
        if args.json:
            doc: dict[str, object] = {"vendor": None, "endpoint": None, "consent": {}}
            doc["decision"] = {"action": "reject", "missing": [], "reason": e.message}
            doc["forwarded"] = None
            print(orjson.dumps(doc).decode())
        else:
            print(f"decision  REJECT: {e.message}")
        return 0
    print(orjson.dumps(to_json(facts, ev)).decode() if args.json else render_text(facts, ev))
    return 0


def _cmd_csp(args: argparse.Namespace) -> int:
    from gateway.cli.csp import run_csp

    cfg = _load(args.config)
    if cfg is None:
        return 1
    return run_csp(
        cfg,
        gateway=args.gateway,
        allow=args.allow,
        report_only=args.report_only,
        report_to=args.report_to,
        out=sys.stdout,
        err=sys.stderr,
    )


def _cmd_decode(args: argparse.Namespace) -> int:
    import orjson

    from gateway.consent.detect import decode_any, render_table
    from gateway.errors import SignalError

    try:
        kind, fields = decode_any(args.value)
    except SignalError as e:
        # The reason never quotes the input: it may be someone's consent string.
        print(f"cannot decode: {e.reason}", file=sys.stderr)
        return 1
    if args.json:
        print(orjson.dumps(fields).decode())
    else:
        print(f"kind  {kind}")
        print("\n".join(render_table(fields)))
    return 0


def _cmd_keygen(args: argparse.Namespace) -> int:
    from gateway.consent.cookie import keygen

    print(keygen())
    return 0


# -- the consent store ------------------------------------------------------------------


def _stored_states(
    args: argparse.Namespace, cfg: GatewayConfig, subjects: list[str]
) -> dict[str, CurrentConsent | None] | None:
    """Each subject's state in the configured store; None (after printing why) if the
    store cannot be read."""
    states: dict[str, CurrentConsent | None] = {}

    async def body(store: ConsentStore) -> int:
        for subject in subjects:
            states[subject] = await store.current(subject)
        return 0

    return states if _with_store(args, body, cfg=cfg) == 0 else None


def _with_store(
    args: argparse.Namespace,
    body: Callable[[ConsentStore], Awaitable[int]],
    *,
    check: bool = True,
    cfg: GatewayConfig | None = None,
) -> int:
    """Run `body` on the configured store (`cfg`, else loaded from `--config`), opened
    and schema-checked unless `check` is False (as for `migrate`); a StoreError is
    printed and exits 1."""
    from gateway.store.migrations import new_store, schema_behind

    cfg = cfg or _load(args.config)
    if cfg is None:
        return 1

    async def run() -> int:
        store = new_store(cfg.store)
        await store.open()
        try:
            if check and (behind := await schema_behind(store)) is not None:
                print(behind, file=sys.stderr)
                return 1
            return await body(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreError as e:
        print(f"consent store: {e}", file=sys.stderr)
        return 1


def _cmd_migrate(args: argparse.Namespace) -> int:
    from gateway.store.migrations import latest_version, migrate

    async def body(store: ConsentStore) -> int:
        before = await store.schema_version()
        after = await migrate(store)
        if after == before:
            print(f"{store.backend}: schema at version {after}, up to date")
        else:
            print(f"{store.backend}: schema migrated from version {before} to {after}")
        return 0 if after == latest_version(store.backend) else 1

    return _with_store(args, body, check=False)


def _cmd_records(args: argparse.Namespace) -> int:
    from gateway.store.base import subject_export

    async def body(store: ConsentStore) -> int:
        doc = await subject_export(store, args.subject)
        if args.json:
            sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
        print(_records_text(doc))
        return 0

    return _with_store(args, body)


def _records_text(doc: dict[str, Any]) -> str:
    lines = [f"subject {doc['subject']}"]
    current = doc["current"]
    if current is None:
        lines.append("current: no record (no consent)")
    else:
        lines.append(
            f"current: {_purposes_text(current['purposes'], current['vendors'])}"
            f"  (policy {current['policy_version']},"
            f" {current['source']}, {current['time']})"
        )
    lines.append(f"{len(doc['records'])} record(s), oldest first:")
    for r in doc["records"]:
        notice = f" notice={r['notice_hash'][:12]}" if r["notice_hash"] else ""
        request = f" request={r['request_id']}" if r["request_id"] else ""
        lines.append(
            f"  #{r['id']} {r['time']} {r['source']:<10} policy {r['policy_version']}"
            f"  {_purposes_text(r['purposes'], r['vendors'])}{notice}{request}"
        )
    return "\n".join(lines)


def _purposes_text(purposes: dict[str, bool], vendors: dict[str, bool]) -> str:
    if not purposes and not vendors:
        return "(none answered)"
    answers = [f"{p}={'granted' if v else 'denied'}" for p, v in sorted(purposes.items())]
    answers += [f"vendor:{v}={'allowed' if ok else 'denied'}" for v, ok in sorted(vendors.items())]
    return " ".join(answers)


def _cmd_erase(args: argparse.Namespace) -> int:
    async def body(store: ConsentStore) -> int:
        token = await store.erase(args.subject)
        print(f"erased: the subject's records are now under {token}")
        return 0

    return _with_store(args, body)


def _cmd_webhooks_status(args: argparse.Namespace) -> int:
    from gateway.cli.webhooks import format_status
    from gateway.webhooks.dispatch import status

    cfg = _load(args.config)
    if cfg is None:
        return 1

    async def body(store: ConsentStore) -> int:
        rows = await status(store, cfg.webhooks, time.time())
        if args.json:
            sys.stdout.write(orjson.dumps({"endpoints": rows}).decode() + "\n")
        else:
            print(format_status(rows))
        return 0

    return _with_store(args, body, cfg=cfg)
