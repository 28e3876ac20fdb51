"""Stages: the steps a recipe lists (``sft``, ``reward``, ``dpo``, ``grpo``, ``rloo``, ``ppo``).

Each ``stages/<kind>.py`` registers one stage. The TRL stages share ``online`` (GRPO and RLOO),
``sft_data`` and ``reward_data`` (tokenising), ``reward_training`` (the ranking-aware reward trainer) and
``peak_memory``; the ``ppo`` stage maps its recipe section onto the engine in :mod:`rlhf_plug_plugins.ppo`.
"""
