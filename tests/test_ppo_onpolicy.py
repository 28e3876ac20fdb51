"""PPO samples what it scores: the sampler-vs-trainer log-prob gap, across model families, precisions and settings.

Each rollout keeps the log-probability every drawn token had under the distribution it was drawn
from; the trainer's old log-probability of the same token must match it to float rounding in fp32
(``logprob_gap_max``). The matrix runs 2 PPO steps per model family (tiny random-init models built
from configs) and setting; the tests after it each close one way the two used to differ.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from helpers import FAMILIES, build_tiny_model, write_recipe
from rich.console import Console

from rlhf_plug.errors import UserError
from rlhf_plug.plugins import get_plugin_manager
from rlhf_plug.recipe import load_recipe
from rlhf_plug.registry import Registries
from rlhf_plug.runner import check_recipe, run_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

FP32_GAP = 1e-3  # fp32 rounding measured at 1e-6 to 6e-6 on every family; an off-policy setting gives 0.04 to 4
BF16_GAP = 0.5  # half the default warning threshold under bf16: measured up to 0.06 on these models


@pytest.fixture(scope="module")
def family_model(tmp_path_factory):
    """``family_model(family, **settings)``: a tiny model of that family, built once per module and setting."""
    built: dict[str, Path] = {}

    def make(family: str, generation: dict | None = None, **config) -> Path:
        key = json.dumps([family, generation, config], sort_keys=True)
        if key not in built:
            built[key] = build_tiny_model(tmp_path_factory.mktemp(family) / "model", initializer_range=0.2,
                                          family=family, generation=generation, **config)
        return built[key]

    return make


def ppo_recipe(model: Path, out: Path, *, args: str = "", generation: dict | None = None, quantization: str = "none",
               lora: str = "{r: 8, lora_alpha: 16}", steps: int = 2) -> str:
    """``generation`` replaces keys of the default sampling settings (a key written twice is an error)."""
    sampling = ", ".join(f"{k}: {v}" for k, v in {"max_new_tokens": 8, "temperature": 1.0, **(generation or {})}.items())
    return f"""
name: onpolicy
model: {model}
output_dir: {out}
quantization: {quantization}
stages:
  - ppo:
      prompts: {{use: builtin, with: {{name: prompts}}, eval_fraction: 0.1}}
      reward: [{{use: length_penalty, with: {{max_words: 1, per_word: 1.0}}}}]  # varies, so the policy moves
      kl: {{use: fixed, with: {{init: 0.01}}}}
      generation: {{{sampling}}}
      lora: {lora}
      evaluators: []
      args: {{steps: {steps}, batch_size: 4, mini_batches: 2, learning_rate: 1.0e-2{args}}}
