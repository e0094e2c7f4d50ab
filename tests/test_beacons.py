"""gateway.beacons: the request bytes, answers read to their end, connections kept alive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import yarl

from gateway.beacons import MAX_BODY, BeaconPool, request_bytes
from gateway.errors import UpstreamError, UpstreamRefused, UpstreamTimeout
from gateway.model import Outgoing


def out(
    method: str = "GET",
    query: str = "v=2",
    headers: tuple[tuple[str, str], ...] = (("Accept", "*/*"),),
    body: bytes = b"",
) -> Outgoing:
    return Outgoing(method, "www.google-analytics.com", "/g/collect", query, headers, body)


URL = yarl.URL("https://www.google-analytics.com/g/collect?v=2", encoded=True)


def test_request_bytes_is_one_request_line_and_header_block() -> None:
    data = request_bytes(
        out("POST", headers=(("Content-Type", "text/plain"), ("Host", "evil")), body=b"x=1"), URL
    )
    assert data == (
        b"POST /g/collect?v=2 HTTP/1.1\r\nHost: www.google-analytics.com\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 3\r\n\r\nx=1"
    )


def test_request_bytes_names_a_non_default_port() -> None:
    data = request_bytes(out(), yarl.URL("http://127.0.0.1:8081/ga/g/collect?v=2"))
    assert data.startswith(b"GET /ga/g/collect?v=2 HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n")


@pytest.mark.parametrize(
    ("o", "url"),
    [
        (out(headers=(("X-A", "1\r\nX-Injected: 1"),)), URL),
        (out(headers=(("X-A\r\nX-B", "1"),)), URL),
        (out(headers=(("X-A", "1\x00"),)), URL),
        (out(headers=(("X:A", "1"),)), URL),
        (out(method="GET /x HTTP/1.1\r\n"), URL),
        (out(), yarl.URL("https://www.google-analytics.com/a b", encoded=True)),
        (out(), yarl.URL("https://www.google-analytics.com/a\x01b", encoded=True)),
    ],
    ids=["value-crlf", "name-crlf", "value-nul", "name-colon", "method", "space", "target-control"],
)
def test_request_bytes_refuses_anything_that_would_split_the_request(
    o: Outgoing, url: yarl.URL
) -> None:
    with pytest.raises(UpstreamRefused):
        request_bytes(o, url)


# -- against a scripted server ---------------------------------------------------------


class Scripted:
    """A raw TCP server answering each request with the next scripted bytes."""

    def __init__(self, answers: list[bytes | Callable[[asyncio.StreamWriter], None]]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                answer = self.answers.pop(0)
                if callable(answer):
                    answer(writer)
                    await reader.read()  # until the client lets go
                    return
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[..., asyncio.Future[Scripted]]]:
    servers: list[asyncio.Server] = []

    async def make(*answers: bytes | Callable[[asyncio.StreamWriter], None]) -> Scripted:
        s = Scripted(list(answers))
        server = await asyncio.start_server(s.handle, "127.0.0.1", 0)
        servers.append(server)
        s.port = server.sockets[0].getsockname()[1]
        return s

    yield make  # type: ignore[misc]
    for server in servers:
        server.close()


def _pool(total: float = 5.0) -> BeaconPool:
    return BeaconPool(
        connect_timeout=2.0, total_timeout=total, max_busy=4, max_pending=8, max_idle=10
    )


def _url(s: Scripted) -> yarl.URL:
    return yarl.URL(f"http://127.0.0.1:{s.port}/g/collect?v=2")


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize(
    "answer",
    [
        OK,
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n"
        ),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
    ids=["length", "no-content", "interim", "chunked-trailers", "chunked-empty"],
)
async def test_an_answer_read_to_its_end_leaves_the_connection_reusable(
    scripted: Callable[..., asyncio.Future[Scripted]], answer: bytes
) -> None:
    server = await scripted(answer, OK)
    pool = _pool()
    try:
        assert await pool.send(out(), _url(server)) in (200, 204)
        assert await pool.send(out(), _url(server)) == 200
    finally:
        pool.close()
    assert server.connections == 1 and len(server.requests) == 2


async def test_an_answer_split_into_pieces_is_read_whole(
    scripted: Callable[..., asyncio.Future[Scripted]],
) -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"

    def trickle(writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        for i, byte in enumerate(answer):
            loop.call_later(0.001 * i, writer.write, bytes([byte]))

    server = await scripted(trickle)
    pool = _pool()
    try:
        assert await pool.send(out(), _url(server)) == 200
    finally:
        pool.close()


async def test_a_redirect_is_a_status_not_followed(
    scripted: Callable[..., asyncio.Future[Scripted]],
) -> None:
    server = await scripted(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\n\r\n")
    pool = _pool()
    try:
        # no Content-Length: the body runs to the close, so the connection is not kept
        assert await pool.send(out(), _url(server)) == 302
    finally:
        pool.close()
    assert len(server.requests) == 1


async def test_connection_close_is_not_reused(
    scripted: Callable[..., asyncio.Future[Scripted]],
) -> None:
    server = await scripted(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    pool = _pool()
    try:
        assert await pool.send(out(), _url(server)) == 200
        server.answers.append(OK)
        assert await pool.send(out(), _url(server)) == 200
    finally:
        pool.close()
    assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (b"SMTP ready\r\n\r\n", "other"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1) + b"x" * 70000, "other"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000, "other"),
        (lambda w: w.close(), "connect"),
    ],
    ids=["not-http", "body-too-large", "head-too-large", "closed-early"],
)
async def test_a_bad_answer_is_an_upstream_error(
    scripted: Callable[..., asyncio.Future[Scripted]],
    answer: bytes | Callable[[asyncio.StreamWriter], None],
    kind: str,
) -> None:
    server = await scripted(answer)
    pool = _pool()
    try:
        with pytest.raises(UpstreamError) as e:
            await pool.send(out(), _url(server))
    finally:
        pool.close()
    assert e.value.kind == kind


async def test_no_answer_in_time_is_a_timeout(
    scripted: Callable[..., asyncio.Future[Scripted]],
) -> None:
    server = await scripted(lambda w: None)  # reads the request, never answers
    pool = _pool(total=0.2)
    try:
        with pytest.raises(UpstreamTimeout):
            await pool.send(out(), _url(server))
    finally:
        pool.close()


async def test_only_http_destinations() -> None:
    with pytest.raises(UpstreamRefused):
        await _pool().send(out(), yarl.URL("ftp://127.0.0.1/x"))


async def test_jobs_wait_for_a_free_connection_within_their_bound(
    scripted: Callable[..., asyncio.Future[Scripted]],
) -> None:
    server = await scripted(OK, OK, OK)
    pool = BeaconPool(
        connect_timeout=2.0, total_timeout=5.0, max_busy=1, max_pending=2, max_idle=10
    )
    outcomes: list[tuple[object, ...]] = []
    try:
        accepted = [
            # each job's context comes back before its outcome, to the one callback
            pool.submit(out(), _url(server), lambda *a: outcomes.append(a), ("job", k))
            for k in range(4)
        ]
        assert accepted == [True, True, True, False] and pool.waiting == 2
        await pool.quiet()
    finally:
        pool.close()
    assert outcomes == [("job", k, 200, None) for k in range(3)]
    # one connection carried them all, one after the other
    assert server.connections == 1 and len(server.requests) == 3


async def test_close_ends_jobs_in_progress_and_drops_waiting_ones(
    scripted: Callable[..., asyncio.Future[Scripted]],
) -> None:
    server = await scripted(lambda w: None)  # never answers
    pool = BeaconPool(
        connect_timeout=2.0, total_timeout=30.0, max_busy=1, max_pending=5, max_idle=10
    )
    outcomes: list[str] = []
    for _ in range(3):
        pool.submit(out(), _url(server), lambda s, e: outcomes.append(e.kind if e else "ok"))
    while not server.requests:
        await asyncio.sleep(0.01)
    assert pool.abandon() == 2
    pool.close()
    assert outcomes == ["closed"]
