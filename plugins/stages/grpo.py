"""The ``grpo`` stage: Group Relative Policy Optimization with ``trl.GRPOTrainer``.

``args`` go to ``trl.GRPOConfig`` as they are (``beta``, ``num_generations``, ``loss_type``,
``max_completion_length``, ...); the reward is the recipe's ``reward:`` list. See
:mod:`rlhf_plug_plugins.stages.online`.
"""

from __future__ import annotations

from rlhf_plug import hookimpl

from rlhf_plug_plugins.stages.online import OnlineStage, OnlineStageConfig


class GRPOStage(OnlineStage):
    """GRPO against the recipe's reward functions: group-normalised advantages, no critic (trl.GRPOTrainer)."""

    method = "GRPO"
    trainer = "GRPOTrainer"
    config_class_name = "GRPOConfig"


@hookimpl
def rlhf_register_stages(register):
    register("grpo", GRPOStage, config=OnlineStageConfig)
