"""Recipe loading and validation: strict keys with file:line, --set overrides, stage checks."""

from __future__ import annotations

import io
import json
import re

import pytest
import yaml
from helpers import REPO, write_jsonl, write_recipe
from rich.console import Console

from rlhf_plug.bundled import find_recipe
from rlhf_plug.errors import DataError, RecipeError, UserError
from rlhf_plug.recipe import load_recipe
from rlhf_plug.runner import check_recipe

SFT_ONLY = """\
name: tiny
seed: 1
stages:
  - sft:
      data:
        use: builtin
        with:
          name: demos
      args:
        max_steps: 2
"""

TWO_STAGES = """\
name: two
stages:
  - sft:
      data: {use: builtin, with: {name: demos}}
  - reward:
      data: {use: builtin, with: {name: rankings}}
      args: {max_steps: 2}
"""


def line_of(text: str, needle: str) -> int:
    """1-based line number of the first line containing ``needle``."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in recipe")


def load(tmp_path, registries, text: str, overrides=(), name="recipe.yaml"):
    path = write_recipe(tmp_path / name, text)
    return path, load_recipe(path, registries, list(overrides))


def recipe_error(tmp_path, registries, text: str, overrides=()) -> tuple[str, str]:
    """Load a recipe expected to fail; return (path, message)."""
    path = write_recipe(tmp_path / "recipe.yaml", text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, registries, list(overrides))
    return str(path), str(info.value)


def check(tmp_path, registries, pm, text: str, overrides=()):
    """Load and run every stage's ``check`` (what ``rlhf-plug validate`` does)."""
    _, loaded = load(tmp_path, registries, text, overrides)
    check_recipe(loaded, registries, pm, Console(file=io.StringIO()))
    return loaded


def check_error(tmp_path, registries, pm, text: str, exc=UserError) -> tuple[str, str]:
    path = write_recipe(tmp_path / "recipe.yaml", text)
    loaded = load_recipe(path, registries)
    with pytest.raises(exc) as info:
        check_recipe(loaded, registries, pm, Console(file=io.StringIO()))
    return str(path), str(info.value)


def assert_located(message: str, path: str, text: str, needle: str) -> None:
    """The message starts with ``path:LINE`` where LINE is the line holding ``needle``."""
    expected = f"{path}:{line_of(text, needle)}:"
    assert message.startswith(expected), f"{message!r} should start with {expected!r}"


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def test_bundled_recipe_loads(registries):
    loaded = load_recipe(find_recipe("sft-rm"), registries)
    assert loaded.recipe.name == "sft-rm"
    assert [(s.kind, s.name, s.index) for s in loaded.stages] == [("sft", "sft", 0), ("reward", "reward", 1)]
    # Parsed values equal the file's (the test must not depend on the recipe's tuning).
    raw = yaml.safe_load(find_recipe("sft-rm").read_text())["stages"]
    sft = loaded.stage("sft").config
    assert sft.data.use == "builtin" and sft.data.with_ == {"name": "demos"}
    assert sft.args == raw[0]["sft"]["args"]
    assert isinstance(sft.args["learning_rate"], float)
    reward = loaded.stage("reward").config
    assert [e.use for e in reward.evaluators] == [e["use"] for e in raw[1]["reward"]["evaluators"]]
    assert [j.use for j in reward.judges] == ["simulated_annotator"]
    assert reward.data.eval_fraction == pytest.approx(raw[1]["reward"]["data"]["eval_fraction"])


def test_find_recipe_by_name_and_path(tmp_path):
    assert find_recipe("sft-rm") == find_recipe("sft-rm.yaml")
    path = write_recipe(tmp_path / "mine.yaml", SFT_ONLY)
    assert find_recipe(str(path)) == path
    with pytest.raises(RecipeError, match="sft-rm"):  # lists the bundled recipes
        find_recipe("no-such-recipe")


def test_small_recipe_defaults(tmp_path, registries):
    _, loaded = load(tmp_path, registries, SFT_ONLY)
    assert loaded.recipe.seed == 1
    assert loaded.recipe.quantization == "auto"
    assert loaded.stages[0].config.lora is True
    assert loaded.stages[0].config.data.eval_fraction == pytest.approx(0.1)


