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
from rlhf_plug.stage import CHECKPOINTS_DIR

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


def latest_trainer_checkpoint(stage_dir: Path) -> Path | None:
    found = trainer_checkpoints(stage_dir)
    return found[-1] if found else None


def checkpoint_step(path: Path) -> int:
    """The step of ``step-000012`` or ``checkpoint-12``."""
    return int(path.name.rsplit("-", 1)[1])


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

    from rlhf_plug.stage import METRICS_FILE

    found = latest_trainer_checkpoint(ctx.output_dir)
    if found is None:
        return None
    if ctx.is_main_process:
        drop_records_after(ctx.output_dir / METRICS_FILE, checkpoint_step(found), ctx.console, redo_start=True)
        ctx.console.print(f"  [bold]resuming[/] from checkpoint {found.name} (step {checkpoint_step(found)})")
    # Trainer.train() takes the checkpoint as an argument and the stages call train() themselves: bind it
    # here, so that every stage built with rlhf_plug.training.trl_trainer resumes without its own code.
    if 0 < trainer.args.max_steps <= checkpoint_step(found):
        trainer.train = partial(_already_trained, trainer, found)
    else:
        trainer.train = partial(trainer.train, resume_from_checkpoint=str(found))
    return found


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
