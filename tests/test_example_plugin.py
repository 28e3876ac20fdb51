"""The example third-party plugin (examples/rlhf-plug-example), installed with pip.

Checks entry-point discovery (autoload on/off, ``-p``), the CLI listing, the
reward function's values, and an end-to-end sft -> reward run that uses the
plugin's data source and reward function by name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, write_recipe

from rlhf_plug.data import as_rows

EXAMPLE_DIR = REPO / "examples" / "rlhf-plug-example"
DIST = "rlhf-plug-example"
AUTOLOAD_ENV = "RLHF_PLUG_DISABLE_PLUGIN_AUTOLOAD"


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def installed():
    """pip-install the example into this interpreter for the module; uninstall afterwards."""
    done = _pip("install", "--no-deps", "--no-build-isolation", "-q", str(EXAMPLE_DIR))
    assert done.returncode == 0, done.stderr
    sys.modules.pop("rlhf_plug_example", None)
    try:
        yield EXAMPLE_DIR
    finally:
        _pip("uninstall", "-y", "-q", DIST)
        sys.modules.pop("rlhf_plug_example", None)
        # in-tree build leftovers (git-ignored, but stale files could leak into a later build)
        shutil.rmtree(EXAMPLE_DIR / "build", ignore_errors=True)
        for info in EXAMPLE_DIR.glob("*.egg-info"):
            shutil.rmtree(info, ignore_errors=True)


def _env(autoload: bool) -> dict:
    env = dict(os.environ, COLUMNS="250")  # wide rich tables: no wrapped names
    env.pop("RLHF_PLUG_PLUGINS", None)
    if autoload:
        env.pop(AUTOLOAD_ENV, None)
    else:
        env[AUTOLOAD_ENV] = "1"
    return env


def _cli(*args: str, autoload: bool, timeout: int = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rlhf_plug", *args],
        capture_output=True, text=True, env=_env(autoload), timeout=timeout, cwd=cwd,
    )


def _registries(modules=()):
    from rlhf_plug.plugins import get_plugin_manager
    from rlhf_plug.registry import Registries

    pm = get_plugin_manager(modules)
    return pm, Registries(pm)


# --------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------


def test_autoload_registers_components_under_plugin_name(installed, monkeypatch):
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv("RLHF_PLUG_PLUGINS", raising=False)
    pm, registries = _registries()
    assert pm.get_plugin("example") is not None
    assert pm.distributions["example"].startswith(f"{DIST} ")
    assert registries.get("data_source", "example_jokes").plugin == "example"
    assert registries.get("reward_function", "example_politeness").plugin == "example"
    # the defaults are still there
    assert "builtin" in registries["data_source"].names()
    assert "judge_agreement" in registries["evaluator"].names()


def test_plugins_command_lists_example(installed):
    done = _cli("plugins", autoload=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "example_jokes" in out and "example_politeness" in out
    assert DIST in out  # the "from" column names the distribution
    rows = [line for line in out.splitlines() if "example_politeness" in line]
    assert rows and "example" in rows[0].replace("example_politeness", "")


def test_autoload_off_hides_plugin(installed, monkeypatch):
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    monkeypatch.delenv("RLHF_PLUG_PLUGINS", raising=False)
    pm, registries = _registries()
    assert pm.get_plugin("example") is None
    assert "example_jokes" not in registries["data_source"].names()
    assert "example_politeness" not in registries["reward_function"].names()

    done = _cli("plugins", autoload=False)
    assert done.returncode == 0, done.stderr
    assert "example_jokes" not in done.stdout and DIST not in done.stdout


def test_autoload_off_dash_p_brings_it_back(installed, monkeypatch):
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    monkeypatch.delenv("RLHF_PLUG_PLUGINS", raising=False)
    _, registries = _registries(["rlhf_plug_example"])
    assert registries.get("data_source", "example_jokes").plugin == "rlhf_plug_example"
    assert registries.get("reward_function", "example_politeness").plugin == "rlhf_plug_example"

    done = _cli("-p", "rlhf_plug_example", "plugins", autoload=False)
    assert done.returncode == 0, done.stderr
    assert "example_jokes" in done.stdout and "example_politeness" in done.stdout


def test_unknown_with_key_is_a_recipe_error(installed, monkeypatch):
    from rlhf_plug.errors import RecipeError

    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    _, registries = _registries()
    component = registries.get("data_source", "example_jokes")
    assert component.build({"kind": "demos"}).kind == "demos"
    with pytest.raises(RecipeError, match="'demos' or 'rankings'") as bad_value:
        component.validate({"kind": "jokes"}, ("stages", 0, "sft", "data", "with"))
    assert bad_value.value.path == ("stages", 0, "sft", "data", "with", "kind")
    with pytest.raises(RecipeError, match="unknown key 'knd' \\(did you mean 'kind'\\?\\)"):
        component.validate({"knd": "demos"})


def test_dash_p_with_autoload_on_is_harmless(installed, monkeypatch):
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    monkeypatch.delenv("RLHF_PLUG_PLUGINS", raising=False)
    _, registries = _registries(["rlhf_plug_example"])
    assert registries.get("reward_function", "example_politeness").plugin == "example"


# --------------------------------------------------------------------------
# The components themselves
# --------------------------------------------------------------------------


def test_politeness_values(installed):
    from rlhf_plug_example import ExamplePoliteness

    reward = ExamplePoliteness()
    prompts = ["Tell me a joke."] * 6
    completions = [
        "Please enjoy this one. Thank you!",  # +2
        "Thanks!",  # +1
        "A fish with no eyes is a fsh.",  # 0
        "Ugh, a stupid question.",  # -2
        "Please, shut up.",  # +1 -1 = 0
        [{"role": "assistant", "content": "Thank you, you idiot."}],  # conversational: +1 -1 = 0
    ]
    assert reward(prompts, completions, extra=[0] * 6) == [2.0, 1.0, 0.0, -2.0, 0.0, 0.0]
    # word boundaries and case: "dumbbell"/"pleased" don't count, "PLEASE" does
    assert reward(["p"] * 3, ["I lift a dumbbell.", "I am pleased.", "PLEASE"]) == [0.0, 0.0, 1.0]
    weighted = ExamplePoliteness(polite=0.5, rude=2.0, extra_rude_words=("meh",))
    assert weighted(["p"] * 2, ["Thanks, meh.", "please please"]) == [-1.5, 1.0]


def test_jokes_data_source(installed):
    from rlhf_plug_example import ExampleJokes, ExamplePoliteness

    from rlhf_plug.data import detect_format, validate_rows

    rankings = as_rows(ExampleJokes().load())
    demos = as_rows(ExampleJokes(kind="demos").load())
    assert len(rankings) == len(demos) == 40
    assert detect_format(rankings[0]) == "rankings" and detect_format(demos[0]) == "prompt_completion"
    validate_rows(rankings, "rankings", "example_jokes")
    validate_rows(demos, "prompt_completion", "example_jokes")
    # the judge ranks every list exactly as the data does (polite > plain > rude)
    reward = ExamplePoliteness()
    for row in rankings:
        scores = reward([row["prompt"]] * 3, row["completions"])
        assert scores[0] > scores[1] > scores[2], row
    assert len(ExampleJokes(topics=["cats", "dogs"]).rows()) == 2


# --------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------

E2E_RECIPE = """\
name: example-e2e
quantization: none
stages:
  - sft:
      data: {use: example_jokes, with: {kind: demos}, eval_fraction: 0.1}
      lora: {r: 4, lora_alpha: 8}
      args: {max_steps: 3, per_device_train_batch_size: 4, max_length: 128}
  - reward:
      data: {use: example_jokes, with: {kind: rankings}, eval_fraction: 0.15}
      lora: {r: 4, lora_alpha: 8}
      args: {max_steps: 3, per_device_train_batch_size: 4, max_length: 128}
      judges: [{use: example_politeness}]
      evaluators: [{use: rm_accuracy}, {use: judge_agreement}]
  - ppo:
      prompts: {use: example_jokes, with: {kind: demos}, eval_fraction: 0.2}
      reward: [{use: learned_rm}, {use: example_politeness, weight: 0.5}]   # the learned RM combined with the plugin's
      generation: {max_new_tokens: 8}
      lora: {r: 4, lora_alpha: 8}
      args: {steps: 2, batch_size: 4, eval_prompts: 4}
