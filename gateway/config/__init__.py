"""One frozen, validated config object, read from YAML.

- `schema` (and `consent`, its `consent:` section): the dataclasses; every option
  declared once (`spec.opt`) with its default, bounds and help
  (`config.example.yaml` documents each of them);
- `load`: `load_config` / `parse_config`, one walk over the schema's fields;
- `convert`: the named converters for options whose reading is special (secrets from
  the environment, key files, paths under data_dir, networks, purpose maps);
- `json_schema`: the same walk as `load`, writing `schemas/config.schema.json` (each
  converter's fragment is registered there under the converter's name).

`load_config(path)` returns a `GatewayConfig` or raises `ConfigError` listing every
problem (`file:line: key.path: message`). Unknown keys are errors. Secrets are never
in the file: it names an environment variable and the value is read at load time.
"""

from gateway.config.consent import (
    CMPS,
    DEFAULT_PURPOSES,
    GCM_TYPES,
    OPT_IN_COUNTRIES,
    ConflictPolicy,
    ConsentConfig,
    RegimeConfig,
    RegimeMode,
    SignalsConfig,
)
from gateway.config.convert import IMAGE_ENV, dev_key_refused
from gateway.config.load import load_config, parse_config
from gateway.config.schema import (
    AccessLog,
    AdminConfig,
    CookieConfig,
    CookieKey,
    DecisionLogConfig,
    GatewayConfig,
    LogFormat,
    LogWriter,
    RulesConfig,
    SameSite,
    ServerConfig,
    StoreBackend,
    StoreConfig,
    UpstreamConfig,
    VendorHost,
    VendorRef,
    WebhookEndpoint,
    WebhooksConfig,
)

__all__ = [
    "CMPS",
    "DEFAULT_PURPOSES",
    "GCM_TYPES",
    "IMAGE_ENV",
    "OPT_IN_COUNTRIES",
    "AccessLog",
    "AdminConfig",
    "ConflictPolicy",
    "ConsentConfig",
    "CookieConfig",
    "CookieKey",
    "DecisionLogConfig",
    "GatewayConfig",
    "LogFormat",
    "LogWriter",
    "RegimeConfig",
    "RegimeMode",
    "RulesConfig",
    "SameSite",
    "ServerConfig",
    "SignalsConfig",
    "StoreBackend",
    "StoreConfig",
    "UpstreamConfig",
    "VendorHost",
    "VendorRef",
    "WebhookEndpoint",
    "WebhooksConfig",
    "dev_key_refused",
    "load_config",
    "parse_config",
]
