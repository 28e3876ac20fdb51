"""Atomic PPO checkpoints: written to a hidden folder, then renamed.

A checkpoint ``checkpoints/step-000012/`` holds the trainable weights (policy
adapter, value head/adapter) as safetensors, the policy adapter in peft format,
and ``state.pt``: optimizer, scheduler, KL controller, reward statistics and
the step (which fixes the data position). Each process adds its RNG state.
Both are loaded with ``weights_only=True``: tensors and plain values, never code.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch

from rlhf_plug.stage import CHECKPOINTS_DIR as CHECKPOINTS
WEIGHTS = "trainable.safetensors"
STATE = "state.pt"


def checkpoint_dirs(stage_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (an interrupted write leaves only a hidden folder)."""
    root = Path(stage_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step-*") if (p / STATE).is_file() and (p / WEIGHTS).is_file()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def rng_state() -> dict:
    """Every RNG's state as tensors and plain numbers only, so loading it needs no pickle
    (``torch.load(weights_only=True)``): a planted checkpoint file cannot run code."""
    import numpy as np

    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np

    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["words"].tolist()), py["gauss"]))
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_plain(path: Path):
    """``torch.load`` that refuses anything but tensors and plain containers (no code from a checkpoint)."""
    import pickle

    from rlhf_plug.errors import UserError

    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a plain checkpoint file (tensors and numbers only); refusing to load it: {first}") from None


def save_checkpoint(stage_dir: Path, step: int, trainer_state: dict, actor_critic, accelerator, keep: int) -> Path:
    """Write checkpoint ``step`` atomically on the main process; every process adds its RNG state."""
    from safetensors.torch import save_file

    root = Path(stage_dir) / CHECKPOINTS
    final = root / f"step-{step:06d}"
    tmp = root / f".step-{step:06d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_file(actor_critic.trainable_state(), str(tmp / WEIGHTS))
        actor_critic.peft.save_pretrained(str(tmp / "adapter"), selected_adapters=["default"])
        torch.save(trainer_state, tmp / STATE)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in checkpoint_dirs(stage_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(path: Path, actor_critic, accelerator) -> dict:
    """Restore weights and this process's RNG; return the trainer state for the loop to restore."""
    from safetensors.torch import load_file

    actor_critic.load_trainable_state(load_file(str(path / WEIGHTS)))
    rng_file = path / f"rng-{accelerator.process_index}.pt"
    if rng_file.is_file():
        set_rng_state(load_plain(rng_file))
    return load_plain(path / STATE)
