"""What every bench shares: the machine's load, and where its figures go (JSON in
``bench/results/``)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def load() -> str:
    """The load average (1, 5, 15 min): compare runs made at a similar one."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def write_report(report: dict[str, Any], path: str | None, prefix: str = "") -> Path:
    """Print the load at the end and write ``report`` to ``path`` (default: a new file in
    ``bench/results/`` named by the time)."""
    report["machine"]["load_at_end"] = os.getloadavg()
    print(f"\nload at the end {load()}")
    target = Path(path) if path else \
        RESULTS / f"{prefix}{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=1))
    print(f"figures written to {target}")
    return target
