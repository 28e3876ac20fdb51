"""rlhf-plug's PPO engine, built on transformers, peft and accelerate.

TRL removed its PPOTrainer in 1.13, so this engine is ours. It keeps one base
model in memory for all four roles (policy adapter, reference = adapters off,
value head, reward adapter) and reuses TRL utilities where they fit
(``selective_log_softmax_and_entropy``, ``disable_dropout_in_model``,
``unwrap_model_for_generation``).

A closed engine: only the ``ppo`` stage (:mod:`rlhf_plug_plugins.stages.ppo`) imports it. Modules, in
the order a run uses them:

- :mod:`.config`       the ``ppo`` stage's recipe section
- :mod:`.build`        the shared base model with its adapters, the optimizer, accelerate
- :mod:`.driver`       the stage's run: resume, the loop, held-out evaluation, the final save
- :mod:`.loop`         one PPO step: rollout (:mod:`rlhf_plug.policy.sampling`) → score → advantages → update
- :mod:`.actor_critic` the shared base: response logprobs, values, reward scores
- :mod:`.scoring`      response log-probs as sampled (family logit transforms, top-k/top-p)
- :mod:`.mismatch`     the sampler-vs-trainer log-prob gap and truncated importance sampling
- :mod:`.advantages`   KL estimators, per-token rewards, GAE, whitening, running stats
- :mod:`.schedule`     which prompts each step samples
- :mod:`.dropout`      dropout off in every role
- :mod:`.evaluation`   the held-out evaluation (:mod:`rlhf_plug.policy.held_out`) with PPO's sampler
- :mod:`.saved_state`  atomic checkpoints and resume
- :mod:`.speed`        speed and memory features
"""