def test_stage_names_must_be_unique(tmp_path, registries):
    text = SFT_ONLY + "  - sft:\n      data: {use: builtin, with: {name: demos}}\n"
    path, message = recipe_error(tmp_path, registries, text)
    assert "sft" in message and "name:" in message
    _, loaded = load(tmp_path, registries, text.replace("  - sft:\n      data: {use", "  - sft:\n      name: sft2\n      data: {use"))
    assert [s.name for s in loaded.stages] == ["sft", "sft2"]


def test_invalid_yaml_names_the_line(tmp_path, registries):
    text = "name: t\nstages:\n  - sft: {data: [\n"
    path, message = recipe_error(tmp_path, registries, text)
    assert message.startswith(f"{path}:")
    assert "invalid YAML" in message


def test_recipe_must_be_a_mapping(tmp_path, registries):
    _, message = recipe_error(tmp_path, registries, "- just\n- a list\n")
    assert "mapping" in message


def test_missing_file(tmp_path, registries):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml", registries)


# --------------------------------------------------------------------------
# Unknown keys and wrong types, located at file:line
# --------------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path, registries):
    text = SFT_ONLY.replace("seed: 1\n", "seed: 1\nmodle: smollm2-135m-instruct\n")
    path, message = recipe_error(tmp_path, registries, text)
    assert_located(message, path, text, "modle:")
    assert "modle" in message
    assert "did you mean 'model'?" in message


def test_unknown_key_in_a_stage(tmp_path, registries):
    text = SFT_ONLY.replace("      args:", "      lroa: false\n      args:")
    path, message = recipe_error(tmp_path, registries, text)
    assert_located(message, path, text, "lroa:")
    assert "stages[0].sft.lroa" in message
    assert "did you mean 'lora'?" in message


def test_misspelled_required_key_in_a_stage(tmp_path, registries):
    # `dataa` instead of `data`: the user should hear about the typo (with a
    # suggestion), not only that `data` is missing.
    text = SFT_ONLY.replace("      data:", "      dataa:")
    path, message = recipe_error(tmp_path, registries, text)
    assert_located(message, path, text, "dataa:")
    assert "stages[0].sft.dataa" in message
    assert "did you mean 'data'?" in message


def test_unknown_key_in_a_data_ref(tmp_path, registries):
    text = SFT_ONLY.replace("        use: builtin\n", "        use: builtin\n        eval_fractoin: 0.2\n")
    path, message = recipe_error(tmp_path, registries, text)
    assert_located(message, path, text, "eval_fractoin:")
    assert "stages[0].sft.data.eval_fractoin" in message
    assert "did you mean 'eval_fraction'?" in message


def test_unknown_key_in_a_component_with_is_found_by_check(tmp_path, registries, pm):
    text = TWO_STAGES.replace(
        "      args: {max_steps: 2}\n",
        "      args: {max_steps: 2}\n      evaluators:\n        - use: rm_accuracy\n          with:\n            batch_sise: 4\n",
    )
    _, loaded = load(tmp_path, registries, text)  # `with:` is the component's business
    path, message = check_error(tmp_path, registries, pm, text, RecipeError)
    assert_located(message, path, text, "batch_sise:")
    assert "stages[1].reward.evaluators[0].with.batch_sise" in message
    assert "did you mean 'batch_size'?" in message


def test_unknown_key_in_data_source_with(tmp_path, registries, pm):
    text = SFT_ONLY.replace("          name: demos\n", "          name: demos\n          nmae: demos\n")
    path, message = check_error(tmp_path, registries, pm, text, RecipeError)
    assert_located(message, path, text, "nmae:")
    assert "stages[0].sft.data.with.nmae" in message
    assert "did you mean 'name'?" in message


def test_wrong_value_in_component_with(tmp_path, registries, pm):
    text = TWO_STAGES + "      judges:\n        - use: simulated_annotator\n          with: {criterion: funny}\n"
    path, message = check_error(tmp_path, registries, pm, text, RecipeError)
    assert_located(message, path, text, "criterion: funny")
    assert "funny" in message and "helpful" in message


