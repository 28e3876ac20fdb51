"""Reward functions and what every caller of them shares.

``builtin`` (length, format and task rewards), ``learned_rm`` (a trained reward stage as a reward),
``toxicity``, ``annotator`` (the simulated annotator of the built-in task), ``summary_judge``;
``components`` (weighted reward references and the checked call every stage uses), ``rm_scoring``
(scoring with a reward model) and ``trl_rewards`` (the same components handed to TRL's trainers).
"""
