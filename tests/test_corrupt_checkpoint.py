"""A damaged checkpoint (issue 26): `--resume` passes over a cut-short last checkpoint to an earlier whole one
with a notice, exits 2 naming the file when none is whole, and a planted pickle is one line, not a traceback."""

from __future__ import annotations

import json
import pickle

import pytest
from helpers import assert_one_line_error, cli, write_recipe
from test_stage_resume import StopAt, run

RECIPE = """
name: damaged
model: {model}
output_dir: {out}
quantization: none
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}, limit: 24, eval_fraction: 0.25}}
      args: {{max_steps: 5, per_device_train_batch_size: 4, max_length: 64, save_steps: 1, save_total_limit: 2}}
"""


@pytest.fixture
def interrupted(tmp_path, tiny_model, registries, pm):
    """sft interrupted at step 3: checkpoints 1 and 2 are kept."""
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format(model=tiny_model, out=tmp_path / "runs"))
    with pytest.raises(KeyboardInterrupt):
        run(recipe, registries, pm, StopAt("sft", 3))
    trainer = tmp_path / "runs" / "damaged" / ".sft.partial" / "trainer"
    assert sorted(p.name for p in trainer.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    return recipe, trainer


def cut_short(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_cut_short_last_checkpoint_falls_back_to_the_earlier_one(interrupted, tmp_path):
    recipe, trainer = interrupted
    cut_short(trainer / "checkpoint-2" / "adapter_model.safetensors")
    proc = cli("run", str(recipe), "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "checkpoint-2/adapter_model.safetensors is cut short" in proc.stdout
    assert "resuming from the earlier checkpoint-1" in proc.stdout and "resuming from checkpoint checkpoint-1 (step 1)" in proc.stdout
    assert json.loads((tmp_path / "runs" / "damaged" / "sft" / "results.json").read_text())["steps"] == 5


def test_no_whole_checkpoint_is_one_line_naming_the_file(interrupted):
    recipe, trainer = interrupted
    cut_short(trainer / "checkpoint-2" / "adapter_model.safetensors")
    cut_short(trainer / "checkpoint-1" / "optimizer.pt")
    assert_one_line_error(cli("run", str(recipe), "--resume"), "cannot resume:",
                          "checkpoint-2/adapter_model.safetensors is cut short", "no earlier checkpoint is whole")


class Planted:
    def __reduce__(self):
        return (print, ("code from a checkpoint ran",))


def test_a_planted_pickle_runs_no_code_and_is_one_line(interrupted, tmp_path):
    recipe, trainer = interrupted
    for checkpoint in trainer.glob("checkpoint-*"):
        (checkpoint / "rng_state.pth").write_bytes(pickle.dumps(Planted()))
    proc = cli("run", str(recipe), "--resume")
    assert_one_line_error(proc, "checkpoint-2: a file holds more than tensors", "refusing to load it")
    assert "code from a checkpoint ran" not in proc.stdout + proc.stderr
