"""What an operator reads in a terminal: tables (rich), for the CLI and the demo."""

from __future__ import annotations

import sys


def table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    """Print a table whose first column reads left and the others right."""
    from rich.console import Console
    from rich.table import Table

    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column, justify="left" if column == columns[0] else "right")
    for row in rows:
        grid.add_row(*("-" if v is None else str(v) for v in row))
    Console(width=None if sys.stdout.isatty() else 150).print(grid)


def _used(figure: dict[str, int] | None) -> str | None:
    if not figure:
        return None
    total = figure["total"]
    share = f" ({100 * figure['used'] / total:.0f}%)" if total else ""
    return f"{figure['used']}/{total}{share}"


def ratio_cell(node: dict, kind: str) -> str | None:
    """``physical x ratio`` of a host's cpu (``kind`` "cpu") or memory ("ram"), ``(host)``
    when the ratio is the host's own rather than the configured default."""
    ratio = node.get("allocation_ratios", {}).get(kind)
    if ratio is None:
        return None
    physical = node["physical"]["cpu_cores" if kind == "cpu" else "memory_mb"]
    return f"{physical} x {ratio['ratio']:g}{' (host)' if ratio['source'] == 'host' else ''}"


def print_nodes(nodes: list[dict]) -> None:
    """The node table (also the demo's capacity table): used of what each node offers, and
    for hosts the physical cpu and memory times their allocation ratios."""
    table("nodes", ["node", "kind", "state", "last heartbeat", "cpu cores", "cpu x ratio",
                     "memory MB", "memory x ratio", "disk MB"],
           [[n["node_id"], n["kind"], n["state"], (n["last_heartbeat"] or "-")[11:19],
             _used(n.get("cpu_cores")), ratio_cell(n, "cpu"), _used(n.get("memory_mb")),
             ratio_cell(n, "ram"), _used(n.get("disk_mb"))]
            for n in nodes])