"""


def run_ppo(tmp_path: Path, body: str, resume: bool = False) -> tuple[list[dict], str, Path]:
    """Run the recipe in-process: (train metrics, console text, stage folder)."""
    pm = get_plugin_manager([], autoload=False)
    registries = Registries(pm)
    path = write_recipe(tmp_path / "recipe.yaml", body)
    console = Console(file=io.StringIO(), width=400)
    run_recipe(load_recipe(path, registries), registries, pm, console, resume=resume)
    out = tmp_path / "runs" / "onpolicy" / "ppo"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("split") == "train"], console.file.getvalue(), out


def assert_on_policy(train: list[dict], limit: float) -> None:
    assert [r["step"] for r in train] == [1, 2]
    for r in train:
        assert 0 <= r["logprob_gap_mean"] <= r["logprob_gap_max"] < limit, (r["step"], r["logprob_gap_mean"], r["logprob_gap_max"])


# --------------------------------------------------------------------------
# The matrix: every family, every precision, every speed feature on and off
# --------------------------------------------------------------------------

SETTINGS = {
    "fp32": ("", "none", FP32_GAP),
    "bf16-autocast": (", bf16: true", "none", BF16_GAP),
    "nf4": ("", "4bit", FP32_GAP),  # bitsandbytes on CPU dequantises to fp32: rounding only
    "top-k-top-p-t0.7": ("", "none", FP32_GAP),  # with GENERATION below: softcap/scale, then ÷T, then truncate
    "adapter-value-no-speedups": (", value_model: adapter, merged_sampling: false, packed_sampling: false, "
                                  "share_prompt_prefix: false, gradient_checkpointing: true, lean_activations: false",
                                  "none", FP32_GAP),
}


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_on_policy(tmp_path, family_model, family, setting):
    from safetensors.torch import load_file

    args, quantization, limit = SETTINGS[setting]
    generation = {"temperature": 0.7, "top_k": 20, "top_p": 0.9} if setting.startswith("top-k") else None
    body = ppo_recipe(family_model(family), tmp_path / "runs", args=args, quantization=quantization, generation=generation)
    train, text, out = run_ppo(tmp_path, body)
    assert_on_policy(train, limit)
    assert "warning" not in text, text
    assert all(r["reward"] == r["reward"] for r in train)
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert any(v.abs().max() > 0 for k, v in adapter.items() if "lora_B" in k), "the policy moved: step 2 sampled from it"
    results = json.loads((out / "results.json").read_text())
    assert results["logprob_gap_max"] == max(r["logprob_gap_max"] for r in train)
    assert results["quantization"] == ("nf4-4bit" if quantization == "4bit" else "none")


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_resumes_on_policy(tmp_path, family_model, family, monkeypatch):
    """Interrupted after step 1 (checkpointed), resumed: step 2 runs from the checkpoint and stays on-policy."""
    from rlhf_plug_plugins.ppo.loop import PPOLoop

    body = ppo_recipe(family_model(family), tmp_path / "runs", args=", save_every: 1")
    real_step = PPOLoop.step

    def interrupted(self, step):
        if step == 1:
            raise KeyboardInterrupt
        return real_step(self, step)

    monkeypatch.setattr(PPOLoop, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_ppo(tmp_path, body)
    monkeypatch.setattr(PPOLoop, "step", real_step)
    train, text, _ = run_ppo(tmp_path, body, resume=True)
    assert "resuming from checkpoint step-000001 (step 1 of 2)" in text
    assert_on_policy(train, FP32_GAP)


def test_merged_sampling_steps_aside_under_bf16_and_says_so(tmp_path, family_model):
    train, text, _ = run_ppo(tmp_path, ppo_recipe(family_model("llama"), tmp_path / "runs", args=", bf16: true"))
    assert text.count("merged_sampling steps aside: under bf16 autocast") == 1, text
    assert_on_policy(train, BF16_GAP)


# --------------------------------------------------------------------------
# Section 2: each way the sampler and the trainer used to differ
# --------------------------------------------------------------------------


def test_top_k_and_top_p_are_scored_as_sampled(tmp_path, family_model):
    """The trainer renormalises over the sampler's top-k/top-p set; scoring the full softmax gave a gap of ~1 nat."""
    body = ppo_recipe(family_model("llama"), tmp_path / "runs", generation={"top_k": 20, "top_p": 0.8})
    train, _, _ = run_ppo(tmp_path, body)
    assert_on_policy(train, FP32_GAP)


MODEL_GENERATION = {"repetition_penalty": 2.0, "no_repeat_ngram_size": 2, "suppress_tokens": list(range(3, 60)),
                    "min_length": 6}


def test_the_models_own_generation_config_shapes_nothing(tmp_path, family_model):
    """A Qwen-style generation_config.json (repetition penalty, n-gram blocking, suppressed tokens) is not inherited."""
    model = family_model("qwen2", generation=MODEL_GENERATION)
    train, _, _ = run_ppo(tmp_path, ppo_recipe(model, tmp_path / "runs", generation={"max_new_tokens": 16}))
    assert_on_policy(train, FP32_GAP)


