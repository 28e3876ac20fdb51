"""The ``ppo`` stage in-process on a tiny Llama: learning, evaluation, swapping components, errors.

Runs use ``torch.set_num_threads(1)``: on a shared 2-core machine a second
intra-op thread makes these tiny models ~10x slower, not faster.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from helpers import write_jsonl, write_recipe, temporary_files
from rich.console import Console

from rlhf_plug.errors import UserError
from rlhf_plug.plugins import get_plugin_manager
from rlhf_plug.recipe import load_recipe
from rlhf_plug.registry import Registries
from rlhf_plug.runner import check_recipe, run_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = """
from rlhf_plug import hookimpl
from rlhf_plug_plugins.objectives.losses import PPOClipLoss


class EvenFirst:
    \"\"\"1 when the first response token id is even.\"\"\"

    def __call__(self, prompts, completions, completion_ids=None, **kw):
        return [1.0 if ids and ids[0] % 2 == 0 else 0.0 for ids in completion_ids]


class Flaky:
    \"\"\"Like EvenFirst, but misbehaves (``mode``) from its ``from_call``-th call on.\"\"\"

    def __init__(self, mode: str = "ok", from_call: int = 3):
        self.mode, self.from_call, self.calls = mode, from_call, 0

    def __call__(self, prompts, completions, completion_ids=None, **kw):
        self.calls += 1
        n = len(completions)
        if self.calls < self.from_call or self.mode == "ok":
            return [float(len(ids) % 2) for ids in completion_ids]
        if self.mode == "nan":
            return [0.0] * (n - 1) + [float("nan")]
        if self.mode == "inf":
            return [float("inf")] + [0.0] * (n - 1)
        if self.mode == "length":
            return [0.0] * (n + 1)
        if self.mode == "type":
            return ["high"] * n
        raise RuntimeError("reward server unreachable")


class CountingLoss(PPOClipLoss):
    \"\"\"PPO-clip that also reports ``updates`` = 1 per call (the engine averages loss metrics over updates).\"\"\"

    def __call__(self, batch):
        loss, metrics = super().__call__(batch)
        return loss, {**metrics, "updates": 1.0}


@hookimpl
def rlhf_register_reward_functions(register):
    register("even_first", EvenFirst)
    register("flaky", Flaky)


@hookimpl
def rlhf_register_losses(register):
    register("counting", CountingLoss)
"""

TRAIN_KEYS = ("reward", "kl", "beta", "entropy", "clipfrac", "approx_kl", "explained_variance", "reward/even_first")


@pytest.fixture
def toy(make_module):
    """The toy reward plugin; returns (module name, registries, pm)."""
    name = make_module("ppo_toy_rewards", TOY)
    pm = get_plugin_manager([name], autoload=False)
    return name, Registries(pm), pm


def recipe(model: Path, out: Path, stage: str, *, name: str = "ppo-test", plugin: str = "ppo_toy_rewards") -> str:
    return f"""
