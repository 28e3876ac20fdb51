"""The README's main job, cut down: `rlhf-plug run quickstart` end to end on a tiny model.

The only end-to-end test of a bundled recipe in the suite (the real-size runs are
in README/benchmarks). Same recipe file, same CLI; `--set` shrinks steps and
swaps in the tiny model. It checks what a user sees: every stage's progress bar
and results, the final summary, and the report with its plots.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

SHRINK = (
    "sft.args.max_steps=2", "reward.args.max_steps=2", "reward.args.per_device_train_batch_size=8",
    "ppo.args.steps=2", "ppo.args.batch_size=4", "ppo.args.eval_prompts=4", "ppo.generation.max_new_tokens=8",
)


def run_quickstart(model, output_dir, *extra: str) -> subprocess.CompletedProcess:
    sets = [f"--set={kv}" for kv in (f"model={model}", f"output_dir={output_dir}", *SHRINK)]
    env = dict(os.environ, COLUMNS="200", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    done = subprocess.run(
        [sys.executable, "-m", "rlhf_plug", "run", "quickstart", *sets, *extra],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory, tiny_model):
    """One fresh `rlhf-plug run quickstart`: (its output dir, its stdout)."""
    out = tmp_path_factory.mktemp("quickstart")
    return out, run_quickstart(tiny_model, out).stdout


def test_quickstart_runs_end_to_end_and_writes_the_report(fresh_run):
    tmp_path, out = fresh_run
    for stage in ("sft", "reward", "ppo"):
        assert f"stage {('sft', 'reward', 'ppo').index(stage) + 1}/3: {stage}" in out
    assert "2/2" in out  # progress bars reach their planned step count
    run = tmp_path / "quickstart"
    ppo = json.loads((run / "ppo" / "results.json").read_text())
    assert ppo["steps"] == 2 and "eval_win_rate/simulated_annotator_after" in ppo
    report = (run / "report.md").read_text()
    assert f"report: {run / 'report.md'}" in out.replace("\n", "")
    for heading in ("## Stage 1: sft", "## Stage 2: reward", "## Stage 3: ppo", "Win-rate of PPO over SFT", "### Samples"):
        assert heading in report
    pngs = sorted(p.name for p in (run / "report").glob("*.png"))
    assert {"ppo-training-curves.png", "ppo-win-rate.png", "sft-training-curves.png"} <= set(pngs)
    assert all((run / "report" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_ppo_rerun_with_resume_matches_the_fresh_run(fresh_run, tiny_model, tmp_path):
    """PPO alone, after `--resume` skips SFT and RM, follows the fresh run's trajectory exactly."""
    fresh, _ = fresh_run
    shutil.copytree(fresh / "quickstart", tmp_path / "quickstart", ignore=shutil.ignore_patterns("ppo", "report*"))
    out = run_quickstart(tiny_model, tmp_path, "--resume").stdout
    assert "stage sft: already complete, skipped (--resume)" in out

    def ppo_metrics(run):
        rows = [json.loads(line) for line in (run / "quickstart" / "ppo" / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k != "time" and not k.startswith("time/")} for row in rows]

    rerun = ppo_metrics(tmp_path)
    assert len(rerun) == 4 and rerun[1]["kl"] == 0.0 and rerun[2]["kl"] != 0.0  # eval, 2 steps, eval
    assert rerun == ppo_metrics(fresh)
