"""The codes an order carries between the trader core and a venue, simulated or real.

One vocabulary for both sides of the boundary: the trader core's actions and working orders, the
simulated venues' order table (backtest.orders) and messages (backtest.pending), and the live order
manager's state machine all use these numbers.

Order states (a working order in the core as the reports told us; an order at a simulated venue as
it is there)::

    FREE -> PENDING_NEW -> OPEN -> PENDING_CANCEL -> FILLED | CANCELLED | REJECTED -> FREE
"""

from __future__ import annotations

# order states
FREE = 0
PENDING_NEW = 1     # sent, not yet known to rest
OPEN = 2            # resting (partly filled when leaves < qty)
PENDING_CANCEL = 3  # resting with our cancel in flight: it can still fill
FILLED = 4
CANCELLED = 5
REJECTED = 6
STATE_NAMES = ("free", "pending_new", "open", "pending_cancel", "filled", "cancelled", "rejected")

# time in force
GTC = 0  # rests until filled or cancelled
IOC = 1  # takes what it can at arrival, the rest is cancelled (a market order: IOC with price +inf / 0)

# what an order is for
TAG_QUOTE = 0
TAG_HEDGE = 1
TAG_ARB = 2
TAG_NAMES = ("quote", "hedge", "arb")

# actions (the core's output) and the messages that carry them to a venue
ACT_NEW = 1     # a new order
ACT_CANCEL = 2  # a cancel of one of our orders, by client id
# reports (a venue's answers, the core's input)
REP_ACK = 3            # the order rests at the venue
REP_FILL = 4           # a fill (price, qty, fee, maker flag)
REP_DONE = 5           # the order is finished at the venue (with its final state FILLED / CANCELLED / REJECTED)
REP_CANCEL_REJECT = 6  # our cancel was refused (e.g. a halted symbol); the order still rests