"""


def test_shipped_recipe_validates(installed, tiny_model):
    recipe = EXAMPLE_DIR / "recipe.yaml"
    done = _cli("validate", str(recipe), "--set", f"model={tiny_model}", autoload=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "example-jokes" in done.stdout


def test_end_to_end_run(installed, tiny_model, tmp_path):
    recipe = write_recipe(tmp_path / "example.yaml", E2E_RECIPE)
    out = tmp_path / "runs"
    done = _cli(
        "run", str(recipe), "--set", f"model={tiny_model}", "--set", f"output_dir={out}",
        autoload=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    root = out / "example-e2e"
    for stage in ("sft", "reward"):
        assert (root / stage / "model" / "model.safetensors").is_file(), stage
        assert (root / stage / "results.json").is_file(), stage
    results = json.loads((root / "reward" / "results.json").read_text())
    for when in ("before", "after"):
        assert 0.0 <= results[f"eval_example_politeness_agreement_{when}"] <= 1.0
        assert results[f"eval_example_politeness_accuracy_{when}"] == 1.0  # the judge agrees with the rankings
        assert 0.0 <= results[f"eval_rm_accuracy_{when}"] <= 1.0
    assert results["steps"] == 3
    assert results["eval_pairs"] > 0
    ppo = json.loads((root / "ppo" / "results.json").read_text())
    assert ppo["rewards_sharing_base"] == ["learned_rm"]  # the RM adapter rides on the PPO base
    assert "eval_reward/example_politeness_after" in ppo and "eval_reward/learned_rm_after" in ppo
    train = [json.loads(x) for x in (root / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in train if r["split"] == "train"] == [1, 2]
    assert all("reward/example_politeness" in r and "reward/learned_rm" in r for r in train if r["split"] == "train")

    # Replace the learned RM by the plugin's reward with one --set; earlier stages are reused (--resume).
    done = _cli(
        "run", str(recipe), "--resume", "--set", f"model={tiny_model}", "--set", f"output_dir={out}",
        "--set", "ppo.name=ppo-polite", "--set", "ppo.reward=[{use: example_politeness}]",
        autoload=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    polite = json.loads((root / "ppo-polite" / "results.json").read_text())
    assert polite["rewards_sharing_base"] == []
    assert "eval_reward/example_politeness_after" in polite and "eval_reward/learned_rm_after" not in polite
