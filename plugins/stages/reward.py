"""The ``reward`` stage: a pairwise (Bradley–Terry) reward model with ``trl.RewardTrainer``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from rlhf_plug import hookimpl
from rlhf_plug.recipe import ComponentRef, DataRef
from rlhf_plug.stage import StageConfig

from rlhf_plug_plugins.stages.reward_data import Truncation

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
    truncation: Truncation = Field(
        "keep_answers",
        description="pairs longer than args.max_length: keep_answers cuts the shared prompt from the left and keeps "
        "both answers whole (dropping only pairs whose answer alone does not fit); drop discards them (TRL's behaviour)",
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
    max_length: int | None = None  # inputs are cut as in training (rlhf_plug.encoding)
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
        from rlhf_plug.progress import attach_progress
        from rlhf_plug.training import run_info, save_trained, trl_trainer

        from rlhf_plug_plugins.stages.reward_data import with_explicit_prompts, write_input_format
        from rlhf_plug_plugins.stages.reward_training import RankingRewardTrainer

        split = ctx.load_data(self.config.data, ("data",), REWARD_FORMATS)
        evaluators = [ctx.build("evaluator", ref, ("evaluators", i)) for i, ref in enumerate(self.config.evaluators)]
        judges = {ref.use: ctx.build("reward_function", ref, ("judges", i)) for i, ref in enumerate(self.config.judges)}
        base = ctx.model_path(default_from=("sft",))
        tokenizer = load_tokenizer(base)
        grouped = split.grouped_by_prompt and self.config.group_pairs_by_prompt
        train, counts = self._training_pairs(ctx, split, tokenizer)
        held_out = with_explicit_prompts(split.eval)
        # Held-out pairs go to our evaluators (RM accuracy, judge agreement), not to the trainer.
        trainer = trl_trainer(
            RankingRewardTrainer, RewardConfig, ctx, base=base, tokenizer=tokenizer, train=train,
            task_type="SEQ_CLS", learning_rate=default_learning_rate(ctx.config.lora), per_device_train_batch_size=8,
            # Pairs of one ranking together; otherwise batches of similar length, which on real
            # transcripts (HH-RLHF: 30 to 1,000 tokens) halves the padding the forward pass computes.
            train_sampling_strategy="sequential" if grouped else "group_by_length",
            # TRL's default: at real lengths the activations of 2 x batch x max_length tokens do not fit
            # (13 GB against 6.6 GB at max_length 320, batch 8; benchmarks/RESULTS.md).
            gradient_checkpointing=True,
        )
        attach_progress(trainer, ctx, ("loss", "accuracy", "margin"))
        results: dict = {**run_info(ctx, base), "train_pairs": len(split.train), "eval_pairs": len(split.eval) if split.eval else 0}
        results.update(truncated_pairs=counts.truncated, dropped_pairs=counts.dropped)
        results.update(_evaluate(ctx, trainer, evaluators, judges, held_out, "before", step=0))
        train_output = trainer.train()
        results["train_loss"] = float(train_output.training_loss)
        results["train_seconds"] = round(float(train_output.metrics.get("train_runtime", 0.0)), 1)
        results["answer_dedup_factor"] = round(trainer.dedup_ratio, 2)
        results.update(_evaluate(ctx, trainer, evaluators, judges, held_out, "after", step=trainer.state.global_step))
        results["steps"] = trainer.state.global_step
        save_trained(trainer, ctx, base, tokenizer, "AutoModelForSequenceClassification", num_labels=1)
        if ctx.is_main_process:
            write_input_format(ctx.output_dir, trainer.args.max_length)
        return results

    def _training_pairs(self, ctx, split, tokenizer):
        """Training pairs as token ids cut to ``max_length`` (:mod:`.rm_data`), and what was cut or dropped."""
        from rlhf_plug.training import DEFAULT_MAX_LENGTH

        from rlhf_plug_plugins.stages.reward_data import tokenize_pairs

        max_length = ctx.config.args.get("max_length", DEFAULT_MAX_LENGTH)
        train, counts = tokenize_pairs(split.train.to_list(), tokenizer, max_length, self.config.truncation)
        if not counts.kept:
            raise ctx.error(("args", "max_length"), f"no training pair fits in max_length={max_length}")
        if (counts.truncated or counts.dropped) and ctx.is_main_process:
            ctx.console.print(
                f"  [yellow]max_length={max_length}: {counts.truncated} training pairs had their prompt cut from the left, "
                f"{counts.dropped} were dropped ({_drop_reason(self.config.truncation)})[/]"
            )
        return train, counts


def default_learning_rate(lora) -> float:
    """5e-4 for a LoRA reward model, TRL's 1e-4 for full fine-tuning.

    On HH-RLHF harmless (SmolLM2-135M, LoRA r 16, 60 steps of 8 pairs) 5e-4 reached 0.646 held-out
    pair accuracy against 0.605 for plain TRL at its 1e-4 (three seeds, 612 pairs; benchmarks/RESULTS.md).
    """
    return 1e-4 if lora is False else 5e-4


def _drop_reason(truncation: str) -> str:
    return "an answer alone is longer" if truncation == "keep_answers" else "longer than max_length; truncation: drop"


def _evaluate(ctx, trainer, evaluators, judges, pairs, when: str, step: int) -> dict:
    if pairs is None or not ctx.is_main_process:
        return {}
    model = trainer.accelerator.unwrap_model(trainer.model)
    eval_ctx = RewardEvalContext(model, trainer.processing_class, pairs, judges, max_length=trainer.args.max_length)
    metrics: dict = {}
    for evaluator in evaluators:
        metrics.update(evaluator(eval_ctx))
    ctx.log_metrics(step, metrics, evaluation=True)
    return {f"eval_{k}_{when}": v for k, v in metrics.items()}


@hookimpl
def rlhf_register_stages(register):
    register("reward", RewardStage, config=RewardStageConfig)
