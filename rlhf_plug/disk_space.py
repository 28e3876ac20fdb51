"""A full disk is one line naming the path and the space, not a traceback from deep inside a save.

Two layers: :func:`check_free_space` before a save whose size is known (the final model), and
:func:`full_disk_is_one_line` around a whole stage, for every other write (checkpoints, logs), which
turns the error a full disk raises (``OSError`` ENOSPC, safetensors' ``SafetensorError``, torch's
"file write failed") into :class:`DiskFull`. The runner's temporary stage folder and kept
checkpoints then make ``--resume`` continue once space is freed. Import-light: no torch.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rlhf_plug.errors import UserError
from rlhf_plug.files import nearest_existing

MIB = 1024 * 1024
#: What a save writes besides the weights (tokenizer, configs), and the slack on the weights' estimate.
SAVE_OVERHEAD_BYTES, SAVE_SLACK = 8 * MIB, 1.05


class DiskFull(UserError):
    """The disk that holds the run folder has no room for what the run writes."""


def free_bytes(path: Path) -> int:
    """Free space on the disk of ``path`` (or of its nearest existing parent)."""
    return shutil.disk_usage(nearest_existing(path)).free


def check_free_space(path: Path, weights_bytes: int, what: str) -> None:
    """Refuse to start writing ``what`` (about ``weights_bytes`` of weights) into ``path`` when it cannot fit."""
    needed = int(weights_bytes * SAVE_SLACK) + SAVE_OVERHEAD_BYTES
    free = free_bytes(path)
    if free < needed:
        raise DiskFull(f"{path}: not enough space to save {what}: it needs about {_size(needed)}, "
                       f"{_size(free)} is free; free some space and rerun with --resume (the checkpoints are kept)")


@contextmanager
def full_disk_is_one_line(path: Path) -> Iterator[None]:
    """Inside the block, an error a full disk raises becomes :class:`DiskFull` naming the file (or ``path``)."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:
        cause = _full_disk_cause(exc, path)
        if cause is None:
            raise
        where = getattr(cause, "filename", None) or path
        raise DiskFull(f"{where}: the disk is full ({_size(free_bytes(Path(where)))} free) while the run wrote there; "
                       "free some space and rerun with --resume (the checkpoints are kept)") from exc


def _full_disk_cause(exc: BaseException | None, path: Path) -> BaseException | None:
    """``exc`` or the error it was raised from, if a full disk raised it."""
    seen = 0
    while exc is not None and seen < 10:
        text = str(exc)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left on device" in text:
            return exc
        if "write failed" in text and free_bytes(path) < MIB:  # torch.save: "PytorchStreamWriter failed ..."
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _size(count: int) -> str:
    return f"{count / MIB:,.1f} MiB"