@pytest.mark.parametrize(
    "old, new, needle, words",
    [
        ("seed: 1", "seed: abc", "seed: abc", ["seed", "integer", "'abc'"]),
        ("        use: builtin\n", "        use: builtin\n        eval_fraction: 2\n", "eval_fraction: 2", ["eval_fraction", "less than 1"]),
        ("        use: builtin\n", "        use: builtin\n        limit: 0\n", "limit: 0", ["limit", "greater than 0"]),
        ("seed: 1", "seed: 1\nquantization: 8bit", "quantization:", ["quantization", "8bit"]),
        ("name: tiny", "name: my recipe", "name: my recipe", ["name"]),
        ("      args:\n        max_steps: 2\n", "      args: [max_steps]\n", "args:", ["args", "dictionary"]),
    ],
)
def test_wrong_types(tmp_path, registries, old, new, needle, words):
    text = SFT_ONLY.replace(old, new)
    assert text != SFT_ONLY
    path, message = recipe_error(tmp_path, registries, text)
    assert_located(message, path, text, needle)
    for word in words:
        assert word in message


def test_no_stages(tmp_path, registries):
    path, message = recipe_error(tmp_path, registries, "name: t\nstages: []\n")
    assert_located(message, path, "name: t\nstages: []\n", "stages:")


def test_unknown_stage_type(tmp_path, registries):
    text = SFT_ONLY.replace("  - sft:", "  - sfft:")
    path, message = recipe_error(tmp_path, registries, text)
    assert_located(message, path, text, "sfft:")
    assert "unknown stage 'sfft'" in message
    assert "did you mean 'sft'?" in message
    assert "reward" in message and "sft" in message  # available stages


def test_stage_entry_with_two_keys(tmp_path, registries):
    text = "name: t\nstages:\n  - sft: {data: {use: builtin}}\n    reward: {data: {use: builtin}}\n"
    _, message = recipe_error(tmp_path, registries, text)
    assert "one key" in message


def test_unknown_component_name_lists_available(tmp_path, registries, pm):
    text = SFT_ONLY.replace("use: builtin", "use: bultin")
    path, message = check_error(tmp_path, registries, pm, text, RecipeError)
    assert_located(message, path, text, "use: bultin")
    assert "unknown data source 'bultin'" in message
    assert "did you mean 'builtin'?" in message
    assert "available: builtin, file, hub" in message


def test_unknown_evaluator_name(tmp_path, registries, pm):
    text = TWO_STAGES + "      evaluators: [{use: rm_acuracy}]\n"
    path, message = check_error(tmp_path, registries, pm, text, RecipeError)
    assert_located(message, path, text, "rm_acuracy")
    assert "did you mean 'rm_accuracy'?" in message
    assert "judge_agreement" in message and "rm_accuracy" in message


def test_unknown_trl_arg(tmp_path, registries, pm):
    text = SFT_ONLY.replace("max_steps: 2", "max_stepz: 2")
    path, message = check_error(tmp_path, registries, pm, text, RecipeError)
    assert_located(message, path, text, "max_stepz")
    assert "max_stepz" in message
    assert "did you mean 'max_steps'?" in message


def test_unknown_trl_arg_in_reward_stage(tmp_path, registries, pm):
    text = TWO_STAGES.replace("args: {max_steps: 2}", "args: {max_steps: 2, learnig_rate: 0.1}")
    path, message = check_error(tmp_path, registries, pm, text, RecipeError)
    assert_located(message, path, text, "learnig_rate")
    assert "RewardConfig" in message
    assert "did you mean 'learning_rate'?" in message


def test_unknown_model_is_found_by_check(tmp_path, registries, pm, monkeypatch):
    monkeypatch.setenv("RLHF_PLUG_CACHE", str(tmp_path / "cache"))
    text = SFT_ONLY.replace("      args:", "      model: not-a-model\n      args:")
    path, message = check_error(tmp_path, registries, pm, text)
    assert_located(message, path, text, "model: not-a-model")
    assert "not-a-model" in message


