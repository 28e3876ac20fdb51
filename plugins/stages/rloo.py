"""The ``rloo`` stage: REINFORCE Leave-One-Out with ``trl.RLOOTrainer``.

``args`` go to ``trl.RLOOConfig`` as they are (``beta``, ``num_generations``,
``max_completion_length``, ...); the reward is the recipe's ``reward:`` list. See
:mod:`rlhf_plug_plugins.stages.online`.
"""

from __future__ import annotations

from rlhf_plug import hookimpl

from rlhf_plug_plugins.stages.online import OnlineStage, OnlineStageConfig


class RLOOStage(OnlineStage):
    """RLOO against the recipe's reward functions: leave-one-out baseline, no critic (trl.RLOOTrainer)."""

    method = "RLOO"
    trainer = "RLOOTrainer"
    config_class_name = "RLOOConfig"


@hookimpl
def rlhf_register_stages(register):
    register("rloo", RLOOStage, config=OnlineStageConfig)
