"""Every ``--set`` example in the README validates as written (or, for a Hub model while
offline, fails with the one-line offline error); changing ``use:`` drops the old ``with:``."""

from __future__ import annotations

import re
import shlex

import pytest
from conftest import REPO, assert_one_line_error, cli, write_jsonl

from rlhf_plug.bundled import find_recipe
from rlhf_plug.recipe import read_recipe

README = (REPO / "README.md").read_text(encoding="utf-8")
#: `--set KEY=VALUE`, the value quoted ('...') or a plain word, as the README writes them.
SET_EXAMPLE = re.compile(r"--set ('[^']+'|[^\s`']+=[^\s`']+)")
RECIPE_BEFORE = re.compile(r"rlhf-plug (?:run|validate) ([\w.-]+)[^\n`]*$")


def readme_examples() -> list[tuple[str, str]]:
    """(recipe, KEY=VALUE) for each ``--set`` in the README; the recipe named before it, else quickstart."""
    examples = []
    for match in SET_EXAMPLE.finditer(README):
        line_start = README.rfind("\n", 0, match.start()) + 1
        named = RECIPE_BEFORE.search(README[line_start : match.start()])
        recipe = named.group(1) if named and named.group(1) != "RECIPE" else "quickstart"
        assignment = shlex.split(match.group(1))[0]
        if assignment not in ("key=value", "KEY=VALUE"):  # the usage line
            examples.append((recipe, assignment))
    return examples


EXAMPLES = readme_examples()


def test_the_readme_has_set_examples():
    assert len(EXAMPLES) >= 8
    assert ("quickstart", "ppo.kl.use=fixed") in EXAMPLES


@pytest.mark.parametrize(("recipe", "assignment"), EXAMPLES, ids=[a for _, a in EXAMPLES])
def test_readme_set_example_validates(recipe, assignment, tmp_path):
    write_jsonl(tmp_path / "rankings.jsonl", [{"prompt": f"q{i}", "completions": ["good", "bad"]} for i in range(20)])
    cwd = tmp_path
    if "../shared/" in assignment:
        if not (REPO.parent / "shared" / "data" / "hh-rlhf").is_dir():
            pytest.skip("../shared/data/hh-rlhf is not here")
        cwd = REPO
    extra = ["-p", "rlhf_plug_example"] if "example_" in assignment else []
    env = {"PYTHONPATH": str(REPO / "examples" / "rlhf-plug-example")} if extra else {}
    proc = cli(*extra, "validate", recipe, "--set", assignment, cwd=cwd, **env)
    if assignment.startswith("model=") and "/" in assignment:
        assert_one_line_error(proc, "not found", "offline")  # a Hub model, and the tests run offline
    else:
        assert proc.returncode == 0, proc.stderr


def test_changing_use_drops_the_old_options_with_a_notice():
    data, source = read_recipe(find_recipe("quickstart"), ["ppo.kl.use=fixed", "ppo.kl.with.init=0.05"])
    assert data["stages"][2]["ppo"]["kl"] == {"use": "fixed", "with": {"init": 0.05}}
    assert len(source.notices) == 1 and "dropped the options of 'adaptive'" in source.notices[0]
    data, source = read_recipe(find_recipe("quickstart"), ["ppo.kl.use=adaptive"])  # same component: kept
    assert data["stages"][2]["ppo"]["kl"]["with"]["target"] == 2.0 and not source.notices


@pytest.mark.parametrize(
    ("assignment", "suggestion"),
    [("sft.max_steps=5", "args.max_steps"), ("sft.r=4", "lora.r"), ("ppo.max_new_tokens=8", "generation.max_new_tokens")],
)
def test_did_you_mean_looks_one_level_down(assignment, suggestion):
    proc = cli("validate", "quickstart", "--set", assignment)
    assert_one_line_error(proc, f"did you mean '{suggestion}'?")


def test_missing_local_model_says_where_it_looked(tmp_path):
    proc = cli("validate", "quickstart", "--set", "model=./no-such-model", cwd=tmp_path)
    line = assert_one_line_error(proc, "model './no-such-model' not found", str(tmp_path / "no-such-model"))
    assert "offline" not in line, "a local path is not a Hub problem"


def test_plugins_listing_shows_plain_text_not_rst():
    proc = cli("plugins")
    assert proc.returncode == 0, proc.stderr
    assert "toxicity" in proc.stdout and "``" not in proc.stdout and ":class:" not in proc.stdout
