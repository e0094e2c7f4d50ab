"""deploy/compose.yaml: two gateways and PostgreSQL on one machine, read as compose reads
it (YAML with anchors and merge keys), and its config read by the gateway's loader."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import commands
from gateway.config.schema import StoreBackend
from gateway.errors import ConfigError
from tests.deploy.deploy_harness import DEPLOY, load_deploy_config

COMPOSE: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
CONFIG_FILE = DEPLOY / "compose.config.yaml"
CONFIG: dict[str, Any] = yaml.safe_load(CONFIG_FILE.read_text())
GATEWAYS = sorted(n for n, s in SERVICES.items() if s.get("command", [])[1:2] == ["serve"])


def _container_config(service: dict[str, Any]) -> str:
    """The config file path inside the container that `service` mounts deploy's config at."""
    (mount,) = service["volumes"]
    source, target, mode = mount.split(":")
    assert (DEPLOY / source).resolve() == CONFIG_FILE
    assert mode == "ro"
    return str(target)


def test_two_gateways_one_postgres_one_migration() -> None:
    assert GATEWAYS == ["gateway-a", "gateway-b"]
    assert SERVICES["postgres"]["image"] == "postgres:16"
    assert commands._parser().parse_args(SERVICES["migrate"]["command"][1:]).func.__name__ == (
        "_cmd_migrate"
    )


@pytest.mark.parametrize("name", ["migrate", "gateway-a", "gateway-b"])
def test_gateway_services_build_the_repo_image_on_the_shared_config(name: str) -> None:
    service = SERVICES[name]
    assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == (
        DEPLOY.parent / "Dockerfile"
    )
    args = commands._parser().parse_args(service["command"][1:])
    assert service["command"][0] == "consent-gateway"
    assert args.config == _container_config(service)


def test_the_chain_postgres_then_migrate_then_gateways() -> None:
    assert SERVICES["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert SERVICES["migrate"]["restart"] == "no"
    for name in GATEWAYS:
        assert SERVICES[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }


@pytest.mark.parametrize("name", GATEWAYS)
def test_gateway_healthcheck_asks_readyz_on_the_ops_port(name: str) -> None:
    probe = " ".join(SERVICES[name]["healthcheck"]["test"])
    port = CONFIG["server"]["admin_port"]
    assert f"http://127.0.0.1:{port}/readyz" in probe
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])


def test_gateways_publish_different_host_ports_on_loopback_only() -> None:
    published: list[tuple[str, str]] = []
    for name in GATEWAYS:
        targets = set()
        for spec in SERVICES[name]["ports"]:
            host_ip, host_port, container_port = spec.split(":")
            assert host_ip == "127.0.0.1", spec  # the ops listener has the admin page
            published.append((host_ip, host_port))
            targets.add(int(container_port))
        assert targets == {CONFIG["server"]["port"], CONFIG["server"]["admin_port"]}
    assert len(set(published)) == len(published) == 4


def _env(name: str) -> dict[str, str]:
    env: dict[str, str] = SERVICES[name]["environment"]
    return {**env, "CONSENT_GATEWAY_IMAGE": "1"}  # the Dockerfile sets it


def test_every_secret_the_config_names_is_set_with_a_dev_value() -> None:
    named = [k["secret_env"] for k in CONFIG["cookie"]["keys"]]
    named += [CONFIG["admin"]["token_env"], CONFIG["store"]["postgres_dsn_env"]]
    for name in ["migrate", *GATEWAYS]:
        env = SERVICES[name]["environment"]
        assert sorted(env) == sorted(named), name
    text = (DEPLOY / "compose.yaml").read_text()
    assert "DEVELOPMENT VALUES ONLY" in text
    env = SERVICES["gateway-a"]["environment"]
    assert "dev-only" in env[CONFIG["admin"]["token_env"]]
    assert "dev-only-password" in env[CONFIG["store"]["postgres_dsn_env"]]
    dsn = re.fullmatch(
        r"postgresql://(\w+):([\w-]+)@postgres:5432/(\w+)", env["CONSENT_GATEWAY_PG_DSN"]
    )
    assert dsn is not None
    pg = SERVICES["postgres"]["environment"]
    assert dsn.groups() == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])


@pytest.mark.parametrize("name", ["migrate", *GATEWAYS])
def test_the_config_loads_with_each_services_environment(name: str, tmp_path: Path) -> None:
    cfg = load_deploy_config(CONFIG, _env(name), tmp_path / "config.yaml")
    assert cfg.store.backend is StoreBackend.POSTGRES
    assert cfg.store.postgres_dsn == SERVICES[name]["environment"]["CONSENT_GATEWAY_PG_DSN"]
    assert cfg.store.migrate_on_start is False  # the migrate service does it
    assert cfg.admin.token is not None
    assert [k.id for k in cfg.cookie.keys] == ["k1"]
    assert CONFIG["decision_log"]["backend"] == "postgres"
    if name in GATEWAYS:  # compose stops a container with SIGKILL after its grace period
        grace = SERVICES[name]["stop_grace_period"]
        assert grace.endswith("s")
        assert cfg.server.drain_delay + cfg.server.shutdown_timeout + 5 <= float(grace[:-1])


def test_without_the_dsn_the_config_is_refused(tmp_path: Path) -> None:
    env = _env("gateway-a")
    del env["CONSENT_GATEWAY_PG_DSN"]
    with pytest.raises(ConfigError, match="CONSENT_GATEWAY_PG_DSN"):
        load_deploy_config(CONFIG, env, tmp_path / "config.yaml")
