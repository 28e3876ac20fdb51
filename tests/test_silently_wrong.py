"""Settings that used to vanish or train a NaN model without a word (issue 26): duplicate YAML keys,
non-finite or impossible numbers, and huge --set values, each refused by `rlhf-plug validate` in one line."""

from __future__ import annotations

import json

import pytest
from helpers import assert_one_line_error, cli, write_jsonl, write_recipe

RECIPE = """name: audit
model: {model}
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}}}
      args: {{max_steps: 2, learning_rate: 1.0e-4}}
{extra}"""


def recipe(tmp_path, tiny_model, extra: str = ""):
    return write_recipe(tmp_path / "recipe.yaml", RECIPE.format(model=tiny_model, extra=extra))


def test_a_key_written_twice_is_an_error_naming_both_lines(tmp_path, tiny_model):
    path = recipe(tmp_path, tiny_model, "      args: {max_steps: 50}\n")
    assert_one_line_error(cli("validate", str(path)), "recipe.yaml:7", "key 'args' appears on lines 6 and 7")


def test_a_stages_list_written_twice_is_an_error(tmp_path, tiny_model):
    path = recipe(tmp_path, tiny_model, "stages:\n  - sft: {data: {use: builtin, with: {name: demos}}}\n")
    assert_one_line_error(cli("validate", str(path)), "recipe.yaml:7", "key 'stages' appears on lines 3 and 7")


def test_a_key_twice_inside_a_set_value_is_an_error(tmp_path, tiny_model):
    proc = cli("validate", str(recipe(tmp_path, tiny_model)), "--set", "sft.args={max_steps: 1, max_steps: 3}")
    assert_one_line_error(proc, "--set sft.args=", "key 'max_steps' appears twice on line 1")


def test_merge_keys_may_still_repeat_what_they_merge(tmp_path, tiny_model):
    extra = "defaults: &d {max_steps: 2}\n"
    text = RECIPE.format(model=tiny_model, extra="").replace("args: {max_steps: 2, learning_rate: 1.0e-4}",
                                                             "args: {<<: *d, max_steps: 3}")
    path = write_recipe(tmp_path / "recipe.yaml", extra + text)
    proc = cli("validate", str(path))
    assert "appears" not in proc.stderr  # whatever else validate says of the extra top-level key


@pytest.mark.parametrize(("assignment", "words"), [
    ("sft.args.learning_rate=1e400", ["SFTConfig.learning_rate", "must be a finite number"]),
    ("sft.args.learning_rate=.nan", ["SFTConfig.learning_rate", "must be a finite number"]),
    ("sft.args.learning_rate=-1.0e-4", ["SFTConfig.learning_rate", "must be greater than 0"]),
    ("sft.args.weight_decay=.inf", ["SFTConfig.weight_decay", "must be a finite number"]),
])
def test_non_finite_or_impossible_trl_numbers_are_refused(tmp_path, tiny_model, assignment, words):
    assert_one_line_error(cli("validate", str(recipe(tmp_path, tiny_model)), "--set", assignment), *words)


PPO = """  - ppo:
      prompts: {use: builtin, with: {name: prompts}}
      reward: [{use: length_penalty}]
"""


@pytest.mark.parametrize("value", ["1e400", ".nan", "-.inf"])
def test_non_finite_numbers_in_our_own_stages_are_refused(tmp_path, tiny_model, value):
    path = recipe(tmp_path, tiny_model, PPO)
    proc = cli("validate", str(path), "--set", f"ppo.args.learning_rate={value}")
    assert_one_line_error(proc, "ppo.args.learning_rate")


def test_a_huge_set_value_is_not_echoed_whole(tmp_path, tiny_model):
    huge = "[" + "1, " * 40_000  # 120 kB of unterminated YAML (one argument may hold at most 128 kB)
    proc = cli("validate", str(recipe(tmp_path, tiny_model)), "--set", f"sft.args.report_to={huge}")
    line = assert_one_line_error(proc, "invalid YAML value", "120,001 characters")
    assert len(line) < 500, len(line)


def test_an_output_dir_that_is_a_file_is_one_line_naming_the_key(tmp_path, tiny_model):
    (tmp_path / "taken").write_text("a file, not a folder\n")
    text = RECIPE.format(model=tiny_model, extra="").replace("name: audit\n", f"name: audit\noutput_dir: {tmp_path / 'taken'}\n")
    path = write_recipe(tmp_path / "recipe.yaml", text)
    assert_one_line_error(cli("run", str(path)), "recipe.yaml:2: output_dir", "is a file, so the run folder")
    assert (tmp_path / "taken").read_text() == "a file, not a folder\n"


def test_a_read_only_output_dir_is_one_line_naming_the_key(tmp_path, tiny_model, monkeypatch):
    """A read-only mount, as os.access reports it (a test cannot mount one everywhere)."""
    import io
    import os

    from rich.console import Console

    from rlhf_plug.errors import RecipeError
    from rlhf_plug.plugins import get_plugin_manager
    from rlhf_plug.recipe import load_recipe
    from rlhf_plug.registry import Registries
    from rlhf_plug.runner import run_recipe

    pm = get_plugin_manager([], autoload=False)
    registries = Registries(pm)
    text = RECIPE.format(model=tiny_model, extra="").replace("name: audit\n", f"name: audit\noutput_dir: {tmp_path / 'ro' / 'runs'}\n")
    (tmp_path / "ro").mkdir()
    path = write_recipe(tmp_path / "recipe.yaml", text)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path / "ro") else real_access(p, mode))
    with pytest.raises(RecipeError, match=r"recipe.yaml:2: output_dir: .*/ro is not writable \(a read-only mount\?\)"):
        run_recipe(load_recipe(path, registries), registries, pm, Console(file=io.StringIO()))
    assert not (tmp_path / "ro" / "runs").exists()


