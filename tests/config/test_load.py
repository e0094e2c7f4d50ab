"""gateway.config.load: one walk over the schema; every problem named with file, line, path."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest
import yarl

from gateway.config import (
    DEFAULT_PURPOSES,
    ConsentConfig,
    GatewayConfig,
    StoreBackend,
    StoreConfig,
    WebhookEndpoint,
    WebhooksConfig,
    load_config,
    parse_config,
)
from gateway.config.spec import key_of
from tests.conftest import CONFIG_ENV as ENV
from tests.conftest import CONFIG_KEYS as KEYS
from tests.conftest import ROOT, TEST_KEY
from tests.conftest import config_problems as problems

TWO_K1 = "cookie:\n  keys: [{id: k1, secret_env: CG_TEST_KEY}, {id: k1, secret_env: CG_TEST_KEY}]\n"


def test_example_config_is_valid_and_mirrors_the_defaults(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "config.example.yaml", env=ENV)
    defaults = GatewayConfig(cookie=cfg.cookie)
    # The example shows every key with its default value.
    assert cfg.server == defaults.server
    assert cfg.consent == ConsentConfig()
    assert cfg.upstream == dataclasses.replace(defaults.upstream, overrides=cfg.upstream.overrides)
    assert cfg.rules.paths == (ROOT / "rules",)
    assert cfg.decision_log.sqlite_path == ROOT / "data" / "decisions.db"
    assert cfg.cookie.keys[0].id == "k1"
    assert cfg.consent.purposes == DEFAULT_PURPOSES
    assert cfg.store == dataclasses.replace(StoreConfig(), sqlite_path=ROOT / "data" / "consent.db")
    assert cfg.webhooks == WebhooksConfig()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (KEYS + "servr: {}\n", "gw.yaml:3: servr: unknown key (did you mean 'server'?)"),
        (KEYS + "server:\n  port: http\n", "gw.yaml:4: server.port: expected an integer"),
        (KEYS + "server:\n  port: 70000\n", "gw.yaml:4: server.port: must satisfy"),
        (KEYS + "server:\n  trusted_proxies: [nope]\n", "server.trusted_proxies[0]: not an IP"),
        (KEYS + "server:\n  log_level: LOUD\n", "server.log_level: must be one of"),
        (KEYS + "consent:\n  max_age: forever\n", "consent.max_age: not a duration"),
        (
            KEYS + "consent:\n  conflict: random\n",
            "consent.conflict: must be one of: restrictive, newest",
        ),
        (KEYS + "consent:\n  default_regime: mars\n", "'mars' is not one of the regimes"),
        (KEYS + "consent:\n  gpc_purposes: [ads]\n", "'ads' is not one of consent.purposes"),
        (
            KEYS + "consent:\n  regimes:\n    eu: {mode: opt-maybe}\n  default_regime: eu\n",
            "consent.regimes.eu.mode: must be one of: opt-in, opt-out",
        ),
        (
            KEYS + "consent:\n  regimes:\n    eu: {mode: opt-in, countries: [DEU]}\n"
            "  default_regime: eu\n",
            "'DEU' is not an ISO 3166-1 alpha-2 code",
        ),
        (KEYS + "upstream:\n  overrides: {nope: http://x}\n", "upstream.overrides.nope: key"),
        (
            KEYS + "upstream:\n  overrides: {'https://a.example': 'ftp://x'}\n",
            "must be an http(s) base URL",
        ),
        (
            KEYS + "upstream:\n  connect_timeout: 5s\n  total_timeout: 1s\n",
            "connect_timeout: must not exceed total_timeout",
        ),
        (KEYS.replace("k1", "k 1"), "cookie.keys[0].id: key id must be"),
        (KEYS + "  same_site: Loose\n", "cookie.same_site: must be one of: Strict, Lax, None"),
        (KEYS + "  same_site: None\n  secure: false\n", "SameSite=None requires secure"),
        ("cookie: {}\n", "no signing key"),
        ("server: [1, 2]\n" + KEYS, "gw.yaml:1: server: expected a mapping, got a list"),
    ],
)
def test_problems_name_file_line_and_path(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems(KEYS + "server:\n  port: x\n  workers: 0\nrulez: {}\n")
    assert len(found) == 3, found


def test_key_rotation_order_newest_first() -> None:
    text = "cookie:\n  keys:\n    - {id: k2, secret_env: NEW}\n    - {id: k1, secret_env: OLD}\n"
    new = "bmV3LWtleS1uZXcta2V5LW5ldy1rZXk"
    cfg = parse_config(text, env={"NEW": new, "OLD": TEST_KEY})
    assert [k.id for k in cfg.cookie.keys] == ["k2", "k1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            TWO_K1,
            "key id 'k1' is listed twice",
        ),
        ("cookie:\n  keys: [{id: ké, secret_env: CG_TEST_KEY}]\n", "1-16 ASCII letters"),
        (KEYS + "consent:\n  purposes: [ads tracking]\n", "must be 1-32 ASCII letters"),
        (KEYS + "consent:\n  purposes: [ads, ads]\n", "a purpose is listed twice"),
    ],
)
def test_cookie_keys_and_purposes_fit_the_cookie(text: str, expected: str) -> None:
    assert any(expected in p for p in problems(text))


# -- store: and webhooks: ----------------------------------------------------------------------

DSN = "postgresql://gateway:hunter2-dsn-password@db.internal:5432/consent"
HOOK_SECRET = "whsec-0123456789abcdef"
SHORT_SECRET = "tiny-secret"
HOOK_ENV = {**ENV, "CG_HOOK": HOOK_SECRET, "CG_SHORT": SHORT_SECRET}


def hook(
    name: str = "crm", url: str = "https://crm.example.com/hooks", env: str = "CG_HOOK"
) -> str:
    return f"{{name: {name!r}, url: {url!r}, secret_env: {env}}}"


def hooks(*items: str) -> str:
    return KEYS + f"webhooks:\n  endpoints: [{', '.join(items)}]\n"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        (
            KEYS + "store:\n  backend: mysql\n",
            ENV,
            "gw.yaml:4: store.backend: must be one of: sqlite,",
        ),
        (KEYS + "store:\n  backend: 5\n", ENV, "store.backend: must be one of: sqlite, postgres"),
        (
            KEYS + "store:\n  backend: postgres\n",
            ENV,
            (
                "gw.yaml:4: store.backend: backend postgres needs a DSN in environment variable "
                "CONSENT_GATEWAY_PG_DSN"
            ),
        ),
        (
            KEYS + "store:\n  backend: postgres\n  postgres_dsn_env: MY_DSN\n",
            {**ENV, "CONSENT_GATEWAY_PG_DSN": DSN},
            (
                "gw.yaml:5: store.postgres_dsn_env: backend postgres needs a DSN in environment "
                "variable MY_DSN"
            ),
        ),
        (
            KEYS + "store:\n  backend: postgres\n",
            {**ENV, "CONSENT_GATEWAY_PG_DSN": ""},
            "needs a DSN in environment variable CONSENT_GATEWAY_PG_DSN",
        ),
        (KEYS + "store:\n  postgres_pool_size: 0\n", ENV, "store.postgres_pool_size: must satisfy"),
        (KEYS + "store:\n  postgres_pool_size: 1001\n", ENV, "store.postgres_pool_size: must"),
        (KEYS + "store:\n  migrate_on_start: maybe\n", ENV, "store.migrate_on_start: expected"),
        (KEYS + "store:\n  cache_size: 0\n", ENV, "gw.yaml:4: store.cache_size: must satisfy"),
        (KEYS + "store:\n  cache_ttl: forever\n", ENV, "store.cache_ttl: not a duration"),
        (KEYS + "store:\n  poll_interval: -1\n", ENV, "store.poll_interval: negative duration"),
        (KEYS + "store:\n  sqlite_path: [a, b]\n", ENV, "store.sqlite_path: expected a string"),
        (KEYS + "store:\n  subject_header: X Subject\n", ENV, "store.subject_header: must be an"),
        (KEYS + "store:\n  subject_header: 'X-Subject:'\n", ENV, "store.subject_header: must be"),
        (KEYS + "store:\n  subject_header: ''\n", ENV, "store.subject_header: must be an HTTP"),
        (KEYS + "store:\n  subject_header: " + "X" * 65 + "\n", ENV, "store.subject_header: must"),
        (KEYS + "store:\n  subject_header: 5\n", ENV, "store.subject_header: expected a string"),
        (KEYS + "store:\n  sqlite_file: x.db\n", ENV, "store.sqlite_file: unknown key"),
        (KEYS + "store: [sqlite]\n", ENV, "gw.yaml:3: store: expected a mapping, got a list"),
        (hooks(hook(env="CG_SHORT")), HOOK_ENV, "webhooks.endpoints[0].secret_env: environment "),
        (hooks(hook(env="CG_NOWHERE")), HOOK_ENV, "variable CG_NOWHERE must hold >= 16 characters"),
        (hooks(hook(url="ftp://crm.example.com/x")), HOOK_ENV, "endpoints[0].url: must be an http"),
        (hooks(hook(url="crm.example.com/hooks")), HOOK_ENV, "endpoints[0].url: must be an http"),
        (hooks(hook(url="https:///nohost")), HOOK_ENV, "endpoints[0].url: must be an http(s) URL"),
        (hooks(hook(name="crm hooks")), HOOK_ENV, "webhooks.endpoints[0].name: must be 1-64"),
        (hooks(hook(name="")), HOOK_ENV, "webhooks.endpoints[0].name: must be 1-64"),
        (hooks(hook(name="x" * 65)), HOOK_ENV, "webhooks.endpoints[0].name: must be 1-64"),
        (
            hooks(hook(), hook(url="https://other.example.com/")),
            HOOK_ENV,
            "gw.yaml:4: webhooks.endpoints[1].name: duplicate webhook name 'crm'",
        ),
        (
            hooks("{name: crm, url: 'https://crm.example.com/'}"),
            HOOK_ENV,
            "webhooks.endpoints[0]: missing required key 'secret_env'",
        ),
        (
            hooks("{name: crm, secret_env: CG_HOOK}"),
            HOOK_ENV,
            "webhooks.endpoints[0]: missing required key 'url'",
        ),
        (hooks(hook()[:-1] + ", secret: x}"), HOOK_ENV, "endpoints[0].secret: unknown key"),
        (hooks("crm"), HOOK_ENV, "webhooks.endpoints[0]: expected a mapping, got a string"),
        (KEYS + "webhooks:\n  endpoints: {crm: x}\n", ENV, "webhooks.endpoints: expected a list"),
        (KEYS + "webhooks:\n  timeout: soon\n", ENV, "gw.yaml:4: webhooks.timeout: not a dur"),
        # aiohttp reads a 0 timeout as none: a hung receiver would outlive the delivery lease
        (KEYS + "webhooks:\n  timeout: 0\n", ENV, "webhooks.timeout: must be more than 0"),
        (KEYS + "webhooks:\n  timeout: 2m\n", ENV, "webhooks.timeout: must be more than 0"),
        (
            KEYS + "webhooks:\n  backoff_initial: 0\n",
            ENV,
            "webhooks.backoff_max: need 0 < backoff_initial <= backoff_max",
        ),
        (
            KEYS + "webhooks:\n  backoff_initial: 10m\n  backoff_max: 1m\n",
            ENV,
            "gw.yaml:5: webhooks.backoff_max: need 0 < backoff_initial <= backoff_max",
        ),
        (KEYS + "webhooks:\n  backoff_max: 0\n", ENV, "need 0 < backoff_initial <= backoff_max"),
        (KEYS + "webhooks:\n  retries: 3\n", ENV, "webhooks.retries: unknown key"),
    ],
)
def test_store_and_webhooks_problems_name_the_field(
    text: str, env: dict[str, str], expected: str
) -> None:
    found = problems(text, env)
    assert any(expected in p for p in found), found
    # SECURITY: the values behind the named variables never appear in a problem.
    for secret in (DSN, "hunter2", HOOK_SECRET, SHORT_SECRET):
        assert not any(secret in p for p in found), found


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("", {}, {}),
        (
            "store:\n  backend: postgres\n",
            {"CONSENT_GATEWAY_PG_DSN": DSN},
            {"backend": StoreBackend.POSTGRES, "postgres_dsn": DSN},
        ),
        (
            "store:\n  backend: postgres\n  postgres_dsn_env: MY_DSN\n  postgres_pool_size: 3\n",
            {"MY_DSN": DSN, "CONSENT_GATEWAY_PG_DSN": "postgresql://elsewhere/x"},
            {"backend": StoreBackend.POSTGRES, "postgres_dsn": DSN, "postgres_pool_size": 3},
        ),
        # sqlite never reads the DSN, even where one is set
        ("store:\n  backend: sqlite\n", {"CONSENT_GATEWAY_PG_DSN": DSN}, {}),
        ("store:\n  postgres_dsn_env: NOT_SET\n", {}, {}),
        (
            "store:\n  cache_size: 5\n  cache_ttl: 1h\n  poll_interval: 250ms\n",
            {},
            {"cache_size": 5, "cache_ttl": 3600.0, "poll_interval": 0.25},
        ),
        ("store:\n  migrate_on_start: false\n", {}, {"migrate_on_start": False}),
        (
            "store:\n  subject_header: X-Consent-Subject\n",
            {},
            {"subject_header": "X-Consent-Subject"},
        ),
        ("store:\n  subject_header: null\n", {}, {"subject_header": None}),
        ("store:\n  subject_header: x_subject.id\n", {}, {"subject_header": "x_subject.id"}),
    ],
)
def test_store_section_good_inputs(
    tmp_path: Path, text: str, env: dict[str, str], expected: dict[str, object]
) -> None:
    cfg = parse_config(
        f"data_dir: {tmp_path / 'd'}\n" + KEYS + text,
        str(tmp_path / "c.yaml"),
        env={**ENV, **env},
    )
    want = dataclasses.replace(StoreConfig(), sqlite_path=tmp_path / "d" / "consent.db")
    assert cfg.store == dataclasses.replace(want, **expected)  # type: ignore[arg-type]


def test_webhooks_good_inputs() -> None:
    text = hooks(
        hook(),
        hook(name="cdp.eu-1", url="http://10.0.0.5:8080/consent?x=1", env="CG_HOOK2"),
    )
    text += "  timeout: 2s\n  backoff_initial: 500ms\n  backoff_max: 500ms\n"
    cfg = parse_config(text, env={**HOOK_ENV, "CG_HOOK2": "x" * 16})  # 16: just enough
    assert cfg.webhooks == WebhooksConfig(
        endpoints=(
            WebhookEndpoint("crm", yarl.URL("https://crm.example.com/hooks"), HOOK_SECRET.encode()),
            WebhookEndpoint("cdp.eu-1", yarl.URL("http://10.0.0.5:8080/consent?x=1"), b"x" * 16),
        ),
        timeout=2.0,
        backoff_initial=0.5,
        backoff_max=0.5,
    )


def test_store_and_webhook_problems_are_reported_at_once() -> None:
    text = hooks(hook(env="CG_SHORT"), hook(name="b c")) + "store:\n  cache_size: 0\n"
    text += "  backend: postgres\n"
    found = problems(text, HOOK_ENV)
    assert len(found) == 4, found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # yarl.URL raises ValueError (uncaught: a traceback, not a ConfigError)
        (hooks(hook(url="http://[::1/hooks")), "webhooks.endpoints[0].url: must be an http(s)"),
        # resolves to the config file's folder, which SQLite cannot open
        (KEYS + "store:\n  sqlite_path: ''\n", "store.sqlite_path:"),
        (KEYS + "store:\n  sqlite_path: null\n", "store.sqlite_path:"),
        # the change follower then polls SQLite in a tight loop
        (KEYS + "store:\n  poll_interval: 0\n", "store.poll_interval:"),
    ],
    ids=["bad-ipv6-url", "empty-sqlite-path", "null-sqlite-path", "zero-poll"],
)
def test_store_and_webhooks_refuse_unusable_values(text: str, expected: str) -> None:
    found = problems(text, HOOK_ENV)
    assert any(expected in p for p in found), found


# -- the walk: keys come from the schema, never from the loader ---------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            KEYS + "webhooks:\n  endpoints: [{name: a, url: 'https://a.example', secrett: X}]\n",
            "gw.yaml:4: webhooks.endpoints[0].secrett: unknown key (did you mean 'secret_env'?)",
        ),
        (
            KEYS + "consent:\n  regimes:\n    eu: {mode: opt-in, countrys: [FR]}\n",
            "gw.yaml:5: consent.regimes.eu.countrys: unknown key (did you mean 'countries'?)",
        ),
        (
            KEYS + "consent:\n  signals:\n    tcf_purpose: {}\n",
            "gw.yaml:5: consent.signals.tcf_purpose: unknown key (did you mean 'tcf_purposes'?)",
        ),
        (KEYS + "admin:\n  token: x\n", "gw.yaml:4: admin.token: unknown key (did you mean"),
        (KEYS + "source: x.yaml\n", "gw.yaml:3: source: unknown key"),
        (KEYS + "cookie_: {}\n", "gw.yaml:3: cookie_: unknown key (did you mean 'cookie'?)"),
    ],
)
def test_unknown_keys_at_every_depth(text: str, expected: str) -> None:
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_a_record_missing_a_required_key_is_left_out_or_given_its_fallback() -> None:
    # a regime without a mode is reported, and read as opt-in: no second problem follows
    text = KEYS + "consent:\n  regimes:\n    eu: {countries: [FR]}\n  default_regime: eu\n"
    assert problems(text) == ["gw.yaml:5: consent.regimes.eu: missing required key 'mode'"]


def test_derived_fields_are_not_keys(tmp_path: Path) -> None:
    cfg = parse_config(KEYS, str(tmp_path / "c.yaml"), env=ENV)
    assert cfg.source == tmp_path / "c.yaml"
    assert cfg.data_dir == tmp_path / "data"
    assert cfg.cookie.dev_key is False


def _option_names() -> set[str]:
    """Every option's field name and key in the file, through every section and record."""
    names: set[str] = set()

    def walk(cls: type) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            names.add(f.name)
            names.update({key_of(f)} - {None})  # type: ignore[arg-type]
            hint, args = hints[f.name], typing.get_args(hints[f.name])
            if dataclasses.is_dataclass(hint):
                walk(typing.cast(type, hint))
            elif typing.get_origin(hint) is tuple and args and dataclasses.is_dataclass(args[0]):
                walk(typing.cast(type, args[0]))

    walk(GatewayConfig)
    return names


