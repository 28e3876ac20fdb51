"""Hand-computed checks of the default losses and KL controllers."""

from __future__ import annotations

import math

import pytest
import torch
from rlhf_plug_plugins.objectives.kl_controllers import AdaptiveKL, FixedKL
from rlhf_plug_plugins.objectives.losses import PPOClipLoss, ReinforceLoss


def test_fixed_kl_never_moves_and_round_trips():
    kl = FixedKL(init=0.3)
    kl.update(observed_kl=100.0, n_steps=64)
    assert kl.value == 0.3
    other = FixedKL()
    other.load_state_dict(kl.state_dict())
    assert other.value == 0.3


@pytest.mark.parametrize(
    ("observed", "expected_error"),
    [(9.0, 0.2), (6.6, 0.1), (3.0, -0.2), (6.0, 0.0)],  # clipped to ±0.2
)
def test_adaptive_kl_follows_ziegler_update(observed, expected_error):
    kl = AdaptiveKL(init=0.1, target=6.0, horizon=1000)
    kl.update(observed_kl=observed, n_steps=100)
    assert kl.value == pytest.approx(0.1 * (1 + expected_error * 100 / 1000))
    restored = AdaptiveKL(init=5.0, target=6.0, horizon=1000)
    restored.load_state_dict(kl.state_dict())
    assert restored.value == kl.value


def test_adaptive_kl_bounds_hold_beta_within_min_and_max():
    kl = AdaptiveKL(init=0.2, target=1.0, horizon=16, min_beta=0.2, max_beta=0.25)
    kl.update(observed_kl=0.0, n_steps=8)  # unbounded: 0.2 * (1 - 0.2 * 8 / 16) = 0.18
    assert kl.value == 0.2
    kl.update(observed_kl=5.0, n_steps=8)  # 0.2 * 1.1 = 0.22
    assert kl.value == pytest.approx(0.22)
    kl.update(observed_kl=5.0, n_steps=8)  # 0.242
    kl.update(observed_kl=5.0, n_steps=8)  # 0.2662, capped
    assert kl.value == 0.25


def _batch(ratio: float, advantage: float, value: float, old_value: float, ret: float) -> dict:
    old = torch.tensor([[math.log(0.5)]])
    return {
        "logprobs": old + math.log(ratio),
        "old_logprobs": old,
        "advantages": torch.tensor([[advantage]]),
        "mask": torch.ones(1, 1),
        "values": torch.tensor([[value]]),
        "old_values": torch.tensor([[old_value]]),
        "returns": torch.tensor([[ret]]),
    }


def test_ppo_clip_clips_a_large_ratio_with_positive_advantage():
    loss_fn = PPOClipLoss(cliprange=0.2, cliprange_value=0.2, vf_coef=0.5)
    loss, metrics = loss_fn(_batch(ratio=1.5, advantage=2.0, value=1.0, old_value=1.0, ret=1.0))
    # max(-2*1.5, -2*1.2) = -2.4; value loss 0
    assert metrics["pg_loss"] == pytest.approx(-2.4, abs=1e-5)
    assert metrics["clipfrac"] == 1.0
    assert loss.item() == pytest.approx(-2.4, abs=1e-5)


def test_ppo_clip_does_not_clip_a_ratio_that_lowers_the_objective():
    loss_fn = PPOClipLoss(cliprange=0.2)
    _, metrics = loss_fn(_batch(ratio=0.5, advantage=2.0, value=0.0, old_value=0.0, ret=0.0))
    # max(-2*0.5, -2*0.8) = -1.0 (the unclipped, pessimistic term)
    assert metrics["pg_loss"] == pytest.approx(-1.0, abs=1e-5)
    assert metrics["clipfrac"] == 0.0


def test_ppo_value_loss_is_clipped_around_the_old_value():
    loss_fn = PPOClipLoss(cliprange_value=0.2, vf_coef=1.0)
    _, metrics = loss_fn(_batch(ratio=1.0, advantage=0.0, value=2.0, old_value=1.0, ret=3.0))
    # unclipped (2-3)^2 = 1; clipped value 1.2 -> (1.2-3)^2 = 3.24; 0.5 * max = 1.62
    assert metrics["vf_loss"] == pytest.approx(1.62, abs=1e-5)


def test_reinforce_loss_is_ratio_weighted_advantage_and_has_no_critic():
    loss_fn = ReinforceLoss()
    assert loss_fn.needs_value is False and PPOClipLoss().needs_value is True
    loss, _ = loss_fn(_batch(ratio=1.5, advantage=2.0, value=0.0, old_value=0.0, ret=0.0))
    assert loss.item() == pytest.approx(-3.0, abs=1e-5)


def test_win_rate_counts_ties_half_and_logs_the_tie_share():
    from rlhf_plug_plugins.ppo.evaluation import PPOEvalContext, Samples
    from rlhf_plug_plugins.evaluation.policy import WinRate

    policy = Samples(["a", "b", "c", "d"], {"judge": [1.0, 0.0, 2.0, 2.0]})
    reference = Samples(["a", "b", "c", "d"], {"judge": [0.0, 1.0, 2.0, 2.0]})
    context = PPOEvalContext(5, ["p"] * 4, policy, reference, rewards={}, judges=["judge"])
    metrics = WinRate()(context)
    assert metrics["win_rate/judge"] == pytest.approx(0.5)  # one win, one loss, two ties at half
    assert metrics["tie_rate/judge"] == pytest.approx(0.5)
    assert metrics["win_rate_2se/judge"] == pytest.approx(2 * (1 / 6) ** 0.5 / 2)  # outcomes 1, 0, .5, .5: variance 1/6
    policy.scores["judge"][1] = 3.0  # the loss becomes a win: 2 of the 2 untied prompts won
    metrics = WinRate(judge="judge")(context)
    assert metrics["win_rate/judge"] == pytest.approx(0.75) and metrics["tie_rate/judge"] == pytest.approx(0.5)
