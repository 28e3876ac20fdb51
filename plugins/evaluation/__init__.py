"""Evaluators: ``reward_model`` (the reward stage's: RM accuracy, judge agreement) and ``policy`` (a policy
stage's: reward statistics, win rate, sample tables). The held-out evaluation that runs them for every
policy stage is in :mod:`rlhf_plug.policy.held_out`.
"""
