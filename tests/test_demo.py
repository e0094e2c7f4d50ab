"""demo/run.py (`make demo`): its config is valid, its tags' hosts are all listed by rules
and sent to the local fake vendors, and its servers answer."""

from __future__ import annotations

import importlib.util
import re
from collections import deque
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from aiohttp.test_utils import TestClient, TestServer

from gateway.config import parse_config
from gateway.ruleset.load import load_rules
from tests.conftest import ROOT, RULES_DIR


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_run", ROOT / "demo" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _demo()
SHOP = (ROOT / "demo" / "shop.html").read_text()


def test_the_demo_config_is_valid_and_every_tag_goes_to_the_fake_vendors(tmp_path: Path) -> None:
    doc = demo.demo_config(tmp_path, "http://localhost:8000", "http://127.0.0.1:8090", 8080)
    cfg = parse_config(yaml.safe_dump(doc), str(tmp_path / "demo.yaml"), env={})
    assert cfg.server.allowed_origins == ("http://localhost:8000",)
    rules = load_rules([RULES_DIR], frozenset(cfg.consent.purposes))
    tag_hosts = set(re.findall(r"https://([a-z0-9.-]+)/", SHOP))
    assert tag_hosts == set(demo.VENDOR_HOSTS)
    for host in tag_hosts:
        assert rules.vendor_for_host(host) is not None, host
        assert str(cfg.upstream.overrides[f"https://{host}"]) == f"http://127.0.0.1:8090/{host}"


async def test_the_fake_vendors_record_hits_and_the_shop_lists_them() -> None:
    hits: deque[dict[str, object]] = deque(maxlen=10)
    vendors: TestClient[Any, Any] = TestClient(TestServer(demo.vendors_app(hits)))
    shop: TestClient[Any, Any] = TestClient(
        TestServer(demo.shop_app("http://localhost:8080", hits))
    )
    async with vendors, shop:
        resp = await vendors.get("/www.facebook.com/tr?id=1&ev=PageView")
        assert resp.status == 204
        script = await vendors.get("/connect.facebook.net/en_US/fbevents.js")
        assert b"window.fbq" in await script.read()
        page = await (await shop.get("/")).text()
        assert '<script src="http://localhost:8080/cg.js"></script>' in page
        listed = await (await shop.get("/_hits")).json()
        assert [(h["vendor_host"], h["path"]) for h in listed] == [
            ("connect.facebook.net", "/en_US/fbevents.js"),
            ("www.facebook.com", "/tr"),
        ]
        assert listed[1]["query"] == {"id": "1", "ev": "PageView"}
