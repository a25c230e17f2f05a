"""Errors a user can act on: each renders as one line naming the file, the row or key, and the field."""

from __future__ import annotations


class StockbridgeError(Exception):
    """Base for user-facing errors; the CLI prints ``str(err)`` on one line and exits with ``exit_code``."""

    exit_code = 2


class ConfigError(StockbridgeError):
    """A configuration file failed to load or validate."""

    def __init__(self, path: str, key: str, message: str):
        self.path, self.key, self.message = str(path), key, message
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {message}")


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
