"""``runs/<recipe>/run.json``: what only the running process knows (seed, versions, plugins, command line, times).

The runner writes it when a run starts and again when it ends; the report reads it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from rlhf_plug.files import write_text_atomic
from rlhf_plug.report.load import RUN_INFO_FILE

LIBRARIES = ("rlhf-plug", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "matplotlib")


def start_run_info(run_dir: Path, loaded, pm, previous: dict | None = None, changes: dict | None = None) -> dict:
    """Write run.json for a run that is starting; returns the record to pass to :func:`finish_run_info`.

    ``previous``: the record of the run this one resumes (its start, end and status are kept).
    ``changes``: per stage, the settings ``--resume --allow-changes`` continued with that it did not start with.
    """
    info = {
        "recipe": loaded.recipe.name,
        "recipe_file": loaded.source.file,
        "seed": loaded.recipe.seed,
        "command": command_line(sys.argv),
        "cwd": os.getcwd(),
        "started": now(),
        "finished": None,
        "status": "running",
        "stages": [{"name": s.name, "kind": s.kind} for s in loaded.stages],
        "completed": [],
        "processes": int(os.environ.get("WORLD_SIZE", "1")),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "accelerator": _accelerator(),
        "versions": library_versions(),
        "plugins": {name: _source(pm, name) for name, _ in sorted(pm.list_name_plugin())},
        "host": platform.node(),
        "pid": os.getpid(),
    }
    if previous:
        info["resumes"] = {k: previous.get(k) for k in ("started", "finished", "status", "completed")}
    if changes:
        info["changed_on_resume"] = changes
    _save(run_dir, info)
    return info


def settle_unfinished_run(run_dir: Path) -> dict | None:
    """Mark a run.json that still says "running" as interrupted: its process was killed before it could
    record its end (SIGKILL, a power cut). Returns the previous record, if any.

    A run whose process is still alive on this machine (a second run into the same folder) is left alone.
    """
    path = run_dir / RUN_INFO_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("status") != "running" or _still_running(info):
        return info if isinstance(info, dict) else None
    info = {**info, "status": "interrupted", "error": "the run ended without recording its end (killed?)"}
    _save(run_dir, info)
    return info


def _still_running(info: dict) -> bool:
    pid = info.get("pid")
    if info.get("host") != platform.node() or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def finish_run_info(run_dir: Path, info: dict, completed: list[str], error: BaseException | None = None) -> None:
    info = {**info, "finished": now(), "completed": list(completed)}
    if error is None:
        info["status"] = "completed"
    else:
        info["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        info["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:500]
    _save(run_dir, info)


def command_line(argv: list[str]) -> list[str]:
    """argv with the program shortened to how a user types it."""
    if not argv:
        return []
    program = Path(argv[0])
    if program.name == "__main__.py":  # python -m package
        return ["python", "-m", program.parent.name, *argv[1:]]
    return [program.name, *argv[1:]]


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _source(pm, name: str) -> str:
    return pm.source(name) if hasattr(pm, "source") else "module"  # a plain pluggy manager knows no distributions


def _accelerator() -> str:
    """The GPU name when torch is already loaded and sees one; otherwise "cpu" (never imports torch itself)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return "cpu"
    return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"


def _save(run_dir: Path, info: dict) -> None:
    write_text_atomic(run_dir / RUN_INFO_FILE, json.dumps(info, indent=2) + "\n")


def now() -> str:
    """The local time with its UTC offset, to the second."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
