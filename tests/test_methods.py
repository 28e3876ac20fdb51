"""The ``dpo``, ``grpo`` and ``rloo`` stages on the tiny Llama: learning, rewards, errors, listing.

Runs use ``torch.set_num_threads(1)``: on a shared 2-core machine a second intra-op
thread makes these tiny models slower, not faster.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from test_example_plugin import installed  # noqa: F401  (the pip-installed example package)
from helpers import BUILTIN, assert_one_line_error, cli, read_jsonl, write_recipe, temporary_files
from rich.console import Console

from rlhf_plug.errors import RecipeError, UserError
from rlhf_plug.plugins import get_plugin_manager
from rlhf_plug.recipe import load_recipe
from rlhf_plug.registry import Registries
from rlhf_plug.runner import check_recipe, run_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = """
from rlhf_plug import hookimpl


class EvenFirst:
    \"\"\"1 when the first completion token id is even.\"\"\"

    def __call__(self, prompts, completions, completion_ids=None, **kw):
        return [1.0 if ids and ids[0] % 2 == 0 else 0.0 for ids in completion_ids]


class Broken:
    \"\"\"Fine for ``from_call - 1`` calls, then returns ``mode``-shaped garbage.\"\"\"

    def __init__(self, mode: str = "nan", from_call: int = 2):
        self.mode, self.from_call, self.calls = mode, from_call, 0

    def __call__(self, prompts, completions, completion_ids=None, **kw):
        self.calls += 1
        n = len(completions)
        if self.calls < self.from_call:
            return [0.5] * n
        if self.mode == "nan":
            return [0.0] * (n - 1) + [float("nan")]
        if self.mode == "length":
            return [0.0] * (n + 1)
        if self.mode == "none":
            return [None] * n
        raise RuntimeError("reward server unreachable")


class Spy:
    \"\"\"A third-party evaluator: writes what its context holds to a table.\"\"\"

    def __call__(self, context):
        context.tables["spy"] = [{
            "type": type(context).__name__, "method": context.method, "step": context.step,
            "prompts": len(context.prompts), "scorers": context.scorers, "rewards": sorted(context.rewards),
            "has_kl": context.policy.kl is not None, "reference": [str(c) for c in context.reference.completions],
        }]
        return {"spy_prompts": float(len(context.prompts))}


@hookimpl
def rlhf_register_reward_functions(register):
    register("even_first", EvenFirst)
    register("broken", Broken)


@hookimpl
def rlhf_register_evaluators(register):
    register("spy", Spy)
"""

PLUGIN = "methods_toy_rewards"
STEPS = 20


@pytest.fixture
def toy(make_module):
    """The toy reward plugin: (registries, pm)."""
    make_module(PLUGIN, TOY)
    pm = get_plugin_manager([PLUGIN], autoload=False)
    return Registries(pm), pm


def recipe(model: Path, out: Path, stages: str, *, plugins: str = f"[{PLUGIN}]") -> str:
    return f"""