NAMES = _option_names()


def _rewritten(source: str, names: set[str]) -> list[str]:
    """Where `source` writes an option's name: as a string, or as a keyword argument.

    Allowed: the `key=` of an `opt(...)` (the one place a key in the file that is not
    the field's name is declared), and the argument of `Path(...)` (a default file name
    may equal a section's, as `rules` does). Reading a field (`cfg.server.port`) is fine.
    """
    tree = ast.parse(source)
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "opt":
                allowed |= {id(k.value) for k in node.keywords if k.arg == "key"}
            elif node.func.id == "Path":
                allowed |= {id(a) for a in node.args}
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in names and id(node) not in allowed:
            found.append(f"{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.keyword) and node.arg in names:
            found.append(f"{node.value.lineno}: {node.arg}=")
    return found


@pytest.mark.parametrize(
    "path", sorted((ROOT / "gateway" / "config").glob("*.py")), ids=lambda p: p.name
)
def test_no_option_is_written_twice(path: Path) -> None:
    # The schema declares each option once; the loader and converters reach them only
    # through the fields (their metadata, type and default), never by re-listing keys.
    assert _rewritten(path.read_text(encoding="utf-8"), NAMES) == []


def test_the_check_sees_a_relisted_key() -> None:
    # control: a per-section parser the way gateway/config.py had them
    source = (
        "def _server(node):\n"
        "    m = node.mapping(['host', 'port'])\n"
        "    return ServerConfig(host=m['host'].str(), workers=1)\n"
    )
    found = sorted(_rewritten(source, NAMES))
    assert found == ["2: 'host'", "2: 'port'", "3: 'host'", "3: host=", "3: workers="]
