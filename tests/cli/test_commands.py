"""gateway.cli.commands: check, logs, sign, keygen, serve, and the consent store commands (migrate,
records, erase, webhooks status) against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from gateway.config import load_config
from gateway.consent.cookie import verify_cookie
from gateway.store.base import ERASED_PREFIX, ConsentRecord, ConsentStore
from gateway.store.migrations import latest_version, migrate
from gateway.store.sqlite import SqliteStore
from tests.conftest import BOMB, PG_DSN, ROOT, RULES_DIR, TEST_KEY, free_port
from tests.stores import fresh_pg_schema, pg_store, sqlite_sql


def test_check_passes_on_the_shipped_config_and_rules(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--config", str(config_file)]) == 0
    assert "vendor rule(s)" in capsys.readouterr().out


def test_check_rules_dir_alone(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    os.chdir(tmp_path)  # no ./config.yaml here: rules are checked with the default purposes
    assert main(["check", "--strict", str(RULES_DIR)]) == 0  # clean: no problems, no lint


def test_check_reports_a_misspelled_key_with_file_line_and_field(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (RULES_DIR / "meta-pixel.yaml").read_text()
    broken = text.replace("kind:", "knid:", 1)
    (rules / "meta-pixel.yaml").write_text(broken)
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "knid:" in text)
    code = main(["check", "--config", str(config_file), str(rules)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert any(
        o.startswith(
            f"{rules / 'meta-pixel.yaml'}:{line}: meta-pixel/endpoints[0].knid: unknown key"
        )
        for o in out
    ), out
    assert any("did you mean 'kind'" in o for o in out)


def test_check_reports_config_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  prot: 1\ncookie:\n  dev_key_file: k.key\n")
    assert main(["check", "--config", str(bad), str(RULES_DIR)]) == 1
    assert f"{bad}:2: server.prot: unknown key" in capsys.readouterr().out


def meta_rule_with(tmp_path: Path, old: str, new: str, nth: int = 1) -> tuple[Path, int]:
    """The shipped Meta rule in `tmp_path/rules`, its `nth` `old` replaced by `new`; and the
    line of the example that holds it."""
    rules = tmp_path / "rules"
    rules.mkdir()
    lines = (RULES_DIR / "meta-pixel.yaml").read_text().splitlines()
    at = [i for i, line in enumerate(lines) if line.strip() == old][nth - 1]
    lines[at] = lines[at].replace(old, new)
    start = max(i for i in range(at + 1) if lines[i].startswith("  - url:"))
    (rules / "meta-pixel.yaml").write_text("\n".join(lines) + "\n")
    return rules, start + 1


@pytest.mark.parametrize(
    ("old", "new", "nth", "message"),
    [
        (
            "expect: drop",
            "expect: forward",
            1,
            (
                "meta-pixel/examples[1]: expected forward, the gateway decides drop (no consent "
                "for advertising"
            ),
        ),
        (
            "kept: [id, ev, fbp, dl]",
            "kept: [id, ev, fbp, dl, nope]",
            1,
            "meta-pixel/examples[0]: kept field 'nope' does not reach the vendor",
        ),
        (
            "kept: [id, ev, fbp, dl]",
            "removed: [fbp]",
            1,
            "meta-pixel/examples[0]: removed field 'fbp' reaches the vendor",
        ),
    ],
)
def test_check_runs_every_rules_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, nth: int, message: str
) -> None:
    """A site's own rule with a wrong `expect:` fails `check` (not only the repo's tests)."""
    rules, line = meta_rule_with(tmp_path, old, new, nth)
    os.chdir(tmp_path)
    assert main(["check", str(rules)]) == 1
    [found] = [o for o in capsys.readouterr().out.splitlines() if "examples[" in o]
    assert found.startswith(f"{rules / 'meta-pixel.yaml'}:{line}: {message}"), found


def test_check_warns_of_a_purpose_no_example_denies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "acme.yaml").write_text(ACME_RULE)
    os.chdir(tmp_path)
    assert main(["check", str(rules)]) == 0
    out = capsys.readouterr().out
    assert "acme/examples: warning: no drop or strip example without 'advertising'" in out
    assert "1 vendor rule(s), 2 example(s) as expected, 1 lint warning(s)" in out
    assert main(["check", "--strict", str(rules)]) == 1


ACME_RULE = """\
vendor: acme
name: Acme
hosts: [t.acme.example]
purposes: [advertising]
endpoints:
  - {id: px, match: {path: /px}, kind: pixel}