name: methods
model: {model}
output_dir: {out}
quantization: none
plugins: {plugins}
stages:
{stages}
"""


def online(kind: str, *, steps: int = 2, reward: str = "[{use: even_first}]", args: str = "", extra: str = "") -> str:
    return f"""
  - {kind}:
      prompts: {{use: builtin, with: {{name: prompts}}, eval_fraction: 0}}
      reward: {reward}
      lora: {{r: 8, lora_alpha: 16}}
      args: {{max_steps: {steps}, per_device_train_batch_size: 32, num_generations: 8, max_completion_length: 2,
              learning_rate: 3.0e-2{args}}}
{extra}"""


def run(tmp_path: Path, toy, body: str, overrides=()) -> tuple[dict, Path]:
    registries, pm = toy
    path = write_recipe(tmp_path / "recipe.yaml", body)
    loaded = load_recipe(path, registries, list(overrides))
    results = run_recipe(loaded, registries, pm, Console(file=io.StringIO(), width=200))
    return results, tmp_path / "runs" / loaded.recipe.name


def check(tmp_path: Path, toy, body: str) -> None:
    registries, pm = toy
    loaded = load_recipe(write_recipe(tmp_path / "recipe.yaml", body), registries)
    check_recipe(loaded, registries, pm, Console(file=io.StringIO()))


def train_records(path: Path) -> list[dict]:
    return [r for r in read_jsonl(path) if r.get("split") == "train"]


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# --------------------------------------------------------------------------
# Learning
# --------------------------------------------------------------------------


def pair_margins(model_dir: Path, reference_dir: Path, pairs: list[dict]) -> list[float]:
    """DPO's implicit reward margin per pair: (log π/π_ref)(chosen) − (log π/π_ref)(rejected), in nats."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(reference_dir)

    def logp(model, prompt, answer) -> float:
        prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        full = tokenizer.apply_chat_template(prompt + answer, tokenize=True, return_dict=True)["input_ids"]
        ids = torch.tensor([full])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        targets = ids[0, 1:]
        picked = logits.gather(1, targets[:, None])[:, 0]
        return float(picked[len(prompt_ids) - 1 :].sum())

    policy = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    reference = AutoModelForCausalLM.from_pretrained(reference_dir).eval()
    out = []
    for row in pairs:
        ratio = {k: logp(policy, row["prompt"], row[k]) - logp(reference, row["prompt"], row[k]) for k in ("chosen", "rejected")}
        out.append(ratio["chosen"] - ratio["rejected"])
    return out


def test_dpo_raises_the_chosen_over_rejected_margin(tmp_path, tiny_model, toy):
    from rlhf_plug.data import expand_rankings, split_rows

    stage = """
  - dpo:
      data: {use: builtin, with: {name: rankings}, limit: 8, eval_fraction: 0.25}
      lora: {r: 8, lora_alpha: 16}
      args: {max_steps: 12, per_device_train_batch_size: 8, learning_rate: 5.0e-3, beta: 0.1}
"""
    results, run_dir = run(tmp_path, toy, recipe(tiny_model, tmp_path / "runs", stage))
    out = run_dir / "dpo"
    saved = json.loads((out / "results.json").read_text())
    assert saved == results["dpo"] and saved["steps"] == 12
    assert saved["train_pairs"] > 0 and saved["eval_pairs"] > 0
    train = [r for r in train_records(out / "metrics.jsonl") if "rewards/margins" in r]
    assert [r["step"] for r in train] == list(range(1, 13))
    assert train[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-4), "step 1: the policy is the reference"
    assert mean(r["rewards/margins"] for r in train[-3:]) > 0.2, [r["rewards/margins"] for r in train]

    rankings = read_jsonl(BUILTIN / "rankings.jsonl")[:8]
    train_pairs = expand_rankings(split_rows(rankings, 0.25, seed=42)[0])  # the stage's split (recipe seed 42)
    assert len(train_pairs) == saved["train_pairs"]
    margins = pair_margins(out / "model", tiny_model, train_pairs)
    assert mean(margins) > 1.0, f"the merged DPO model should prefer chosen answers more than SFT does: {margins}"
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert "eval_rewards/margins_after" in saved


@pytest.mark.parametrize("kind", ["grpo", "rloo"])
def test_online_stage_raises_a_token_reward(tmp_path, tiny_policy, toy, kind):
    results, run_dir = run(tmp_path, toy, recipe(tiny_policy, tmp_path / "runs", online(kind, steps=STEPS)))
    out = run_dir / kind
    train = [r for r in train_records(out / "metrics.jsonl") if "reward" in r]
    assert [r["step"] for r in train] == list(range(1, STEPS + 1))
    first, last = mean(r["reward"] for r in train[:3]), mean(r["reward"] for r in train[-3:])
    assert last >= first + 0.3, f"{kind}: reward did not rise: first 3 steps {first:.3f}, last 3 {last:.3f}"
    assert all("rewards/even_first/mean" in r for r in train), "TRL logs each reward function by its name"
    saved = json.loads((out / "results.json").read_text())
    assert saved == results[kind] and saved["steps"] == STEPS
    assert saved["train_reward_last_steps"] > saved["train_reward_first_steps"]
    assert (out / "model" / "model.safetensors").is_file() and (out / "adapter").is_dir()
    assert not temporary_files(run_dir), "no temporary folders left"


