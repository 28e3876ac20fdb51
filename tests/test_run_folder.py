"""A completed run folder is not replaced without --overwrite; the summary shows stage times."""

from __future__ import annotations

import io

import pytest
from helpers import write_recipe
from rich.console import Console

from rlhf_plug.errors import RecipeError
from rlhf_plug.recipe import load_recipe
from rlhf_plug.runner import run_recipe

SFT = """
name: done
model: {model}
output_dir: {out}
quantization: none
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}, limit: 16, eval_fraction: 0.25}}
      args: {{max_steps: 1, per_device_train_batch_size: 8, max_length: 64}}
"""


def test_a_completed_run_needs_resume_or_overwrite(tmp_path, tiny_model, registries, pm):
    recipe = write_recipe(tmp_path / "recipe.yaml", SFT.format(model=tiny_model, out=tmp_path / "runs"))
    console = Console(file=io.StringIO())
    first = run_recipe(load_recipe(recipe, registries), registries, pm, console)
    assert first["sft"]["stage_seconds"] > 0
    run = tmp_path / "runs" / "done"
    record = (run / "run.json").read_text()
    with pytest.raises(RecipeError, match=r"already holds completed stages \(sft\): rerun with --resume .* or --overwrite"):
        run_recipe(load_recipe(recipe, registries), registries, pm, console)
    assert (run / "run.json").read_text() == record, "the record of the good run is untouched"
    again = run_recipe(load_recipe(recipe, registries), registries, pm, console, overwrite=True)
    assert again["sft"]["steps"] == 1 and (run / "run.json").read_text() != record


def test_summary_is_one_row_per_stage_with_its_time():
    from rlhf_plug.cli.commands import _print_summary

    out = io.StringIO()
    results = {
        "sft": {"eval_loss_before": 2.5, "train_loss": 2.0, "eval_loss_after": 1.25, "steps": 16, "stage_seconds": 125.0},
        "reward": {"eval_rm_accuracy_before": 0.5, "eval_rm_accuracy_after": 0.625, "steps": 24, "stage_seconds": 42.0},
    }
    _print_summary(Console(file=out, width=150), results)
    text = out.getvalue()
    assert "loss 2.5 → 1.25" in text and "2m05s" in text
    assert "rm_accuracy 0.5 → 0.625" in text and "42s" in text
    assert "train_loss" not in text, "only before → after figures"
