"""The venue's books of account in a sandbox: per API key, balances, orders and fills.

This is the *venue's* truth (what a real exchange would hold), not what a client knows. Amounts are
float64: quote currency for cash, tokens (shares at a broker) for the base asset.

Spot rules as the real venues apply them: a resting buy locks ``price * qty`` of the quote currency,
a resting sell locks ``qty`` of the base; a fill moves both legs and releases its part of the lock;
the fee is charged in the currency the venue charges it in (``Fill.fee_currency``; its value in
quote currency at the fill price is ``Fill.fee_quote``, the backtest's fee of the same fill).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Balance:
    total: float = 0.0   # the currency's balance
    locked: float = 0.0  # held by open orders

    @property
    def free(self) -> float:
        return self.total - self.locked


@dataclass
class Fill:
    """One fill of one of our orders, as the venue records it."""

    trade_id: str
    order_id: str
    client_id: str
    symbol: str          # the venue's market id
    side: str            # 'buy' / 'sell'
    price: float         # quote ccy
    qty: float           # tokens
    fee: float           # in fee_currency; negative = rebate
    fee_currency: str
    fee_quote: float     # the same fee in quote ccy (= the matching engine's fee)
    fee_rate: float      # fraction of notional
    maker: bool
    ts: int              # data ns UTC when it happened
    seq: int             # venue-wide execution sequence (cursor for "my trades since")


@dataclass
class Order:
    """One of our orders at the venue."""

    order_id: str
    client_id: str
    key: str = field(repr=False)  # API key of its account (never logged)
    symbol: str          # the venue's market id
    side: str            # 'buy' / 'sell'
    order_type: str      # 'limit' / 'market'
    tif: str             # 'GTC' / 'IOC' / 'PostOnly' (venue neutral names)
    price: float         # limit, quote ccy (0 for a market order)
    qty: float           # tokens
    created: int         # data ns
    updated: int         # data ns
    status: str = "new"  # new / partially_filled / filled / cancelled / rejected
    filled: float = 0.0
    cost: float = 0.0    # sum of price * qty of its fills, quote ccy
    fee: float = 0.0     # sum of fees, in fee_currency
    fee_currency: str = ""
    reason: str = ""     # why cancelled / rejected (backtest.orders reason names, or a venue check)
    extended_hours: bool = False
    slot: int = -1       # sim slot while live
    sim_id: int = -1
    locked: float = 0.0  # still locked for it (quote ccy for a buy, tokens for a sell)
    fills: list[Fill] = field(default_factory=list)

    @property
    def leaves(self) -> float:
        return 0.0 if self.is_final else max(self.qty - self.filled, 0.0)

    @property
    def avg_price(self) -> float:
        return self.cost / self.filled if self.filled > 0 else 0.0

    @property
    def is_final(self) -> bool:
        return self.status in ("filled", "cancelled", "rejected")


class Account:
    """One API key's account at one venue."""

    def __init__(self, key: str, secret: str, balances: dict[str, float]):
        self.key = key
        self.secret = secret
        self.balances: dict[str, Balance] = {c: Balance(float(v)) for c, v in balances.items()}
        self.orders: dict[str, Order] = {}           # by order id, in creation order
        self.by_client_id: dict[str, Order] = {}
        self.fills: list[Fill] = []
        self.frozen = False                           # the venue defaulted: nothing moves any more

    def __repr__(self) -> str:  # the secret never appears in logs or exceptions
        return f"Account(key=***, currencies={sorted(self.balances)})"

    def balance(self, ccy: str) -> Balance:
        return self.balances.setdefault(ccy, Balance())

    def lock(self, ccy: str, amount: float) -> None:
        self.balance(ccy).locked += amount

    def unlock(self, ccy: str, amount: float) -> None:
        b = self.balance(ccy)
        b.locked = max(b.locked - amount, 0.0)
        if b.locked < 1e-12:
            b.locked = 0.0