VANDAL = '''
from rlhf_plug import hookimpl


def vandal(prompts, completions, **columns):
    """Scores by length, then edits what it was given in place."""
    scores = [float(len(str(c))) for c in completions]
    for completion in completions:
        if isinstance(completion, list):
            completion[0]["content"] = "EDITED"
    completions.clear()
    prompts.clear()
    return scores


@hookimpl
def rlhf_register_reward_functions(register):
    register("vandal", lambda: vandal)
'''


def vandal(prompts, completions, **columns):
    """Edits what it was given in place, as the plugin above does."""
    completions[0][0]["content"] = "EDITED"
    completions.clear()
    prompts.clear()
    return [1.0, 2.0]


def test_a_reward_that_edits_its_inputs_changes_nothing_for_the_next_one():
    from rlhf_plug.rewards import call_reward_function

    seen = []
    prompts = [[{"role": "user", "content": "hi"}]] * 2
    completions = [[{"role": "assistant", "content": "one"}], [{"role": "assistant", "content": "three"}]]
    inputs = {"prompts": prompts, "completions": completions, "completion_ids": [[1], [2, 3]]}
    assert call_reward_function(vandal, "reward[0] 'vandal'", **inputs) == [1.0, 2.0]
    call_reward_function(lambda **kw: seen.append(kw) or [0.0, 0.0], "reward[1] 'next'", **inputs)
    assert [c[0]["content"] for c in seen[0]["completions"]] == ["one", "three"] and len(seen[0]["prompts"]) == 2
    assert completions[0][0]["content"] == "one" and len(completions) == 2, "the caller's own lists are untouched"


def test_label_with_an_annotator_that_edits_its_inputs_saves_the_original_answers(tmp_path, tiny_model):
    (tmp_path / "vandal_plugin.py").write_text(VANDAL, encoding="utf-8")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "What is 2 + 2?"}\n{"prompt": "Name a colour."}\n', encoding="utf-8")
    out = tmp_path / "rankings.jsonl"
    proc = cli("--plugin", "vandal_plugin", "label", "--model", str(tiny_model), "--prompts", str(prompts),
               "--out", str(out), "--annotator", "vandal", "--k", "4", "--max-new-tokens", "6",
               PYTHONPATH=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["What is 2 + 2?", "Name a colour."]
    texts = [c if isinstance(c, str) else c[0]["content"] for r in rows for c in r["completions"]]
    assert len(texts) == 8 and "EDITED" not in texts, texts


DATA_RECIPE = """name: rows
model: {model}
stages:
  - {stage}:
      data: {{use: file, with: {{path: {path}}}{extra}}}
      args: {{max_steps: 1}}
"""


def data_recipe(tmp_path, tiny_model, stage: str, rows: list[dict], extra: str = ""):
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    text = DATA_RECIPE.format(model=tiny_model, stage=stage, path=path, extra=extra)
    return write_recipe(tmp_path / "recipe.yaml", text)


GOOD_PAIR = {"chosen": "\n\nHuman: Hi?\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi?\n\nAssistant: Go away."}


@pytest.mark.parametrize(("bad", "words"), [
    ({"chosen": "Same answer.", "rejected": "Same answer."}, ["row 3:", "chosen and rejected are the same answer"]),
    ({"chosen": "\n\nHuman: Is it safe? Yes it is.", "rejected": "\n\nHuman: Is it safe? No."},
     ["row 3:", "HH-style transcript", "no 'Assistant:' before the answers differ"]),
])
def test_malformed_pairs_are_one_line_naming_the_row(tmp_path, tiny_model, bad, words):
    path = data_recipe(tmp_path, tiny_model, "reward", [GOOD_PAIR, GOOD_PAIR, bad])
    assert_one_line_error(cli("validate", str(path)), "rows.jsonl", *words)


SHAREGPT = [{"messages": [{"role": "human", "content": f"Question {i}?"}, {"role": "gpt", "content": f"Answer {i}."}]}
            for i in range(6)]


def test_unknown_message_roles_are_refused_with_the_option_that_maps_them(tmp_path, tiny_model):
    path = data_recipe(tmp_path, tiny_model, "sft", SHAREGPT)
    assert_one_line_error(cli("validate", str(path)), "rows.jsonl: row 1, column 'messages'", "message 0 has role 'human'",
                          "`roles: sharegpt` on the data maps it to 'user'")


def test_roles_sharegpt_maps_the_aliases_and_says_so(tmp_path, tiny_model):
    path = data_recipe(tmp_path, tiny_model, "sft", SHAREGPT, extra=", roles: sharegpt")
    proc = cli("validate", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "message roles mapped (sharegpt): gpt -> assistant, human -> user" in proc.stdout


def test_a_trl_stage_that_diverges_fails_and_saves_nothing(tmp_path, tiny_model):
    """A finite but absurd learning rate: the loss or gradients turn NaN, and the stage must not complete."""
    text = RECIPE.format(model=tiny_model, extra="").replace("name: audit\n", f"name: audit\noutput_dir: {tmp_path / 'runs'}\n")
    path = write_recipe(tmp_path / "recipe.yaml", text.replace("learning_rate: 1.0e-4", "learning_rate: 1.0e+30, logging_steps: 1"))
    proc = cli("run", str(path))
    assert_one_line_error(proc, "stages[0].sft.args.learning_rate: training diverged:", "is nan at step",
                          "the stage is not saved")
    root = tmp_path / "runs" / "audit"
    assert not (root / "sft").exists() and not list(root.glob(".sft*")), sorted(p.name for p in root.iterdir())
