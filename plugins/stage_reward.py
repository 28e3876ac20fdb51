"""The ``reward`` stage: a pairwise (Bradley–Terry) reward model with ``trl.RewardTrainer``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from rlhf_plug import hookimpl
from rlhf_plug.recipe import ComponentRef, DataRef
from rlhf_plug.stage import StageConfig

REWARD_FORMATS = ("preference",)  # rankings are accepted and expanded into pairs


class RewardStageConfig(StageConfig):
    data: DataRef = Field(description="chosen/rejected pairs or rankings (best first)")
    evaluators: list[ComponentRef] = Field(
        default_factory=lambda: [ComponentRef(use="rm_accuracy")],
        description="evaluators run on the held-out pairs before and after training",
    )
    judges: list[ComponentRef] = Field(
        default_factory=list,
        description="reward functions whose preferences evaluators compare with the RM's (e.g. judge_agreement)",
    )
    group_pairs_by_prompt: bool = Field(
        True,
        description="rankings: batch the pairs of one prompt together (rankings in random order) and score each "
        "answer once, as InstructGPT did; false shuffles pairs individually",
    )


@dataclass
class RewardEvalContext:
    """What reward-stage evaluators receive."""

    model: Any  # a sequence-classification model (num_labels=1), possibly a PeftModel
    tokenizer: Any
    pairs: Any  # datasets.Dataset of held-out chosen/rejected pairs (prompt optional)
    judges: dict[str, Any]  # name -> reward function, from the stage's `judges:`
    cache: dict = field(default_factory=dict)  # shared by evaluators, e.g. RM scores per text


class RewardStage:
    """Reward model from pairs or rankings (trl.RewardTrainer, Bradley–Terry loss)."""

    def __init__(self, config: RewardStageConfig):
        self.config = config

    def check(self, ctx) -> None:
        from trl import RewardConfig

        ctx.check_args(RewardConfig)
        ctx.check_lora("SEQ_CLS")
        ctx.check_model(default_from=("sft",))
        for i, ref in enumerate(self.config.evaluators):
            ctx.component("evaluator", ref, ("evaluators", i))
        for i, ref in enumerate(self.config.judges):
            ctx.component("reward_function", ref, ("judges", i))
            if [j.use for j in self.config.judges].count(ref.use) > 1:
                raise ctx.error(("judges", i, "use"), f"judge '{ref.use}' is listed twice; judges are named by `use`")
        ctx.load_data(self.config.data, ("data",), REWARD_FORMATS)

    def run(self, ctx) -> dict:
        from trl import RewardConfig

        from rlhf_plug.models import load_tokenizer
        from rlhf_plug.training import (
            attach_progress,
            run_info,
            save_trained,
            trl_trainer,
        )

        from .rm_training import RankingRewardTrainer

        split = ctx.load_data(self.config.data, ("data",), REWARD_FORMATS)
        evaluators = [ctx.build("evaluator", ref, ("evaluators", i)) for i, ref in enumerate(self.config.evaluators)]
        judges = {ref.use: ctx.build("reward_function", ref, ("judges", i)) for i, ref in enumerate(self.config.judges)}
        base = ctx.model_path(default_from=("sft",))
        tokenizer = load_tokenizer(base)
        grouped = split.grouped_by_prompt and self.config.group_pairs_by_prompt
        # Held-out pairs go to our evaluators (RM accuracy, judge agreement), not to the trainer.
        trainer = trl_trainer(
            RankingRewardTrainer, RewardConfig, ctx, base=base, tokenizer=tokenizer, train=split.train,
            task_type="SEQ_CLS", learning_rate=1e-4, per_device_train_batch_size=8,
            train_sampling_strategy="sequential" if grouped else "random",
        )
        attach_progress(trainer, ctx, ("loss", "accuracy", "margin"))
        results: dict = {**run_info(ctx, base), "train_pairs": len(split.train), "eval_pairs": len(split.eval) if split.eval else 0}
        dropped = len(split.train) - len(trainer.train_dataset)
        if dropped:
            limit = trainer.args.max_length
            ctx.console.print(f"  [yellow]{dropped} training pairs longer than max_length={limit} were dropped[/]")
            results["dropped_pairs"] = dropped
        results.update(_evaluate(ctx, trainer, evaluators, judges, split.eval, "before", step=0))
        train_output = trainer.train()
        results["train_loss"] = float(train_output.training_loss)
        results["answer_dedup_factor"] = round(trainer.dedup_ratio, 2)
        results.update(_evaluate(ctx, trainer, evaluators, judges, split.eval, "after", step=trainer.state.global_step))
        results["steps"] = trainer.state.global_step
        save_trained(trainer, ctx, base, tokenizer, "AutoModelForSequenceClassification", num_labels=1)
        return results


def _evaluate(ctx, trainer, evaluators, judges, pairs, when: str, step: int) -> dict:
    if pairs is None or not ctx.is_main_process:
        return {}
    model = trainer.accelerator.unwrap_model(trainer.model)
    eval_ctx = RewardEvalContext(model, trainer.processing_class, pairs, judges)
    metrics: dict = {}
    for evaluator in evaluators:
        metrics.update(evaluator(eval_ctx))
    ctx.log_metrics(step, metrics, evaluation=True)
    return {f"eval_{k}_{when}": v for k, v in metrics.items()}


@hookimpl
def rlhf_register_stages(register):
    register("reward", RewardStage, config=RewardStageConfig)
