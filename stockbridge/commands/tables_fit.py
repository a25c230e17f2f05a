"""Terminal tables that fit a given width (100 columns) without cutting a name or a number.

Headers are short (the long names and units go in a legend printed under the tables), cells never
wrap or get an ellipsis, and when the columns still do not fit they are split over several tables
that repeat the row label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

WIDTH = 100


@dataclass(frozen=True)
class Col:
    key: str
    header: str
    meaning: str = ""  # legend text: long name and unit
    justify: str = "right"  # numbers right, words left


def _cell_width(header: str, cells: Sequence[str]) -> int:
    return max([len(header), *map(len, cells)])


def fitted_tables(title: str, label: str, rows: Mapping[str, Mapping[str, str]], cols: Sequence[Col],
                  width: int = WIDTH) -> list[Table]:
    """``rows``: row label -> {column key: formatted cell}. Returns one or more tables, each at most
    ``width`` wide, columns in order, every cell shown whole."""
    label_w = _cell_width(label, list(rows))
    # a rich table with box borders: 1 border + 1 pad on each side per column, plus the closing border
    budget = width - 1 - (label_w + 3)
    groups: list[list[Col]] = [[]]
    used = 0
    for col in cols:
        w = _cell_width(col.header, [r.get(col.key, "-") for r in rows.values()]) + 3
        if groups[-1] and used + w > budget:
            groups.append([])
            used = 0
        groups[-1].append(col)
        used += w
    tables = []
    for k, group in enumerate(groups):
        suffix = f" ({k + 1}/{len(groups)})" if len(groups) > 1 else ""
        table = Table(title=title + suffix, title_justify="left", min_width=min(len(title + suffix), width))
        table.add_column(label, no_wrap=True)
        for col in group:
            table.add_column(col.header, justify=col.justify, no_wrap=True)
        for name, row in rows.items():
            table.add_row(name, *(row.get(col.key, "-") for col in group))
        tables.append(table)
    return tables


def legend(cols: Sequence[Col], console: Console, width: int = WIDTH) -> None:
    """``header = meaning`` for every column whose header is not self-explanatory, wrapped to ``width``."""
    items = [f"{c.header} = {c.meaning}" for c in cols if c.meaning]
    if items:
        console.print("  " + "; ".join(items), style="dim", width=min(console.width, width))


def fmt_value(v, digits: int = 2) -> str:
    """A table cell: "-" for a missing value, floats with thousands separators and ``digits`` decimals."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"
