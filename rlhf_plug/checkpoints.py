"""The checkpoints ``rlhf-plug run --resume`` continues a stage from, in the two layouts stages write.

- ``checkpoints/step-N/``: our own training loops (the PPO stage). A checkpoint is written under a
  hidden name and renamed, so every ``step-*`` folder is complete.
- ``trainer/checkpoint-N/``: a transformers/TRL ``Trainer`` (its ``output_dir``). The Trainer writes
  in place, and ``trainer_state.json`` last, so only a folder holding it is complete.

The runner keeps a stage's temporary folder when it holds either, and removes both only after the
completed stage has been swapped into place. Import-light: no torch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rlhf_plug.files import repair_last_line
from rlhf_plug.run_folder import CHECKPOINTS_DIR

TRAINER_DIR = "trainer"  # the TRL stages' Trainer output_dir inside the stage folder
TRAINER_STATE = "trainer_state.json"  # transformers' TRAINER_STATE_NAME, the last file of a checkpoint
TRAINER_PREFIX = "checkpoint-"  # transformers' PREFIX_CHECKPOINT_DIR
TRAINER_CARD = "README.md"  # the model card TRL writes beside its checkpoints


def trainer_checkpoints(stage_dir: Path) -> list[Path]:
    """Complete Trainer checkpoints, oldest first."""
    root = Path(stage_dir) / TRAINER_DIR
    if not root.is_dir():
        return []
    done = [
        p for p in root.glob(f"{TRAINER_PREFIX}*")
        if p.name.removeprefix(TRAINER_PREFIX).isascii() and p.name.removeprefix(TRAINER_PREFIX).isdigit() and (p / TRAINER_STATE).is_file()
    ]
    return sorted(done, key=checkpoint_step)


def checkpoint_step(path: Path) -> int:
    """The step of ``step-000012`` or ``checkpoint-12``."""
    return int(path.name.rsplit("-", 1)[1])


def usable_checkpoint(found: list[Path], console=None) -> Path | None:
    """The newest of ``found`` (oldest first) whose files are whole. A damaged newer one is passed over with a
    notice; when none is whole, a :class:`~rlhf_plug.errors.UserError` names the damaged file."""
    from rlhf_plug.errors import UserError

    problems = []
    for path in reversed(found):
        problem = damaged_file(path)
        if problem is None:
            if problems and console is not None:
                console.print(f"  [yellow]notice:[/] {problems[0]}; resuming from the earlier {path.name}", soft_wrap=True)
            return path
        problems.append(problem)
    if problems:
        raise UserError(f"cannot resume: {problems[0]}, and no earlier checkpoint is whole; remove {found[-1]} "
                        "and rerun with --resume to start this stage again")
    return None


def damaged_file(folder: Path) -> str | None:
    """``path: what is wrong`` for the first file of a checkpoint folder that is cut short (a full disk, a
    copy stopped half-way), or None. Checks sizes and checksums only, reading no pickle: safetensors files
    against their header, torch's zip files against their CRCs."""
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            check = _FILE_CHECKS.get(path.suffix)
            problem = check(path) if check else None
            if problem:
                return f"{path} {problem}"
    return None


def _safetensors_problem(path: Path) -> str | None:
    import struct

    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            (header_size,) = struct.unpack("<Q", fh.read(8))
            if header_size > size:
                return f"is cut short ({size:,} bytes, its header alone says {header_size:,})"
            header = json.loads(fh.read(header_size))
    except (struct.error, ValueError, UnicodeDecodeError):
        return "is not a whole safetensors file (its header cannot be read)"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    expected = 8 + header_size + end
    return None if size == expected else f"is cut short ({size:,} of {expected:,} bytes)"


def _zip_problem(path: Path) -> str | None:
    """torch.save writes a zip archive; a file of another kind (an old format) is not checked."""
    import zipfile

    with open(path, "rb") as fh:
        if fh.read(2) != b"PK":
            return None
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"is cut short or damaged ({exc})"
    return f"is damaged (member {bad} fails its checksum)" if bad else None


_FILE_CHECKS = {".safetensors": _safetensors_problem, ".pt": _zip_problem, ".pth": _zip_problem, ".bin": _zip_problem}