def test_sampling_inherits_nothing_and_leaves_the_models_config(family_model):
    from types import SimpleNamespace

    import torch
    from rlhf_plug_plugins.ppo.actor_critic import build_actor_critic
    from rlhf_plug.policy.sampling import sample
    from transformers import AutoTokenizer

    path = family_model("qwen2", generation=MODEL_GENERATION)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = build_actor_critic(str(path), "none", {"r": 4, "lora_alpha": 8}, "trunk", 1.0, torch.device("cpu"))
    generation = SimpleNamespace(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=12)
    torch.manual_seed(0)
    roll = sample(model.peft, tokenizer, [[{"role": "user", "content": "Name a colour."}]] * 16, generation, 64, "cpu")
    drawn = roll.response_ids[roll.response_mask.bool()]
    assert ((drawn >= 3) & (drawn < 60)).any(), "suppress_tokens from the model's file must not apply"
    for holder in (model.peft, model.causal_lm):
        assert holder.generation_config.repetition_penalty == 2.0, "the model's own config is put back"


def test_the_merge_plan_merges_in_fp32_only(tiny_policy):
    import torch
    from rlhf_plug_plugins.ppo.actor_critic import build_actor_critic
    from rlhf_plug_plugins.ppo.speed.merged_generation import merge_plan

    model = build_actor_critic(str(tiny_policy), "none", {"r": 4, "lora_alpha": 8}, "trunk", 1.0, torch.device("cpu"))
    assert merge_plan(model, True, None) == (True, None)
    assert merge_plan(model, False, None) == (False, None)
    merges, said = merge_plan(model, True, torch.bfloat16)
    assert not merges and said.startswith("merged_sampling steps aside: under bf16 autocast")
    model.causal_lm.to(torch.bfloat16)
    merges, said = merge_plan(model, True, None)
    assert not merges and "bfloat16 weights" in said


def test_family_logit_transforms_follow_the_config():
    from types import SimpleNamespace

    import torch
    from rlhf_plug_plugins.ppo.scoring import ResponseScorer

    logits = torch.tensor([[[-100.0, 0.0, 3.0]]])
    head = lambda hidden: hidden  # noqa: E731  (the hidden state is the logits)
    configs = {
        "gemma": (SimpleNamespace(final_logit_softcapping=30.0), torch.tanh(logits / 30.0) * 30.0),
        "cohere": (SimpleNamespace(logit_scale=0.0625), logits * 0.0625),
        "granite": (SimpleNamespace(logits_scaling=8.0), logits / 8.0),
        "llama": (SimpleNamespace(final_logit_softcapping=None, logit_scale=None), logits),
    }
    for name, (config, expected) in configs.items():
        got = ResponseScorer(config, temperature=0.5).logits(head, logits.clone())
        assert torch.allclose(got, expected / 0.5), name


def test_merged_sampling_is_not_used_where_it_rounds_away_the_adapter(tiny_policy):
    """bf16 W + ΔW erases a small ΔW: under autocast the sampler must compute what the unmerged policy computes."""
    import torch
    from rlhf_plug_plugins.ppo.actor_critic import build_actor_critic
    from rlhf_plug_plugins.ppo.speed.merged_generation import sampling_weights

    model = build_actor_critic(str(tiny_policy), "none", {"r": 4, "lora_alpha": 8}, "trunk", 1.0, torch.device("cpu"))
    with torch.no_grad():
        for name, param in model.peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1e-3)  # early training: ΔW far below bf16's resolution of W
    ids = torch.tensor([[5, 9, 23, 41, 7, 12]])

    def logits(merge: bool) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), sampling_weights(model, True, merge):
            return model.peft(input_ids=ids).logits.float()

    assert torch.equal(logits(True), logits(False))


@pytest.mark.parametrize(("option", "value"), [
    ("bias", "all"), ("bias", "lora_only"), ("init_lora_weights", "pissa"), ("init_lora_weights", "olora"),
    ("init_lora_weights", "corda"), ("init_lora_weights", "loftq"), ("modules_to_save", "[lm_head]"),
    ("trainable_token_indices", "[1, 2]"),
])
def test_lora_options_that_change_the_reference_are_refused(tmp_path, tiny_policy, option, value):
    pm = get_plugin_manager([], autoload=False)
    registries = Registries(pm)
    body = ppo_recipe(tiny_policy, tmp_path / "runs", lora=f"{{r: 8, {option}: {value}}}")
    path = write_recipe(tmp_path / "recipe.yaml", body)
    with pytest.raises(UserError) as caught:
        check_recipe(load_recipe(path, registries), registries, pm, Console(file=io.StringIO()))
    message = str(caught.value)
    assert f"lora.{option}" in message and "recipe.yaml" in message, message
    assert "\n" not in message


