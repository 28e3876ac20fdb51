"""A recipe's stages under `accelerate launch` with 2 CPU processes (DDP over gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import write_recipe, temporary_files

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
    assert not temporary_files(run), "no temporary folders left"


def launch(tmp_path, model, *flags: str, **env: str) -> subprocess.CompletedProcess:
    recipe = write_recipe(tmp_path / "ddp.yaml", RECIPE.format(model=model, out=tmp_path / "runs"))
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", *flags, "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rlhf_plug", "run", str(recipe),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                          timeout=600, cwd=tmp_path)


@pytest.mark.slow
def test_fsdp_on_cpu_is_refused_with_what_works(tmp_path, tiny_model):
    """accelerate cannot shard without CUDA: each process says so in one line and exits 2; nothing is trained."""
    done = launch(tmp_path, tiny_model, "--use_fsdp")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(line == errors[0] for line in errors), done.stderr[-3000:]
    assert "FSDP was requested (ACCELERATE_USE_FSDP) but there is no CUDA GPU" in errors[0]
    assert "on CPU use DDP (accelerate launch --multi_gpu" in errors[0]
    assert "exitcode  : 2" in done.stderr, "the processes exit 2 (the launcher itself reports a failed child)"
    assert done.returncode != 0
    assert not any(line.startswith("[rank") and "Traceback" in line for line in done.stderr.splitlines()), "no traceback from a process"
    assert not (tmp_path / "runs" / "ddp").exists(), "nothing written"


def test_a_launch_the_accelerator_does_not_see_is_refused(monkeypatch):
    """WORLD_SIZE says 2 processes but accelerate sees 1: N copies would each train alone into one folder."""
    from types import SimpleNamespace

    from rlhf_plug.errors import UserError
    from rlhf_plug.distributed import check_distributed_launch

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match=r"launched as 2 processes \(WORLD_SIZE\) but accelerate sees 1 .* on CPU use DDP"):
        check_distributed_launch(SimpleNamespace(num_processes=1, distributed_type="NO"))
    check_distributed_launch(SimpleNamespace(num_processes=2, distributed_type="MULTI_CPU"))
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(UserError, match=r"DeepSpeed was requested \(ACCELERATE_USE_DEEPSPEED\) but there is no CUDA GPU"):
        check_distributed_launch(SimpleNamespace(num_processes=1, distributed_type="NO"))
