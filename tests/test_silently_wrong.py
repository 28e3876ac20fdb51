"""Settings that used to vanish or train a NaN model without a word (issue 26): duplicate YAML keys,
non-finite or impossible numbers, and huge --set values, each refused by `rlhf-plug validate` in one line."""

from __future__ import annotations

import pytest
from conftest import assert_one_line_error, cli, write_recipe

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