def has_checkpoints(stage_dir: Path) -> bool:
    """True when ``--resume`` can continue this (temporary) stage folder instead of starting it again."""
    ours = Path(stage_dir) / CHECKPOINTS_DIR
    if ours.is_dir() and any(p.name.startswith("step-") for p in ours.iterdir()):
        return True
    return bool(trainer_checkpoints(stage_dir))


def remove_checkpoints(stage_dir: Path) -> None:
    """Remove both layouts (call only once the complete stage is in place); other Trainer output stays."""
    stage_dir = Path(stage_dir)
    shutil.rmtree(stage_dir / CHECKPOINTS_DIR, ignore_errors=True)
    trainer = stage_dir / TRAINER_DIR
    if not trainer.is_dir():
        return
    for path in trainer.glob(f"{TRAINER_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)
    (trainer / TRAINER_CARD).unlink(missing_ok=True)
    if not any(trainer.iterdir()):
        trainer.rmdir()


def drop_records_after(path: Path, step: int, console=None, *, redo_start: bool = False) -> None:
    """Forget what a stage logged after its checkpoint at ``step``: those steps run again.

    A cut-off last line (the process was killed while writing it) is dropped with a notice on
    ``console``. With ``redo_start``, the records of step 0 go too: the stage evaluates its
    starting model again when it resumes.
    """
    if not path.is_file():
        return
    removed = repair_last_line(path)
    if removed and console is not None:
        console.print(f"  [yellow]{path}: removed a partially written last line ({removed} bytes)[/]", soft_wrap=True)
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line) if line.strip() else None
        if record is None or record.get("step", 0) > step or (redo_start and record.get("step", 0) == 0):
            continue
        kept.append(line)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    tmp.replace(path)


def continue_from_checkpoint(trainer, ctx) -> Path | None:
    """Make ``trainer.train()`` continue from the stage's last complete Trainer checkpoint, if there is one.

    The runner keeps a stage folder with checkpoints only under ``--resume``, so one found here is one
    to continue. What was logged after it is dropped (those steps run again), and so is the evaluation
    of the starting model, which the stage runs again before training.
    """
    from functools import partial

    from rlhf_plug.run_folder import METRICS_FILE

    found = usable_checkpoint(trainer_checkpoints(ctx.output_dir), ctx.console if ctx.is_main_process else None)
    if found is None:
        return None
    if ctx.is_main_process:
        drop_records_after(ctx.output_dir / METRICS_FILE, checkpoint_step(found), ctx.console, redo_start=True)
        ctx.console.print(f"  [bold]resuming[/] from checkpoint {found.name} (step {checkpoint_step(found)})")
    # Trainer.train() takes the checkpoint as an argument and the stages call train() themselves: bind it
    # here, so that every stage built with rlhf_plug.training.trl_trainer resumes without its own code.
    if 0 < trainer.args.max_steps <= checkpoint_step(found):
        trainer.train = partial(_refusing_code, found, partial(_already_trained, trainer, found))
    else:
        trainer.train = partial(_refusing_code, found, partial(trainer.train, resume_from_checkpoint=str(found)))
    return found


def _refusing_code(checkpoint: Path, train, **kwargs):
    """``train(**kwargs)``; a checkpoint file that holds more than tensors (transformers loads them with
    ``weights_only``, so a planted pickle runs no code) is one line naming the checkpoint, not a traceback."""
    import pickle

    from rlhf_plug.errors import UserError

    try:
        return train(**kwargs)
    except pickle.UnpicklingError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{checkpoint}: a file holds more than tensors and plain numbers; refusing to load it "
                        f"({first[:200]}); remove the checkpoint to start this stage again") from None


def _already_trained(trainer, checkpoint: Path, **_):
    """Load a checkpoint taken at ``max_steps`` and train nothing more.

    transformers' loop resumed at ``max_steps`` still runs one more step (unless ``max_steps`` is a whole
    number of epochs), so the weights are loaded here instead. ``_load_from_checkpoint`` is private, but it
    is what ``Trainer.train(resume_from_checkpoint=...)`` itself uses for the weights, adapters included.
    """
    from transformers import TrainerState
    from transformers.trainer_utils import TrainOutput

    trainer._load_from_checkpoint(str(checkpoint))
    trainer.state = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE))
    losses = [record["loss"] for record in trainer.state.log_history if "loss" in record]
    return TrainOutput(trainer.state.global_step, sum(losses) / len(losses) if losses else float("nan"), {})
