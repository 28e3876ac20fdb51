"""rlhf-plug's default plugins, installed as ``rlhf_plug_plugins``.

They use only the public plugin API that third-party plugins get. Each module
is registered under its own fixed name, so an entry point can't register the
same module twice.
"""

DEFAULT_PLUGINS = (
    "rlhf_plug_plugins.stage_sft",
    "rlhf_plug_plugins.stage_reward",
    "rlhf_plug_plugins.data_sources",
    "rlhf_plug_plugins.rewards",
    "rlhf_plug_plugins.toxicity",
    "rlhf_plug_plugins.losses",
    "rlhf_plug_plugins.kl_controllers",
    "rlhf_plug_plugins.evaluators",
    "rlhf_plug_plugins.stage_ppo",
    "rlhf_plug_plugins.stage_dpo",
    "rlhf_plug_plugins.stage_grpo",
    "rlhf_plug_plugins.stage_rloo",
    "rlhf_plug_plugins.reward_model",
    "rlhf_plug_plugins.ppo_evaluators",
    "rlhf_plug_plugins.report_curves",
    "rlhf_plug_plugins.report_ppo",
    "rlhf_plug_plugins.report_methods",
)
