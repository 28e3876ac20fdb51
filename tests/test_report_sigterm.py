"""SIGTERM while the final report is written (issue 26): no report and no temporary folder are left,
run.json says the run was interrupted, the command says so and exits 143; --resume writes the report."""

from __future__ import annotations

import json

from helpers import cli, write_recipe

PLUGIN = '''
import os
import signal

from rlhf_plug import hookimpl


@hookimpl
def rlhf_report_sections(stage, report):
    path, markdown = report.image("half.png", "a plot being drawn")
    path.write_bytes(b"half a plot")
    if not os.environ.get("NO_SIGTERM"):
        os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, while the report is being written
    return [("late section", markdown)]
'''

RECIPE = """name: term
model: {model}
output_dir: {runs}
plugins: [sigterm_in_report]
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}}}
      args: {{max_steps: 2}}
"""


def test_sigterm_while_the_report_is_written_leaves_none_and_says_so(tmp_path, tiny_model):
    (tmp_path / "sigterm_in_report.py").write_text(PLUGIN, encoding="utf-8")
    recipe = write_recipe(tmp_path / "recipe.yaml", RECIPE.format(model=tiny_model, runs=tmp_path / "runs"))
    root = tmp_path / "runs" / "term"
    proc = cli("run", str(recipe), PYTHONPATH=str(tmp_path))
    assert proc.returncode == 143, proc.stderr
    assert "stopped on SIGTERM while the report was written (every stage is complete)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (root / "report.md").exists()
    assert not list(root.glob(".*partial")) and not list(root.glob(".*tmp")), sorted(p.name for p in root.iterdir())
    info = json.loads((root / "run.json").read_text())
    assert (info["status"], info["completed"]) == ("interrupted", ["sft"]), info
    assert "while the report was written" in info["error"]

    again = cli("run", str(recipe), "--resume", PYTHONPATH=str(tmp_path), NO_SIGTERM="1")
    assert again.returncode == 0, again.stderr
    assert "late section" in (root / "report.md").read_text()
    assert json.loads((root / "run.json").read_text())["status"] == "completed"
