"""PPO checkpoints: SIGKILL then ``--resume`` under real processes, a kill during the final save, and 2 CPU processes (gloo)."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import write_recipe, temporary_files
from rich.console import Console
from test_ppo_stage import ppo_stage, recipe, toy  # noqa: F401  (toy is a fixture)

from rlhf_plug.recipe import load_recipe
from rlhf_plug.runner import run_recipe

TIMEOUT = 300
SEED = 7

PLUGIN = """
import os
import time

from rlhf_plug import hookimpl


class EvenFirst:
    \"\"\"1 when the first response token id is even; sleeps PPO_TEST_SLEEP seconds a call (to be killable).\"\"\"

    def __call__(self, prompts, completions, completion_ids=None, **kw):
        time.sleep(float(os.environ.get("PPO_TEST_SLEEP", "0")))
        return [1.0 if ids and ids[0] % 2 == 0 else 0.0 for ids in completion_ids]


@hookimpl
def rlhf_register_reward_functions(register):
    register("even_first", EvenFirst)
"""

RECIPE = """
name: ppo-resume
model: {model}
output_dir: {out}
seed: {seed}
quantization: none
plugins: [ppo_resume_toy]
stages:
  - ppo:
      prompts: {{use: builtin, with: {{name: prompts}}, eval_fraction: 0.1}}
      reward: [{{use: even_first}}]
      kl: {{use: adaptive, with: {{init: 0.05, target: 0.5, horizon: 100}}}}
      generation: {{max_new_tokens: 2, temperature: 1.0}}
      lora: {{r: 8, lora_alpha: 16}}
      evaluators: {evaluators}
      args: {{steps: {steps}, batch_size: {batch}, learning_rate: 1.0e-2, save_every: {save_every}{args}}}
"""


def env(plugin_dir: Path, **extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("RLHF_PLUG_PLUGINS", "RANK", "LOCAL_RANK", "WORLD_SIZE")}
    out.update(
        HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", HF_DATASETS_OFFLINE="1", RLHF_PLUG_DISABLE_PLUGIN_AUTOLOAD="1",
        OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore", NO_COLOR="1", COLUMNS="200",
        PYTHONPATH=os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        **extra,
    )
    return out


def records(path: Path, split: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if split is None or r.get("split") == split]


def expected_indices(num_rows: int, batch: int, processes: int, seed: int, step: int) -> list[list[int]]:
    from rlhf_plug_plugins.ppo.schedule import PromptSchedule

    schedule = PromptSchedule(num_rows, batch, processes, seed)
    return [schedule.indices(step - 1, p) for p in range(processes)]


@pytest.fixture
def plugin_dir(tmp_path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "ppo_resume_toy.py").write_text(PLUGIN, encoding="utf-8")
    return folder


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_policy, plugin_dir, monkeypatch):
    steps, batch = 8, 4
    recipe = write_recipe(tmp_path / "recipe.yaml", RECIPE.format(
        model=tiny_policy, out=tmp_path / "runs", steps=steps, batch=batch, save_every=2, seed=SEED,
        evaluators="[]", args=""))
    run_dir = tmp_path / "runs" / "ppo-resume"
    partial = run_dir / ".ppo.partial"
    cmd = [sys.executable, "-m", "rlhf_plug", "run", str(recipe)]

    def logged_steps() -> list[int]:
        """Train steps in the running stage's metrics.jsonl (a line being appended is skipped)."""
        path = partial / "metrics.jsonl"
        found = []
        for line in path.read_text().splitlines() if path.is_file() else []:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("split") == "train":
                found.append(record["step"])
        return found

    # 1. Start; once the step-4 checkpoint exists and step 5 is logged, SIGKILL the whole process group.
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env(plugin_dir, PPO_TEST_SLEEP="0.3"),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not ((partial / "checkpoints" / "step-000004").exists() and 5 in logged_steps()):
            assert proc.poll() is None, f"run ended early ({proc.returncode}):\n{(tmp_path / 'first.log').read_text()}"
            assert time.monotonic() < deadline, "no step-4 checkpoint in time"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == -signal.SIGKILL, "the run must have been killed, not finished"
    assert not (run_dir / "ppo").exists()

    # Only complete checkpoints are visible; an interrupted write is a hidden .step-*.tmp folder.
    entries = sorted(p.name for p in (partial / "checkpoints").iterdir())
    visible = [n for n in entries if not n.startswith(".")]
    assert visible and set(visible) <= {"step-000002", "step-000004", "step-000006"}, entries
    assert all(n.startswith(".step-") and n.endswith(".tmp") for n in entries if n.startswith(".")), entries
    for name in visible:
        ckpt = partial / "checkpoints" / name
        assert (ckpt / "trainable.safetensors").is_file() and (ckpt / "state.pt").is_file(), name
        assert (ckpt / "adapter" / "adapter_model.safetensors").is_file(), name
    latest = max(int(n.split("-")[1]) for n in visible)
    assert max(logged_steps()) > latest, "steps after the last checkpoint were logged: resume must drop and redo them"

    # 2. Resume to the end.
    done = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=env(plugin_dir), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming" in done.stdout and "from checkpoint step-00000" in done.stdout, done.stdout[-3000:]
    out = run_dir / "ppo"
    assert not partial.exists() and (out / "adapter" / "adapter_model.safetensors").is_file()
    assert not (out / "checkpoints").exists()
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == steps

    rollouts = records(out / "rollouts.jsonl")
    assert [r["step"] for r in rollouts] == list(range(1, steps + 1)), "every step logged exactly once"
    for r in rollouts:
        assert r["indices"] == expected_indices(results["prompts"], batch, 1, SEED, r["step"]), r["step"]
    train = records(out / "metrics.jsonl", "train")
    assert [r["step"] for r in train] == list(range(1, steps + 1))

    # 3. The same recipe uninterrupted (in-process, elsewhere): same prompts, and the restored
    #    weights, optimiser, KL controller, reward statistics and RNG give the same numbers.
    import torch

    from rlhf_plug.plugins import get_plugin_manager
    from rlhf_plug.recipe import load_recipe
    from rlhf_plug.registry import Registries
    from rlhf_plug.runner import run_recipe

    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.delitem(sys.modules, "ppo_resume_toy", raising=False)
    reference = write_recipe(tmp_path / "reference.yaml", RECIPE.format(
        model=tiny_policy, out=tmp_path / "reference", steps=steps, batch=batch, save_every=0, seed=SEED,
        evaluators="[]", args=""))
    pm = get_plugin_manager(["ppo_resume_toy"], autoload=False)
    registries = Registries(pm)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): same float reduction order
    try:
        run_recipe(load_recipe(reference, registries), registries, pm, Console(file=io.StringIO()))
    finally:
        torch.set_num_threads(threads)
        sys.modules.pop("ppo_resume_toy", None)
    ref_out = tmp_path / "reference" / "ppo-resume" / "ppo"
    assert [r["indices"] for r in records(ref_out / "rollouts.jsonl")] == [r["indices"] for r in rollouts]
    ref_train = records(ref_out / "metrics.jsonl", "train")
    for key in ("reward", "kl", "beta", "entropy"):
        assert [r[key] for r in train] == pytest.approx([r[key] for r in ref_train], rel=1e-4, abs=1e-5), key


