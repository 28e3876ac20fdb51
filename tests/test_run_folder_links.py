"""A symlinked run or stage folder (issue 26): runs are written through a user's link to the run folder,
and nothing is ever deleted through a link: a replaced stage link is removed as a link."""

from __future__ import annotations

import json

from helpers import cli, write_recipe

RECIPE = """name: linked
model: {model}
output_dir: {runs}
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}}}
      args: {{max_steps: 1}}
"""


def test_a_linked_run_folder_is_written_through_and_a_linked_stage_is_replaced_as_a_link(tmp_path, tiny_model):
    elsewhere = tmp_path / "big-disk" / "linked"
    elsewhere.mkdir(parents=True)
    (elsewhere / "notes.txt").write_text("the user's own file\n")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "linked").symlink_to(elsewhere, target_is_directory=True)
    recipe = write_recipe(tmp_path / "recipe.yaml", RECIPE.format(model=tiny_model, runs=tmp_path / "runs"))

    first = cli("run", str(recipe))
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "runs" / "linked").is_symlink(), "the user's link stays a link"
    assert (elsewhere / "sft" / "results.json").is_file() and (elsewhere / "report.md").is_file()

    # A stage folder linked to a folder of the user's: --overwrite replaces the link, never what it points to.
    kept = tmp_path / "models" / "my-sft"
    kept.mkdir(parents=True)
    (kept / "weights.bin").write_bytes(b"precious")
    (elsewhere / "sft").rename(tmp_path / "old-sft")
    (elsewhere / "sft").symlink_to(kept, target_is_directory=True)
    again = cli("run", str(recipe), "--overwrite")
    assert again.returncode == 0, again.stderr
    assert not (elsewhere / "sft").is_symlink() and (elsewhere / "sft" / "results.json").is_file()
    assert (kept / "weights.bin").read_bytes() == b"precious" and sorted(p.name for p in kept.iterdir()) == ["weights.bin"]
    assert (elsewhere / "notes.txt").read_text() == "the user's own file\n"
    assert not list(elsewhere.glob(".*old")), "the moved-aside link is gone"
    assert json.loads((elsewhere / "run.json").read_text())["status"] == "completed"
