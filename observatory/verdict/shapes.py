"""Reading JSON of any shape: what a probe wrote is never trusted to be the type a field should have.

A verdict must not crash on a malformed measurement, so each accessor treats a value of the wrong type as
absent. `CachedFact` is the attribute type of the per-measurement facts the rules test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


def as_dict(value: Any) -> dict[str, Any]:
    """The value when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """The value when it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


def as_text(value: Any) -> str | None:
    """The value when it is a non-empty string, else None (an empty failure string is no failure)."""
    return value if isinstance(value, str) and value else None


class CachedFact(Generic[T]):
    """A cached attribute without the lock `functools.cached_property` takes on Python 3.11: computed on
    first access and stored in the instance's __dict__, which then shadows this (non-data) descriptor."""

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> CachedFact[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> CachedFact[T] | T:
        if obj is None:
            return self
        value = self.fn(obj)
        obj.__dict__[self.name] = value
        return value
