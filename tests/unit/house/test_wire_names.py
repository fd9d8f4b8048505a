"""Every queue, task, job and event name is written once, in ``collector/wire.py``.

The shipped code (collector/, tasks/, workers/, celeryconfig.py) refers to the wire's
constants; a string literal that spells a wire name elsewhere is a second copy that can
drift. Docstrings are prose and are not read.
"""

from __future__ import annotations

import ast
from pathlib import Path

from collector import wire
from tests.support.paths import ROOT

SHIPPED = ("collector", "tasks", "workers")
# Calls whose arguments name a job or a task: a job name passed to them comes from the wire.
NAMING_CALLS = {"submit", "job", "send", "register", "send_task"}


def _wire_values() -> tuple[set[str], set[str]]:
    """(names that must never be spelled elsewhere, job and method names of the wire)."""
    names: set[str] = set()
    jobs: set[str] = set()
    for value in vars(wire).values():
        if isinstance(value, str) and not value.startswith("\n"):
            names.add(value)
        elif isinstance(value, tuple):
            names.update(v for v in value if isinstance(v, str))
        elif isinstance(value, type) and value.__module__ == wire.__name__:
            for attr, member in vars(value).items():
                if attr.isupper() and isinstance(member, str):
                    (names if ("." in member or "/" in member) else jobs).add(member)
    names.discard(wire.__doc__)
    # The default queue's name is also the project's package and Celery app name; nothing
    # is sent to that queue on purpose, so its spelling elsewhere is not a second copy.
    names.discard(wire.DEFAULT_QUEUE)
    # ``ping`` is a method name like a job's: a word elsewhere.
    names.discard(wire.PING)
    jobs.add(wire.PING)
    return names, jobs


NAMES, JOB_NAMES = _wire_values()
# Task and queue names start "<endpoint>.".
PREFIXES = tuple(f"{name}." for name in NAMES if "." not in name and "/" not in name)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def stray_names(path: Path) -> list[str]:
    """``file:line: 'literal'`` for each wire name spelled in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree)
    in_naming_call: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) in NAMING_CALLS:
            in_naming_call.update(id(arg) for arg in node.args)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        text = node.value
        if id(node) in skip:
            continue
        stray = text in NAMES or text.startswith(PREFIXES) or (
            id(node) in in_naming_call and text in JOB_NAMES)
        if stray:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}")
    return found


def shipped_files() -> list[Path]:
    files = [p for pkg in SHIPPED for p in sorted((ROOT / pkg).rglob("*.py"))]
    files.append(ROOT / "celeryconfig.py")
    return [p for p in files if p != ROOT / "collector" / "wire.py"]


def test_every_wire_name_is_spelled_only_in_the_wire_module():
    stray = [line for path in shipped_files() for line in stray_names(path)]
    assert stray == [], "use collector.wire's constants:\n" + "\n".join(stray)


def test_a_spelled_name_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr("tests.unit.house.test_wire_names.ROOT", tmp_path)
    module = tmp_path / "agent.py"
    module.write_text('"""hva-collector is fine in prose."""\n'
                      'QUEUE = f"hva-handle.{NODE}"\n'
                      'jobs.submit(session, QUEUE, "run_local_store")\n'
                      'state = "stop"  # a word, not a job name in a job call\n'
                      'publish("hva/instance_started")\n')
    assert stray_names(module) == ["agent.py:2: 'hva-handle.'",
                                   "agent.py:3: 'run_local_store'",
                                   "agent.py:5: 'hva/instance_started'"]
