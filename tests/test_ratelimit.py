"""gateway.ratelimit: a token bucket per client network for the consent API's writes."""

from __future__ import annotations

import pytest

from gateway.ratelimit import NetworkLimiter


def test_a_burst_of_the_limit_then_refused_then_refilled() -> None:
    limiter = NetworkLimiter(per_minute=6)
    assert [limiter.allow("203.0.113.9", 100.0) for _ in range(7)] == [True] * 6 + [False]
    assert limiter.retry_after("203.0.113.9", 100.0) == 10  # one token per 10 s
    assert limiter.allow("203.0.113.9", 109.0) is False
    assert limiter.allow("203.0.113.9", 110.5) is True
    assert limiter.allow("203.0.113.9", 110.6) is False


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ("203.0.113.9", "203.0.113.200", True),  # one IPv4 /24
        ("203.0.113.9", "203.0.114.9", False),
        ("2001:db8:1:2::1", "2001:db8:1:ffff::9", True),  # one IPv6 /48
        ("2001:db8:1::1", "2001:db8:2::1", False),
        (None, "not-an-ip", True),  # unknown addresses share one bucket
    ],
)
def test_buckets_are_per_network(first: str | None, second: str | None, shared: bool) -> None:
    limiter = NetworkLimiter(per_minute=2)
    assert limiter.allow(first, 0.0) and limiter.allow(first, 0.0)
    assert limiter.allow(second, 0.0) is not shared


def test_a_refused_write_takes_no_token() -> None:
    limiter = NetworkLimiter(per_minute=60)  # one a second
    for _ in range(60):
        limiter.allow("198.51.100.1", 0.0)
    for _ in range(100):  # hammering while empty does not push the refill back
        assert not limiter.allow("198.51.100.1", 0.5)
    assert limiter.allow("198.51.100.1", 1.0)


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        NetworkLimiter(per_minute=0)
