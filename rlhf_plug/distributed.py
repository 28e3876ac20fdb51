"""Several processes: accelerate's state, and the launches that would silently not be what was asked.
Imports torch and accelerate lazily."""

from __future__ import annotations


def distributed_state():
    """accelerate's process state; on CPU it must be asked for explicitly (gloo DDP)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


#: What works where, for the errors of :func:`check_distributed_launch`.
WHAT_WORKS = (
    "on CPU use DDP (accelerate launch --multi_gpu --num_processes N: gloo); "
    "FSDP and DeepSpeed ZeRO need CUDA GPUs (configs/accelerate/)"
)


def check_distributed_launch(state) -> None:
    """Refuse a launch that would silently not be what was asked (before any model loads).

    With ``--use_fsdp``/``--use_deepspeed`` on a machine without CUDA, accelerate cannot shard
    (FSDP falls back or fails, DeepSpeed fails an assertion), and a launcher that started
    ``WORLD_SIZE`` processes that each see only themselves would train N independent copies
    into one run folder. Both are a :class:`~rlhf_plug.errors.UserError` (exit 2).
    """
    import os

    import torch

    from rlhf_plug.errors import UserError

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and state.num_processes != world:
        raise UserError(
            f"launched as {world} processes (WORLD_SIZE) but accelerate sees {state.num_processes} "
            f"({state.distributed_type}): each would train alone into the same run folder; {WHAT_WORKS}"
        )
    if torch.cuda.is_available():
        return
    for variable, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(variable, "false").lower() in ("1", "true", "yes"):
            raise UserError(f"{name} was requested ({variable}) but there is no CUDA GPU, so it cannot take effect; {WHAT_WORKS}")

