"""Paths in a recipe resolve from the recipe's folder, paths from --set from the working
directory; `rlhf-plug recipes` gives usable full paths and copies."""

from __future__ import annotations

from helpers import assert_one_line_error, cli, write_jsonl

from rlhf_plug.bundled import recipes_dir

RECIPE = """name: rel
model: {model}
stages:
  - sft: {{data: {{use: file, with: {{path: demos.jsonl}}, eval_fraction: 0.0}}}}
"""


def _layout(tmp_path, tiny_model):
    folder = tmp_path / "mistakes"
    folder.mkdir()
    write_jsonl(folder / "demos.jsonl", [{"prompt": f"q{i}", "completion": " a"} for i in range(5)])
    (folder / "recipe.yaml").write_text(RECIPE.format(model=tiny_model))
    return folder


def test_a_recipe_file_path_is_read_from_the_recipes_folder(tmp_path, tiny_model):
    folder = _layout(tmp_path, tiny_model)
    proc = cli("validate", "mistakes/recipe.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "5 rows from mistakes/demos.jsonl" in proc.stdout and folder.is_dir()


def test_a_set_path_is_read_from_the_working_directory_and_the_error_says_where(tmp_path, tiny_model):
    _layout(tmp_path, tiny_model)
    proc = cli("validate", "mistakes/recipe.yaml", "--set", "sft.data.with.path=demos.jsonl", cwd=tmp_path)
    assert_one_line_error(proc, "--set sft.data.with.path=demos.jsonl", f"looked for {tmp_path / 'demos.jsonl'}")
    proc = cli("validate", "mistakes/recipe.yaml", "--set", "sft.data.with.path=mistakes/demos.jsonl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_a_folder_given_as_data_file_is_named_as_a_folder(tmp_path, tiny_model):
    _layout(tmp_path, tiny_model)
    proc = cli("validate", "mistakes/recipe.yaml", "--set", "sft.data.with.path=mistakes", cwd=tmp_path)
    assert_one_line_error(proc, "is a folder, not a data file")


def test_recipes_path_and_copy(tmp_path):
    proc = cli("recipes", "--path", "hh-rlhf")
    assert proc.returncode == 0 and proc.stdout.strip() == str(recipes_dir() / "hh-rlhf.yaml")
    listing = cli("recipes").stdout
    assert f"files: {recipes_dir()}/NAME.yaml" in listing
    proc = cli("recipes", "--copy", "quickstart", "mine.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mine.yaml").read_text() == (recipes_dir() / "quickstart.yaml").read_text()
    assert_one_line_error(cli("recipes", "--copy", "quickstart", "mine.yaml", cwd=tmp_path), "already exists")
    assert_one_line_error(cli("recipes", "--path", "nope"), "no bundled recipe", "quickstart")
