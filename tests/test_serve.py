"""gateway.serve: `consent-gateway serve` as a real process, one worker or several."""

from __future__ import annotations

import http.server
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
import yaml

from gateway.access_log import FIELDS, PRIVACY_FILTER, SUMMARY
from gateway.config import LogFormat
from gateway.decision_log.query import LogQuery, LogReader
from gateway.serve import JsonLogFormatter, _setup_logging
from tests.conftest import TEST_KEY, free_port, http_status

GA4_HIT = "/t/www.google-analytics.com/g/collect?v=2&tid=G-TEST&cid=555.1&en=page_view"


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_runs_answers_health_and_stops_cleanly(config_file: Path, workers: int) -> None:
    port, admin_port = free_port(), free_port()
    proc = _serve(config_file, port, admin_port, "--workers", str(workers))
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


def _serve(config: Path, port: int, admin_port: int, *args: str) -> subprocess.Popen[bytes]:
    """`consent-gateway serve` on these ports, its stdout and stderr in one pipe."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--admin-port",
            str(admin_port),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "CONSENT_GATEWAY_COOKIE_KEY": TEST_KEY},
    )


def _until_ready(proc: subprocess.Popen[bytes], admin_port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            assert http_status(f"http://127.0.0.1:{admin_port}/readyz") == 200
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.1)


def _started(config: Path, **server: object) -> tuple[subprocess.Popen[bytes], int, int]:
    """A gateway serving `config` with these `server` options, ready; its ports."""
    port, admin_port = free_port(), free_port()
    proc = _serve(_with_server(config, **server), port, admin_port)
    try:
        _until_ready(proc, admin_port)
    except BaseException:
        proc.kill()
        proc.communicate(timeout=30)
        raise
    return proc, port, admin_port


def _with_server(config: Path, **server: object) -> Path:
    doc = yaml.safe_load(config.read_text())
    doc["server"].update(server)
    config.write_text(yaml.safe_dump(doc))
    return config


def test_json_log_format_writes_one_json_object_a_line(config_file: Path) -> None:
    proc, port, admin_port = _started(config_file, log_format="json", access_log="json")
    try:
        assert http_status(f"http://127.0.0.1:{port}{GA4_HIT}") == 204
        # a request line aiohttp's parser refuses: logged by aiohttp.server
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET /x?email=alice@example.com HTTP/1.1\r\nHost\r\n\r\n")
            conn.recv(4096)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    lines = out.decode().splitlines()
    docs = [orjson.loads(line) for line in lines]  # every line, or this raises
    assert all(
        isinstance(d, dict) and {"time", "level", "logger", "message"} <= d.keys() for d in docs
    )
    loggers = {d["logger"] for d in docs}
    assert {"gateway", "gateway.app", "gateway.access", "aiohttp.server"} <= loggers, loggers
    [hit] = [d for d in docs if d["logger"] == "gateway.access" and d["path"].startswith("/t/")]
    assert hit["status"] == 204 and hit["method"] == "GET" and hit["message"].startswith("GET /t/")
    assert "alice" not in out.decode()


def _readyz(admin_port: int) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=2) as r:
            return int(r.status), orjson.loads(r.read())["status"]
    except urllib.error.HTTPError as e:
        with e:
            return e.code, orjson.loads(e.read())["status"]


def _until_draining(proc: subprocess.Popen[bytes], admin_port: int) -> None:
    """Until /readyz answers 503 "draining"; the process must still be running then."""
    deadline = time.monotonic() + 10
    while _readyz(admin_port) != (503, "draining"):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)


def test_sigterm_turns_not_ready_and_keeps_serving_for_the_drain_delay(config_file: Path) -> None:
    proc, port, admin_port = _started(config_file, drain_delay="2s", shutdown_timeout="3s")
    try:
        assert _readyz(admin_port) == (200, "ready")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _until_draining(proc, admin_port)
        # not ready, yet both listeners still serve: a balancer's last requests are answered
        assert http_status(f"http://127.0.0.1:{port}/consent") == 200
        assert http_status(f"http://127.0.0.1:{admin_port}/healthz") == 200
        proc.wait(timeout=2 + 3 + 10)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    assert took >= 2, took  # the drain delay was waited out
    assert b"draining" in out


@pytest.mark.parametrize("second", [None, signal.SIGTERM])
def test_sigint_or_a_second_signal_skips_the_drain_delay(
    config_file: Path, second: signal.Signals | None
) -> None:
    proc, port, admin_port = _started(config_file, drain_delay="10m")
    try:
        if second is None:
            proc.send_signal(signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
            _until_draining(proc, admin_port)
            proc.send_signal(second)
        proc.wait(timeout=30)  # far below the ten minutes
    finally:
        if proc.poll() is None:
            proc.kill()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()


class _SlowVendor:
    """A vendor on loopback that holds each answer `hold` seconds (set per test)."""

    def __init__(self, hold: float) -> None:
        vendor = self
        self.arrived = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                vendor.arrived.set()
                time.sleep(hold)
                body = b"/* vendor script */"
                self.send_response(200)
                self.send_header("Content-Type", "text/javascript")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


#: a script the gateway fetches from the vendor while the visitor waits
_SCRIPT = "/t/www.googletagmanager.com/gtm.js?id=GTM-TEST"


@pytest.mark.parametrize(("hold", "finished"), [(1.5, True), (30.0, False)])
def test_requests_in_flight_have_the_shutdown_timeout_to_finish(
    config_file: Path, hold: float, finished: bool
) -> None:
    vendor = _SlowVendor(hold)
    doc = yaml.safe_load(config_file.read_text())
    doc["upstream"]["overrides"] = {
        "https://www.googletagmanager.com": f"{vendor.url}/www.googletagmanager.com"
    }
    # the gateway would wait out the vendor's 30 s: only the shutdown timeout cuts it
    doc["upstream"]["total_timeout"] = "60s"
    config_file.write_text(yaml.safe_dump(doc))
    proc, port, admin_port = _started(config_file, drain_delay=0, shutdown_timeout="5s")
    answer: list[object] = []

    def fetch() -> None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{_SCRIPT}", timeout=60) as r:
                answer.append((r.status, r.read()))
        except Exception as e:  # the connection cut: what the visitor sees
            answer.append(e)

    client = threading.Thread(target=fetch)
    try:
        client.start()
        assert vendor.arrived.wait(10)  # in flight now
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        took = time.monotonic() - sent
        client.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, _ = proc.communicate(timeout=30)
        vendor.close()
    assert proc.returncode == 0, out.decode()
    if finished:
        assert answer == [(200, b"/* vendor script */")]
    else:
        # cut after the shutdown timeout, long before the vendor would have answered
        [cut] = answer
        assert isinstance(cut, Exception) and not isinstance(cut, urllib.error.HTTPError), cut
        assert 5 <= took < 20, took


def _record(name: str, msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.getLogger(name).makeRecord(
        name, logging.WARNING, __file__, 1, msg, args, None, extra=extra
    )
    record.created = 1_764_410_400.5  # 2025-11-29T10:00:00.5Z
    return record


def _raised() -> logging.LogRecord:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("asyncio", "Task exception was never retrieved")
        record.exc_info = sys.exc_info()
        return record


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            _record("gateway", "rules reloaded: %d vendor rules", 3),
            {"logger": "gateway", "message": "rules reloaded: 3 vendor rules"},
        ),
        (
            _record("gateway.x", "with fields", vendor="ga4", n=2),
            {"message": "with fields", "vendor": "ga4", "n": 2},
        ),
        (  # the access log's fields are the line's own, its text the message
            _record("gateway.access", "%s", "{}", **{FIELDS: {"status": 204}, SUMMARY: "GET /x"}),
            {"logger": "gateway.access", "message": "GET /x", "status": 204},
        ),
        (  # an `extra` value JSON has no type for: its text
            _record("gateway", "odd", where=Path("/tmp/x")),
            {"where": "/tmp/x"},
        ),
        (  # the privacy filter's mark is bookkeeping, not a field
            _record("aiohttp.server", "bad request from a client: %s", "X", cg_private=True),
            {"message": "bad request from a client: X"},
        ),
    ],
)
def test_json_log_formatter_fields(record: logging.LogRecord, expected: dict[str, object]) -> None:
    doc = orjson.loads(JsonLogFormatter().format(record))
    assert doc["time"] == "2025-11-29T10:00:00.500Z" and doc["level"] == "WARNING"
    assert {k: doc[k] for k in expected} == expected
    assert not {FIELDS, SUMMARY, "cg_private", "args", "msg", "exc_info"} & doc.keys()


def test_json_log_formatter_keeps_a_traceback_on_its_one_line() -> None:
    line = JsonLogFormatter().format(_raised())
    assert "\n" not in line
    doc = orjson.loads(line)
    assert doc["logger"] == "asyncio" and doc["message"] == "Task exception was never retrieved"
    assert doc["exc"].startswith("Traceback") and "ValueError: boom" in doc["exc"]


def test_json_setup_formats_every_root_handler() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    # only this handler: pytest's own capture handlers must keep their formatters
    kept, root.handlers = root.handlers, [handler]
    hooks = sys.excepthook, threading.excepthook
    try:
        _setup_logging("INFO", LogFormat.JSON)
        assert isinstance(handler.formatter, JsonLogFormatter)
        assert sys.excepthook is not hooks[0] and threading.excepthook is not hooks[1]
    finally:
        root.handlers = kept
        sys.excepthook, threading.excepthook = hooks
        logging.captureWarnings(False)


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
