"""The answer documents stay byte-identical: every pinned call on a varied world answers
exactly the JSON recorded in ``tests/golden/`` (keys in order, values and their types)."""

from __future__ import annotations

import difflib

import pytest

from collector.db import dispose_engines, unit_of_work
from collector.db.migrate import upgrade
from tests.support import golden as golden_world


def _answers(url: str) -> dict[str, str]:
    upgrade(url)
    try:
        with unit_of_work(url) as session:
            return golden_world.documents(session, golden_world.build(session))
    finally:
        dispose_engines()


def _first_difference(name: str, expected: str, got: str) -> str:
    for number, (want, have) in enumerate(zip(expected.splitlines(), got.splitlines(),
                                              strict=False), 1):
        if want != have:
            diff = difflib.ndiff(want.replace(", ", ",\n").splitlines(),
                                 have.replace(", ", ",\n").splitlines())
            changed = [line for line in diff if line[:1] in "+-?"][:20]
            return f"{name}.json line {number}:\n" + "\n".join(changed)
    return f"{name}.json: {len(expected.splitlines())} lines expected, {len(got.splitlines())} got"


def check_against_golden(url: str) -> None:
    answers = _answers(url)
    assert sorted(answers) == sorted(p.stem for p in golden_world.GOLDEN_DIR.glob("*.json"))
    problems = [_first_difference(name, (golden_world.GOLDEN_DIR / f"{name}.json").read_text(),
                                  text)
                for name, text in answers.items()
                if text != (golden_world.GOLDEN_DIR / f"{name}.json").read_text()]
    assert not problems, "\n\n".join(problems)


def test_documents_match_the_golden_files_on_sqlite(tmp_path):
    check_against_golden(f"sqlite:///{tmp_path / 'golden.sqlite3'}")


@pytest.mark.integration
def test_documents_match_the_golden_files_on_postgresql(postgres_server):
    check_against_golden(postgres_server.create_database("golden_documents"))
