"""Converters from public tick-data formats into the Parquet store; each validates as it goes.

Formats: ``tardis`` (Tardis.dev CSV, any data type), ``lobster`` (message + orderbook pairs),
``nbbo`` and ``trades-csv`` (plain CSV), ``ccxt-trades`` and ``ccxt-ohlcv`` (JSON saved from ccxt),
``hftbacktest`` (its ``.npz`` event files), ``binance`` and ``bybit`` (raw websocket captures, see
``data.convert.capture``).
Layouts are documented in each module.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from data.convert import capture, ccxt_json, hftbacktest, lobster, nbbo, tardis
from data.convert.source import ConvertReport, Job, read_header
from data.store import StagedStore
from stockbridge.errors import DataError

FORMATS = ("tardis", "lobster", "nbbo", "trades-csv", "ccxt-trades", "ccxt-ohlcv", "hftbacktest", "binance", "bybit")

_SINGLE = {
    "tardis": tardis.convert,
    "nbbo": nbbo.convert_nbbo,
    "trades-csv": nbbo.convert_trades,
    "ccxt-trades": ccxt_json.convert_trades,
    "ccxt-ohlcv": ccxt_json.convert_ohlcv,
    "hftbacktest": hftbacktest.convert,
    "binance": capture.convert_binance,
    "bybit": capture.convert_bybit,
}


def convert_files(fmt: str, inputs: list[str | Path], job: Job) -> list[ConvertReport]:
    """Convert each input (for ``lobster``: MESSAGE ORDERBOOK pairs, in that order) with ``job``.

    Events are staged beside the store and moved in only when every input converted (see
    :class:`data.store.StagedStore`): an error leaves the store as it was. A partition already
    holding rows of a kind being written is refused unless ``job.mode`` is ``append`` or ``overwrite``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if job.out is not None and not isinstance(job.out, StagedStore):
        with StagedStore(job.out, job.mode) as staged:
            return _convert(fmt, inputs, dataclasses.replace(job, out=staged))
    return _convert(fmt, inputs, job)


def _convert(fmt: str, inputs: list[str | Path], job: Job) -> list[ConvertReport]:
    if fmt == "lobster":
        if len(inputs) % 2:
            raise DataError(str(inputs[-1]), None, None, "LOBSTER inputs come in pairs: MESSAGE ORDERBOOK [MESSAGE ORDERBOOK ...]")
        return [lobster.convert(m, o, job) for m, o in zip(inputs[0::2], inputs[1::2])]
    return [_SINGLE[fmt](path, job) for path in inputs]


def detect_format(path: str | Path) -> str | None:
    """The format of a source file from its content, where that is unambiguous (not LOBSTER)."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head[:4] == b"PK\x03\x04" or head[:6] == b"\x93NUMPY":
        return "hftbacktest"
    start = head.lstrip()[:1]
    if start == b"[":
        data = json.loads(path.read_text(encoding="utf-8"))
        if data and isinstance(data[0], dict):
            return "ccxt-trades"
        if data and isinstance(data[0], list):
            return "ccxt-ohlcv"
        return None
    header = tuple(read_header(path))
    if tardis.detect(header):
        return "tardis"
    if header == nbbo.NBBO:
        return "nbbo"
    if header == nbbo.TRADES:
        return "trades-csv"
    return None
