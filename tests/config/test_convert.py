"""gateway.config.convert: the options read from the environment, key files and tables."""

from __future__ import annotations

import dataclasses
import ipaddress
import typing
from pathlib import Path

import pytest
import yarl

from gateway.config import AccessLog, GatewayConfig, parse_config
from gateway.config.convert import CONVERTERS, origin_pattern
from gateway.config.spec import spec_of
from gateway.errors import ConfigError
from tests.conftest import CONFIG_ENV as ENV
from tests.conftest import CONFIG_KEYS as KEYS
from tests.conftest import TEST_KEY
from tests.conftest import config_problems as problems


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


def test_overrides_and_relative_paths(tmp_path: Path) -> None:
    text = (
        KEYS + "upstream:\n  overrides:\n    'https://WWW.Example.com': http://127.0.0.1:9/x\n"
        "rules:\n  paths: [myrules]\n"
    )
    cfg = parse_config(text, str(tmp_path / "c.yaml"), env=ENV)
    assert cfg.upstream.overrides == {"https://www.example.com": yarl.URL("http://127.0.0.1:9/x")}
    assert cfg.rules.paths == (tmp_path / "myrules",)


def test_unquoted_norway_gets_a_hint() -> None:
    text = KEYS + "consent:\n  regimes:\n    eu: {mode: opt-in, countries: [FR, NO]}\n"
    text += "  default_regime: eu\n"
    assert any('quote it, e.g. "NO"' in p for p in problems(text))


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


@pytest.mark.parametrize("written", ["null", "''"])
def test_postgres_without_a_dsn_variable_name_is_explained(written: str) -> None:
    found = problems(KEYS + f"store:\n  backend: postgres\n  postgres_dsn_env: {written}\n", ENV)
    assert any("store.postgres_dsn_env:" in p for p in found), found
    assert not any(p.endswith("variable None") or p.endswith("variable ") for p in found), found


def _converters_named() -> set[str]:
    named: set[str] = set()

    def walk(cls: type) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if spec_of(f).convert:
                named.add(spec_of(f).convert or "")
            hint, args = hints[f.name], typing.get_args(hints[f.name])
            if dataclasses.is_dataclass(hint):
                walk(typing.cast(type, hint))
            elif typing.get_origin(hint) is tuple and args and dataclasses.is_dataclass(args[0]):
                walk(typing.cast(type, args[0]))

    walk(GatewayConfig)
    return named


def test_every_converter_named_exists_and_every_one_is_named() -> None:
    assert _converters_named() == set(CONVERTERS)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (
            "[10.0.0.0/8, 192.168.1.7, '2001:db8::/32']",
            ("10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32"),
        ),
        ("[]", ()),
    ],
)
def test_networks(written: str, expected: tuple[str, ...]) -> None:
    cfg = parse_config(KEYS + f"store:\n  server_networks: {written}\n", env=ENV)
    assert cfg.store.server_networks == tuple(ipaddress.ip_network(n) for n in expected)


@pytest.mark.parametrize(
    ("written", "expected"),
    [("debug", "DEBUG"), ("Warning", "WARNING")],
)
def test_log_level_is_case_blind(written: str, expected: str) -> None:
    assert (
        parse_config(KEYS + f"server:\n  log_level: {written}\n", env=ENV).server.log_level
        == expected
    )


def test_a_bare_off_is_the_access_log_off() -> None:
    # YAML 1.1 reads `off` as false
    cfg = parse_config(KEYS + "server:\n  access_log: off\n", env=ENV)
    assert cfg.server.access_log is AccessLog.OFF


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (None, None),
        ("-", "-"),
        ("out.jsonl", "{base}/out.jsonl"),
        ("/var/log/d.jsonl", "/var/log/d.jsonl"),
    ],
)
def test_decision_log_jsonl_target(
    tmp_path: Path, written: str | None, expected: str | None
) -> None:
    text = KEYS + ("" if written is None else f"decision_log:\n  jsonl: {written!r}\n")
    cfg = parse_config(text, str(tmp_path / "c.yaml"), env=ENV)
    assert cfg.decision_log.jsonl == (None if expected is None else expected.format(base=tmp_path))


def test_admin_token_from_the_environment() -> None:
    token = "t" * 16
    cfg = parse_config(KEYS + "admin:\n  token_env: CG_ADMIN\n", env={**ENV, "CG_ADMIN": token})
    assert cfg.admin.token == token
    assert parse_config(KEYS + "admin:\n  token_env: CG_ADMIN\n", env=ENV).admin.token is None
    short = problems(KEYS + "admin:\n  token_env: CG_ADMIN\n", env={**ENV, "CG_ADMIN": "tiny"})
    assert short == [
        "gw.yaml:4: admin.token_env: environment variable CG_ADMIN must hold >= 16 characters"
    ]


def test_purpose_maps_refer_to_the_purposes_written() -> None:
    text = KEYS + "consent:\n  purposes: [stats]\n  gpc_purposes: []\n  signals:\n"
    text += "    tcf_purposes: {stats: [1, 9]}\n    gcm: {stats: [analytics_storage]}\n"
    text += "    us_opt_out_purposes: [stats]\n    cmp: {klaro: {matomo: [stats]}}\n"
    signals = parse_config(text, env=ENV).consent.signals
    assert signals.tcf_purposes == {"stats": (1, 9)}
    assert signals.gcm == {"stats": ("analytics_storage",)}
    assert signals.us_opt_out_purposes == {"stats"}
    assert signals.cmp["klaro"] == {"matomo": ("stats",)}
    assert signals.cmp["onetrust"]["C0002"] == ("analytics",)  # CMPs not written keep theirs


