"""SFT and reward stages checkpoint mid-stage (TRL's Trainer) and `--resume` continues from the last one;
a torn last line of metrics.jsonl; SFT logs its final evaluation once; a killed run's run.json."""

from __future__ import annotations

import io
import json

import pytest
from helpers import read_jsonl, write_recipe
from rich.console import Console

from rlhf_plug import hookimpl
from rlhf_plug.recipe import load_recipe
from rlhf_plug.runner import run_recipe

RECIPE = """
name: resume
model: {model}
output_dir: {out}
quantization: none
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}, limit: 24, eval_fraction: 0.25}}
      args: {{max_steps: 5, per_device_train_batch_size: 4, max_length: 64}}
  - reward:
      data: {{use: builtin, with: {{name: rankings}}, limit: 12, eval_fraction: 0.25}}
      args: {{max_steps: 5, per_device_train_batch_size: 4, max_length: 64}}
"""


class StopAt:
    """Interrupts a stage (as Ctrl-C does) once it has logged training step ``step``; records the steps it sees."""

    def __init__(self, stage: str | None = None, step: int = 0):
        self.stage, self.step, self.seen = stage, step, {}

    @hookimpl
    def rlhf_step_end(self, stage, step, metrics):
        self.seen.setdefault(stage.name, []).append(step)
        if stage.name == self.stage and step == self.step:
            raise KeyboardInterrupt


def run(recipe, registries, pm, plugin, **kw) -> str:
    pm.register(plugin, name=f"stop-{id(plugin)}")
    out = io.StringIO()
    try:
        run_recipe(load_recipe(recipe, registries), registries, pm, Console(file=out, width=200), **kw)
    finally:
        pm.unregister(plugin)
    return out.getvalue()


def train_steps(stage_dir) -> list[int]:
    """The steps of the per-step training records (not the Trainer's end-of-training summary)."""
    return [r["step"] for r in read_jsonl(stage_dir / "metrics.jsonl") if r["split"] == "train" and "train_runtime" not in r]


@pytest.mark.parametrize("stage", ["sft", "reward"])
def test_an_interrupted_stage_resumes_from_its_last_checkpoint(stage, tmp_path, tiny_model, registries, pm):
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format(model=tiny_model, out=tmp_path / "runs"))
    root = tmp_path / "runs" / "resume"
    with pytest.raises(KeyboardInterrupt):
        run(recipe, registries, pm, StopAt(stage, 3))
    partial = root / f".{stage}.partial"
    # Step 3 is logged before its checkpoint is written (Trainer: log, then save): the last one is step 2.
    assert sorted(p.name for p in (partial / "trainer").glob("checkpoint-*")) == ["checkpoint-2"], "save_total_limit 1"
    assert json.loads((root / "run.json").read_text())["status"] == "interrupted"

    seen = StopAt()
    text = run(recipe, registries, pm, seen, resume=True)
    assert "resuming from checkpoint checkpoint-2 (step 2)" in text
    assert seen.seen[stage][0] == 3, f"training continued at step 3, not from scratch: {seen.seen}"
    results = json.loads((root / stage / "results.json").read_text())
    assert results["steps"] == 5
    assert train_steps(root / stage) == [1, 2, 3, 4, 5], "the records after the checkpoint were dropped and redone"
    evals = [r["step"] for r in read_jsonl(root / stage / "metrics.jsonl") if r["split"] == "eval"]
    assert evals == [0, 5], "one evaluation before and one after training"
    assert not (root / stage / "trainer").exists(), "checkpoints removed once the stage is in place"
    assert not list(root.glob(".*partial")), "no temporary folders left"


class StopAfterFinalEvaluation(StopAt):
    """Interrupts SFT at its final evaluation: the checkpoint of its last step is already written."""

    @hookimpl
    def rlhf_evaluate(self, stage, step, metrics):
        if stage.name == "sft" and step > 0:
            raise KeyboardInterrupt


def test_a_stage_cut_after_its_last_step_resumes_without_training_more(tmp_path, tiny_model, registries, pm):
    # 4 steps of an epoch of 5 (18 rows, batch 4): transformers would resume with a fifth step.
    text = RECIPE.format(model=tiny_model, out=tmp_path / "runs").replace("max_steps: 5", "max_steps: 4", 1)
    recipe = write_recipe(tmp_path / "r.yaml", text)
    root = tmp_path / "runs" / "resume"
    with pytest.raises(KeyboardInterrupt):
        run(recipe, registries, pm, StopAfterFinalEvaluation())
    assert (root / ".sft.partial" / "trainer" / "checkpoint-4").is_dir()
    seen = StopAt()
    text = run(recipe, registries, pm, seen, resume=True)
    assert "resuming from checkpoint checkpoint-4 (step 4)" in text
    results = json.loads((root / "sft" / "results.json").read_text())
    assert results["steps"] == 4, "no fifth step after resuming at max_steps"
    assert train_steps(root / "sft") == [1, 2, 3, 4]
    assert (root / "sft" / "adapter").is_dir()


def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path, tiny_model, registries, pm):
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format(model=tiny_model, out=tmp_path / "runs"))
    root = tmp_path / "runs" / "resume"
    with pytest.raises(KeyboardInterrupt):
        run(recipe, registries, pm, StopAt("sft", 3))
    metrics = root / ".sft.partial" / "metrics.jsonl"
    with open(metrics, "a", encoding="utf-8") as fh:
        fh.write('{"step": 4, "time": 1.0, "split": "tr')  # the process was killed while writing this line
    text = run(recipe, registries, pm, StopAt(), resume=True)
    assert "removed a partially written last line" in text and "metrics.jsonl" in text
    assert train_steps(root / "sft") == [1, 2, 3, 4, 5]


def test_sft_logs_its_final_evaluation_once(tmp_path, tiny_model, registries, pm):
    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format(model=tiny_model, out=tmp_path / "runs"))
    run(recipe, registries, pm, StopAt(), overwrite=True)
    evals = [r for r in read_jsonl(tmp_path / "runs" / "resume" / "sft" / "metrics.jsonl") if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [0, 5], evals
    assert "eval_loss" in evals[-1]


def test_a_killed_run_is_marked_interrupted_by_the_next_one(tmp_path, tiny_model, registries, pm):
    """SIGKILL leaves run.json saying "running"; the next run (refused here: a stage completed) settles it."""
    from rlhf_plug.errors import RecipeError

    recipe = write_recipe(tmp_path / "r.yaml", RECIPE.format(model=tiny_model, out=tmp_path / "runs"))
    root = tmp_path / "runs" / "resume"
    run(recipe, registries, pm, StopAt())
    info = json.loads((root / "run.json").read_text())
    killed = {**info, "status": "running", "finished": None, "pid": 2**22 + 1}  # a pid no process has
    (root / "run.json").write_text(json.dumps(killed))
    with pytest.raises(RecipeError, match="already holds completed stages"):
        run(recipe, registries, pm, StopAt())
    settled = json.loads((root / "run.json").read_text())
    assert settled["status"] == "interrupted" and "killed" in settled["error"]

    (root / "run.json").write_text(json.dumps(killed))
    run(recipe, registries, pm, StopAt(), resume=True)
    resumed = json.loads((root / "run.json").read_text())
    assert resumed["status"] == "completed"
    assert resumed["resumes"]["status"] == "interrupted" and resumed["resumes"]["started"] == info["started"]
