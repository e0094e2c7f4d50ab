"""gateway.config: one frozen, validated object; every problem named with file, line, path."""

from __future__ import annotations

import dataclasses
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
from gateway.errors import ConfigError
from tests.conftest import ROOT, TEST_KEY

ENV = {"CONSENT_GATEWAY_COOKIE_KEY": TEST_KEY, "CG_TEST_KEY": TEST_KEY}
KEYS = "cookie:\n  keys: [{id: k1, secret_env: CG_TEST_KEY}]\n"
TWO_K1 = "cookie:\n  keys: [{id: k1, secret_env: CG_TEST_KEY}, {id: k1, secret_env: CG_TEST_KEY}]\n"


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "gw.yaml", env=ENV if env is None else env)
    return [str(p) for p in info.value.problems]


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


def test_example_config_is_safe_by_default() -> None:
    cfg = load_config(ROOT / "config.example.yaml", env=ENV)
    regime = cfg.consent.regime_for(None)
    assert regime.mode == "opt-in"
    assert cfg.consent.regime_for("ZZ").mode == "opt-in"
    assert cfg.consent.regime_for("DE").mode == "opt-in"
    assert cfg.consent.regime_for("US").mode == "opt-out"


def test_config_is_frozen() -> None:
    cfg = parse_config(KEYS, env=ENV)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.port = 1  # type: ignore[misc]


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


def test_secret_comes_from_the_environment_and_is_never_shown() -> None:
    cfg = parse_config(KEYS, env={"CG_TEST_KEY": TEST_KEY})
    assert cfg.cookie.keys[0].secret == b"k" * 32
    assert TEST_KEY not in repr(cfg)
    short = problems(KEYS, env={"CG_TEST_KEY": "c2hvcnQ"})
    assert any("CG_TEST_KEY must hold >= 16 bytes" in p for p in short)
    assert not any("c2hvcnQ" in p for p in short)


def test_missing_secret_without_dev_key_file_is_an_error() -> None:
    assert any("no signing key" in p for p in problems(KEYS, env={}))


def test_dev_key_file_is_created_once_and_reused(tmp_path: Path) -> None:
    text = f"data_dir: {tmp_path}\ncookie:\n  keys: []\n  dev_key_file: dev.key\n"
    first = parse_config(text, str(tmp_path / "c.yaml"), env={})
    second = parse_config(text, str(tmp_path / "c.yaml"), env={})
    assert first.cookie.keys == second.cookie.keys
    assert (tmp_path / "dev.key").stat().st_mode & 0o077 == 0  # owner-only


@pytest.mark.parametrize(
    ("extra", "env", "why"),
    [
        ("server: {workers: 4}\n", {}, "4 worker processes"),
        (
            "store: {backend: postgres, postgres_dsn_env: PG}\n",
            {"PG": "postgresql://x@127.0.0.1/db"},
            "a PostgreSQL store",
        ),
        ("", {"CONSENT_GATEWAY_IMAGE": "1"}, "a container image"),
    ],
    ids=["workers", "postgres", "image"],
)
def test_a_dev_key_file_is_refused_for_a_fleet(
    tmp_path: Path, extra: str, env: dict[str, str], why: str
) -> None:
    # Each instance minted its own key: cookies stopped validating across replicas.
    text = f"data_dir: {tmp_path}\ncookie:\n  keys: []\n  dev_key_file: dev.key\n{extra}"
    with pytest.raises(ConfigError) as info:
        parse_config(text, str(tmp_path / "c.yaml"), env=env)
    [problem] = [str(p) for p in info.value.problems]
    assert problem.startswith(f"{tmp_path / 'c.yaml'}:4: cookie.dev_key_file: ")
    assert why in problem and "secret_env" in problem
    assert not (tmp_path / "dev.key").exists()  # refused before any key was minted


def test_a_shared_key_is_fine_for_a_fleet() -> None:
    cfg = parse_config(KEYS + "server: {workers: 4}\n", env=ENV)
    assert cfg.cookie.dev_key is False and cfg.server.workers == 4


def test_key_rotation_order_newest_first() -> None:
    text = "cookie:\n  keys:\n    - {id: k2, secret_env: NEW}\n    - {id: k1, secret_env: OLD}\n"
    new = "bmV3LWtleS1uZXcta2V5LW5ldy1rZXk"
    cfg = parse_config(text, env={"NEW": new, "OLD": TEST_KEY})
    assert [k.id for k in cfg.cookie.keys] == ["k2", "k1"]


def test_overrides_and_relative_paths(tmp_path: Path) -> None:
    text = (
        KEYS + "upstream:\n  overrides:\n    'https://WWW.Example.com': http://127.0.0.1:9/x\n"
        "rules:\n  paths: [myrules]\n"
    )
    cfg = parse_config(text, str(tmp_path / "c.yaml"), env=ENV)
    assert cfg.upstream.overrides == {"https://www.example.com": yarl.URL("http://127.0.0.1:9/x")}
    assert cfg.rules.paths == (tmp_path / "myrules",)


@pytest.mark.parametrize(
    ("country", "regime"),
    [
        ("FR", "opt-in"),
        ("GB", "opt-in"),
        ("BR", "opt-in"),
        ("US", "us"),
        ("JP", "opt-in"),
        (None, "opt-in"),
    ],
)
def test_regime_for(country: str | None, regime: str) -> None:
    assert ConsentConfig().regime_for(country).name == regime


def test_unquoted_norway_gets_a_hint() -> None:
    text = KEYS + "consent:\n  regimes:\n    eu: {mode: opt-in, countries: [FR, NO]}\n"
    text += "  default_regime: eu\n"
    assert any('quote it, e.g. "NO"' in p for p in problems(text))


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


@pytest.mark.parametrize(
    ("written", "resolved"),
    [
        (None, "d/consent.db"),  # the default lives under data_dir
        ("store/consent.db", "store/consent.db"),  # relative: the config file's folder
        ("/var/lib/cg/consent.db", "/var/lib/cg/consent.db"),
    ],
)
def test_store_sqlite_path_resolution(tmp_path: Path, written: str | None, resolved: str) -> None:
    text = f"data_dir: {tmp_path / 'd'}\n" + KEYS
    if written is not None:
        text += f"store:\n  sqlite_path: {written}\n"
    cfg = parse_config(text, str(tmp_path / "c.yaml"), env=ENV)
    assert cfg.store.sqlite_path == tmp_path / resolved


def test_store_dsn_and_webhook_secrets_never_shown() -> None:
    text = hooks(hook()) + "store:\n  backend: postgres\n"
    cfg = parse_config(text, env={**HOOK_ENV, "CONSENT_GATEWAY_PG_DSN": DSN})
    assert cfg.store.postgres_dsn == DSN
    assert cfg.webhooks.endpoints[0].secret == HOOK_SECRET.encode()
    for shown in (repr(cfg), str(cfg), repr(cfg.store), repr(cfg.webhooks)):
        assert "hunter2" not in shown and HOOK_SECRET not in shown


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


@pytest.mark.parametrize("written", ["null", "''"])
def test_postgres_without_a_dsn_variable_name_is_explained(written: str) -> None:
    found = problems(KEYS + f"store:\n  backend: postgres\n  postgres_dsn_env: {written}\n", ENV)
    assert any("store.postgres_dsn_env:" in p for p in found), found
    assert not any(p.endswith("variable None") or p.endswith("variable ") for p in found), found
