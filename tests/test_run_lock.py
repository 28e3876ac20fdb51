"""One run per run folder (issue 26): a second `rlhf-plug run` into a folder that a live run holds exits 2
naming the holder, and the holder's run.json, stage and report stay intact; a killed run's lock blocks nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from helpers import CLI_TIMEOUT, assert_one_line_error, cli, cli_env, command, write_recipe

RECIPE = """name: locked
model: {model}
output_dir: {runs}
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}}}
      args: {{max_steps: 3, learning_rate: 1.0e-4}}
"""


@pytest.fixture
def recipe(tmp_path, tiny_model):
    return write_recipe(tmp_path / "recipe.yaml", RECIPE.format(model=tiny_model, runs=tmp_path / "runs"))


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(command(*args), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_holding(proc: subprocess.Popen, lock) -> None:
    """Until ``proc``'s pid is written in the lock file (it holds the lock from then on)."""
    deadline = time.monotonic() + CLI_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if lock.is_file() and f'"pid": {proc.pid},' in lock.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"the run never took the lock (exit {proc.poll()}): {proc.communicate()}")


def assert_complete(root) -> None:
    info = json.loads((root / "run.json").read_text())
    assert (info["status"], info["completed"]) == ("completed", ["sft"]), info
    assert (root / "sft" / "results.json").is_file() and (root / "report.md").is_file()


def test_a_second_run_into_a_busy_folder_exits_2_naming_the_holder(recipe, tmp_path):
    root = tmp_path / "runs" / "locked"
    first = start("run", str(recipe))
    wait_until_holding(first, root / ".lock")
    first.send_signal(signal.SIGSTOP)  # holds the folder for as long as the second run needs
    try:
        for extra in ([], ["--resume"], ["--overwrite"]):
            line = assert_one_line_error(cli("run", str(recipe), *extra), f"{root} is in use by another run",
                                         f"pid {first.pid} on ", "rlhf_plug run")
            assert "wait for it to end" in line
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=CLI_TIMEOUT)
    assert first.returncode == 0, err
    assert_complete(root)


def test_two_runs_started_together_one_trains_and_the_other_exits_2(recipe, tmp_path):
    runs = [start("run", str(recipe)) for _ in range(2)]
    outcomes = sorted((p.wait(timeout=CLI_TIMEOUT), p.communicate()[1]) for p in runs)
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    loser = outcomes[1][1]
    # The loser met the winner's lock, or, had it come after the winner finished, its completed stage.
    assert "is in use by another run" in loser or "already holds completed stages" in loser, loser
    assert_complete(tmp_path / "runs" / "locked")


def test_a_killed_runs_lock_does_not_block_the_resume(recipe, tmp_path):
    root = tmp_path / "runs" / "locked"
    first = start("run", str(recipe))
    wait_until_holding(first, root / ".lock")
    first.kill()
    first.communicate()
    proc = cli("run", str(recipe), "--resume")
    assert proc.returncode == 0, proc.stderr
    assert_complete(root)
