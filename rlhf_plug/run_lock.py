"""One run per run folder: ``runs/<recipe>/.lock``, held for the run's life.

The lock is an advisory ``flock`` on that file, so the operating system releases it on any exit,
SIGKILL and power cuts included: a lock left by a dead run is never "stale", the next run simply
takes it. The file itself only says who holds it (host, pid, start, command), for the refusal.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rlhf_plug.errors import UserError

LOCK_FILE = ".lock"


class RunFolderBusy(UserError):
    """Another process holds the run folder."""


@contextmanager
def run_folder_lock(root: Path) -> Iterator[None]:
    """Hold ``root``'s lock for the block; raise :class:`RunFolderBusy` naming the holder if another run has it."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs there are not guarded
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderBusy(f"{root} is in use by another run ({_holder(fd)}): wait for it to end, "
                                "or give this run another name or output_dir") from None
        _write_holder(fd)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays, naming the last holder


def _write_holder(fd: int) -> None:
    from rlhf_plug.report.runinfo import command_line, now

    record = {"host": platform.node(), "pid": os.getpid(), "started": now(), "command": command_line(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)


def _holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        command = " ".join(record.get("command") or [])
        return f"pid {record['pid']} on {record['host']}, started {record['started']}: {command}"
    except (ValueError, KeyError, TypeError, OSError):
        return "holder unknown"
