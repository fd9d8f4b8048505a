"""No dead code: vulture, at its default confidence, finds nothing in the project.

The paths and what frameworks read are in ``[tool.vulture]`` of pyproject.toml and in the
whitelist tests/support/framework_names.py, so ``vulture`` run from the project root and
this test see the same. What vulture finds is either deleted or, when a framework reads
it, named there.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from vulture import Vulture
from vulture.config import make_config
from vulture.utils import ExitCode

from tests.support.paths import ROOT


def _config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as toml:
        return make_config([], tomlfile=toml)


def _scan(paths: list[Path]) -> Vulture:
    config = _config()
    vulture = Vulture(ignore_names=config["ignore_names"],
                      ignore_decorators=config["ignore_decorators"])
    vulture.scavenge(paths, exclude=config["exclude"])
    assert vulture.exit_code == ExitCode.NoDeadCode, "vulture could not read every file"
    return vulture


def test_vulture_finds_no_dead_code():
    config = _config()
    assert {"collector", "tasks", "workers", "celeryconfig.py", "tests", "bench"} <= set(
        config["paths"])
    vulture = _scan([ROOT / path for path in config["paths"]])
    found = vulture.get_unused_code(min_confidence=config["min_confidence"])
    report = "\n".join(item.get_report() for item in found)
    assert not found, (
        "dead code (delete it; if a framework reads it, name it in [tool.vulture] of "
        f"pyproject.toml or in tests/support/framework_names.py):\n{report}")


def test_the_whitelist_names_only_what_exists():
    # Written as the real objects: a name deleted or renamed fails here, not silently.
    importlib.import_module("tests.support.framework_names")


def test_an_unused_function_is_found(tmp_path):
    module = tmp_path / "sample.py"
    module.write_text(
        "import pytest\n\n\n"
        "def used():\n    return 1\n\n\n"
        "def forgotten():\n    return 2\n\n\n"
        "@pytest.fixture\n"
        "def injected():\n    return 3\n\n\n"
        "print(used())\n")
    found = _scan([module]).get_unused_code(min_confidence=_config()["min_confidence"])
    # The project's settings hide what pytest reads, not an unused function.
    assert [(item.typ, item.name) for item in found] == [("function", "forgotten")]
