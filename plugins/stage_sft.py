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
        from rlhf_plug.training import (
            attach_progress,
            run_info,
            save_trained,
            trl_trainer,
        )

        split = ctx.load_data(self.config.data, ("data",), SFT_FORMATS)
        base = ctx.model_path()
        tokenizer = load_tokenizer(base)
        trainer = trl_trainer(
            SFTTrainer, SFTConfig, ctx, base=base, tokenizer=tokenizer, train=split.train, evaluation=split.eval,
            task_type="CAUSAL_LM", learning_rate=2e-4, per_device_train_batch_size=8,
        )
        attach_progress(trainer, ctx, ("loss", "mean_token_accuracy"))
        results: dict = run_info(ctx, base)
        if split.eval is not None:
            results["eval_loss_before"] = trainer.evaluate()["eval_loss"]
        train_output = trainer.train()
        results["train_loss"] = float(train_output.training_loss)
        if split.eval is not None:
            after = trainer.evaluate()
            results["eval_loss_after"] = after["eval_loss"]
            ctx.log_metrics(trainer.state.global_step, after, evaluation=True)
        results["steps"] = trainer.state.global_step
        save_trained(trainer, ctx, base, tokenizer, "AutoModelForCausalLM")
        return results


@hookimpl
def rlhf_register_stages(register):
    register("sft", SFTStage, config=SFTStageConfig)
