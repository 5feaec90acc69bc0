"""One TOML table read with every problem reported as `file: key: what is wrong` (scenario files)."""

from __future__ import annotations

from typing import Any

from observatory.errors import ConfigError


class TableReader:
    """Reads one TOML table, reporting every problem as `file: key: what is wrong`."""

    def __init__(self, path: str, table: dict[str, Any], prefix: str, allowed: tuple[str, ...]) -> None:
        self.path, self.table, self.prefix = path, table, prefix
        for key in table:
            if key not in allowed:
                self.fail(key, f"unknown key (allowed: {', '.join(allowed)})")

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, what: str) -> None:
        raise ConfigError(f"{self.path}: {self.key(name)}: {what}")

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ..., *, what: str = "") -> Any:
        if name not in self.table:
            if default is ...:
                self.fail(name, "missing")
            return default
        value = self.table[name]
        # TOML booleans are ints in Python: never accept one where a number is meant
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.fail(name, f"expected {what or kind_name(kind)}, got {value!r}")
        if not isinstance(value, kind):
            self.fail(name, f"expected {what or kind_name(kind)}, got {value!r}")
        return value

    def number(self, name: str, default: float, lo: float, hi: float) -> float:
        value = float(self.get(name, (int, float), default, what="a number"))
        if not lo <= value <= hi:
            self.fail(name, f"{value} is outside [{lo}, {hi}]")
        return value

    def strings(self, name: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        value = self.get(name, list, ... if default is None else list(default), what="a list of strings")
        for i, v in enumerate(value):
            if not isinstance(v, str) or not v:
                self.fail(f"{name}[{i}]", f"expected a non-empty string, got {v!r}")
        return tuple(value)

    def tables(self, name: str) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = self.get(name, list, [], what=f"an array of tables ([[{name}]])")
        for i, v in enumerate(value):
            if not isinstance(v, dict):
                self.fail(f"{name}[{i}]", f"expected a table ([[{name}]]), got {v!r}")
        return value


def kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)
