"""Building, resuming and saving a TRL trainer from a stage's recipe section (progress display:
:mod:`rlhf_plug.progress`; divergence: :mod:`rlhf_plug.divergence`; processes: :mod:`rlhf_plug.distributed`).

Imports torch/transformers lazily: only stage code calls these.
"""

from __future__ import annotations

from typing import Any

from rlhf_plug.distributed import distributed_state
from rlhf_plug.divergence import check_finite_training, stop_on_divergence_callback

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


def resume_and_stop_on_sigterm(trainer, ctx) -> None:
    """``trainer.train()`` continues from the stage's last checkpoint, if any, and stops at a step on SIGTERM."""
    from rlhf_plug.checkpoints import continue_from_checkpoint
    from rlhf_plug.preemption import stop_on_sigterm_callback

    continue_from_checkpoint(trainer, ctx)
    trainer.add_callback(stop_on_sigterm_callback(ctx))


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
    from rlhf_plug.run_folder import ADAPTER_DIR, MODEL_DIR
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


def run_info(ctx, base: str) -> dict:
    """The first rows of a stage's results: which model it started from and how it was loaded."""
    from rlhf_plug.models import use_4bit

    return {
        "base_model": base,
        "quantization": "nf4-4bit" if use_4bit(ctx.quantization) else "none",
        "processes": distributed_state().num_processes,
    }
