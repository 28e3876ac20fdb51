"""Helpers for stages that wrap a ``transformers``/TRL trainer.

Imports torch/transformers lazily: only stage code calls these.
"""

from __future__ import annotations

import math
from typing import Any

#: ``max_length`` of every TRL stage unless its ``args`` set one.
DEFAULT_MAX_LENGTH = 512

#: Defaults we put under the recipe's ``args`` (the recipe wins).
TRAINER_DEFAULTS: dict[str, Any] = {
    "disable_tqdm": True,  # we draw our own rich progress bar
    "logging_steps": 1,
    # Mid-stage checkpoints for `run --resume` (rlhf_plug.checkpoints): every 10% of the steps (a float
    # below 1 is a fraction of the steps in transformers), keeping the last; the older one goes only
    # once the new one is complete.
    "save_strategy": "steps",
    "save_steps": 0.1,
    "save_total_limit": 1,
    "eval_strategy": "no",
    "dataloader_num_workers": 0,
    "gradient_checkpointing": False,  # small models: recomputation costs more than it saves
}


def quiet_libraries() -> None:
    """Silence library progress bars and info logs; our rich display replaces them."""
    import warnings

    import datasets
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)\b.*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(transformers|trl|peft)\b.*")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()


def device_defaults() -> dict[str, Any]:
    """Full precision on CPU (TRL defaults to bf16, which needs ``use_cpu`` there); bf16 on capable GPUs."""
    import torch

    if torch.cuda.is_available():
        return {"bf16": torch.cuda.is_bf16_supported()}
    return {"use_cpu": True, "bf16": False}


def trainer_config_kwargs(ctx, output_dir: str, **stage_defaults) -> dict:
    """Our defaults, then the stage's, then the recipe's ``args``; ``report_to`` from the recipe (:mod:`rlhf_plug.tracking`)."""
    from rlhf_plug.tracking import trl_config_defaults

    if "report_to" in ctx.config.args:  # one key for every stage, PPO's included
        raise ctx.error(("args", "report_to"), "set trackers with the stage's `report_to:` (or the recipe's), not in args")
    tracking = trl_config_defaults(ctx)
    kwargs = {**TRAINER_DEFAULTS, **device_defaults(), "seed": ctx.seed, **tracking, **stage_defaults, **ctx.config.args}
    kwargs["output_dir"] = output_dir
    kwargs["report_to"] = tracking["report_to"]
    return kwargs


