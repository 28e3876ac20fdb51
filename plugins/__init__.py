"""rlhf-plug's default plugins, installed as ``rlhf_plug_plugins``.

They use only the public plugin API that third-party plugins get. Each module
is registered under its own fixed name, so an entry point can't register the
same module twice.
"""

DEFAULT_PLUGINS = (
    "rlhf_plug_plugins.stages.sft",
    "rlhf_plug_plugins.stages.reward",
    "rlhf_plug_plugins.data.sources",
    "rlhf_plug_plugins.rewards.builtin",
    "rlhf_plug_plugins.rewards.toxicity",
    "rlhf_plug_plugins.objectives.losses",
    "rlhf_plug_plugins.objectives.kl_controllers",
    "rlhf_plug_plugins.evaluation.reward_model",
    "rlhf_plug_plugins.stages.ppo",
    "rlhf_plug_plugins.stages.dpo",
    "rlhf_plug_plugins.stages.grpo",
    "rlhf_plug_plugins.stages.rloo",
    "rlhf_plug_plugins.rewards.learned_rm",
    "rlhf_plug_plugins.evaluation.policy",
    "rlhf_plug_plugins.report.curves",
    "rlhf_plug_plugins.report.ppo",
    "rlhf_plug_plugins.report.methods",
)
