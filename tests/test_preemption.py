"""SIGTERM (a scheduler's preemption): stop at the next step with a checkpoint, record the run as interrupted,
say how to resume, exit 143; `--resume` continues from that checkpoint."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import cli_env, command, read_jsonl, write_recipe
from rich.console import Console
from test_ppo_stage import ppo_stage, recipe, toy  # noqa: F401  (toy is a fixture)

from rlhf_plug import hookimpl
from rlhf_plug.preemption import EXIT_STATUS, Preempted, resume_command
from rlhf_plug.recipe import load_recipe
from rlhf_plug.runner import run_recipe

SFT = """
name: preempt
model: {model}
output_dir: {out}
quantization: none
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}, limit: 16}}
      args: {{max_steps: 40, per_device_train_batch_size: 2, max_length: 32, save_strategy: "no"}}
"""


def logged_steps(partial) -> list[int]:
    """Train steps logged so far (a line being written is skipped)."""
    path = partial / "metrics.jsonl"
    steps = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record["split"] == "train":
            steps.append(record["step"])
    return steps


def test_sigterm_stops_sft_with_a_checkpoint_and_resume_continues(tmp_path, tiny_model):
    """``save_strategy: no``: the checkpoint is the one written because of the SIGTERM."""
    path = write_recipe(tmp_path / "r.yaml", SFT.format(model=tiny_model, out=tmp_path / "runs"))
    root = tmp_path / "runs" / "preempt"
    env = cli_env(OMP_NUM_THREADS="1")
    proc = subprocess.Popen(command("run", str(path)), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not logged_steps(root / ".sft.partial") and proc.poll() is None:
            assert time.monotonic() < deadline, "no step logged in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == EXIT_STATUS == 143, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("stage sft stopped on SIGTERM after step ") and "checkpoint saved" in line, line
    assert line.endswith(f"resume with: rlhf-plug run {path} --resume"), line
    stopped = int(line.split("after step ")[1].split()[0])
    assert stopped < 40
    info = json.loads((root / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert (root / ".sft.partial" / "trainer" / f"checkpoint-{stopped}" / "trainer_state.json").is_file()

    done = subprocess.run(command("run", str(path), "--resume"), cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from checkpoint checkpoint-{stopped} (step {stopped})" in done.stdout
    steps = [r["step"] for r in read_jsonl(root / "sft" / "metrics.jsonl") if r["split"] == "train" and "train_runtime" not in r]
    assert steps == list(range(1, 41)), "steps up to the checkpoint kept, the rest run once"
    assert json.loads((root / "run.json").read_text())["status"] == "completed"


class SigtermAt:
    """Sends this process SIGTERM when the stage logs ``step`` (as a scheduler would, from outside)."""

    def __init__(self, step: int):
        self.step = step

    @hookimpl
    def rlhf_step_end(self, stage, step, metrics):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_stops_ppo_at_the_step_with_a_checkpoint(tmp_path, tiny_policy, toy):  # noqa: F811
    _, registries, pm = toy
    body = recipe(tiny_policy, tmp_path / "runs", ppo_stage(steps=6, args=", save_every: 0"))
    path = write_recipe(tmp_path / "recipe.yaml", body)
    pm.register(SigtermAt(2), name="sigterm")
    with pytest.raises(Preempted, match="stage ppo stopped on SIGTERM after step 2 of 6"):
        run_recipe(load_recipe(path, registries), registries, pm, Console(file=io.StringIO()))
    pm.unregister(name="sigterm")
    partial = tmp_path / "runs" / "ppo-test" / ".ppo.partial"
    assert [p.name for p in (partial / "checkpoints").iterdir()] == ["step-000002"], "saved although save_every is 0"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the handler is removed after the run"
    out = io.StringIO()
    results = run_recipe(load_recipe(path, registries), registries, pm, Console(file=out, width=200), resume=True)
    assert "from checkpoint step-000002 (step 2 of 6)" in out.getvalue()
    assert results["ppo"]["steps"] == 6


def test_resume_command_repeats_the_arguments_with_resume():
    assert resume_command(["x", "run", "my recipe.yaml", "--set", "a=1"]) == "rlhf-plug run 'my recipe.yaml' --set a=1 --resume"
    assert resume_command(["x", "-p", "mod", "run", "r.yaml", "--overwrite"]) == "rlhf-plug -p mod run r.yaml --resume"
    assert resume_command([sys.executable, "run", "r.yaml", "--resume"]) == "rlhf-plug run r.yaml --resume"
