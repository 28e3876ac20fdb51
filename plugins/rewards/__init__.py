"""Reward functions: ``builtin`` (length, format and task rewards), ``learned_rm`` (a trained reward stage as a
reward), ``toxicity``, ``annotator`` (the simulated annotator of the built-in task) and ``summary_judge``.
How every stage calls them is in :mod:`rlhf_plug.policy.rewards`; scoring with a reward model, in
:mod:`rlhf_plug.rm_scoring`.
"""
