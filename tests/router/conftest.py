"""Fixtures both router browser modules share: one Chromium per module, resolving only the
module's `site` (each module defines `site`: same-origin or cross-origin), and a fresh
browser context per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.router.browser_harness import RouterSite, Visit, chromium

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(scope="module")
def browser(site: RouterSite) -> Iterator[Browser]:
    with chromium(site.host_rules()) as b:
        yield b


@pytest.fixture
def visit(browser: Browser) -> Iterator[Visit]:
    v = Visit.open(browser)
    try:
        yield v
    finally:
        v.close()