def test_two_cpu_processes_split_the_prompts(tmp_path, tiny_policy, plugin_dir):
    steps, batch = 3, 4
    recipe = write_recipe(tmp_path / "recipe.yaml", RECIPE.format(
        model=tiny_policy, out=tmp_path / "runs", steps=steps, batch=batch, save_every=0, seed=SEED,
        evaluators="[{use: reward_stats}, {use: win_rate}]", args=", eval_every: 2, eval_prompts: 4"))
    cmd = [
        # --multi_gpu selects accelerate's torchrun launcher; with no GPU the processes use gloo on CPU.
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rlhf_plug", "run", str(recipe),
    ]
    done = subprocess.run(cmd, cwd=tmp_path, env=env(plugin_dir), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "runs" / "ppo-resume" / "ppo"
    results = json.loads((out / "results.json").read_text())
    assert results["processes"] == 2 and results["steps"] == steps

    rollouts = records(out / "rollouts.jsonl")
    assert [r["step"] for r in rollouts] == list(range(1, steps + 1)), "only the main process logs"
    for r in rollouts:
        first, second = r["indices"]
        assert len(first) == len(second) == batch
        assert not set(first) & set(second), r
        assert r["indices"] == expected_indices(results["prompts"], batch, 2, SEED, r["step"])
    train = records(out / "metrics.jsonl", "train")
    assert [r["step"] for r in train] == list(range(1, steps + 1))
    evals = records(out / "metrics.jsonl", "eval")
    assert [r["step"] for r in evals] == [0, 2, 3], "evaluation runs once, on the main process"
    assert all(math.isfinite(r["win_rate"]) and math.isfinite(r["kl"]) for r in evals)
    assert evals[0]["win_rate"] == 0.5, "before training the policy samples what the reference does"
    for r in train:
        for key in ("reward", "kl", "beta", "entropy", "clipfrac", "approx_kl", "explained_variance", "pg_loss"):
            assert math.isfinite(r[key]), (r["step"], key)
        # the reward is averaged over both processes' 4 samples: a multiple of 1/8
        assert (r["reward"] * 8) == pytest.approx(round(r["reward"] * 8))
    assert done.stdout.count("Run summary") == 1, "only the main process prints"
    assert not temporary_files(tmp_path / "runs" / "ppo-resume"), "no temporary folders left"


def test_a_kill_while_the_final_model_is_written_resumes_from_the_last_checkpoint(tmp_path, tiny_policy, toy, monkeypatch):
    """The final save writes model/ with checkpoints/ still in place; they go only after the swap."""
    from transformers import PreTrainedModel

    _, registries, pm = toy
    body = recipe(tiny_policy, tmp_path / "runs", ppo_stage(steps=4, args=", save_every: 2"))
    path = write_recipe(tmp_path / "recipe.yaml", body)
    real_save = PreTrainedModel.save_pretrained

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt  # what a Ctrl-C or a kill in the middle of writing model/ looks like

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", killed)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(load_recipe(path, registries), registries, pm, Console(file=io.StringIO(), width=200))
    partial = tmp_path / "runs" / "ppo-test" / ".ppo.partial"
    assert (partial / "checkpoints" / "step-000004" / "state.pt").is_file(), "the last step is checkpointed, and survives the kill"

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", real_save)
    console = Console(file=io.StringIO(), width=200)
    results = run_recipe(load_recipe(path, registries), registries, pm, console, resume=True)
    assert "resuming from checkpoint step-000004 (step 4 of 4)" in console.file.getvalue()
    assert results["ppo"]["steps"] == 4
    out = tmp_path / "runs" / "ppo-test" / "ppo"
    assert (out / "model" / "model.safetensors").is_file() and not (out / "checkpoints").exists()
