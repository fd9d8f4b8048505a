"""Allocation ratios: what a host offers placement is its physical cpu and memory times a
ratio (nova's ``cpu_allocation_ratio`` / ``ram_allocation_ratio``, CloudStack's
over-provisioning factors).

A ratio is kept as an integer number of thousandths (``SCALE``): ``physical x ratio`` is then
integer arithmetic, floored, and the same in Python, SQLite and PostgreSQL (in floating point
100 x 1.15 would offer 114). A host's own ratio (``host_nodes.cpu_allocation_ratio_milli`` /
``ram_allocation_ratio_milli``) wins; NULL means the scheduler configuration's default
(``cpu_allocation_ratio`` / ``ram_allocation_ratio``, 1.0 unless configured). Local disk has
no ratio (docs/reference.md, "Allocation ratios", says why).
"""

from __future__ import annotations

import math

SCALE = 1000  # a ratio is stored in thousandths
MAX_RATIO = 100  # a larger one is a typo (15 for 1.5), not a plan
DEFAULT_MILLI = SCALE  # 1.0: a host offers what it has


def ratio_milli(value: object) -> int:
    """``value`` (a number) in thousandths; ValueError saying why for anything but a number
    above 0, at most ``MAX_RATIO``, with at most three decimals."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {value!r:.40}")
    if not math.isfinite(value) or not 0 < value <= MAX_RATIO:
        raise ValueError(f"must be above 0 and at most {MAX_RATIO}, got {value!r}")
    milli = round(value * SCALE)
    # The product of a float is not exact (1.15 * 1000 = 1149.99...): near enough is exact.
    if milli == 0 or abs(value * SCALE - milli) > 1e-6:
        raise ValueError(f"must have at most 3 decimals, got {value!r}")
    return milli


def ratio_of(milli: int) -> float:
    """The ratio a number of thousandths stands for (2000 -> 2.0)."""
    return milli / SCALE


def offered(physical: int, milli: int) -> int:
    """What a host with ``physical`` units offers at a ratio of ``milli`` thousandths."""
    return physical * milli // SCALE
