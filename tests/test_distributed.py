"""A recipe's stages under `accelerate launch` with 2 CPU processes (DDP over gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import write_recipe

RECIPE = """
name: ddp
model: {model}
output_dir: {out}
quantization: none
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}, limit: 64}}
      args: {{max_steps: 4, per_device_train_batch_size: 4, max_length: 128, learning_rate: 3.0e-3}}
  - reward:
      data: {{use: builtin, with: {{name: rankings}}, limit: 16}}
      args: {{max_steps: 3, per_device_train_batch_size: 4, max_length: 128}}
"""


@pytest.mark.slow
def test_stages_run_with_two_cpu_processes(tmp_path, tiny_model):
    recipe = write_recipe(tmp_path / "ddp.yaml", RECIPE.format(model=tiny_model, out=tmp_path / "runs"))
    cmd = [
        # --multi_gpu selects accelerate's torchrun launcher; with no GPU the processes use gloo on CPU.
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rlhf_plug", "run", str(recipe),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    for stage in ("sft", "reward"):
        results = json.loads((run / stage / "results.json").read_text())
        assert results["processes"] == 2
        assert results["steps"] in (3, 4)
        assert (run / stage / "model" / "model.safetensors").is_file()
    assert done.stdout.count("Run summary") == 1, "only the main process prints"
    assert not list(run.glob(".*")), "no temporary folders left"
