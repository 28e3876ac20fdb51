"""The ``sft`` stage: supervised fine-tuning with ``trl.SFTTrainer``."""

from __future__ import annotations

from pydantic import Field

from rlhf_plug import hookimpl
from rlhf_plug.recipe import DataRef
from rlhf_plug.stage import StageConfig

SFT_FORMATS = ("prompt_completion", "conversational", "language_modeling")


class SFTStageConfig(StageConfig):
    data: DataRef = Field(description="demonstrations: prompt/completion, messages or text")


class SFTStage:
    """Supervised fine-tuning on demonstrations (trl.SFTTrainer, LoRA/QLoRA)."""

    def __init__(self, config: SFTStageConfig):
        self.config = config

    def check(self, ctx) -> None:
        from trl import SFTConfig

        ctx.check_args(SFTConfig)
        ctx.check_lora("CAUSAL_LM")
        ctx.check_model()
        ctx.load_data(self.config.data, ("data",), SFT_FORMATS)

    def run(self, ctx) -> dict:
        from trl import SFTConfig, SFTTrainer

        from rlhf_plug.models import load_tokenizer
        from rlhf_plug.progress import attach_progress
        from rlhf_plug.training import run_info, save_trained, trl_trainer

        split = ctx.load_data(self.config.data, ("data",), SFT_FORMATS)
        base = ctx.model_path()
        tokenizer = load_tokenizer(base)
        train, evaluation, counts = _keep_completions(ctx, split, tokenizer)
        trainer = trl_trainer(
            SFTTrainer, SFTConfig, ctx, base=base, tokenizer=tokenizer, train=train, evaluation=evaluation,
            task_type="CAUSAL_LM", learning_rate=2e-4, per_device_train_batch_size=8,
            completion_only_loss=True if counts is not None else None,
        )
        attach_progress(trainer, ctx, ("loss", "mean_token_accuracy"))
        results: dict = run_info(ctx, base)
        if counts is not None:
            results.update(truncated_rows=counts[0], dropped_rows=counts[1])
        if split.eval is not None:
            results["eval_loss_before"] = trainer.evaluate()["eval_loss"]
        train_output = trainer.train()
        results["train_loss"] = float(train_output.training_loss)
        if split.eval is not None:
            # trainer.evaluate() logs to metrics.jsonl through the progress callback's on_log
            results["eval_loss_after"] = trainer.evaluate()["eval_loss"]
        results["steps"] = trainer.state.global_step
        save_trained(trainer, ctx, base, tokenizer, "AutoModelForCausalLM")
        return results


def _keep_completions(ctx, split, tokenizer):
    """Plain-text prompt/completion rows pre-tokenized with the prompt cut from the left
    (:mod:`rlhf_plug_plugins.stages.sft_data`); other formats as they are. Returns
    (train, eval, (truncated, dropped) or None)."""
    from rlhf_plug.training import DEFAULT_MAX_LENGTH

    from rlhf_plug_plugins.stages.sft_data import is_text_prompt_completion, tokenize_completions

    if split.format != "prompt_completion" or not is_text_prompt_completion(split.train):
        return split.train, split.eval, None
    max_length = ctx.config.args.get("max_length", DEFAULT_MAX_LENGTH)
    train, truncated, dropped = tokenize_completions(split.train, tokenizer, max_length)
    evaluation = tokenize_completions(split.eval, tokenizer, max_length)[0] if split.eval is not None else None
    if truncated or dropped:
        ctx.console.print(
            f"  [yellow]max_length={max_length}: {truncated} training rows had their prompt cut from the left, "
            f"{dropped} were dropped (the completion alone is longer)[/]"
        )
    if not len(train):
        raise ctx.error(("args", "max_length"), f"no training row fits in max_length={max_length}")
    return train, evaluation, (truncated, dropped)


@hookimpl
def rlhf_register_stages(register):
    register("sft", SFTStage, config=SFTStageConfig)
