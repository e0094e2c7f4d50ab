"""gateway.errors: the tree documented in the module docstring is the tree that exists."""

from __future__ import annotations

import inspect

import pytest

import gateway.errors as errors
from gateway.errors import (
    BadDestination,
    BodyTooLarge,
    ConfigError,
    GatewayError,
    Problem,
    RequestError,
    UnknownDestination,
    UpstreamError,
    UpstreamTimeout,
)


def test_every_exception_is_documented_in_the_tree() -> None:
    doc = errors.__doc__ or ""
    for name, obj in inspect.getmembers(errors, inspect.isclass):
        if issubclass(obj, Exception) and obj.__module__ == errors.__name__:
            assert name in doc, name
            assert issubclass(obj, GatewayError)


@pytest.mark.parametrize(
    ("exc", "status"),
    [(UnknownDestination("x"), 404), (BadDestination("x"), 400), (BodyTooLarge("x"), 413)],
)
def test_request_errors_carry_status(exc: RequestError, status: int) -> None:
    assert exc.status == status and exc.message == "x"


def test_problem_format() -> None:
    p = Problem("rules/a.yaml", 12, "meta/endpoints[0].match.pth", "unknown key")
    assert str(p) == "rules/a.yaml:12: meta/endpoints[0].match.pth: unknown key"
    assert str(ConfigError([p])) == str(p)
    assert UpstreamTimeout().kind == "timeout" and isinstance(UpstreamTimeout(), UpstreamError)
