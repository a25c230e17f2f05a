"""Errors a user can act on: each renders as one line naming the file, the row or key, and the field."""

from __future__ import annotations

import re

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_path(*parts: str | int) -> str:
    """A key path as a TOML dotted key: ``key_path("venues", "bybit", "tick_size")`` is
    ``venues.bybit.tick_size``, array positions are plain numbers (``backtest.scenarios.0.venue``).

    A table key may be any text: one that is not a bare TOML key (a dot, a space, a quote, a line
    break, a non-ASCII letter) is written quoted, with every character that is not printable escaped
    (``\\n``, ``\\u2028``), so the path stays on one line and names the same keys when read back.
    """
    return ".".join(str(p) if isinstance(p, int) or _BARE_KEY.fullmatch(p) else _quoted(p) for p in parts)


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quoted(key: str) -> str:
    out = []
    for ch in key:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif not ch.isprintable() and ch != " ":
            out.append(f"\\u{ord(ch):04X}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


class StockbridgeError(Exception):
    """Base for user-facing errors; the CLI prints ``str(err)`` on one line and exits with ``exit_code``."""

    exit_code = 2


class ConfigError(StockbridgeError):
    """A configuration file failed to load or validate.

    ``more`` holds further ``(key, message)`` problems found in the same pass: the error then renders
    as one line per problem, each naming the file and key.
    """

    def __init__(self, path: str, key: str, message: str, more: tuple[tuple[str, str], ...] = ()):
        self.path, self.key, self.message = str(path), key, message
        self.problems = ((key, message), *more)
        super().__init__("\n".join(self._line(k, m) for k, m in self.problems))

    def _line(self, key: str, message: str) -> str:
        return f"{self.path}: {key}: {message}" if key else f"{self.path}: {message}"


class DataError(StockbridgeError):
    """A data file is malformed: names the file, the row (1-based, header excluded) and the field."""

    def __init__(self, path: str, row: int | None, field: str | None, message: str):
        self.path, self.row, self.field, self.message = str(path), row, field, message
        parts = [self.path]
        if row is not None:
            parts.append(f"row {row}")
        if field:
            parts.append(f"field '{field}'")
        super().__init__(": ".join(parts) + f": {message}")
