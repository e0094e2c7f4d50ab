"""gateway.config.spec: an option is a dataclass field carrying its Spec."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.config.spec import Spec, key_of, opt, spec_of


@dataclasses.dataclass(frozen=True)
class Sample:
    name: str = opt(help="its key in a mapping of records", from_key=True)
    port: int = opt(8080, min=0, max=65535, help="a port")
    token: str | None = opt(None, key="token_env", repr=False, help="read from the environment")
    source: str | None = opt(None, key=None, help="set by the loader")
    tags: tuple[str, ...] = opt(factory=lambda: ("a",), help="a default made fresh")
    plain: int = 0


def _field(name: str) -> dataclasses.Field[object]:
    [found] = [f for f in dataclasses.fields(Sample) if f.name == name]
    return found


def test_opt_declares_the_default_and_the_spec() -> None:
    s = Sample("x")
    assert (s.port, s.token, s.tags) == (8080, None, ("a",))
    assert spec_of(_field("port")) == Spec(help="a port", min=0, max=65535)
    assert "token" not in repr(Sample("x", token="hunter2-token"))


@pytest.mark.parametrize(
    ("name", "key"),
    [("port", "port"), ("token", "token_env"), ("source", None), ("name", None)],
)
def test_key_of_names_the_key_in_the_file(name: str, key: str | None) -> None:
    assert key_of(_field(name)) == key


def test_a_field_not_made_with_opt_is_refused() -> None:
    with pytest.raises(TypeError, match="plain is not declared with opt"):
        spec_of(_field("plain"))


def test_a_required_option_has_no_default() -> None:
    assert _field("name").default is dataclasses.MISSING
    with pytest.raises(TypeError):
        Sample()