# --------------------------------------------------------------------------
# Bad reward output, bad keys, names, listing
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "mode", "words"),
    [
        ("grpo", "nan", ["returned nan for completion 15", "finite"]),
        ("rloo", "none", ["returned NoneType None for completion 0"]),  # TRL alone would make it NaN and go on
        ("rloo", "length", ["returned 17 values for 16 completions"]),
        ("grpo", "raise", ["raised RuntimeError: reward server unreachable"]),
    ],
)
def test_bad_reward_output_is_a_one_line_error_naming_component_and_step(tmp_path, tiny_policy, make_module, kind, mode, words):
    """Through the real CLI: exit 2, one line naming the component and the (1-based) step."""
    make_module(PLUGIN, TOY)
    reward = f"[{{use: even_first}}, {{use: broken, name: flaky, weight: 0.5, with: {{mode: {mode}, from_call: 2}}}}]"
    body = recipe(tiny_policy, tmp_path / "runs", online(kind, steps=3, reward=reward).replace("32", "16"))
    path = write_recipe(tmp_path / "recipe.yaml", body)
    proc = cli("run", str(path), cwd=tmp_path, PYTHONPATH=str(tmp_path))
    line = assert_one_line_error(proc, f"reward[1] 'flaky' at {kind.upper()} step 2 ", *words)
    assert not (tmp_path / "runs" / "methods" / kind).exists(), "a failed stage leaves no finished folder"


@pytest.mark.parametrize(
    ("kind", "key", "suggestion"),
    [("dpo", "betta", "beta"), ("grpo", "num_generation", "num_generations"), ("rloo", "max_completion_lenght", "max_completion_length")],
)
def test_unknown_args_key_suggests_the_config_field(tmp_path, tiny_model, toy, kind, key, suggestion):
    section = (
        "      data: {use: builtin, with: {name: rankings}}\n" if kind == "dpo"
        else "      prompts: {use: builtin, with: {name: prompts}}\n      reward: [{use: even_first}]\n"
    )
    body = recipe(tiny_model, tmp_path / "runs", f"  - {kind}:\n{section}      args: {{{key}: 1}}\n")
    with pytest.raises(RecipeError) as info:
        check(tmp_path, toy, body)
    message = str(info.value)
    assert key in message and f"did you mean '{suggestion}'" in message, message
    assert "\n" not in message


def test_unknown_stage_key_suggests_the_right_one(tmp_path, tiny_model, toy):
    body = recipe(tiny_model, tmp_path / "runs", "  - grpo:\n      prompts: {use: builtin, with: {name: prompts}}\n      rewards: []\n")
    with pytest.raises(RecipeError) as info:
        check(tmp_path, toy, body)
    assert "rewards" in str(info.value) and "did you mean 'reward'" in str(info.value)


def test_reward_weights_come_from_the_reward_entries(tmp_path, tiny_model, toy):
    body = recipe(tiny_model, tmp_path / "runs", online("grpo", args=", reward_weights: [1.0]"))
    with pytest.raises(UserError) as info:
        check(tmp_path, toy, body)
    assert "reward_weights" in str(info.value) and "weight:" in str(info.value)


def test_duplicate_stage_name_is_a_recipe_error_naming_both(tmp_path, tiny_model, toy):
    stages = online("grpo", extra="      name: policy\n") + online("rloo", extra="      name: policy\n")
    with pytest.raises(RecipeError) as info:
        check(tmp_path, toy, recipe(tiny_model, tmp_path / "runs", stages))
    message = str(info.value)
    assert "stages 0 (grpo) and 1 (rloo) both write to 'policy'" in message, message