def test_valid_recipe_passes_check(tmp_path, registries, pm):
    loaded = check(tmp_path, registries, pm, TWO_STAGES)
    assert [s.kind for s in loaded.stages] == ["sft", "reward"]


# --------------------------------------------------------------------------
# --set overrides
# --------------------------------------------------------------------------


def test_override_with_stage_name_shortcut(tmp_path, registries):
    _, loaded = load(tmp_path, registries, SFT_ONLY, ["sft.args.max_steps=3"])
    assert loaded.stage("sft").config.args["max_steps"] == 3
    assert loaded.data["stages"][0]["sft"]["args"]["max_steps"] == 3  # what gets written to runs/


def test_override_top_level(tmp_path, registries):
    _, loaded = load(tmp_path, registries, SFT_ONLY, ["seed=7"])
    assert loaded.recipe.seed == 7


def test_override_by_stage_index(tmp_path, registries):
    _, loaded = load(tmp_path, registries, TWO_STAGES, ["stages.1.reward.args.max_steps=9"])
    assert loaded.stage("reward").config.args["max_steps"] == 9


def test_override_scientific_float(tmp_path, registries):
    # YAML 1.1 (PyYAML) reads `1e-5` as a string; a learning rate must be a number.
    _, loaded = load(tmp_path, registries, TWO_STAGES, ["stages.1.reward.args.learning_rate=1e-5"])
    value = loaded.stage("reward").config.args["learning_rate"]
    assert isinstance(value, float), f"learning_rate override parsed as {type(value).__name__}: {value!r}"
    assert value == pytest.approx(1e-5)


def test_override_with_custom_stage_name_and_nested_new_mapping(tmp_path, registries):
    text = SFT_ONLY.replace("  - sft:\n", "  - sft:\n      name: warmup\n")
    _, loaded = load(tmp_path, registries, text, ["warmup.lora.r=4", "warmup.data.with.name=pretrain"])
    config = loaded.stage("warmup").config
    assert config.lora == {"r": 4}
    assert config.data.with_ == {"name": "pretrain"}


def test_several_overrides_apply_in_order(tmp_path, registries):
    _, loaded = load(tmp_path, registries, SFT_ONLY, ["seed=7", "seed=8", "quantization=none"])
    assert loaded.recipe.seed == 8
    assert loaded.recipe.quantization == "none"


def test_override_does_not_change_the_file(tmp_path, registries):
    path, _ = load(tmp_path, registries, SFT_ONLY, ["seed=7"])
    assert path.read_text() == SFT_ONLY


def test_override_unknown_leaf_key_is_located_at_the_override(tmp_path, registries):
    _, message = recipe_error(tmp_path, registries, SFT_ONLY, ["sft.dataa=1"])
    assert message.startswith("--set sft.dataa=1:")
    assert "did you mean 'data'?" in message


def test_override_unknown_key_is_located_at_the_override(tmp_path, registries):
    # the override creates the unknown mapping `dataa`; the error is about `dataa`
    _, message = recipe_error(tmp_path, registries, SFT_ONLY, ["sft.dataa.use=builtin"])
    assert message.startswith("--set sft.dataa.use=builtin:")
    assert "dataa" in message
    assert "did you mean 'data'?" in message


def test_override_unknown_top_level_key(tmp_path, registries):
    _, message = recipe_error(tmp_path, registries, SFT_ONLY, ["seeed=3"])
    assert message.startswith("--set seeed=3:")
    assert "did you mean 'seed'?" in message


def test_override_wrong_type_is_located_at_the_override(tmp_path, registries):
    _, message = recipe_error(tmp_path, registries, SFT_ONLY, ["seed=abc"])
    assert message.startswith("--set seed=abc:")


def test_error_elsewhere_still_points_at_the_file(tmp_path, registries):
    text = SFT_ONLY.replace("seed: 1", "seed: abc")
    path, message = recipe_error(tmp_path, registries, text, ["sft.args.max_steps=3"])
    assert_located(message, path, text, "seed: abc")


