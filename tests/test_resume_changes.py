"""`--resume` with a changed recipe (issue 26): refused in one line listing the keys that differ from what the
stage started with; `--allow-changes` continues and records both; stages not yet started may change freely."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import assert_one_line_error, cli, write_recipe
from test_stage_resume import StopAt, run

RECIPE = """
name: resume
model: {model}
output_dir: {out}
quantization: none
datasets:
  demos: {{use: builtin, with: {{name: demos}}, limit: 24, eval_fraction: 0.25}}
stages:
  - sft:
      data: {{use: demos}}
      args: {{max_steps: 5, per_device_train_batch_size: 4, max_length: 64, learning_rate: 1.0e-4}}
  - reward:
      data: {{use: builtin, with: {{name: rankings}}, limit: 12, eval_fraction: 0.25}}
      args: {{max_steps: 2, per_device_train_batch_size: 4, max_length: 64}}
"""


@pytest.fixture
def interrupted(tmp_path, tiny_model, registries, pm):
    """A run whose sft stage was interrupted at step 3, with its checkpoint of step 2 kept."""
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format(model=tiny_model, out=tmp_path / "runs"))
    with pytest.raises(KeyboardInterrupt):
        run(recipe, registries, pm, StopAt("sft", 3))
    assert (tmp_path / "runs" / "resume" / ".sft.partial" / "trainer" / "checkpoint-2").is_dir()
    return recipe


def test_resume_with_changed_settings_is_refused_naming_each_key(interrupted, tmp_path):
    proc = cli("run", str(interrupted), "--resume", "--set", "sft.args.learning_rate=2.0e-4",
               "--set", "datasets.demos.limit=20", "--set", "seed=7", "--set", "reward.args.max_steps=1")
    line = assert_one_line_error(proc, "--resume: the recipe differs from what", "sft (",
                                 "sft.args.learning_rate: 0.0001 -> 0.0002", "datasets.demos.limit: 24 -> 20",
                                 "seed: 42 -> 7", "--allow-changes")
    assert "reward" not in line.split("sft (")[1], "the reward stage has not started: it may change"
    partial = tmp_path / "runs" / "resume" / ".sft.partial"
    assert (partial / "trainer" / "checkpoint-2").is_dir(), "the refusal keeps the checkpoint"
    assert yaml.safe_load((partial / "recipe.yaml").read_text())["stages"][0]["sft"]["args"]["learning_rate"] == 1e-4


def test_allow_changes_continues_and_records_both(interrupted, tmp_path):
    proc = cli("run", str(interrupted), "--resume", "--allow-changes", "--set", "sft.args.learning_rate=2.0e-4",
               "--set", "reward.args.max_steps=1")
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "runs" / "resume"
    info = json.loads((root / "run.json").read_text())
    assert info["status"] == "completed"
    assert info["changed_on_resume"] == {"sft": ["sft.args.learning_rate: 0.0001 -> 0.0002"]}
    lr = lambda name: yaml.safe_load((root / "sft" / name).read_text())["stages"][0]["sft"]["args"]["learning_rate"]
    assert (lr("recipe.started.yaml"), lr("recipe.yaml")) == (1e-4, 2e-4)
    assert json.loads((root / "reward" / "results.json").read_text())["steps"] == 1


def test_a_completed_stage_refuses_changes(tmp_path, tiny_model):
    text = RECIPE.format(model=tiny_model, out=tmp_path / "runs").replace("max_steps: 5", "max_steps: 2")
    recipe = write_recipe(tmp_path / "r.yaml", text)
    assert cli("run", str(recipe)).returncode == 0
    proc = cli("run", str(recipe), "--resume", "--set", "sft.args.max_steps=3", "--set", "description=free to change")
    assert_one_line_error(proc, "sft (sft.args.max_steps: 2 -> 3)")
    same = cli("run", str(recipe), "--resume", "--set", "description=free to change")
    assert same.returncode == 0 and "already complete, skipped" in same.stdout, same.stderr


def test_allow_changes_without_resume_is_one_line(tmp_path, tiny_model):
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format(model=tiny_model, out=tmp_path / "runs"))
    assert_one_line_error(cli("run", str(recipe), "--allow-changes"), "--allow-changes goes with --resume")