def _reward_adapter(base: Path, target: Path, dropout: float) -> Path:
    """A sequence-classification LoRA on ``base`` with ``lora_dropout``, its B and score weights non-zero."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=dropout))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "score" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(target)
    return target


def test_every_no_grad_pass_is_deterministic_despite_attention_and_lora_dropout(tmp_path, family_model):
    """A config's attention_dropout and a reward LoRA's lora_dropout are off in the (train-mode) passes."""
    import torch
    from rlhf_plug_plugins.ppo.actor_critic import build_actor_critic

    path = family_model("qwen2", attention_dropout=0.5)
    model = build_actor_critic(str(path), "none", {"r": 4, "lora_alpha": 8}, "trunk", 1.0, torch.device("cpu"), "auto")
    assert model.training, "the stage keeps the model in train mode for checkpointing"
    reward = model.add_reward_adapter(_reward_adapter(path, tmp_path / "rm", dropout=0.5))
    ids = torch.randint(3, 200, (4, 24))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        for role, kwargs in (("train", {"prompt_length": 12}), ("reference", {"prompt_length": 12}), ("reward", {"name": reward})):
            first, second = (model(role=role, input_ids=ids, attention_mask=mask, **kwargs) for _ in range(2))
            first = first.logprobs if role == "train" else first
            second = second.logprobs if role == "train" else second
            assert torch.equal(first, second), role


def test_an_answer_may_end_at_its_first_token(tiny_model):
    """No min_new_tokens: the sampler may draw EOS first, as the trainer's scoring allows."""
    from types import SimpleNamespace

    import torch
    from rlhf_plug.policy.sampling import sample
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        model.model.norm.weight.zero_()  # every logit 0: each token, EOS included, has probability 1/|V|
    generation = SimpleNamespace(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=1)
    torch.manual_seed(0)
    roll = sample(model, tokenizer, ["Hi"] * 3000, generation, 8, "cpu")
    assert roll.has_eos.any(), "with 1/|V| chance per row, some of 3000 answers end at once"
    assert torch.allclose(roll.sampler_logprobs[:, 0], torch.tensor(-float(torch.log(torch.tensor(float(len(tokenizer)))))))


# --------------------------------------------------------------------------
# Section 1: the metric itself, its warning, strict mode and the correction
# --------------------------------------------------------------------------


def test_the_sampler_keeps_the_logprob_it_drew_each_token_with():
    import torch
    from rlhf_plug.policy.inverse_cdf import InverseCdfSampler

    logits = torch.tensor([[1.0, 3.0, 0.0, 2.0, -1.0]]).expand(64, -1).contiguous()
    sampler = InverseCdfSampler(temperature=0.5, top_k=3, top_p=1.0)
    scores = sampler(None, logits.clone())
    token = scores.argmax(-1)
    kept = torch.tensor([1.0, 3.0, float("-inf"), 2.0, float("-inf")]) / 0.5
    expected = kept.log_softmax(-1)[token]
    assert torch.allclose(sampler.drawn_logprobs()[:, 0], expected)


