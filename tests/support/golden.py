"""The answer documents read from the varied world (``workers.demo.world.golden``), pinned as
golden JSON files in ``tests/golden/``.

``documents(session, world)`` answers every pinned call on that world as JSON text exactly as
it is built (keys in their order), with the values that differ between runs normalised: ids
(``i-#3``; the bare 8-character part as ``#3``) numbered by first appearance, and times
that are not fixed by the world (``created_at``, ``updated_at``, ...) as ``<now>``.
Integer primary keys are kept: the world is built in an empty database.

Regenerate the files after a deliberate change of a document:
``python -m tests.support.golden`` (writes ``tests/golden/*.json``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from collector import ids
from collector.services import alarm, hva, hva_netfilter, hva_network, monitoring, sta
from workers.demo.world.golden import build

GOLDEN_DIR = Path(__file__).parent.parent / "golden"


def calls(world: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Golden file name -> the calls whose answers it pins (function, arguments...)."""
    return {
        "get_instance": [(hva.get_instance, i) for i in world["instances"]],
        "get_volume": [(sta.get_volume, v) for v in world["volumes"]],
        "get_nic": [(hva_network.get_nic, v) for v in world["vifs"] + world["others"]],
        "get_network": [(hva_network.get_network, n) for n in world["networks"]]
        + [(hva_network.get_networks,)],
        "monitor": [(f, n) for n in world["nodes"] for f in (
            monitoring.get_instance_monitor_data, monitoring.get_resource_monitor_data,
            monitoring.get_resource_monitor_ids)],
        "alarm": [(alarm.get_alarm, a) for a in world["alarms"]]
        + [(alarm.get_alarms, world["alarms"][::-1]),
           (alarm.get_resource_alarms, world["instances"]),
           (alarm.get_resource_alarms, world["instances"][0])]
        + [(alarm.get_log_alarms, n) for n in world["nodes"]],
        "sta": [(sta.get_available_volumes, n) for n in world["storage_nodes"]]
        + [(sta.get_image, i) for i in world["images"]]
        + [(sta.get_backup_object, b) for b in world["backup_objects"]]
        + [(sta.get_snapshot, world["snapshot"])],
        "netfilter": [(hva_netfilter.get_netfilter_data, n) for n in world["nodes"]]
        + [(hva_network.get_dhcp_conf, n) for n in world["networks"]]
        + [(hva_netfilter.get_security_groups_of_vnic, v) for v in world["vifs"][:2]]
        + [(hva_netfilter.get_netfilter_security_group, g, world["nodes"][0])
           for g in world["groups"]],
    }


_PREFIXES = "|".join(sorted(ids.PREFIXES, key=len, reverse=True))
_CANONICAL = re.compile(rf"\b({_PREFIXES})-([a-z0-9]{{8}})\b")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")


def normalise(text: str) -> str:
    """Ids numbered by first appearance (bare 8-character parts too); run-dependent times
    as ``<now>`` (times of the world, in 2001, are kept)."""
    numbers: dict[str, int] = {}
    for match in _CANONICAL.finditer(text):
        numbers.setdefault(match.group(2), len(numbers) + 1)
    if numbers:
        raw = re.compile(rf"\b({'|'.join(map(re.escape, numbers))})\b")
        text = raw.sub(lambda m: f"#{numbers[m.group(1)]}", text)
    return _TIME.sub(lambda m: m.group(0) if m.group(0).startswith("2001-") else "<now>", text)


def documents(session: Session, world: dict[str, Any]) -> dict[str, str]:
    """Golden file name -> the normalised JSON of its calls' answers, one per line."""
    out = {}
    for name, pinned in calls(world).items():
        lines = []
        for fn, *args in pinned:
            session.expire_all()  # each call reads the database, as a fresh worker would
            answer = fn(session, *args)
            lines.append(json.dumps({"call": fn.__name__, "args": args, "answer": answer}))
        out[name] = normalise("\n".join(lines)) + "\n"
    return out


def write_golden(url: str | None = None) -> None:
    """Build the world in an empty SQLite database and write ``tests/golden/*.json``."""
    import tempfile

    from collector.db import unit_of_work
    from collector.db.migrate import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite:///{tmp}/golden.sqlite3"
        upgrade(url)
        with unit_of_work(url) as session:
            texts = documents(session, build(session))
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name, text in texts.items():
        (GOLDEN_DIR / f"{name}.json").write_text(text)
        print(f"wrote {GOLDEN_DIR / name}.json ({len(text)} bytes)")


if __name__ == "__main__":
    write_golden()
