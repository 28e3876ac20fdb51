"""Evaluators and the held-out evaluation every policy stage shares.

``reward_model`` (evaluators of the reward stage: RM accuracy, judge agreement), ``policy`` (evaluators of
policy stages: reward statistics, win rate, sample tables), ``held_out`` (sampling held-out prompts from
the policy and the reference and asking the evaluators) and ``trl_policy`` (that evaluation in a TRL stage).
"""
