"""A full disk (issue 26): one line naming the path and the space, no half stage, the earlier stage intact,
and `--resume` completes once space is freed. On a real small tmpfs (needs root to mount; skipped otherwise)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers import assert_one_line_error, cli, write_recipe

BALLAST = '''
import os
from pathlib import Path

from rlhf_plug import hookimpl


@hookimpl
def rlhf_stage_end(stage, results):
    """After sft, fill the disk but LEAVE_BYTES, as another job on the machine would."""
    if stage.name == "sft":
        disk = Path(os.environ["DISK"])
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        with open(disk / "ballast", "wb") as fh:
            fh.write(b"x" * max(0, free - int(os.environ["LEAVE_BYTES"])))
'''

RECIPE = """name: full
model: {model}
output_dir: {runs}
plugins: [ballast]
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}}}
      args: {{max_steps: 2}}
  - reward:
      data: {{use: builtin, with: {{name: rankings}}, limit: 12}}
      args: {{max_steps: 3, save_steps: 1, per_device_train_batch_size: 4, max_length: 64}}
"""


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.parametrize(("leave", "words"), [
    (64 * 1024, ["the disk is full", "free some space and rerun with --resume"]),  # a checkpoint or log write fails
    (3 * 1024 * 1024, ["not enough space to save the trained model: it needs about", "MiB is free"]),  # checked first
])
def test_a_full_disk_is_one_line_and_resume_completes_once_space_is_freed(tmp_path, tiny_model, small_disk, leave, words):
    (tmp_path / "ballast.py").write_text(BALLAST, encoding="utf-8")
    recipe = write_recipe(tmp_path / "recipe.yaml", RECIPE.format(model=tiny_model, runs=small_disk / "runs"))
    env = {"PYTHONPATH": str(tmp_path), "DISK": str(small_disk)}
    root = small_disk / "runs" / "full"

    proc = cli("run", str(recipe), LEAVE_BYTES=str(leave), **env)
    assert_one_line_error(proc, str(small_disk), *words)
    assert (root / "sft" / "results.json").is_file(), "the completed stage is intact"
    assert not (root / "reward").exists(), "no half stage"

    (small_disk / "ballast").unlink()
    again = cli("run", str(recipe), "--resume", LEAVE_BYTES="0", **env)
    assert again.returncode == 0, again.stderr
    assert json.loads((root / "reward" / "results.json").read_text())["steps"] == 3
    assert json.loads((root / "run.json").read_text())["status"] == "completed"
    assert (root / "report.md").is_file()
