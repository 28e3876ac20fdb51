"""A TRL stage whose loss, gradient norm or held-out loss turns NaN or inf fails and saves nothing:
a NaN model must never become the input of the next stage. Imports torch and transformers lazily."""

from __future__ import annotations

import math
from typing import Any


#: Logged figures that, once NaN or inf, mean the weights are no longer usable.
DIVERGENCE_KEYS = ("loss", "train_loss", "eval_loss", "grad_norm")


def stop_on_divergence_callback(ctx):
    """A ``TrainerCallback``: a NaN or inf loss or gradient norm stops training and fails the stage (one line
    naming ``args.learning_rate``), so a NaN model never becomes a stage's output. The stage's checkpoints
    go too: the later ones may hold the NaN weights, and ``--resume`` must not continue from them."""
    from transformers import TrainerCallback

    class StopOnDivergence(TrainerCallback):
        found: tuple[str, Any, int] | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.found is None and state.global_step > 0:
                self.found = first_divergence([{**(logs or {}), "step": state.global_step}])
                control.should_training_stop |= self.found is not None
            return control

        def on_train_end(self, args, state, control, **kwargs):
            if self.found is not None:
                raise diverged(ctx, *self.found, args.learning_rate)

    return StopOnDivergence()


def diverged(ctx, what: str, value: Any, step: int, learning_rate: float):
    """The stage's one-line error for a non-finite figure; removes its checkpoints."""
    from rlhf_plug.checkpoints import remove_checkpoints

    if ctx.is_main_process:
        remove_checkpoints(ctx.output_dir)
    return ctx.error(("args", "learning_rate"), f"training diverged: {what} is {value} at step {step}; the stage "
                     f"is not saved and its checkpoints are removed (a learning rate of {learning_rate:g} too high?)")


def first_divergence(records: list[dict]) -> tuple[str, Any, int] | None:
    """``(key, value, step)`` of the first non-finite :data:`DIVERGENCE_KEYS` figure after step 0, or None."""
    for record in records:
        for key in DIVERGENCE_KEYS:
            value = record.get(key)
            if record.get("step", 0) > 0 and isinstance(value, (int, float)) and not math.isfinite(value):
                return key, value, record["step"]
    return None


def check_finite_training(trainer, ctx) -> None:
    """Every logged loss after the start (the final held-out one included) and every trained weight is
    finite, or the stage fails: a NaN model must not feed the next stage."""
    import torch

    if found := first_divergence(trainer.state.log_history):
        raise diverged(ctx, *found, trainer.args.learning_rate)
    for name, param in trainer.model.named_parameters():
        if param.requires_grad and not bool(torch.isfinite(param).all()):
            raise diverged(ctx, f"weight {name}", "not finite", trainer.state.global_step, trainer.args.learning_rate)

