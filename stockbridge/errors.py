"""Errors a user can act on: each renders as one line naming the file, the row or key, and the field."""

from __future__ import annotations


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