name: {name}
model: {model}
output_dir: {out}
quantization: none
plugins: [{plugin}]
stages:
{stage}
"""


def ppo_stage(*, steps: int = 3, batch_size: int = 4, extra: str = "", reward: str = "[{use: even_first}]",
              evaluators: str = "[]", args: str = "") -> str:
    return f"""
  - ppo:
      prompts: {{use: builtin, with: {{name: prompts}}, eval_fraction: 0.1}}
      reward: {reward}
      kl: {{use: fixed, with: {{init: 0.01}}}}
      generation: {{max_new_tokens: 2, temperature: 1.0}}
      lora: {{r: 8, lora_alpha: 16}}
      evaluators: {evaluators}
      args: {{steps: {steps}, batch_size: {batch_size}, learning_rate: 1.0e-2{args}}}
{extra}"""


def run(tmp_path: Path, toy, body: str, overrides=()) -> tuple[dict, Path]:
    _, registries, pm = toy
    path = write_recipe(tmp_path / "recipe.yaml", body)
    loaded = load_recipe(path, registries, list(overrides))
    results = run_recipe(loaded, registries, pm, Console(file=io.StringIO(), width=200))
    return results, tmp_path / "runs" / loaded.recipe.name


def records(path: Path, split: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if split is None or r.get("split") == split]


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# --------------------------------------------------------------------------
# Learning
# --------------------------------------------------------------------------


def test_ppo_learns_a_token_level_reward(tmp_path, tiny_policy, toy):
    from safetensors.torch import load_file

    # 28 steps: on an AVX2-only CPU the reward sits near 0.55 for 15 steps before it climbs (0.62 -> 0.82 by
    # step 20, one 0.005 short of the margin below); more steps give both kernels' trajectories room to rise.
    steps = 28
    body = recipe(tiny_policy, tmp_path / "runs", ppo_stage(steps=steps, batch_size=32))
    results, run_dir = run(tmp_path, toy, body)
    out = run_dir / "ppo"
    train = records(out / "metrics.jsonl", "train")
    assert [r["step"] for r in train] == list(range(1, steps + 1))
    for r in train:
        for key in TRAIN_KEYS:
            assert math.isfinite(r[key]), (r["step"], key, r.get(key))
    first, last = mean(r["reward"] for r in train[:4]), mean(r["reward"] for r in train[-4:])
    assert last >= first + 0.2, f"reward did not rise: first 4 steps {first:.3f}, last 4 {last:.3f}"
    assert mean(r["kl"] for r in train[-4:]) > 0, "a policy that moved must have KL > 0 to the reference"
    assert train[0]["kl"] == pytest.approx(0.0, abs=1e-5), "step 1 samples from the reference itself"
    assert all(r["beta"] == 0.01 for r in train)
    assert not records(out / "metrics.jsonl", "eval"), "evaluators: [] means no evaluation"

    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
    assert lora_b and any(v.abs().max() > 0 for v in lora_b.values()), "lora_B starts at zero and must have moved"
    head = load_file(str(out / "value_head.safetensors"))
    assert head["weight"].abs().max() > 0, "the zero-initialised value head must have been trained"
    assert (out / "model" / "model.safetensors").is_file()

    saved = json.loads((out / "results.json").read_text())
    assert saved == results["ppo"]
    assert saved["steps"] == steps and saved["processes"] == 1 and saved["value_model"] == "trunk"
    assert saved["rewards_sharing_base"] == []
    assert saved["train_reward_last_steps"] > saved["train_reward_first_steps"]
    assert not [k for k in saved if k.endswith(("_before", "_after"))], "no evaluation, no eval metrics"

    rollouts = records(out / "rollouts.jsonl")
    assert [r["step"] for r in rollouts] == list(range(1, steps + 1))
    assert all(len(r["indices"]) == 1 and len(r["indices"][0]) == 32 for r in rollouts)
    assert not (out / "checkpoints").exists()
    assert not temporary_files(run_dir), "no temporary folders left"


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def test_evaluators_report_before_and_after(tmp_path, tiny_policy, toy):
    stage = ppo_stage(steps=3, evaluators="[{use: reward_stats}, {use: win_rate}, {use: samples}]",
                      args=", eval_prompts: 4", extra="      judges: [{use: simulated_annotator}]\n")
    results, run_dir = run(tmp_path, toy, recipe(tiny_policy, tmp_path / "runs", stage))
    out = run_dir / "ppo"
    evals = records(out / "metrics.jsonl", "eval")
    assert [r["step"] for r in evals] == [0, 3]
    for r in evals:
        for key in ("win_rate", "win_rate/even_first", "win_rate/simulated_annotator", "reward/even_first",
                    "reward/simulated_annotator", "reference_reward/even_first", "kl", "reward", "response_length"):
            assert math.isfinite(r[key]), (r["step"], key)
        assert 0.0 <= r["win_rate"] <= 1.0
    before, after = evals
    # Before training the policy is the reference (lora_B = 0) sampled with the same seed: identical answers.
    assert before["win_rate"] == 0.5 and before["kl"] == pytest.approx(0.0, abs=1e-5)
    assert before["reward"] == before["reference_reward"]
    assert after["reference_reward/even_first"] == before["reference_reward/even_first"], "reference is fixed"
    ppo = results["ppo"]
    assert ppo["eval_prompts"] == 4
    assert ppo["eval_win_rate_before"] == 0.5 and "eval_win_rate_after" in ppo and "eval_kl_after" in ppo

    for step in (0, 3):
        table = records(out / "samples" / f"samples-step-{step:06d}.jsonl")
        assert len(table) == 4
        assert {"prompt", "reference", "policy", "policy_even_first", "reference_simulated_annotator"} <= set(table[0])
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "samples-step-000000.jsonl", "samples-step-000003.jsonl"
    ]


# --------------------------------------------------------------------------
# Components swapped by overrides, no code change
# --------------------------------------------------------------------------


def test_reinforce_loss_by_override_drops_the_critic(tmp_path, tiny_policy, toy):
    body = recipe(tiny_policy, tmp_path / "runs", ppo_stage(steps=3))
    results, run_dir = run(tmp_path, toy, body, ["ppo.loss.use=reinforce"])
    assert results["ppo"]["value_model"] == "none"
    train = records(run_dir / "ppo" / "metrics.jsonl", "train")
    assert len(train) == 3
    for r in train:
        assert "explained_variance" not in r and "vf_loss" not in r and "clipfrac" not in r
        assert math.isfinite(r["pg_loss"]) and math.isfinite(r["approx_kl"])


def test_adaptive_kl_by_override_follows_the_observed_kl(tmp_path, tiny_policy, toy):
    body = recipe(tiny_policy, tmp_path / "runs", ppo_stage(steps=5, batch_size=4))
    overrides = ["ppo.kl.use=adaptive", "ppo.kl.with={init: 0.1, target: 0.05, horizon: 20}"]
    results, run_dir = run(tmp_path, toy, body, overrides)
    train = records(run_dir / "ppo" / "metrics.jsonl", "train")
    betas = [r["beta"] for r in train]
    assert betas[0] == pytest.approx(0.1)
    assert len(set(betas)) > 1, f"beta never moved: {betas}"
    for prev, cur in zip(train, train[1:]):  # β ← β·(1 + clip(KL/target − 1, ±0.2)·n/horizon), n = 4 prompts
        error = min(max(prev["kl"] / 0.05 - 1, -0.2), 0.2)
        assert cur["beta"] == pytest.approx(prev["beta"] * (1 + error * 4 / 20), rel=1e-6)
    assert results["ppo"]["beta_final"] == pytest.approx(betas[-1])
    assert {r["kl_target"] for r in train} == {0.05} and results["ppo"]["kl_target"] == 0.05  # KL next to its target


@pytest.mark.parametrize("args", ["", ", mini_batches: 2, ppo_epochs: 2"], ids=["fused", "minibatched"])
def test_ptx_adds_a_pretraining_loss(tmp_path, tiny_policy, toy, args):
    extra = "      ptx: {coef: 0.5, batch_size: 2, data: {use: builtin, with: {name: pretrain}}}\n"
    body = recipe(tiny_policy, tmp_path / "runs", ppo_stage(steps=2, extra=extra, args=args))
    _, run_dir = run(tmp_path, toy, body)
    train = records(run_dir / "ppo" / "metrics.jsonl", "train")
    assert len(train) == 2
    for r in train:
        assert math.isfinite(r["ptx_loss"]) and r["ptx_loss"] > 0
        assert math.isfinite(r["pg_loss"]) and math.isfinite(r["vf_loss"])


def test_engine_options_weighted_rewards_eos_penalty_k3_value_adapter(tmp_path, tiny_policy, toy):
    from safetensors.torch import load_file

    stage = ppo_stage(
        steps=3, reward="[{use: even_first, weight: 2.0}, {use: flaky, weight: -1.0}]",
        args=", value_model: adapter, kl_estimator: k3, reward_norm: batch, whiten_advantages: false, "
        "gamma: 0.9, lam: 0.9, missing_eos_penalty: 0.5",
    )
    results, run_dir = run(tmp_path, toy, recipe(tiny_policy, tmp_path / "runs", stage))
    assert results["ppo"]["value_model"] == "adapter"
    out = run_dir / "ppo"
    train = records(out / "metrics.jsonl", "train")
    assert len(train) == 3
    for r in train:
        # the logged reward is the raw weighted sum; the EOS penalty is subtracted after normalising, so the
        # batch-normalised score (mean 0 before it) averages minus the penalty times the share without EOS
        assert r["reward"] == pytest.approx(2.0 * r["reward/even_first"] - r["reward/flaky"], abs=1e-6)
        assert r["score"] == pytest.approx(-0.5 * (1 - r["eos_fraction"]), abs=1e-5)
        assert r["kl"] >= 0.0, "k3 is never negative"
        assert math.isfinite(r["explained_variance"])
    assert any(r["eos_fraction"] < 1 for r in train), "2-token answers mostly lack EOS: the penalty is exercised"
    # the saved policy adapter is the policy alone, without the value adapter
    keys = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert keys and not [k for k in keys if ".value." in k]


@pytest.mark.parametrize(("batch_size", "mini_batches", "epochs"), [(4, 2, 2), (6, 3, 1)])
def test_loss_metrics_are_averaged_over_the_updates(tmp_path, tiny_policy, toy, batch_size, mini_batches, epochs):
    stage = ppo_stage(steps=2, batch_size=batch_size, extra="      loss: {use: counting}\n",
                      args=f", mini_batches: {mini_batches}, ppo_epochs: {epochs}")
    _, run_dir = run(tmp_path, toy, recipe(tiny_policy, tmp_path / "runs", stage))
    train = records(run_dir / "ppo" / "metrics.jsonl", "train")
    assert [r["updates"] for r in train] == [pytest.approx(1.0)] * 2
    assert all(0.0 <= r["clipfrac"] <= 1.0 for r in train)


def test_minibatches_that_do_not_divide_the_batch_are_refused_or_counted(tmp_path, tiny_policy, toy):
    stage = ppo_stage(steps=1, batch_size=5, extra="      loss: {use: counting}\n", args=", mini_batches: 2")
    try:
        _, run_dir = run(tmp_path, toy, recipe(tiny_policy, tmp_path / "runs", stage))
    except UserError as exc:  # refusing the recipe is a fix too
        assert "mini_batches" in str(exc)
        return
    train = records(run_dir / "ppo" / "metrics.jsonl", "train")
    assert train[0]["updates"] == pytest.approx(1.0), "5 prompts in 2 minibatches: metrics summed over 3 updates / 2"


# --------------------------------------------------------------------------
# Misbehaving reward functions
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("nan", ["returned nan for completion 3", "finite"]),
        ("inf", ["returned inf for completion 0", "finite"]),
        ("length", ["returned 5 values for 4 completions"]),
        ("type", ["returned str 'high' for completion 0"]),
        ("raise", ["raised RuntimeError: reward server unreachable"]),
    ],
)
def test_bad_reward_stops_the_run_and_keeps_the_checkpoint(tmp_path, tiny_policy, toy, capsys, mode, words):
    """Through the CLI's ``main`` (in-process): exit 2, one line naming the component and the step."""
    import torch

    from rlhf_plug.cli import main

    stage = ppo_stage(steps=6, reward=f"[{{use: flaky, with: {{mode: {mode}, from_call: 3}}}}]", args=", save_every: 2")
    path = write_recipe(tmp_path / "recipe.yaml", recipe(tiny_policy, tmp_path / "runs", stage))
    capsys.readouterr()
    code = main(["run", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), err
    assert "reward[0] 'flaky' at PPO step 3 " in errors[0], errors[0]
    for word in words:
        assert word in errors[0], errors[0]

    run_dir = tmp_path / "runs" / "ppo-test"
    assert not (run_dir / "ppo").exists()
    partial = run_dir / ".ppo.partial"
    kept = partial / "checkpoints" / "step-000002"
    assert (kept / "trainable.safetensors").is_file() and (kept / "state.pt").is_file()
    assert sorted(p.name for p in (partial / "checkpoints").iterdir()) == ["step-000002"]
    assert torch.load(kept / "state.pt", weights_only=False)["step"] == 2
    assert [r["step"] for r in records(partial / "metrics.jsonl", "train")] == [1, 2]


# --------------------------------------------------------------------------
# The learned reward model on the shared base
# --------------------------------------------------------------------------


def _toy_rankings(path: Path, n: int = 16) -> Path:
    rows = []
    for i in range(n):
        prompt = [{"role": "user", "content": f"Question number {i}: is this good?"}]
        answers = ["The answer is good.", "good answer", "bad answer", "The answer is bad."]
        rows.append({"prompt": prompt, "completions": [[{"role": "assistant", "content": a}] for a in answers]})
    return write_jsonl(path, rows)


CHAIN = """
  - sft:
      data: {{use: builtin, with: {{name: demos}}, limit: 16}}
      lora: {{r: 8, lora_alpha: 16}}
      args: {{max_steps: 1, per_device_train_batch_size: 8, max_length: 64}}
  - reward:
      data: {{use: file, with: {{path: {rankings}}}, eval_fraction: 0.25}}
      lora: {{r: 8, lora_alpha: 16}}
      args: {{max_steps: 6, learning_rate: 5.0e-3, per_device_train_batch_size: 8, max_length: 64}}
      evaluators: []
  - ppo:
      prompts: {{use: builtin, with: {{name: prompts}}, limit: 16}}
      reward: [{{use: learned_rm}}]
      kl: {{use: fixed, with: {{init: 0.01}}}}
      generation: {{max_new_tokens: 3}}
      evaluators: []
      args: {{steps: 2, batch_size: 4}}
  - ppo:
      name: ppo_separate
      prompts: {{use: builtin, with: {{name: prompts}}, limit: 16}}
      reward: [{{use: learned_rm, with: {{share_base: false}}}}]
      kl: {{use: fixed, with: {{init: 0.01}}}}
      generation: {{max_new_tokens: 3}}
      evaluators: []
      args: {{steps: 2, batch_size: 4}}
"""


def test_learned_rm_shares_the_base_and_scores_like_the_merged_model(tmp_path, tiny_model, toy):
    import torch
    from rlhf_plug_plugins.ppo.actor_critic import build_actor_critic
    from rlhf_plug.policy.rewards import RewardSetup
    from rlhf_plug_plugins.rewards.learned_rm import LearnedRM
    from rlhf_plug.rm_scoring import score
    from transformers import AutoModelForSequenceClassification

    from rlhf_plug.models import load_tokenizer

    rankings = _toy_rankings(tmp_path / "rankings.jsonl")
    body = recipe(tiny_model, tmp_path / "runs", CHAIN.format(rankings=rankings), name="chain")
    results, run_dir = run(tmp_path, toy, body)
    assert results["ppo"]["rewards_sharing_base"] == ["learned_rm"]
    assert results["ppo"]["base_model"] == str(run_dir / "sft" / "model")
    assert results["ppo_separate"]["rewards_sharing_base"] == []
    for name in ("ppo", "ppo_separate"):
        train = records(run_dir / name / "metrics.jsonl", "train")
        assert len(train) == 2 and all(math.isfinite(r["reward/learned_rm"]) for r in train)

    # The score through the shared base's reward adapter equals the merged reward model's.
    base = str(run_dir / "sft" / "model")
    device = torch.device("cpu")
    tokenizer = load_tokenizer(base)
    actor_critic = build_actor_critic(base, "none", {"r": 8, "lora_alpha": 16}, "trunk", 1.0, device)
    shared = LearnedRM(model=str(run_dir / "reward"))
    stage = _NoEarlierStages()
    shared.setup(RewardSetup(stage, base, actor_critic, tokenizer, device, ("reward", 0)))
    assert shared.shared

    prompts = [[{"role": "user", "content": f"Question number {i}: is this good?"}] for i in range(4)]
    prompts += ["Q: plain text prompt\nA:"]
    answers = ["The answer is good.", "bad answer", "good", "The answer is bad. The answer is bad.", " plain"]
    completions = [[{"role": "assistant", "content": a}] for a in answers[:4]] + [answers[4]]
    got = shared(prompts=prompts, completions=completions)

    rm = AutoModelForSequenceClassification.from_pretrained(str(run_dir / "reward" / "model"), num_labels=1)
    rm_tokenizer = load_tokenizer(str(run_dir / "reward" / "model"))
    rm.config.pad_token_id = rm_tokenizer.pad_token_id
    expected = score(rm, rm_tokenizer, prompts, completions)
    assert len(set(round(s, 4) for s in expected)) > 1, f"degenerate reward model: {expected}"
    assert got == pytest.approx(expected, abs=1e-4)


class _NoEarlierStages:
    """A stand-in StageContext: ``learned_rm`` is given a directory, not an earlier stage."""

    def earlier_stage_dir(self, name):
        return None

    def error(self, key, message):
        return UserError(f"{key}: {message}")


# --------------------------------------------------------------------------
# Recipe errors, found before anything is trained
# --------------------------------------------------------------------------


def check_error(tmp_path, toy, stage: str, model: Path) -> str:
    _, registries, pm = toy
    path = write_recipe(tmp_path / "recipe.yaml", recipe(model, tmp_path / "runs", stage))
    with pytest.raises(UserError) as info:
        loaded = load_recipe(path, registries)
        check_recipe(loaded, registries, pm, Console(file=io.StringIO()))
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("stage", "words"),
    [
        (ppo_stage().replace("lora: {r: 8, lora_alpha: 16}", "lora: false"), ["ppo.lora:", "not supported"]),
        (ppo_stage(args=", kl_estimator: k4"), ["ppo.args.kl_estimator:", "k4"]),
        (ppo_stage(args=", stepz: 4"), ["ppo.args.stepz:", "did you mean 'steps'"]),
        (ppo_stage(reward="[{use: even_frist}]"), ["ppo.reward[0].use:", "even_frist", "did you mean 'even_first'"]),
        (ppo_stage(reward="[{use: even_first, wieght: 2}]"), ["ppo.reward[0].wieght:", "did you mean 'weight'"]),
        (ppo_stage(extra="      ptx: {coef: 0.5}\n"), ["ppo.ptx.data:", "pretraining data"]),
        (ppo_stage(reward="[{use: even_first}, {use: even_first, weight: 2}]"), ["ppo.reward[", "'even_first' appears twice"]),
        (ppo_stage(extra="      judges: [{use: even_first}]\n"), ["ppo.", "'even_first' appears twice"]),
        (ppo_stage(args=", lr_scheduler: cosinus"), ["ppo.args.lr_scheduler:", "cosinus", "cosine"]),
        (ppo_stage().replace("lora: {r: 8, lora_alpha: 16}", "lora: {r: 8, layers_to_transform: [0]}"),
         ["ppo.lora:", "LoraConfig rejected", "layers_to_transform"]),
    ],
    ids=["lora-false", "kl-estimator", "unknown-arg", "unknown-reward", "reward-key-typo", "ptx-no-data",
         "reward-twice", "reward-and-judge", "scheduler", "lora-option"],
)
def test_recipe_errors_name_the_key(tmp_path, tiny_policy, toy, stage, words):
    message = check_error(tmp_path, toy, stage, tiny_policy)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"

