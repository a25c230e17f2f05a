"""Client wiring in one place: the real, unmodified clients pointed at a sandbox venue.

:func:`ccxt_exchange` returns a ``ccxt.pro`` exchange whose every URL in ``exchange.urls['api']``
(REST and websocket) is the sandbox's, with its API key and secret; :func:`alpaca_clients` returns
alpaca-py's trading client and streams pointed at the Alpaca emulator. Nothing else about the
clients changes (see shared/DOMAIN.md, "Venue APIs through ccxt").
"""

from __future__ import annotations

from typing import Any

from execution.sandbox.sandbox import SandboxVenue


def _override(tree: Any, url_for) -> Any:
    """A copy of a ccxt URL tree with every leaf string replaced by ``url_for(path of keys)``."""
    if isinstance(tree, dict):
        return {k: _override(v, lambda path, k=k: url_for((k, *path))) for k, v in tree.items()}
    if isinstance(tree, str):
        return url_for(())
    return tree


def sandbox_urls(ccxt_id: str, sv: SandboxVenue, template: dict) -> dict:
    """``exchange.urls['api']`` for the sandbox venue ``sv``, shaped like ccxt's ``template``."""
    u = sv.urls()
    if ccxt_id == "bybit":
        def url_for(path: tuple) -> str:
            if path and path[0] == "ws":
                return u["ws_private"] if "private" in path else u["ws_public"]
            return u["rest"]
    elif ccxt_id == "kraken":
        def url_for(path: tuple) -> str:
            if path and path[0] == "ws":
                return u["ws_private"] if "private" in path[-1].lower() else u["ws_public"]
            return u["rest"]  # ccxt adds /0/public/... itself
    else:
        raise ValueError(f"no ccxt wiring for {ccxt_id!r}")
    return _override(template, lambda path: url_for(path))


def ccxt_exchange(venue_cfg, sv: SandboxVenue, **config: Any):
    """A ``ccxt.pro`` exchange for config venue ``venue_cfg`` talking to sandbox venue ``sv``.

    ``config`` goes to the exchange's constructor (e.g. ``timeout`` in ms, ``options``)."""
    import ccxt.pro as ccxtpro

    ccxt_id = venue_cfg.ccxt_id
    options = {"defaultType": "spot"}
    if ccxt_id == "bybit":
        options["fetchMarkets"] = {"types": ["spot"]}
    options.update(config.pop("options", {}))
    ex = getattr(ccxtpro, ccxt_id)({"apiKey": sv.api_key, "secret": sv.secret, "options": options, **config})
    ex.urls["api"] = sandbox_urls(ccxt_id, sv, ex.urls["api"])
    return ex


def alpaca_clients(sv: SandboxVenue, feed: str = "iex") -> dict[str, Any]:
    """alpaca-py's ``TradingClient``, ``TradingStream`` and ``StockDataStream`` pointed at the Alpaca
    emulator ``sv`` (keys: 'trading', 'trade_stream', 'data_stream')."""
    from alpaca.trading.client import TradingClient
    from alpaca.trading.stream import TradingStream
    from alpaca.data.live.stock import StockDataStream
    from alpaca.data.enums import DataFeed

    u = sv.urls()
    return {
        "trading": TradingClient(sv.api_key, sv.secret, paper=True, url_override=u["rest"]),
        "trade_stream": TradingStream(sv.api_key, sv.secret, paper=True, url_override=u["ws_trading"]),
        "data_stream": StockDataStream(sv.api_key, sv.secret, feed=DataFeed(feed), url_override=u["ws_data"]),
    }
