"""gateway.serve: `consent-gateway serve` as a real process, one worker or several."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway.access_log import PRIVACY_FILTER
from gateway.decision_log.query import LogQuery, LogReader
from gateway.serve import _setup_logging
from tests.conftest import TEST_KEY, free_port, http_status

GA4_HIT = "/t/www.google-analytics.com/g/collect?v=2&tid=G-TEST&cid=555.1&en=page_view"


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_runs_answers_health_and_stops_cleanly(config_file: Path, workers: int) -> None:
    port, admin_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config_file),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--admin-port",
            str(admin_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "CONSENT_GATEWAY_COOKIE_KEY": TEST_KEY},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                # the operators' listener answers health; the public port does not
                assert http_status(f"http://127.0.0.1:{admin_port}/healthz") == 200
                assert http_status(f"http://127.0.0.1:{admin_port}/readyz") == 200
                with pytest.raises(urllib.error.HTTPError) as refused:
                    http_status(f"http://127.0.0.1:{port}/metrics")
                refused.value.close()
                assert refused.value.code == 404
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        # a hit without consent: dropped, and logged by the writer process (the
        # shipped config's `decision_log.writer`), which writes it before it ends
        assert http_status(f"http://127.0.0.1:{port}{GA4_HIT}") == 204
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    db = config_file.parent / "data" / "decisions.db"
    stored = LogReader(db).records(LogQuery(limit=10))
    assert [(r.action, r.host) for r in stored] == [("drop", "www.google-analytics.com")]


def test_logging_goes_through_the_privacy_filter() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    root.addHandler(handler)
    try:
        _setup_logging("INFO")
        assert PRIVACY_FILTER in handler.filters
        assert PRIVACY_FILTER in logging.getLogger("aiohttp.server").filters
    finally:
        root.removeHandler(handler)
