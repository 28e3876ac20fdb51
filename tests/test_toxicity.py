"""The ``toxicity`` judge (alt-profanity-check, weights in its wheel), and its missing-extra error."""

from __future__ import annotations

import importlib.util
import io

import pytest
from helpers import assert_one_line_error, write_recipe
from rich.console import Console

from rlhf_plug.errors import RecipeError
from rlhf_plug.recipe import load_recipe
from rlhf_plug.runner import check_recipe

RECIPE = """
name: tox
model: {model}
quantization: none
stages:
  - ppo:
      prompts: {{use: builtin, with: {{name: prompts}}}}
      reward: [{{use: length_penalty}}]
      judges: [{{use: toxicity}}]
"""


def test_toxicity_scores_offensive_text_lower(registries):
    pytest.importorskip("profanity_check")
    judge = registries.get("reward_function", "toxicity").build({})
    polite, rude = judge(
        ["Can you help?", "Can you help?"],
        ["Of course, here is how you can do it.", "Shut up, you stupid idiot, fuck off."],
    )
    assert -1.0 <= rude < -0.5 < -0.2 < polite <= 0.0
    messages = judge([[{"role": "user", "content": "hi"}]], [[{"role": "assistant", "content": "you are an idiot"}]])
    assert messages[0] < -0.5, "conversational completions are judged on their text"


def _without_profanity_check(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "profanity_check" else real(name, *a))


def test_missing_extra_is_a_recipe_error_naming_the_extra(tmp_path, tiny_model, registries, pm, monkeypatch):
    _without_profanity_check(monkeypatch)
    path = write_recipe(tmp_path / "recipe.yaml", RECIPE.format(model=tiny_model))
    with pytest.raises(RecipeError) as info:
        check_recipe(load_recipe(path, registries), registries, pm, Console(file=io.StringIO()))
    message = str(info.value)
    assert "recipe.yaml:" in message and "judges[0].use" in message
    assert "optional extra 'judges'" in message and 'pip install "rlhf-plug[judges]"' in message


def test_missing_extra_exits_2_from_the_cli(tmp_path, tiny_model, monkeypatch, capsys):
    from rlhf_plug.cli import main

    _without_profanity_check(monkeypatch)
    path = write_recipe(tmp_path / "recipe.yaml", RECIPE.format(model=tiny_model))

    class Proc:  # the shape assert_one_line_error reads
        returncode = main(["validate", str(path)])
        stdout, stderr = capsys.readouterr()

    assert_one_line_error(Proc, "toxicity", "rlhf-plug[judges]")
