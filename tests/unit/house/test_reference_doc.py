"""docs/reference.md's endpoint and error tables are generated from the live registry.

No servers: the registry is what importing the task modules builds.
"""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from collector.errors import ALL_ERRORS
from tasks import reference_doc
from tests.support.paths import ROOT
from workers.cli.main import main

# Listing the registry binds its tasks, which warns that Celery 6 drops the ``queue`` task
# attribute; the tables name the queue each task is served from, not how it is routed.
pytestmark = pytest.mark.filterwarnings(r"ignore:\s*The 'queue' task attribute")


def test_reference_doc_is_not_stale():
    # A fresh process: its registry holds exactly what the task modules register, nothing a
    # test in this process may have added.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    checked = subprocess.run(
        [sys.executable, "-m", "workers.cli", "docs", "reference", "--check",
         "--path", str(ROOT / "docs" / "reference.md")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr.strip() or checked.stdout.strip()


def test_every_registered_task_has_a_row_under_its_queue_and_celery_builtins_none():
    tasks = reference_doc.registered_tasks()
    assert tasks and not any(name.startswith("celery.") for name in tasks)
    markdown = reference_doc.endpoints_markdown()
    assert "`celery." not in markdown
    sections = {s.split("`", 2)[1]: s for s in markdown.split("### queue ")[1:]}
    for name, task in tasks.items():
        queue = task.queue or reference_doc.app.amqp.router.route({}, name)["queue"].name
        assert f"| `{name}` |" in sections[queue], name


def test_rpc_rows_show_the_domain_arguments_without_the_session():
    markdown = reference_doc.endpoints_markdown()
    row = next(line for line in markdown.splitlines()
               if line.startswith("| `hva-collector.get_instance` |"))
    assert "`(instance_id: str) -> dict[str, Any]`" in row
    assert "session" not in row
    assert "The instance document the agent loads" in row


def test_every_typed_error_has_a_row_with_its_docstring():
    markdown = reference_doc.errors_markdown()
    for name, cls in ALL_ERRORS.items():
        assert f"| `{name}` |" in markdown
        first = reference_doc.summary(cls.__dict__.get("__doc__"))
        assert first and first in markdown, name


def test_render_replaces_only_the_marked_regions():
    text = ("# Title\n\nprose before\n\n<!-- generated:endpoints -->\nold\n"
            "<!-- /generated:endpoints -->\n\nprose between\n\n<!-- generated:errors -->\n"
            "<!-- /generated:errors -->\nprose after\n")
    out = reference_doc.render(text, {"endpoints": "NEW TASKS", "errors": "NEW ERRORS"})
    assert out == ("# Title\n\nprose before\n\n<!-- generated:endpoints -->\nNEW TASKS\n"
                   "<!-- /generated:endpoints -->\n\nprose between\n\n<!-- generated:errors -->\n"
                   "NEW ERRORS\n<!-- /generated:errors -->\nprose after\n")
    assert reference_doc.render(out, {"endpoints": "NEW TASKS", "errors": "NEW ERRORS"}) == out


def test_check_fails_in_one_line_on_a_stale_copy_and_the_command_repairs_it(tmp_path):
    current = (ROOT / "docs" / "reference.md").read_text()
    stale = tmp_path / "reference.md"
    stale.write_text(current.replace("| `hva-collector.get_instance` |",
                                     "| `hva-collector.get_instance_gone` |"))
    runner = CliRunner()

    checked = runner.invoke(main, ["docs", "reference", "--check", "--path", str(stale)])
    assert checked.exit_code == 1
    assert len(checked.output.strip().splitlines()) == 1 and "stale" in checked.output

    rewritten = runner.invoke(main, ["docs", "reference", "--path", str(stale)])
    assert rewritten.exit_code == 0, rewritten.output
    assert runner.invoke(main, ["docs", "reference", "--check", "--path", str(stale)]).exit_code == 0
    assert stale.read_text().split("<!-- generated:errors -->")[0] == \
        current.split("<!-- generated:errors -->")[0]


def test_a_file_without_the_markers_is_refused_not_rewritten(tmp_path):
    plain = tmp_path / "reference.md"
    plain.write_text("# no markers here\n")
    result = CliRunner().invoke(main, ["docs", "reference", "--path", str(plain)])
    assert result.exit_code == 1
    assert "generated:endpoints" in result.output
    assert plain.read_text() == "# no markers here\n"
