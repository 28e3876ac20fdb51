"""rlhf-plug's PPO engine, built on transformers, peft and accelerate.

TRL removed its PPOTrainer in 1.13, so this engine is ours. It keeps one base
model in memory for all four roles (policy adapter, reference = adapters off,
value head, reward adapter) and reuses TRL utilities where they fit
(``selective_log_softmax_and_entropy``, ``disable_dropout_in_model``,
``unwrap_model_for_generation``).

Modules, in the order a PPO step uses them:

- :mod:`.rollout`     sample responses (left-padded prompts, EOS truncation)
- :mod:`.actor_critic` the shared base: response logprobs, values, reward scores
- :mod:`.rewards`     weighted reward components and their output checks
- :mod:`.advantages`  KL estimators, per-token rewards, GAE, whitening, running stats
- :mod:`.trainer`     the loop: rollout → score → advantages → update
- :mod:`.checkpoint`  atomic checkpoints and resume
"""
