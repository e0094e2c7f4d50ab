"""What the deployment files' tests share: loading a config they ship with the gateway's
own loader, with the secrets they reference set to test values."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gateway.config.load import parse_config
from gateway.config.schema import GatewayConfig

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

#: base64url of 24 bytes: a valid signing key for tests only.
TEST_COOKIE_KEY = "dGVzdC1vbmx5LWNvb2tpZS1rZXktMDEyMw"
TEST_ADMIN_TOKEN = "test-only-admin-token"
TEST_DSN = "postgresql://gateway@127.0.0.1:5432/test"


def load_deploy_config(
    config: Mapping[str, Any], env: Mapping[str, str], file: Path
) -> GatewayConfig:
    """Parse `config` as the config file `file` with the gateway's loader; ConfigError
    lists every problem."""
    text = yaml.safe_dump(dict(config), sort_keys=False)
    return parse_config(text, str(file), env=env)
