"""Every ``--set`` example in the README, CONTRIBUTING.md and docs/*.md validates as written (or, for a Hub model
while offline, fails with the one-line offline error); changing ``use:`` drops the old ``with:``."""

from __future__ import annotations

import re
import shlex

import pytest
from helpers import REPO, assert_one_line_error, cli, write_jsonl

from rlhf_plug.bundled import find_recipe
from rlhf_plug.recipe import read_recipe

#: The pages that show ``--set`` examples: the README, CONTRIBUTING.md and every topic page under docs/.
DOC_FILES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
#: `--set KEY=VALUE`, the value quoted ('...') or a plain word, as the docs write them.
SET_EXAMPLE = re.compile(r"--set ('[^']+'|[^\s`']+=[^\s`']+)")
#: The recipe a command names before its ``--set``: a bundled name or a path (examples/.../recipe.yaml).
RECIPE_BEFORE = re.compile(r"rlhf-plug (?:run|validate) ([\w./-]+)[^\n`]*$")


def doc_examples(text: str) -> list[tuple[str, str]]:
    """(recipe, KEY=VALUE) for each ``--set`` in ``text``; the recipe named before it, else quickstart.

    A shell line continued with a backslash counts as one line; a line that starts with ``error:`` is
    output shown as an example of an error, not a command.
    """
    text = text.replace("\\\n", " ")
    examples = []
    for match in SET_EXAMPLE.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        if text.startswith("error:", line_start):
            continue
        named = RECIPE_BEFORE.search(text[line_start : match.start()])
        recipe = named.group(1) if named and named.group(1) != "RECIPE" else "quickstart"
        assignment = shlex.split(match.group(1))[0]
        if assignment not in ("key=value", "KEY=VALUE"):  # the usage line
            examples.append((recipe, assignment))
    return examples


def all_examples() -> list[tuple[str, str, str]]:
    """(file, recipe, KEY=VALUE) over every page, each (recipe, KEY=VALUE) once: the first page that shows it."""
    found: dict[tuple[str, str], str] = {}
    for path in DOC_FILES:
        for example in doc_examples(path.read_text(encoding="utf-8")):
            found.setdefault(example, path.relative_to(REPO).as_posix())
    return [(page, recipe, assignment) for (recipe, assignment), page in found.items()]


FOUND = all_examples()
EXAMPLES = [(recipe, assignment) for _, recipe, assignment in FOUND]


def test_the_readme_has_set_examples():
    assert len(EXAMPLES) >= 8
    assert ("quickstart", "ppo.kl.use=fixed") in EXAMPLES
    pages = {page for page, _, _ in FOUND}
    assert "README.md" in pages and len(pages) >= 3, pages  # the front door and the topic pages both show some


@pytest.mark.parametrize(("recipe", "assignment"), EXAMPLES, ids=[f"{page}:{a}" for page, _, a in FOUND])
def test_readme_set_example_validates(recipe, assignment, tmp_path):
    write_jsonl(tmp_path / "rankings.jsonl", [{"prompt": f"q{i}", "completions": ["good", "bad"]} for i in range(20)])
    cwd = tmp_path
    if "../shared/" in assignment:
        if not (REPO.parent / "shared" / "data" / "hh-rlhf").is_dir():
            pytest.skip("../shared/data/hh-rlhf is not here")
        cwd = REPO
    if "/" in recipe:  # a recipe file in the repository, e.g. examples/rlhf-plug-example/recipe.yaml
        recipe = str(REPO / recipe)
    uses_example = "example_" in assignment or "rlhf-plug-example" in recipe
    extra = ["-p", "rlhf_plug_example"] if uses_example else []
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