def test_a_cmp_table_maps_its_own_ids_to_rule_vendors() -> None:
    text = KEYS + "consent:\n  signals:\n    cmp:\n      klaro:\n"
    text += "        posthog: [analytics]\n"
    text += "        vendors: {posthog: [posthog], ga: [google-analytics-4]}\n"
    table = parse_config(text, env=ENV).consent.signals.cmp["klaro"]
    assert table == {"posthog": ("analytics",)}  # `vendors` is not a category
    assert table.vendors == {"posthog": ("posthog",), "ga": ("google-analytics-4",)}
    assert parse_config(KEYS, env=ENV).consent.signals.cmp["klaro"].vendors == {}
    bad = text.replace("[posthog]", "[PostHog]")
    assert problems(bad, env=ENV) == [
        (
            "gw.yaml:8: consent.signals.cmp.klaro.vendors.posthog[0]: a rule vendor id must be "
            "a lower-case slug: letters, digits and single '-' (e.g. meta-pixel)"
        )
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://www.example.com", "https://www.example.com"),
        ("https://WWW.Example.COM:443", "https://www.example.com"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("https://shop.example.com:8443", "https://shop.example.com:8443"),
        ("https://*.example.com", "https://*.example.com"),
        ("*", None),
        ("https://*", None),
        ("https://*.com", None),
        ("https://a.*.example.com", None),
        ("https://www.example.com/", None),
        ("https://www.example.com/shop", None),
        ("https://www.example.com?x=1", None),
        ("https://user@www.example.com", None),
        ("ftp://www.example.com", None),
        ("www.example.com", None),
        ("null", None),
    ],
)
def test_origin_patterns_are_normalised_or_refused(text: str, expected: str | None) -> None:
    assert origin_pattern(text) == expected


def test_allowed_origins_are_read_and_each_bad_one_named() -> None:
    text = (
        KEYS
        + "server:\n  allowed_origins:\n    - https://WWW.example.com\n    - https://*.example.org\n"
    )
    assert parse_config(text, env=ENV).server.allowed_origins == (
        "https://www.example.com",
        "https://*.example.org",
    )
    bad = (
        KEYS
        + "server:\n  allowed_origins: ['*', https://a.example.com/x, https://a.example.com, https://A.example.com]\n"
    )
    not_an_origin = (
        "must be an origin such as https://www.example.com or https://*.example.com "
        "(scheme and host, no path)"
    )
    assert problems(bad) == [
        f"gw.yaml:4: server.allowed_origins[0]: {not_an_origin}",
        f"gw.yaml:4: server.allowed_origins[1]: {not_an_origin}",
        "gw.yaml:4: server.allowed_origins[3]: listed twice",
    ]


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("", True),
        ("/cg", True),
        ("/a/b-c_d.e~", True),
        ("/", False),
        ("cg", False),
        ("/cg/", False),
        ("/cg?x", False),
        ("/c g", False),
        ("//cg", False),
    ],
)
def test_base_path_is_empty_or_a_plain_path(path: str, ok: bool) -> None:
    text = KEYS + f"server:\n  base_path: {path!r}\n"
    if ok:
        assert parse_config(text, env=ENV).server.base_path == path
    else:
        message = "must be empty or a path such as /cg (no trailing slash, no query)"
        assert problems(text) == [f"gw.yaml:4: server.base_path: {message}"]


def test_vendor_hosts_are_read_with_where_they_are_written() -> None:
    text = KEYS + "rules:\n  vendor_hosts:\n    matomo: [stats.shop.example]\n"
    text += "    google-tag-manager: [www.shop.example/metrics/, sgtm.shop.example]\n"
    hosts = parse_config(text, env=ENV).rules.vendor_hosts
    assert [(h.vendor, h.host, h.prefix, h.line) for h in hosts] == [
        ("matomo", "stats.shop.example", None, 5),
        ("google-tag-manager", "www.shop.example", "/metrics", 6),
        ("google-tag-manager", "sgtm.shop.example", None, 6),
    ]
    assert hosts[1].where == "rules.vendor_hosts.google-tag-manager[0]"
    assert str(hosts[1]) == "www.shop.example/metrics"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("Matomo: [a.example]", "a rule vendor id must be a lower-case slug"),
        ("matomo: [a.example/m?x=1]", "a path prefix is /segment"),
        ("matomo: [a.example/m//x]", "a path prefix is /segment"),
    ],
)
def test_vendor_hosts_refused(entry: str, message: str) -> None:
    [problem] = problems(KEYS + f"rules:\n  vendor_hosts:\n    {entry}\n", env=ENV)
    assert message in problem


def test_router_vendors_are_read_with_where_they_are_written() -> None:
    text = KEYS + "rules:\n  router_vendors:\n    - posthog\n    - google-ads\n"
    refs = parse_config(text, env=ENV).rules.router_vendors
    assert [(r.vendor, r.line, r.where) for r in refs] == [
        ("posthog", 5, "rules.router_vendors[0]"),
        ("google-ads", 6, "rules.router_vendors[1]"),
    ]
    assert parse_config(KEYS, env=ENV).rules.router_vendors == ()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("[PostHog]", "a rule vendor id must be a lower-case slug"),
        ("[posthog, posthog]", "'posthog' is listed twice"),
        ("posthog", "a list"),
    ],
)
def test_router_vendors_refused(entry: str, message: str) -> None:
    [problem] = problems(KEYS + f"rules:\n  router_vendors: {entry}\n", env=ENV)
    assert message in problem