def test_override_unknown_trl_arg_is_located_at_the_override(tmp_path, registries, pm):
    path = write_recipe(tmp_path / "recipe.yaml", SFT_ONLY)
    loaded = load_recipe(path, registries, ["sft.args.max_stepz=3"])
    with pytest.raises(RecipeError) as info:
        check_recipe(loaded, registries, pm, Console(file=io.StringIO()))
    assert str(info.value).startswith("--set sft.args.max_stepz=3:")
    assert "did you mean 'max_steps'?" in str(info.value)


@pytest.mark.parametrize("item", ["foo", "=3", " =3"])
def test_malformed_override(tmp_path, registries, item):
    _, message = recipe_error(tmp_path, registries, SFT_ONLY, [item])
    assert message.startswith(f"--set {item}")
    assert "KEY=VALUE" in message


def test_override_index_out_of_range(tmp_path, registries):
    _, message = recipe_error(tmp_path, registries, SFT_ONLY, ["stages.5.sft.seed=1"])
    assert message.startswith("--set stages.5.sft.seed=1")


# --------------------------------------------------------------------------
# Data checked by `validate`
# --------------------------------------------------------------------------


def test_missing_data_file(tmp_path, registries, pm, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = "name: t\nstages:\n  - sft:\n      data: {use: file, with: {path: nope.jsonl}}\n"
    _, message = check_error(tmp_path, registries, pm, text, DataError)
    assert "nope.jsonl" in message
    assert "not found" in message


def test_data_file_with_missing_mapped_column(tmp_path, registries, pm):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}] * 3)
    text = (
        "name: t\nstages:\n  - sft:\n      data:\n"
        f"        use: file\n        with: {{path: {json.dumps(str(data))}}}\n"
        "        columns: {prompt: question, completion: reply}\n"
    )
    _, message = check_error(tmp_path, registries, pm, text, DataError)
    assert str(data) in message
    assert "'reply'" in message


def test_data_file_missing_a_column_for_the_stage(tmp_path, registries, pm):
    data = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"p{i}"} for i in range(5)])
    text = f"name: t\nstages:\n  - sft:\n      data: {{use: file, with: {{path: {json.dumps(str(data))}}}}}\n"
    _, message = check_error(tmp_path, registries, pm, text, DataError)
    assert str(data) in message
    assert "'completion'" in message


def test_data_file_with_mapping_passes(tmp_path, registries, pm):
    data = write_jsonl(tmp_path / "qa.jsonl", [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5)])
    text = (
        "name: t\nstages:\n  - sft:\n      data:\n"
        f"        use: file\n        with: {{path: {json.dumps(str(data))}}}\n"
        "        columns: {prompt: question, completion: answer}\n"
    )
    loaded = check(tmp_path, registries, pm, text)
    assert loaded.stages[0].config.data.columns == {"prompt": "question", "completion": "answer"}


def test_check_reports_data_notes(tmp_path, registries, pm):
    _, loaded = load(tmp_path, registries, TWO_STAGES)
    out = io.StringIO()
    check_recipe(loaded, registries, pm, Console(file=out, width=200))
    text = out.getvalue()
    assert re.search(r"\d+ rows from builtin:demos", text)
    assert "rankings expanded" in text


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_bundled_recipe_validates(path, registries, pm, tmp_path):
    """Keys, component names, `with:` options and data of each shipped recipe (no model is loaded)."""
    from rich.console import Console

    from rlhf_plug.runner import check_recipe

    overrides = []
    if path.stem == "hh-rlhf":  # reads the Hub; offline, its one documented override points it at a local file
        pairs = write_jsonl(tmp_path / "hh.jsonl", [
            {"chosen": f"\n\nHuman: q{i}?\n\nAssistant: yes", "rejected": f"\n\nHuman: q{i}?\n\nAssistant: no"}
            for i in range(40)
        ])
        overrides = [f"datasets.hh={{use: file, with: {{path: {pairs}}}}}"]
    loaded = load_recipe(path, registries, overrides)
    assert loaded.recipe.name == path.stem
    check_recipe(loaded, registries, pm, Console(file=io.StringIO()))