def test_truncated_importance_weights_are_capped_and_one_off_the_response():
    import torch
    from rlhf_plug_plugins.ppo.mismatch import truncated_importance_weights

    sampler = torch.tensor([[-1.0, -2.0, -3.0]])
    trainer = torch.tensor([[-1.0, -0.5, -10.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    weights, metrics = truncated_importance_weights(sampler, trainer, mask, cap=2.0)
    assert torch.allclose(weights, torch.tensor([[1.0, 2.0, 1.0]]))
    assert metrics == {"is_weight_mean": 1.5, "is_clipped_fraction": 0.5}


def test_a_gap_above_the_threshold_warns_once_naming_the_cause(tmp_path, tiny_policy):
    body = ppo_recipe(tiny_policy, tmp_path / "runs", args=", logprob_gap_threshold: 1.0e-12")
    train, text, _ = run_ppo(tmp_path, body)
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, text
    assert "PPO step 1: logprob_gap_max" in warnings[0] and "in fp32 the two differ only by rounding" in warnings[0]
    assert len(train) == 2


def test_strict_mode_stops_with_one_line_naming_the_setting(tmp_path, tiny_policy):
    body = ppo_recipe(tiny_policy, tmp_path / "runs", args=", logprob_gap_threshold: 1.0e-12, logprob_gap_strict: true")
    with pytest.raises(UserError) as caught:
        run_ppo(tmp_path, body)
    message = str(caught.value)
    assert "args.logprob_gap_strict" in message and "PPO step 1" in message and "\n" not in message, message
    assert "stopped before the update was applied" in message
    assert not (tmp_path / "runs" / "onpolicy" / "ppo").exists(), "a failed stage leaves no output folder"


@pytest.mark.parametrize("bf16", [False, True])
def test_truncated_importance_sampling_trains_and_logs_its_weights(tmp_path, tiny_policy, bf16):
    body = ppo_recipe(tiny_policy, tmp_path / "runs", args=f", bf16: {str(bf16).lower()}, importance_sampling: truncated")
    train, _, _ = run_ppo(tmp_path, body)
    assert_on_policy(train, BF16_GAP if bf16 else FP32_GAP)
    for r in train:
        assert 0.5 < r["is_weight_mean"] <= 2.0 and 0 <= r["is_clipped_fraction"] <= 1, r
        if not bf16:  # on-policy to rounding: every weight is 1
            assert r["is_weight_mean"] == pytest.approx(1.0, abs=1e-4) and r["is_clipped_fraction"] == 0, r


def test_importance_weights_scale_the_advantages(monkeypatch):
    """What the loss sees: each token's whitened advantage times its truncated weight."""
    import torch
    from rlhf_plug_plugins.ppo import mismatch

    sampler = torch.tensor([[-1.0, -1.0]])
    trainer = torch.tensor([[-1.0, -1.0 + torch.log(torch.tensor(1.5)).item()]])
    weights, _ = mismatch.truncated_importance_weights(sampler, trainer, torch.ones(1, 2), cap=2.0)
    assert torch.allclose(torch.tensor([[0.4, -0.8]]) * weights, torch.tensor([[0.4, -1.2]]))


SPY = """
from rlhf_plug import hookimpl

SEEN = []


class SeenTokens:
    def __call__(self, prompts, completions, completion_ids=None, **kw):
        SEEN.extend(t for ids in completion_ids for t in ids)
        return [0.0] * len(completions)


@hookimpl
def rlhf_register_reward_functions(register):
    register("seen_tokens", SeenTokens)
"""


@pytest.mark.parametrize("kind", ["grpo", "rloo"])
def test_trl_policy_stages_sample_without_the_models_generation_config(tmp_path, family_model, make_module, kind):
    """TRL's GenerationConfig leaves suppress_tokens unset, so the model's file would fill it; ours does not let it."""
    import importlib

    make_module("onpolicy_spy", SPY)
    pm = get_plugin_manager(["onpolicy_spy"], autoload=False)
    registries = Registries(pm)
    model = family_model("qwen2", generation=MODEL_GENERATION)
    body = f"""
name: onpolicy
model: {model}
output_dir: {tmp_path / "runs"}
quantization: none
plugins: [onpolicy_spy]
stages:
  - {kind}:
      prompts: {{use: builtin, with: {{name: prompts}}, eval_fraction: 0}}
      reward: [{{use: seen_tokens}}]
      lora: {{r: 8, lora_alpha: 16}}
      args: {{max_steps: 1, per_device_train_batch_size: 16, num_generations: 8, max_completion_length: 8}}
"""
    path = write_recipe(tmp_path / "recipe.yaml", body)
    run_recipe(load_recipe(path, registries), registries, pm, Console(file=io.StringIO(), width=200))
    seen = importlib.import_module("onpolicy_spy").SEEN
    assert len(seen) >= 16 and any(3 <= t < 60 for t in seen), "suppress_tokens from the model's file must not apply"
    saved = json.loads((tmp_path / "runs" / "onpolicy" / kind / "model" / "generation_config.json").read_text())
    assert saved.get("repetition_penalty") == 2.0, "the saved model keeps its own generation config"