examples:
  - {url: "https://t.acme.example/px?uid=1", consent: {advertising: granted}, expect: forward}
  - {url: "https://t.acme.example/admin", expect: reject}
"""


@pytest.mark.parametrize("target", ["rule", "config"])
def test_check_refuses_an_alias_bomb_at_once(
    tmp_path: Path, config_file: Path, target: str
) -> None:
    # A subprocess with a timeout: on the old loader this expanded without bound.
    rules = tmp_path / "rules"
    rules.mkdir()
    bad = rules / "bomb.yaml" if target == "rule" else tmp_path / "bomb-config.yaml"
    bad.write_text(BOMB)
    config = config_file if target == "rule" else bad
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "--config", str(config), str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert f"{bad}:1: YAML anchors and aliases (& and *) are not allowed" in done.stdout


def test_check_reports_a_config_that_is_not_utf8_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("server:\n  host: caf\u00e9\n".encode("latin-1"))
    assert main(["check", "--config", str(bad), str(RULES_DIR)]) == 1
    captured = capsys.readouterr()
    assert f"{bad}:2: not UTF-8 text (save the file as UTF-8)" in captured.out
    assert "Traceback" not in captured.out + captured.err


def test_explain_against_a_rule_being_written(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    draft = tmp_path / "acme.yaml"
    draft.write_text(ACME_RULE)
    url = "https://t.acme.example/px?uid=1"
    base = ["explain", "--config", str(config_file), url, "--consent", "advertising=denied"]
    # the configured rules do not list the host: REJECT
    assert main([*base, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"]["action"] == "reject"
    assert main([*base, "--json", "--rules", str(draft)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["vendor"], doc["endpoint"], doc["decision"]["action"]) == ("acme", "px", "drop")
    # the same text output otherwise; files and directories, several
    assert main([*base, "--rules", str(draft), "--rules", str(RULES_DIR)]) == 0
    out = capsys.readouterr().out
    assert "vendor    acme   endpoint px" in out and "decision  DROP" in out
    # a rule being written with a problem: reported as check reports it
    draft.write_text(ACME_RULE.replace("kind: pixel", "kind: pixle"))
    assert main([*base, "--rules", str(draft)]) == 1
    assert f"{draft}:6: acme/endpoints[0].kind:" in capsys.readouterr().err


def test_sign_mints_a_cookie_the_gateway_accepts(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "sign",
            "--config",
            str(config_file),
            "analytics=granted",
            "advertising=denied",
            "--subject",
            "s1",
        ]
    )
    value = capsys.readouterr().out.strip()
    assert code == 0
    cookie = verify_cookie(value, load_config(config_file).cookie.keys)
    assert cookie.purposes == {"analytics": True, "advertising": False}
    assert cookie.subject == "s1" and cookie.source == "cli"


@pytest.mark.parametrize(
    "args",
    [
        ["analytics=maybe"],
        ["tracking=granted"],
        ["analytics"],
        ["--subject", "a b", "analytics=granted"],
    ],
)
def test_sign_rejects_bad_input(config_file: Path, args: list[str]) -> None:
    assert main(["sign", "--config", str(config_file), *args]) == 2


def test_keygen_prints_a_fresh_32_byte_key(capsys: pytest.CaptureFixture[str]) -> None:
    main(["keygen"])
    main(["keygen"])
    a, b = capsys.readouterr().out.split()
    assert a != b and len(base64.urlsafe_b64decode(a + "=" * (-len(a) % 4))) == 32


def test_no_command_is_usage_error() -> None:
    assert main([]) == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # iabtcf-java TCStringV2Test.testCanConstructTCModelFromBase64String
        (
            "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA",
            {"cmp_id": 675, "vendor_list_version": 15},
        ),
        ("1YNN", {"opt_out_sale": "N"}),
    ],
)
def test_decode_json(
    value: str, expected: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    assert main(["decode", value, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert expected.items() <= doc.items()


def test_decode_table_and_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "G101"]) == 0
    out = capsys.readouterr().out
    assert "ad_storage" in out and "denied" in out
    assert main(["decode", "not-a-consent-string"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cannot decode:") and "not-a-consent-string" not in err
    assert main(["decode", "BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA"]) == 1
    assert "v1" in capsys.readouterr().err


# -- the consent store: migrate, records, erase, webhooks status ------------------------------

PG_ENV = "CONSENT_GATEWAY_PG_DSN"
HOOK_SECRET = "whsec-cli-0123456789abcdef"


def set_config(path: Path, **sections: dict[str, object]) -> Path:
    """Update sections of the config file at `path` (e.g. store={...}) and return it."""
    doc = yaml.safe_load(path.read_text())
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(doc))
    return path


def store_path(config_file: Path) -> Path:
    """Where the example config puts the consent store (relative to the config file)."""
    return config_file.parent / "data" / "consent.db"


def rec(subject: str, at: float, source: str = "banner", **purposes: bool) -> ConsentRecord:
    return ConsentRecord(
        subject=subject,
        purposes=purposes,
        source=source,
        policy_version=2,
        at=at,
        notice_hash="ab" * 32,
        request_id=f"req-{int(at)}",
    )


#: two answers of s1 written newest first (the history is still oldest first; the older one
#: changes nothing, so the change feed holds 2 changes), and another subject's that must
#: never show
HISTORY = (
    rec("s1", 1_700_000_200.0, "api", analytics=False, advertising=False),
    rec("s1", 1_700_000_100.0, analytics=True, advertising=False),
    rec("s2", 1_700_000_150.0, analytics=True),
)


async def seed(store: ConsentStore, records: tuple[ConsentRecord, ...] = HISTORY) -> None:
    await store.open()
    try:
        await migrate(store)
        for r in records:
            await store.record(r)
    finally:
        await store.close()


def seed_sqlite(config_file: Path, records: tuple[ConsentRecord, ...] = HISTORY) -> None:
    path = store_path(config_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(seed(SqliteStore(path), records))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_migrate_reports_the_version_and_is_idempotent(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latest = latest_version("sqlite")
    code, out, err = run(capsys, "migrate", "--config", str(config_file))
    assert (code, err) == (0, "")
    assert out == f"sqlite: schema migrated from version 0 to {latest}\n"
    assert sqlite_sql(store_path(config_file), "PRAGMA user_version") == [(latest,)]
    code, out, _ = run(capsys, "migrate", "--config", str(config_file))
    assert code == 0
    assert out == f"sqlite: schema at version {latest}, up to date\n"


def test_records_shows_the_history_oldest_first_and_the_current_state(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_sqlite(config_file)
    code, out, err = run(capsys, "records", "--config", str(config_file), "s1")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "subject s1"
    assert lines[1] == (
        "current: advertising=denied analytics=denied"
        "  (policy 2, api, 2023-11-14T22:16:40.000+00:00)"
    )
    assert lines[2] == "2 record(s), oldest first:"
    first, second = lines[3:]
    assert (
        "2023-11-14T22:15:00.000+00:00" in first and "advertising=denied analytics=granted" in first
    )
    assert "2023-11-14T22:16:40.000+00:00" in second and "analytics=denied" in second
    assert f"notice={'ab' * 6}" in first and "request=req-1700000100" in first
    assert "s2" not in out


def test_records_json_is_the_subject_export(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_sqlite(config_file)
    code, out, _ = run(capsys, "records", "--config", str(config_file), "s1", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["subject"] == "s1"
    assert doc["current"] == {
        "purposes": {"analytics": False, "advertising": False},
        "vendors": {},
        "policy_version": 2,
        "source": "api",
        "at": 1_700_000_200.0,
        "time": "2023-11-14T22:16:40.000+00:00",
    }
    assert [r["at"] for r in doc["records"]] == [1_700_000_100.0, 1_700_000_200.0]
    first = doc["records"][0]
    assert set(first) == {
        "id",
        "purposes",
        "vendors",
        "source",
        "policy_version",
        "at",
        "time",
        "notice_hash",
        "request_id",
    }
    assert first["purposes"] == {"analytics": True, "advertising": False}
    assert (first["source"], first["notice_hash"], first["request_id"]) == (
        "banner",
        "ab" * 32,
        "req-1700000100",
    )
    assert first["id"] > doc["records"][1]["id"]  # written later, yet listed first by time


def test_records_of_a_subject_without_any(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_sqlite(config_file)
    code, out, _ = run(capsys, "records", "--config", str(config_file), "nobody")
    assert code == 0
    assert out.splitlines() == [
        "subject nobody",
        "current: no record (no consent)",
        "0 record(s), oldest first:",
    ]
    code, out, _ = run(capsys, "records", "--config", str(config_file), "nobody", "--json")
    assert json.loads(out) == {"subject": "nobody", "current": None, "records": []}


@pytest.mark.parametrize(
    "argv",
    [["records", "s1"], ["records", "s1", "--json"], ["erase", "s1"], ["webhooks", "status"]],
)
def test_store_commands_refuse_an_unmigrated_store(
    config_file: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, *argv, "--config", str(config_file))
    assert code == 1
    assert out == ""
    assert err == (
        f"the consent store's schema is at version 0, this code needs "
        f"{latest_version('sqlite')}: run `consent-gateway migrate`\n"
    )


def test_webhooks_without_an_action_is_a_usage_error() -> None:
    assert main(["webhooks"]) == 2


def test_erase_moves_the_records_under_the_token(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_sqlite(config_file)
    code, out, err = run(capsys, "erase", "--config", str(config_file), "s1")
    assert (code, err) == (0, "")
    assert out.startswith("erased: the subject's records are now under ")
    token = out.split()[-1]
    assert token.startswith(ERASED_PREFIX) and "s1" not in token
    _, out, _ = run(capsys, "records", "--config", str(config_file), "s1", "--json")
    gone = json.loads(out)
    assert gone["records"] == []
    # no consent: an erased subject's state answers nothing, as of the erasure
    assert gone["current"]["purposes"] == {} and gone["current"]["source"] == "erasure"
    _, out, _ = run(capsys, "records", "--config", str(config_file), "s1")
    assert "current: (none answered)  (policy 0, erasure," in out
    assert "0 record(s), oldest first:" in out
    _, out, _ = run(capsys, "records", "--config", str(config_file), token, "--json")
    doc = json.loads(out)
    assert [r["at"] for r in doc["records"]] == [1_700_000_100.0, 1_700_000_200.0]
    assert doc["current"]["source"] == "api"
    # the other subject is untouched; erasing again is harmless and yields the same token
    _, out, _ = run(capsys, "records", "--config", str(config_file), "s2", "--json")
    assert len(json.loads(out)["records"]) == 1
    code, out, _ = run(capsys, "erase", "--config", str(config_file), "s1")
    assert code == 0 and out.split()[-1] == token


async def register(path: Path, *endpoints: str) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        for endpoint in endpoints:
            await store.webhook_register(endpoint)
        await store.record(rec("s3", 1_700_000_300.0, analytics=True))
    finally:
        await store.close()


def test_webhooks_status_shows_each_endpoint_and_no_secret(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CG_TEST_HOOK", HOOK_SECRET)
    endpoints = [
        {
            "name": "crm",
            "url": "https://hookuser:hookpass@crm.example.com/hooks?token=sekrit#frag",
            "secret_env": "CG_TEST_HOOK",
        },
        {"name": "cdp", "url": "http://127.0.0.1:9/consent", "secret_env": "CG_TEST_HOOK"},
    ]
    set_config(config_file, webhooks={"endpoints": endpoints})
    seed_sqlite(config_file)
    # crm registered at seq 2, before the newest change; "gone" registered, no longer configured
    asyncio.run(register(store_path(config_file), "crm", "gone"))
    code, out, err = run(capsys, "webhooks", "status", "--config", str(config_file))
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == [
        "ENDPOINT",
        "URL",
        "LAST_SEQ",
        "BACKLOG",
        "DELIVERED",
        "ATTEMPTS",
        "RETRY_IN",
        "LAST_ERROR",
        "LAST_SUCCESS",
    ]
    assert [r.split()[:4] for r in rows] == [
        ["crm", "https://crm.example.com/hooks", "2", "1"],
        ["cdp", "http://127.0.0.1:9/consent", "-", "-"],
        ["gone", "(not", "configured)", "2"],
    ]
    code, out, _ = run(capsys, "webhooks", "status", "--config", str(config_file), "--json")
    assert code == 0
    doc = json.loads(out)
    by_name = {r["name"]: r for r in doc["endpoints"]}
    assert list(by_name) == ["crm", "cdp", "gone"]
    expected = {
        "configured": True,
        "registered": True,
        "last_seq": 2,
        "backlog": 1,
        "delivered": 0,
        "attempts": 0,
        "last_error": None,
        "retry_in": None,
    }
    assert {k: by_name["crm"][k] for k in expected} == expected
    assert by_name["crm"]["url"] == "https://crm.example.com/hooks"
    assert (by_name["cdp"]["registered"], by_name["cdp"]["backlog"]) == (False, None)
    assert (by_name["gone"]["configured"], by_name["gone"]["url"]) == (False, None)
    for shown in (out, capsys.readouterr().err):
        for secret in (HOOK_SECRET, "hookpass", "hookuser", "sekrit"):
            assert secret not in shown


def test_webhooks_status_without_endpoints(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_sqlite(config_file)
    code, out, _ = run(capsys, "webhooks", "status", "--config", str(config_file))
    assert (code, out) == (0, "no webhook endpoints configured or registered\n")
    _, out, _ = run(capsys, "webhooks", "status", "--config", str(config_file), "--json")
    assert json.loads(out) == {"endpoints": []}


def set_newer_schema(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sqlite_sql(path, "PRAGMA user_version = 99")


@pytest.mark.parametrize("command", ["migrate", "records", "erase", "webhooks"])
def test_store_commands_refuse_a_newer_schema(
    config_file: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    set_newer_schema(store_path(config_file))
    argv = {
        "migrate": ["migrate"],
        "records": ["records", "s1"],
        "erase": ["erase", "s1"],
        "webhooks": ["webhooks", "status"],
    }[command]
    code, out, err = run(capsys, *argv, "--config", str(config_file))
    assert (code, out) == (1, "")
    assert err.startswith("consent store: ") and "newer" in err and "99" in err
    assert sqlite_sql(store_path(config_file), "PRAGMA user_version") == [(99,)]  # untouched


def test_store_commands_on_an_unreachable_postgres(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PG_ENV, "postgresql://gw:pg-password-never-shown@127.0.0.1:1/consent")
    set_config(config_file, store={"backend": "postgres"})
    code, out, err = run(capsys, "migrate", "--config", str(config_file))
    assert (code, out) == (1, "")
    assert err.startswith("consent store: postgres: cannot connect")
    assert "pg-password-never-shown" not in err and "Traceback" not in err


def test_store_commands_need_the_dsn_variable(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PG_ENV, raising=False)
    set_config(config_file, store={"backend": "postgres"})
    code, _, err = run(capsys, "records", "--config", str(config_file), "s1")
    assert code == 1
    assert f"needs a DSN in environment variable {PG_ENV}" in err


# -- against PostgreSQL -----------------------------------------------------------------------


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`main` in a thread: it runs its own event loop."""
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_migrate_records_and_erase_on_postgres(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_config(config_file, store={"backend": "postgres"})
    config = str(config_file)
    latest = latest_version("postgres")
    async with fresh_pg_schema() as schema:
        monkeypatch.setenv(PG_ENV, f"{PG_DSN}?search_path={schema}")
        code, out, err = await cli(capsys, "records", "--config", config, "s1")
        assert code == 1 and out == "" and "run `consent-gateway migrate`" in err
        code, out, err = await cli(capsys, "migrate", "--config", config)
        assert (code, err) == (0, "")
        assert out == f"postgres: schema migrated from version 0 to {latest}\n"
        code, out, _ = await cli(capsys, "migrate", "--config", config)
        assert (code, out) == (0, f"postgres: schema at version {latest}, up to date\n")
        await seed(pg_store(schema))  # migrate again: a no-op
        code, out, _ = await cli(capsys, "records", "--config", config, "s1", "--json")
        assert code == 0
        doc = json.loads(out)
        assert [r["at"] for r in doc["records"]] == [1_700_000_100.0, 1_700_000_200.0]
        assert doc["current"]["purposes"] == {"analytics": False, "advertising": False}
        code, out, _ = await cli(capsys, "records", "--config", config, "s1")
        assert code == 0 and "2 record(s), oldest first:" in out
        code, out, _ = await cli(capsys, "erase", "--config", config, "s1")
        token = out.split()[-1]
        assert code == 0 and token.startswith(ERASED_PREFIX)
        _, out, _ = await cli(capsys, "records", "--config", config, "s1", "--json")
        gone = json.loads(out)
        assert gone["records"] == [] and gone["current"]["source"] == "erasure"
        _, out, _ = await cli(capsys, "records", "--config", config, token, "--json")
        assert len(json.loads(out)["records"]) == 2
        code, out, _ = await cli(capsys, "webhooks", "status", "--config", config)
        assert (code, out) == (0, "no webhook endpoints configured or registered\n")


# -- serve refuses to start without its store -------------------------------------------------


def serve_fails(config_file: Path, env: dict[str, str]) -> str:
    """Run `serve` expecting it to exit 1 at once; its output."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config_file),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CONSENT_GATEWAY_COOKIE_KEY": TEST_KEY, **env},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("case", ["postgres-unreachable", "sqlite-newer", "not-migrated"])
def test_serve_exits_1_when_the_store_cannot_be_opened(config_file: Path, case: str) -> None:
    env: dict[str, str] = {}
    if case == "postgres-unreachable":
        set_config(config_file, store={"backend": "postgres"})
        env[PG_ENV] = "postgresql://gw:pg-password-never-shown@127.0.0.1:1/consent"
        expected = "consent store: postgres: cannot connect"
    elif case == "sqlite-newer":
        set_newer_schema(store_path(config_file))
        expected = "consent store: schema version 99 is newer than this code's"
    else:
        set_config(config_file, store={"migrate_on_start": False})
        expected = "consent store: the consent store's schema is at version 0"
    output = serve_fails(config_file, env)
    assert expected in output, output
    assert "Traceback" not in output
    assert "pg-password-never-shown" not in output


def test_store_commands_on_an_unusable_sqlite_folder(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = config_file.parent / "not-a-folder"
    blocker.write_text("")
    set_config(config_file, store={"sqlite_path": str(blocker / "consent.db")})
    code, out, err = run(capsys, "migrate", "--config", str(config_file))
    assert (code, out) == (1, "")
    assert err.startswith("consent store: ")


def test_check_refuses_overrides_that_can_never_be_used(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load(config_file.read_text())
    doc["upstream"]["overrides"] = {
        "https://www.google-analytics.com": "http://127.0.0.1:9/",  # listed: fine
        "https://nobody-lists-this.example": "http://127.0.0.1:9/",
    }
    config_file.write_text(yaml.safe_dump(doc))
    assert main(["check", "--config", str(config_file)]) == 1
    out = capsys.readouterr().out
    assert "upstream.overrides['https://nobody-lists-this.example']: no rule lists this host" in out
    assert "www.google-analytics.com" not in out


def test_check_warns_of_a_cmp_vendor_no_rule_has(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load(config_file.read_text())
    klaro = {"posthog": ["analytics"], "vendors": {"posthog": ["posthog", "posthgo"]}}
    doc.setdefault("consent", {}).setdefault("signals", {})["cmp"] = {"klaro": klaro}
    config_file.write_text(yaml.safe_dump(doc))
    assert main(["check", "--config", str(config_file)]) == 0  # a warning
    out = capsys.readouterr().out
    assert "consent.signals.cmp.klaro.vendors.posthog: no rule has vendor id 'posthgo'" in out
    assert "'posthog'" not in out
    assert main(["check", "--strict", "--config", str(config_file)]) == 1


@pytest.mark.parametrize(
    "origin",
    [
        "http://www.google-analytics.com",
        "https://www.google-analytics.com:8443",
        "https://u@x.example",
    ],
)
def test_check_refuses_an_override_origin_that_is_not_plain_https(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str], origin: str
) -> None:
    doc = yaml.safe_load(config_file.read_text())
    doc["upstream"]["overrides"] = {origin: "http://127.0.0.1:9/"}
    config_file.write_text(yaml.safe_dump(doc))
    assert main(["check", "--config", str(config_file)]) == 1
    assert "key must be https://<host>" in capsys.readouterr().out


def test_serve_with_workers_refuses_a_dev_key(
    tmp_path: Path,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = yaml.safe_load(config_file.read_text())
    doc["cookie"]["keys"] = []
    doc["cookie"]["dev_key_file"] = "dev.key"
    config_file.write_text(yaml.safe_dump(doc))
    monkeypatch.delenv("CONSENT_GATEWAY_IMAGE", raising=False)
    # one process: the dev key is fine (the config loads); --workers 2: refused at once
    assert load_config(config_file).cookie.dev_key
    assert main(["serve", "--config", str(config_file), "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert "dev key file is for one process on one machine, not for 2 worker processes" in err