def trainer_config(config_class: type, ctx, **stage_defaults) -> Any:
    """Build a TRL config: our defaults, then the stage's, then the recipe's ``args``."""
    from rlhf_plug.checkpoints import TRAINER_DIR

    kwargs = trainer_config_kwargs(ctx, str(ctx.output_dir / TRAINER_DIR), **stage_defaults)
    try:
        return config_class(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ctx.error(("args",), f"{config_class.__name__} rejected the arguments: {exc}") from None


def trl_trainer(
    trainer_class, config_class, ctx, *, base: str, tokenizer, train, task_type: str, evaluation=None,
    trainer_kwargs: dict | None = None, **defaults,
):
    """Build a TRL trainer from a stage's recipe section: args, LoRA and quantization.

    ``defaults`` are the stage's own defaults for the TRL config; the recipe's
    ``args`` override them. ``trainer_kwargs`` go to the trainer itself (e.g. GRPO's ``reward_funcs``).
    """
    import dataclasses

    from rlhf_plug.models import lora_config, model_init_kwargs, quantization_config

    fields = {f.name for f in dataclasses.fields(config_class)}
    length = {"max_length": DEFAULT_MAX_LENGTH} if "max_length" in fields else {}  # GRPO/RLOO have none
    args = trainer_config(
        config_class, ctx, per_device_eval_batch_size=16, **length,
        model_init_kwargs=model_init_kwargs(ctx.quantization), **defaults,
    )
    trainer = trainer_class(
        model=base,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=lora_config(ctx.config.lora, task_type),
        quantization_config=quantization_config(ctx.quantization),
        **(trainer_kwargs or {}),
    )
    resume_and_stop_on_sigterm(trainer, ctx)
    trainer.add_callback(stop_on_divergence_callback(ctx))
    return trainer


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


def resume_and_stop_on_sigterm(trainer, ctx) -> None:
    """``trainer.train()`` continues from the stage's last checkpoint, if any, and stops at a step on SIGTERM."""
    from rlhf_plug.checkpoints import continue_from_checkpoint
    from rlhf_plug.preemption import stop_on_sigterm_callback

    continue_from_checkpoint(trainer, ctx)
    trainer.add_callback(stop_on_sigterm_callback(ctx))


def finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def numeric_logs(logs: dict | None) -> dict:
    """The numbers of a TRL log; NaN and inf stay (as floats): ``log_metrics`` records them as null, with a notice."""
    out = {}
    for key, value in (logs or {}).items():
        if finite(value) is not None:
            out[key] = value
        elif isinstance(value, float):
            out[key] = value
    return out


def attach_progress(trainer, ctx, key_metrics: tuple[str, ...] = ("loss",)) -> None:
    """Replace the trainer's printing/tqdm callbacks with our progress display; keep its tracker logs in the run folder."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from rlhf_plug.tracking import point_trainer_logs

    point_trainer_logs(trainer, ctx)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(progress_callback(ctx, key_metrics))


class PlainProgress:
    """Progress as plain lines, for output that is not a terminal (a log file, CI).

    rich draws no bar there, so a run would print nothing for minutes. One line per
    ``every`` steps (about 20 lines a stage), and always the last: step, elapsed, ETA, metrics.
    Same ``update`` / ``stop`` calls as a rich ``Progress``.
    """

    def __init__(self, console, name: str, total: int, completed: int = 0):
        import time

        self.console, self.name, self.total = console, name, total
        self.start, self.first = time.monotonic(), completed
        self.completed, self.metrics, self.printed = completed, "", completed
        self.every = max(1, total // 20)

    def update(self, task=None, completed: int | None = None, metrics: str | None = None) -> None:
        # A TRL trainer reports a step's end before its metrics: a due line waits for them.
        if completed is not None and completed != self.completed:
            if self.completed != self.printed and self.completed - self.printed >= self.every:
                self._print()  # the metrics of the previous step never came
            self.completed = completed
        if metrics is not None:
            self.metrics = metrics
        due = self.completed - self.printed >= self.every or (self.completed >= self.total > self.printed)
        if due and (metrics is not None or completed is None):
            self._print()

    def _print(self) -> None:
        self.printed = self.completed
        self.console.print(self.line(), highlight=False, markup=False, soft_wrap=True)  # one line, however long

    def line(self) -> str:
        import time

        elapsed = time.monotonic() - self.start
        done = self.completed - self.first
        eta = elapsed / done * (self.total - self.completed) if done else None
        return (
            f"{self.name}: step {self.completed}/{self.total}  elapsed {_clock(elapsed)}  "
            f"ETA {_clock(eta) if eta is not None else '-'}  {self.metrics}".rstrip()
        )

    def stop(self) -> None:
        if self.completed != self.printed:
            self._print()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def make_progress(ctx, total: int, completed: int = 0):
    """A started progress display for a stage (main process only; None elsewhere):
    a rich bar in a terminal, :class:`PlainProgress` lines otherwise."""
    if not ctx.is_main_process:
        return None, None
    if not ctx.console.is_terminal:
        return PlainProgress(ctx.console, ctx.name, total, completed), None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn(f"[bold]{ctx.name}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
        console=ctx.console,
        transient=False,
        # rich estimates speed over the last 30 s by default: with steps of a minute there is never
        # more than one sample in that window, and the ETA stays -:--:--.
        speed_estimate_period=3600,
    )
    task = progress.add_task(ctx.name, total=total, completed=completed, metrics="")
    progress.start()
    return progress, task


def metrics_line(metrics: dict, keys: tuple[str, ...]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if finite(metrics.get(k)) is not None)


def progress_callback(ctx, key_metrics: tuple[str, ...] = ("loss",)):
    """A ``TrainerCallback`` that draws a rich progress bar and reports metrics to the hooks."""
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        def __init__(self) -> None:
            self.progress = None
            self.task = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.progress, self.task = make_progress(ctx, state.max_steps, state.global_step)  # > 0 when resumed

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = numeric_logs(logs)
            evaluation = any(k.startswith("eval_") for k in logs)
            ctx.log_metrics(state.global_step, logs, evaluation=evaluation)
            if self.progress is not None and not evaluation:
                self.progress.update(self.task, metrics=metrics_line(logs, key_metrics))

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)
                self.progress.stop()
                self.progress = None

    return RichProgress()


def results_table(title: str, results: dict[str, Any]):
    """A rich table of a stage's results."""
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


def saved_weights_bytes(model) -> int:
    """About what saving ``model`` merged takes: every parameter at the model's own float width
    (4-bit parameters counted unpacked, as the full-precision merge writes them), the adapter's included."""
    import torch

    dtype = getattr(model.config, "dtype", None) or getattr(model.config, "torch_dtype", None)
    dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    width = torch.finfo(dtype).bits // 8 if isinstance(dtype, torch.dtype) and dtype.is_floating_point else 4
    total = 0
    for param in model.parameters():
        shape = getattr(getattr(param, "quant_state", None), "shape", None)
        total += (shape.numel() if shape is not None else param.numel()) * width
    return total


def save_trained(trainer, ctx, base: str, tokenizer, auto_class: str, **load_kwargs) -> None:
    """Save the adapter (or full weights) and a merged model under ``ctx.output_dir``.

    ``adapter/`` holds the LoRA adapter as safetensors; ``model/`` holds the
    merged full-precision model plus tokenizer, which is what the next stage
    loads. The trainer's trackers are closed first: the stage has logged everything.
    """
    from rlhf_plug.disk_space import check_free_space
    from rlhf_plug.models import merge_adapter
    from rlhf_plug.stage import ADAPTER_DIR, MODEL_DIR
    from rlhf_plug.tracking import finish_trainer_trackers

    check_finite_training(trainer, ctx)
    if ctx.is_main_process:
        check_free_space(ctx.output_dir, saved_weights_bytes(trainer.model), "the trained model")
    finish_trainer_trackers(trainer)
    uses_lora = ctx.config.lora is not False
    target = ctx.output_dir / (ADAPTER_DIR if uses_lora else MODEL_DIR)
    trainer.save_model(str(target))  # saves on the main process only
    trainer.accelerator.wait_for_everyone()
    if not ctx.is_main_process:
        return
    tokenizer.save_pretrained(target)
    scratch = ctx.output_dir / "trainer"
    if scratch.is_dir() and not any(scratch.iterdir()):
        scratch.rmdir()
    if uses_lora:
        merge_adapter(base, target, ctx.output_dir / MODEL_DIR, auto_class, tokenizer, **load_kwargs)


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


def run_info(ctx, base: str) -> dict:
    """The first rows of a stage's results: which model it started from and how it was loaded."""
    from rlhf_plug.models import use_4bit

    return {
        "base_model": base,
        "quantization": "nf4-4bit" if use_4bit(ctx.quantization) else "none",
        "processes": distributed_state().num_processes,
    }
