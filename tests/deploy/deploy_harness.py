"""What the deployment files' tests share: loading a config they ship with the gateway's
own loader, with the secrets they reference set to test values."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gateway.config.load import parse_config
from gateway.config.schema import DecisionLogConfig, GatewayConfig
from gateway.config.spec import key_of

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

#: base64url of 24 bytes: a valid signing key for tests only.
TEST_COOKIE_KEY = "dGVzdC1vbmx5LWNvb2tpZS1rZXktMDEyMw"
TEST_ADMIN_TOKEN = "test-only-admin-token"
TEST_DSN = "postgresql://gateway@127.0.0.1:5432/test"


def decision_log_keys() -> frozenset[str]:
    """The keys the gateway's decision_log section accepts today."""
    keys = (key_of(f) for f in dataclasses.fields(DecisionLogConfig))
    return frozenset(k for k in keys if k is not None)


def as_this_gateway_reads(config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` without `decision_log.backend` while the gateway does not have that option
    yet (issue 15 adds it): the deployment files already ask for the fleet's PostgreSQL
    log, and every other key is held to the loader as it is."""
    out = copy.deepcopy(dict(config))
    if "backend" not in decision_log_keys():
        out.get("decision_log", {}).pop("backend", None)
    return out


def load_deploy_config(
    config: Mapping[str, Any], env: Mapping[str, str], file: Path
) -> GatewayConfig:
    """Parse `config` as the config file `file` with the gateway's loader; ConfigError
    lists every problem."""
    text = yaml.safe_dump(as_this_gateway_reads(config), sort_keys=False)
    return parse_config(text, str(file), env=env)