def test_two_policy_stages_from_one_sft_model_validate(tmp_path, tiny_model, toy):
    stages = (
        "  - sft: {data: {use: builtin, with: {name: demos}}}\n"
        + online("grpo", extra="      model: sft\n") + online("rloo", extra="      model: sft\n")
        + "  - dpo: {data: {use: builtin, with: {name: rankings}}, model: sft, name: dpo-sigmoid, args: {loss_type: [sigmoid]}}\n"
    )
    check(tmp_path, toy, recipe(tiny_model, tmp_path / "runs", stages))


def test_plugins_command_lists_the_new_stages():
    proc = cli("plugins")
    assert proc.returncode == 0, proc.stderr
    for kind in ("dpo", "grpo", "rloo"):
        assert f"rlhf_plug_plugins.stages.{kind}" in proc.stdout
        assert any(line.split("│")[1:3] and line.split("│")[2].strip() == kind for line in proc.stdout.splitlines() if "│" in line), kind


def test_a_third_party_reward_drives_grpo_by_one_recipe_line(tmp_path, tiny_policy, installed, monkeypatch):
    """The example package's ``example_politeness`` (entry point ``example``) as GRPO's reward."""
    monkeypatch.delenv("RLHF_PLUG_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("RLHF_PLUG_PLUGINS", raising=False)
    pm = get_plugin_manager()  # entry points on: the installed example registers itself
    registries = Registries(pm)
    assert registries.get("reward_function", "example_politeness").plugin == "example"
    body = recipe(tiny_policy, tmp_path / "runs", online("grpo", steps=2, reward="[{use: example_politeness}]"), plugins="[]")
    results, run_dir = run(tmp_path, (registries, pm), body)
    train = [r for r in train_records(run_dir / "grpo" / "metrics.jsonl") if "reward" in r]
    assert [r["step"] for r in train] == [1, 2]
    assert all(r["rewards/example_politeness/mean"] == pytest.approx(r["reward"]) for r in train)
    assert results["grpo"]["steps"] == 2


def test_learned_rm_scores_grpo_completions_from_the_reward_stage(tmp_path, tiny_model, toy):
    """``learned_rm`` needs no shared base here: it loads the latest reward stage's model on its own."""
    stages = (
        "  - reward: {data: {use: builtin, with: {name: rankings}, limit: 8, eval_fraction: 0}, evaluators: [], args: {max_steps: 2}}\n"
        + online("grpo", steps=2, reward="[{use: learned_rm}, {use: even_first, weight: 0.5}]").replace("32", "16")
    )
    results, run_dir = run(tmp_path, toy, recipe(tiny_model, tmp_path / "runs", stages))
    train = [r for r in train_records(run_dir / "grpo" / "metrics.jsonl") if "reward" in r]
    assert [r["step"] for r in train] == [1, 2]
    for r in train:
        weighted = r["rewards/learned_rm/mean"] + 0.5 * r["rewards/even_first/mean"]
        assert r["reward"] == pytest.approx(weighted, abs=1e-4), r
    assert len({round(r["rewards/learned_rm/mean"], 6) for r in train}) == 2, "the RM scores what was sampled"


EVALUATION = """      eval_prompts: {use: builtin, with: {name: prompts_eval}, limit: 4, eval_fraction: 0}
      judges: [{use: simulated_annotator, name: gold}]
      evaluators: [{use: spy}, {use: reward_stats}, {use: win_rate}, {use: samples}]
"""


def test_every_policy_stage_is_evaluated_the_same_way(tmp_path, tiny_policy, toy):
    """dpo, grpo, rloo and ppo from one model: the same held-out prompts, judges, evaluator context and
    reference answers; metrics before and after."""
    common = EVALUATION + "      evaluation: {max_prompts: 4, batch_size: 4, generation: {max_new_tokens: 3, temperature: 1.0}}\n"
    stages = (
        "  - dpo:\n      data: {use: builtin, with: {name: rankings}, limit: 4, eval_fraction: 0}\n"
        "      args: {max_steps: 1, per_device_train_batch_size: 4}\n" + common
        + online("grpo", steps=1, extra=common) + online("rloo", steps=1, extra=common)
        + "  - ppo:\n      prompts: {use: builtin, with: {name: prompts}, eval_fraction: 0}\n"
        "      reward: [{use: even_first}]\n      generation: {max_new_tokens: 3, temperature: 1.0}\n"
        "      args: {steps: 1, batch_size: 4, eval_prompts: 4}\n" + EVALUATION
    )
    results, run_dir = run(tmp_path, toy, recipe(tiny_policy, tmp_path / "runs", stages))
    seen = {}
    for kind in ("dpo", "grpo", "rloo", "ppo"):
        evals = [r for r in read_jsonl(run_dir / kind / "metrics.jsonl") if r["split"] == "eval" and "spy_prompts" in r]
        assert [r["step"] for r in evals] == [0, 1], kind
        for key in ("kl", "win_rate/gold", "tie_rate/gold", "reward/gold", "reference_reward/gold", "response_length"):
            assert key in evals[-1], (kind, key)
        assert evals[0]["kl"] == 0.0 and evals[0]["win_rate/gold"] == 0.5, "before training the policy is the reference"
        assert results[kind]["eval_prompts"] == 4 and "eval_win_rate/gold_after" in results[kind]
        spy = [read_jsonl(run_dir / kind / "samples" / f"spy-step-{step:06d}.jsonl")[0] for step in (0, 1)]
        assert (run_dir / kind / "samples" / "samples-step-000001.jsonl").is_file()
        seen[kind] = spy[1]
        assert spy[1]["method"] == kind and spy[1]["has_kl"] and spy[1]["prompts"] == 4
    assert {s["type"] for s in seen.values()} == {"PolicyEvalContext"}
    assert seen["dpo"]["scorers"] == ["gold"] and seen["dpo"]["rewards"] == []
    assert seen["grpo"]["scorers"] == seen["rloo"]["scorers"] == seen["ppo"]["scorers"] == ["even_first", "gold"]
    assert seen["dpo"]["reference"] == seen["grpo"]["reference"] == seen["rloo"]["reference"] == seen["ppo"]["reference"], "one reference"
    report = (run_dir / "report.md").read_text()
    for title in ("Win-rate of DPO over SFT", "Win-rate of GRPO over SFT", "Win-rate of RLOO over SFT", "Win-rate of PPO over SFT"):
        assert f"### {title}" in report, title
    assert report.count("### Method comparison") == 1
    comparison = report[report.index("### Method comparison"):]
    rows = {line.split("|")[1].strip(): line for line in comparison.splitlines() if line.startswith("| `")}
    assert set(rows) == {"`dpo`", "`grpo`", "`rloo`", "`ppo`"}, comparison
    assert "gold win-rate over SFT" in comparison and (run_dir / "report" / "method-comparison.png").is_file()
    from rlhf_plug.report.markdown import number

    noise = f"{number(evals[-1]['win_rate/gold'])} ± {evals[-1]['win_rate_2se/gold']:.2f}"  # ppo's, the last stage read
    assert noise in rows["`ppo`"], (noise, rows["`ppo`"])
    assert all(results[k]["peak_memory_mb"] > 0 for k in ("dpo", "grpo", "rloo", "ppo"))


def test_set_addresses_a_stage_by_its_name(tmp_path, tiny_model, toy):
    registries, _ = toy
    stages = online("grpo", extra="      name: grpo-a\n") + online("grpo", extra="      name: grpo-b\n")
    path = write_recipe(tmp_path / "recipe.yaml", recipe(tiny_model, tmp_path / "runs", stages))
    loaded = load_recipe(path, registries, ["grpo-b.args.beta=0.2"])
    assert [(s.kind, s.name, s.config.args.get("beta")) for s in loaded.stages] == [("grpo", "grpo-a", None), ("grpo", "grpo-b", 0.2)]
