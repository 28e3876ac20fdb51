"""The PPO choices a paper must state (docs/ppo.md): reward normalisation, the missing-EOS penalty,
where the KL penalty acts, and notices for KL settings that do not do what their names suggest."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from helpers import write_recipe
from rich.console import Console
from test_ppo_onpolicy import ppo_recipe, run_ppo

from rlhf_plug.plugins import get_plugin_manager
from rlhf_plug.recipe import load_recipe
from rlhf_plug.registry import Registries
from rlhf_plug.runner import check_recipe

pytestmark = pytest.mark.usefixtures("one_thread")


def _loop(**args):
    """What ``PPOLoop.normalise`` reads, on one process."""
    from rlhf_plug_plugins.ppo.advantages import RunningMoments
    from rlhf_plug_plugins.ppo.config import PPOArgs

    return SimpleNamespace(args=PPOArgs(**args), reward_stats=RunningMoments(),
                           accelerator=SimpleNamespace(gather=lambda t: t, device="cpu"))


def test_frozen_normalisation_keeps_the_first_batches_statistics():
    import torch
    from rlhf_plug_plugins.ppo.loop import PPOLoop

    loop = _loop(reward_norm="frozen", reward_norm_batches=2, reward_clip=None)
    eos = torch.ones(4, dtype=torch.bool)
    PPOLoop.normalise(loop, torch.tensor([0.0, 1.0, 2.0, 3.0]), eos)
    PPOLoop.normalise(loop, torch.tensor([1.0, 2.0, 3.0, 4.0]), eos)
    frozen = (loop.reward_stats.mean, loop.reward_stats.std)
    later = PPOLoop.normalise(loop, torch.tensor([10.0, 20.0, 30.0, 40.0]), eos)
    assert (loop.reward_stats.mean, loop.reward_stats.std) == frozen == pytest.approx((2.0, 1.2247), abs=1e-4)
    assert torch.allclose(later, (torch.tensor([10.0, 20.0, 30.0, 40.0]) - 2.0) / frozen[1])

    running = _loop(reward_norm="running", reward_clip=None)
    for batch in ([0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]):
        PPOLoop.normalise(running, torch.tensor(batch), eos)
    assert running.reward_stats.mean > 5, "running statistics follow the drift that frozen ones ignore"


def test_the_missing_eos_penalty_applies_after_normalising_and_stays_out_of_the_statistics():
    import torch
    from rlhf_plug_plugins.ppo.loop import PPOLoop

    loop = _loop(reward_norm="batch", reward_clip=1.0, missing_eos_penalty=0.5)
    scores = PPOLoop.normalise(loop, torch.tensor([0.0, 0.0, 4.0, 4.0]), torch.tensor([True, False, True, False]))
    assert torch.allclose(scores, torch.tensor([-0.866, -1.366, 0.866, 0.366]), atol=1e-3)


def test_kl_in_the_loss_trains_with_its_own_term_and_no_kl_in_the_reward(tmp_path, tiny_policy):
    body = ppo_recipe(tiny_policy, tmp_path / "runs", args=", kl_penalty: loss, kl_estimator: k2")
    train, _, _ = run_ppo(tmp_path, body)
    assert all(r["kl_loss"] >= 0 for r in train), "k2 is never negative"
    assert train[1]["kl_loss"] > 0, "after one update the policy differs from the reference"


def _notices(tmp_path, tiny_policy, kl: str, args: str = "") -> list[str]:
    pm = get_plugin_manager([], autoload=False)
    registries = Registries(pm)
    body = ppo_recipe(tiny_policy, tmp_path / "runs", args=args).replace("{use: fixed, with: {init: 0.01}}", kl)
    console = Console(file=io.StringIO(), width=400)
    check_recipe(load_recipe(write_recipe(tmp_path / "recipe.yaml", body), registries), registries, pm, console)
    return [line for line in console.file.getvalue().splitlines() if line.startswith("notice:")]


def test_validate_says_when_an_adaptive_kl_is_effectively_fixed(tmp_path, tiny_policy):
    notes = _notices(tmp_path, tiny_policy, "{use: adaptive, with: {horizon: 10000}}")
    assert len(notes) == 1 and "kl.with.horizon 10000 with 4 samples a step lets beta move at most 0.0%" in notes[0], notes
    assert "horizon 2 lets it move up to 2x" in notes[0], notes
    assert _notices(tmp_path, tiny_policy, "{use: adaptive, with: {horizon: 4}}") == []


def test_validate_says_that_k3_in_the_reward_is_biased_and_k1_in_the_loss_is_noise(tmp_path, tiny_policy):
    notes = _notices(tmp_path, tiny_policy, "{use: adaptive, with: {horizon: 4}}", args=", kl_estimator: k3")
    assert len(notes) == 1 and "biased policy gradient and a KL that is not in nats" in notes[0], notes
    notes = _notices(tmp_path, tiny_policy, "{use: fixed}", args=", kl_penalty: loss")
    assert len(notes) == 1 and "k1 in the loss has a gradient of mean zero" in notes[0], notes
    assert _notices(tmp_path, tiny_policy, "{use: fixed}", args=", kl_estimator: k3, kl_penalty: loss") == []


def test_every_key_docs_ppo_md_names_exists():
    import re

    from helpers import REPO
    from rlhf_plug_plugins.ppo.config import PPOArgs
    from rlhf_plug.policy.generation import GenerationArgs

    text = (REPO / "docs" / "ppo.md").read_text(encoding="utf-8")
    named = set(re.findall(r"args\.([a-z_]+)", text))
    assert {"reward_norm", "kl_penalty", "logprob_gap_threshold", "importance_sampling"} <= named
    assert named <= set(PPOArgs.model_fields), named - set(PPOArgs.model_fields)
    assert set(re.findall(r"generation\.([a-z_]+)", text)) <= set(GenerationArgs.model_fields)
