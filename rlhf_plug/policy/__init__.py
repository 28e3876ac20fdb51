"""The kit for a stage that trains a policy: what ``ppo``, ``dpo``, ``grpo`` and ``rloo`` share, public for a
third party's own method (docs/plugins.md, "A stage of your own").

- :mod:`.rewards`          ``reward:`` and ``judges:`` entries (:class:`~.rewards.RewardRef`, :class:`~.rewards.JudgeRef`),
  weighted reward components and the checked call every stage uses
- :mod:`.trl_rewards`      the same components built for, and handed to, a TRL trainer
- :mod:`.generation`       the ``generation:`` section (:class:`~.generation.GenerationArgs`)
- :mod:`.sampling`         sampling responses: left-padded prompts in, EOS-truncated responses out, each token's
  log-probability as drawn (:mod:`.inverse_cdf`), the model's own generation config ignored
  (:mod:`.generation_defaults`)
- :mod:`.held_out`         the held-out evaluation: policy and reference samples, judges, evaluators, tables
- :mod:`.trl_evaluation`   that evaluation inside a TRL stage (:class:`~.trl_evaluation.TRLPolicyEvaluation`)

Nothing is imported here, so ``rlhf_plug.policy.generation`` stays light; ``sampling`` imports torch.
"""
