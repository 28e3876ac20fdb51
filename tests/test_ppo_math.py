"""Hand-computed checks of the PPO engine's maths and bookkeeping (no model needed).

Covers plugins/ppo/advantages.py (KL estimators, per-token rewards, GAE,
whitening, explained variance, running reward statistics), the prompt
schedule, the rollout padding helpers and the reward-output checks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from rlhf_plug_plugins.ppo import advantages as adv
from rlhf_plug.policy.rewards import RewardComponent, call_reward
from rlhf_plug.policy.sampling import left_pad, truncate_after_eos
from rlhf_plug_plugins.ppo.schedule import PromptSchedule

from rlhf_plug.errors import RewardError, UserError
from rlhf_plug.rewards import check_reward_output

# --------------------------------------------------------------------------
# KL estimators
# --------------------------------------------------------------------------

LOGPROBS = torch.tensor([[-1.0, -2.0, -0.5]])
REF_LOGPROBS = torch.tensor([[-1.5, -1.0, -0.5]])  # log r = [0.5, -1.0, 0.0]


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        ("k1", [0.5, -1.0, 0.0]),
        ("k2", [0.125, 0.5, 0.0]),
        ("k3", [math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0, 0.0]),
    ],
)
def test_kl_estimators_by_hand(estimator, expected):
    got = adv.kl_estimate(LOGPROBS, REF_LOGPROBS, estimator)
    assert got.shape == LOGPROBS.shape
    torch.testing.assert_close(got, torch.tensor([expected]))


def test_k3_is_never_negative_and_zero_only_at_equality():
    log_r = torch.linspace(-5, 5, 101)
    k3 = adv.kl_estimate(log_r, torch.zeros_like(log_r), "k3")
    assert (k3 >= 0).all()
    assert k3[50].item() == 0.0  # log_r = 0
    assert (k3[log_r.abs() > 1e-3] > 0).all()
    k1 = adv.kl_estimate(log_r, torch.zeros_like(log_r), "k1")
    assert (k1 < 0).any(), "k1 is a signed estimator (sanity check of the test itself)"


def test_unknown_kl_estimator_names_the_choices():
    with pytest.raises(ValueError, match="'k4'.*k1.*k2.*k3"):
        adv.kl_estimate(LOGPROBS, REF_LOGPROBS, "k4")


# --------------------------------------------------------------------------
# Per-token rewards
# --------------------------------------------------------------------------


def test_token_rewards_penalise_every_token_and_add_score_on_the_last_real_one():
    scores = torch.tensor([1.0, -2.0, 3.0])
    # nonzero KL under padding must not leak into rewards
    kl = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.5, 0.6, 0.7], [1.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    got = adv.token_rewards(scores, kl, beta=0.5, mask=mask)
    expected = torch.tensor([
        [-0.05, -0.10, -0.15, -0.20 + 1.0],
        [-0.20, -0.25 - 2.0, 0.0, 0.0],
        [-0.50 + 3.0, 0.0, 0.0, 0.0],
    ])
    torch.testing.assert_close(got, expected)
    # inputs untouched
    torch.testing.assert_close(kl[2], torch.tensor([1.0, 9.0, 9.0, 9.0]))


def test_token_rewards_with_zero_beta_are_the_score_only():
    scores = torch.tensor([0.7, 0.2])
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 1]])
    got = adv.token_rewards(scores, torch.ones(2, 3), beta=0.0, mask=mask)
    torch.testing.assert_close(got, torch.tensor([[0.0, 0.7, 0.0], [0.0, 0.0, 0.2]]))


# --------------------------------------------------------------------------
# GAE
# --------------------------------------------------------------------------


def test_gae_by_hand_with_masked_tail():
    gamma, lam = 0.9, 0.8  # gamma * lam = 0.72
    rewards = torch.tensor([[0.0, 1.0, 2.0], [1.0, 2.0, 5.0]])  # 5.0 sits on padding: ignored
    values = torch.tensor([[1.0, 2.0, 3.0], [0.5, 1.0, 7.0]])  # 7.0 sits on padding: ignored (bootstrap 0)
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
    advantages, returns = adv.gae(rewards, values, mask, gamma, lam)
    # row 0: d2 = 2 - 3 = -1;  d1 = 1 + .9*3 - 2 = 1.7;  d0 = 0 + .9*2 - 1 = 0.8
    #        A2 = -1; A1 = 1.7 + .72*(-1) = 0.98; A0 = 0.8 + .72*0.98 = 1.5056
    # row 1: A2 = 0 (padding); d1 = 2 + .9*0 - 1 = 1.0; d0 = 1 + .9*1 - .5 = 1.4
    #        A1 = 1.0; A0 = 1.4 + .72*1.0 = 2.12
    torch.testing.assert_close(advantages, torch.tensor([[1.5056, 0.98, -1.0], [2.12, 1.0, 0.0]]))
    torch.testing.assert_close(returns, torch.tensor([[2.5056, 2.98, 2.0], [2.62, 2.0, 0.0]]))


def test_gae_with_gamma_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.5, -1.0, 2.0, 0.0]])
    values = torch.tensor([[0.3, 0.1, -0.2, 4.0]])
    mask = torch.tensor([[1.0, 1, 1, 0]])
    advantages, returns = adv.gae(rewards, values, mask, 1.0, 1.0)
    to_go = torch.tensor([[1.5, 1.0, 2.0, 0.0]])
    torch.testing.assert_close(returns, to_go)
    torch.testing.assert_close(advantages, to_go - values * mask)


# --------------------------------------------------------------------------
# Whitening and explained variance
# --------------------------------------------------------------------------


def _masked_stats(x, mask):
    picked = x[mask.bool()]
    return picked.mean().item(), picked.var(unbiased=False).item()


def test_whiten_gives_masked_zero_mean_unit_variance_and_zero_padding():
    torch.manual_seed(0)
    x = torch.randn(4, 6) * 3 + 5
    mask = torch.ones(4, 6)
    mask[1, 3:] = 0
    mask[3, 1:] = 0
    x[mask == 0] = 1000.0  # padding must not affect the statistics
    out = adv.whiten(x, mask)
    mean, var = _masked_stats(out, mask)
    assert mean == pytest.approx(0.0, abs=1e-5)
    assert var == pytest.approx(1.0, abs=1e-4)
    assert (out[mask == 0] == 0).all()
    # order is preserved on real tokens
    real = mask.bool()
    assert torch.equal(x[real].argsort(), out[real].argsort())


def test_whiten_without_shifting_keeps_the_mean():
    x = torch.tensor([[1.0, 2.0, 3.0, 99.0]])
    mask = torch.tensor([[1.0, 1, 1, 0]])
    out = adv.whiten(x, mask, shift_mean=False)
    std = math.sqrt(2 / 3)
    torch.testing.assert_close(out, torch.tensor([[2 - 1 / std, 2.0, 2 + 1 / std, 0.0]]))


def test_explained_variance_by_hand():
    mask = torch.tensor([[1.0, 1, 1, 1, 0]])
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0, 50.0]])
    values = torch.tensor([[1.0, 2.0, 3.0, 5.0, -50.0]])
    # residual on real tokens [0, 0, 0, -1]: var 0.1875; var(returns) = 1.25
    assert adv.explained_variance(values, returns, mask) == pytest.approx(1 - 0.1875 / 1.25)
    assert adv.explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert adv.explained_variance(torch.zeros_like(returns), returns, mask) == pytest.approx(0.0)
    assert math.isnan(adv.explained_variance(values, torch.ones_like(returns), mask))


# --------------------------------------------------------------------------
# Running reward statistics
# --------------------------------------------------------------------------


def test_running_moments_match_numpy_over_the_concatenation():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=n).tolist() for n in (5, 1, 17, 8)]
    moments = adv.RunningMoments()
    seen: list[float] = []
    for batch in batches:
        moments.update(batch)
        seen.extend(batch)
        assert moments.count == len(seen)
        assert moments.mean == pytest.approx(np.mean(seen), rel=1e-9)
        assert moments.var == pytest.approx(np.var(seen), rel=1e-9)
        assert moments.std == pytest.approx(np.std(seen), rel=1e-9)
    moments.update([])  # no-op
    assert moments.count == len(seen)

    restored = adv.RunningMoments()
    restored.load_state_dict(moments.state_dict())
    assert restored.state_dict() == moments.state_dict()
    more = [10.0, -4.0]
    moments.update(more)
    restored.update(more)
    assert restored.mean == moments.mean and restored.var == moments.var
    assert restored.mean == pytest.approx(np.mean(seen + more))


def test_running_moments_start_neutral():
    moments = adv.RunningMoments()
    assert (moments.mean, moments.std, moments.count) == (0.0, 1.0, 0)
    moments.update([2.0])  # the prior state has no weight
    assert (moments.mean, moments.var, moments.count) == (2.0, 0.0, 1)
    assert moments.std > 0  # guarded for division


# --------------------------------------------------------------------------
# Prompt schedule
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("num_rows", "per_process", "processes"), [(10, 3, 2), (12, 2, 3), (7, 7, 1), (5, 4, 2)])
def test_schedule_uses_every_row_once_per_epoch(num_rows, per_process, processes):
    schedule = PromptSchedule(num_rows, per_process, processes, seed=3)
    size = per_process * processes
    epochs = 3
    steps = math.ceil(epochs * num_rows / size)
    stream = []
    for step in range(steps):
        parts = [schedule.indices(step, p) for p in range(processes)]
        assert all(len(part) == per_process for part in parts)
        assert sum(parts, []) == schedule.global_indices(step)
        stream.extend(sum(parts, []))
    for epoch in range(epochs):
        chunk = stream[epoch * num_rows : (epoch + 1) * num_rows]
        assert sorted(chunk) == list(range(num_rows)), f"epoch {epoch}: {chunk}"
    first, second = stream[:num_rows], stream[num_rows : 2 * num_rows]
    if num_rows > 2:
        assert first != second, "each epoch is a fresh permutation"


def test_schedule_processes_get_disjoint_rows_within_an_epoch():
    schedule = PromptSchedule(100, 4, 2, seed=0)
    for step in range(12):  # 8 rows a step: steps 0..11 stay within epoch 0 (96 rows)
        a, b = schedule.indices(step, 0), schedule.indices(step, 1)
        assert not set(a) & set(b)


def test_schedule_is_deterministic_and_stateless():
    a = PromptSchedule(50, 4, 2, seed=7)
    b = PromptSchedule(50, 4, 2, seed=7)
    assert [a.indices(s, 1) for s in range(20)] == [b.indices(s, 1) for s in range(20)]
    fresh = PromptSchedule(50, 4, 2, seed=7)
    assert fresh.indices(17, 0) == a.indices(17, 0), "step k must not depend on earlier steps being computed"
    assert fresh.indices(17, 0) == fresh.indices(17, 0)
    other = PromptSchedule(50, 4, 2, seed=8)
    assert [other.global_indices(s) for s in range(6)] != [a.global_indices(s) for s in range(6)]


def test_schedule_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    PromptSchedule(20, 4, 1, seed=0).indices(3, 0)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------
# Rollout padding helpers
# --------------------------------------------------------------------------


def test_truncate_after_first_eos():
    eos, pad = 2, 0
    response = torch.tensor([[5, 2, 7, 8], [5, 6, 7, 8], [2, 9, 2, 1], [4, 4, 4, 2]])
    ids, mask, has_eos = truncate_after_eos(response, eos, pad)
    assert ids.tolist() == [[5, 2, 0, 0], [5, 6, 7, 8], [2, 0, 0, 0], [4, 4, 4, 2]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert mask.dtype.is_floating_point
    assert has_eos.tolist() == [True, False, True, True]
    assert response[0].tolist() == [5, 2, 7, 8], "input untouched"


def test_left_pad_and_left_truncate():
    ids, mask = left_pad([[1, 2, 3], [4, 5], [6]], pad_id=0, max_length=10)
    assert ids.tolist() == [[1, 2, 3], [0, 4, 5], [0, 0, 6]]
    assert mask.tolist() == [[1, 1, 1], [0, 1, 1], [0, 0, 1]]
    ids, mask = left_pad([[1, 2, 3, 4], [5]], pad_id=9, max_length=2)
    assert ids.tolist() == [[3, 4], [9, 5]], "the end of a long prompt is kept"
    assert mask.tolist() == [[1, 1], [0, 1]]


# --------------------------------------------------------------------------
# Reward outputs
# --------------------------------------------------------------------------

LABEL = "reward[1] 'flaky'"
PROMPTS = ["p0", "p1", "p2"]
COMPLETIONS = ["c0", "c1", "c2"]
IDS = [[1], [2, 3], [4]]


def _call(fn, step=3):
    component = RewardComponent(name="flaky", label=LABEL, fn=fn, key=("reward", 1))
    return call_reward(component, step, PROMPTS, COMPLETIONS, IDS, {"answer": ["a0", "a1", "a2"]})


@pytest.mark.parametrize(
    ("returned", "words"),
    [
        ([1.0, float("nan"), 0.0], ["returned nan for completion 1", "finite"]),
        ([1.0, 0.0, float("inf")], ["returned inf for completion 2", "finite"]),
        ([float("-inf"), 0.0, 0.0], ["returned -inf for completion 0", "finite"]),
        (np.array([0.0, np.nan, 1.0]), ["returned nan for completion 1"]),
        ([1.0, 2.0], ["returned 2 values for 3 completions"]),
        ([1.0, 2.0, 3.0, 4.0], ["returned 4 values for 3 completions"]),
        ("1.0", ["returned str", "expected a list of 3 floats"]),
        (None, ["returned NoneType"]),
        (0.5, ["returned float"]),
        ([1.0, "0.5", 0.0], ["returned str '0.5' for completion 1", "expected a float"]),
        ([1.0, 0.0, None], ["returned NoneType None for completion 2"]),
        ([True, 0.0, 1.0], ["returned bool True for completion 0"]),
    ],
    ids=[
        "nan", "inf", "-inf", "numpy-nan", "too-short", "too-long", "str", "None", "scalar",
        "str-item", "None-item", "bool-item",
    ],
)
def test_bad_reward_output_names_component_and_step(returned, words):
    with pytest.raises(RewardError) as info:
        _call(lambda **kw: returned)
    message = str(info.value)
    assert message.startswith(f"{LABEL} at PPO step 3 "), message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert "\n" not in message


@pytest.mark.parametrize(
    "returned",
    [
        [1, 0.5, -2],
        (1.0, 0.5, -2.0),
        np.array([1.0, 0.5, -2.0]),
        np.array([1.0, 0.5, -2.0], dtype=np.float32),
        torch.tensor([1.0, 0.5, -2.0]),
        [np.float64(1.0), np.float32(0.5), np.int64(-2)],
    ],
    ids=["ints", "tuple", "numpy", "numpy-f32", "tensor", "numpy-scalars"],
)
def test_reward_output_accepts_lists_arrays_and_tensors(returned):
    values = _call(lambda **kw: returned)
    assert values == [1.0, 0.5, -2.0]
    assert all(type(v) is float for v in values)


def test_reward_function_gets_keywords_and_columns():
    seen = {}

    def fn(prompts, completions, completion_ids, **columns):
        seen.update(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
        return [0.0] * len(completions)

    assert _call(fn) == [0.0, 0.0, 0.0]
    assert seen == {"prompts": PROMPTS, "completions": COMPLETIONS, "completion_ids": IDS, "answer": ["a0", "a1", "a2"]}


def test_exception_in_reward_function_is_a_reward_error_naming_component_and_step():
    def fn(**kw):
        return 1 / 0

    with pytest.raises(RewardError) as info:
        _call(fn, step=7)
    message = str(info.value)
    assert message.startswith(f"{LABEL} at PPO step 7 raised ZeroDivisionError"), message
    assert "division by zero" in message
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_user_error_from_a_reward_function_passes_through():
    error = UserError("missing column 'answer'")

    def fn(**kw):
        raise error

    with pytest.raises(UserError) as info:
        _call(fn)
    assert info.value is error


def test_reward_errors_in_evaluation_say_so():
    with pytest.raises(RewardError, match=r"^reward\[1\] 'flaky' in evaluation returned nan"):
        _call(lambda **kw: [float("nan")] * 3, step=None)


def test_check_reward_output_directly():
    assert check_reward_output([1, 2], 2, "here") == [1.0, 2.0]
    with pytest.raises(RewardError, match="^here returned 1 values for 2 completions"):
        check_reward_output([1], 2, "here")
