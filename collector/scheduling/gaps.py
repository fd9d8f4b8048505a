"""The first free address in a range, found by the database in one indexed query.

Leased addresses are rows of a table with a unique index on (scope..., address)
(``ip_leases`` by network, ``mac_leases``). The answer is the range's start when it is
free, else one past the end of the leased run that starts there: the lowest leased
address whose successor is free. Only that run is visited (an index probe per row), never
all leases.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, ColumnElement, exists, func, literal, select
from sqlalchemy.orm import Session


def first_free(session: Session, column: Any, lo: int, hi: int,
               scope: tuple[tuple[str, Any], ...] = (), descending: bool = False) -> int | None:
    """Lowest (``descending``: highest) value of ``column`` in [lo, hi] with no row, or None.

    ``scope`` pairs (column name, value) restrict the rows (e.g. the network).
    """
    if lo > hi:
        return None
    table = column.table
    start_rows, run, after = table.alias("start_rows"), table.alias("run"), table.alias("after")

    def scoped(alias: Any) -> list[ColumnElement[bool]]:
        return [alias.c[name] == value for name, value in scope]

    key = column.key
    step, start = (-1, hi) if descending else (1, lo)
    start_free = (select(literal(start, BigInteger))
                  .where(~exists().where(*scoped(start_rows), start_rows.c[key] == start))
                  .scalar_subquery())
    within = (run.c[key] <= hi, run.c[key] > lo) if descending else (run.c[key] >= lo,
                                                                     run.c[key] < hi)
    end_of_run = (select(run.c[key] + step)
                  .where(*scoped(run), *within,
                         ~exists().where(*scoped(after), after.c[key] == run.c[key] + step))
                  .order_by(run.c[key].desc() if descending else run.c[key])
                  .limit(1).scalar_subquery())
    value = session.scalar(select(func.coalesce(start_free, end_of_run)))
    return None if value is None else int(value)
