"""The ``rlhf-plug`` console script, run as a real subprocess.

Commands that reach a stage's ``check`` import TRL (several seconds each), so
those few are started in the background when this module's first test runs
and collected by the tests that need them; the error cases among them share
one process that calls the CLI's ``main`` once per case.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CLI_TIMEOUT as TIMEOUT
from helpers import assert_one_line_error, cli, cli_env, command, heavy_imports, write_jsonl, write_recipe

from rlhf_plug.registry import FAMILIES

GOOD_SFT = """\
name: cli-test
output_dir: {out}
stages:
  - sft:
      data:
        use: {use}
        with: {with_}
      args:
        max_steps: 1
"""


def sft_recipe(out: Path, use: str = "builtin", with_: str = "{name: demos}") -> str:
    return GOOD_SFT.format(out=json.dumps(str(out)), use=use, with_=with_)


# --------------------------------------------------------------------------
# Slow commands (they import TRL), started in parallel
# --------------------------------------------------------------------------


class Background:
    """A started subprocess whose result is collected on first use."""

    def __init__(self, cmd: list[str], cwd: Path):
        self.cwd = cwd
        self.popen = subprocess.Popen(
            cmd, cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._result: subprocess.CompletedProcess | None = None

    def result(self) -> subprocess.CompletedProcess:
        if self._result is None:
            out, err = self.popen.communicate(timeout=TIMEOUT)
            self._result = subprocess.CompletedProcess(self.popen.args, self.popen.returncode, out, err)
        return self._result


# Runs several invocations of the CLI's ``main`` in ONE process (TRL is
# imported once) and reports each one's exit status, stdout and stderr.
DRIVER = """\
import contextlib, io, json, os, sys
from rlhf_plug.cli import main

results = {}
for name, cwd, argv in json.loads(sys.argv[1]):
    os.chdir(cwd)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    results[name] = [code, out.getvalue(), err.getvalue()]
print("RESULTS " + json.dumps(results))
"""


class Driven:
    """One CLI invocation inside the shared driver process."""

    def __init__(self, driver: Background, name: str, cwd: Path):
        self.driver, self.name, self.cwd = driver, name, cwd

    def result(self) -> subprocess.CompletedProcess:
        proc = self.driver.result()
        assert proc.returncode == 0, proc.stderr
        line = next(li for li in proc.stdout.splitlines() if li.startswith("RESULTS "))
        code, out, err = json.loads(line.removeprefix("RESULTS "))[self.name]
        return subprocess.CompletedProcess(["rlhf-plug", self.name], code, out, err)


@pytest.fixture(scope="module", autouse=True)
def slow(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli_slow")
    jobs: dict = {}
    driven: list = []

    def prepare(name: str, recipe: str | None) -> Path:
        cwd = base / name
        cwd.mkdir()
        if recipe is not None:
            write_recipe(cwd / "recipe.yaml", recipe)
        return cwd

    def start(name: str, *args: str, recipe: str | None = None) -> None:
        cwd = prepare(name, recipe)
        jobs[name] = Background(command(*args), cwd)

    def drive(name: str, *args: str, recipe: str | None = None) -> None:
        driven.append([name, str(prepare(name, recipe)), list(args)])

    # Separate processes: a passing validate, and a failing run.
    start("bundled", "validate", "sft-rm")
    run_out = base / "run_missing_data" / "runs"
    start(
        "run_missing_data",
        "run",
        "recipe.yaml",
        recipe=sft_recipe(run_out, use="file", with_="{path: nope.jsonl}"),
    )
    jobs["run_missing_data"].runs = run_out
    # Errors found by the stages' checks, in one driver process.
    drive("unknown_component", "validate", "recipe.yaml", recipe=sft_recipe(base / "runs", use="bultin"))
    drive(
        "missing_data",
        "validate",
        "recipe.yaml",
        recipe=sft_recipe(base / "runs", use="file", with_="{path: nope.jsonl}"),
    )
    write_jsonl((base / "prompts.jsonl"), [{"prompt": f"question {i}"} for i in range(4)])
    drive(
        "missing_column",
        "validate",
        "recipe.yaml",
        recipe=sft_recipe(base / "runs", use="file", with_="{path: %s}" % json.dumps(str(base / "prompts.jsonl"))),
    )
    driver = Background([sys.executable, "-c", DRIVER, json.dumps(driven)], base)
    for name, cwd, _ in driven:
        jobs[name] = Driven(driver, name, Path(cwd))
    yield jobs
    for popen in {id(j.popen): j.popen for j in [*jobs.values(), driver] if isinstance(j, Background)}.values():
        if popen.poll() is None:
            popen.kill()
        popen.communicate()


def test_validate_bundled_recipe_passes(slow):
    proc = slow["bundled"].result()
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout and "sft-rm" in proc.stdout
    assert "sft -> reward" in proc.stdout
    assert "error" not in proc.stderr


def test_validate_unknown_component_name(slow):
    line = assert_one_line_error(slow["unknown_component"].result(), "recipe.yaml:6", "bultin", "did you mean 'builtin'")
    assert "builtin, file, hub" in line


def test_validate_missing_data_file(slow):
    assert_one_line_error(slow["missing_data"].result(), "nope.jsonl", "not found")


def test_validate_missing_column(slow):
    assert_one_line_error(slow["missing_column"].result(), "prompts.jsonl", "'completion'")


def test_run_with_missing_data_leaves_no_output(slow):
    job = slow["run_missing_data"]
    assert_one_line_error(job.result(), "nope.jsonl")
    assert not (job.runs / "cli-test").exists()
    assert not job.runs.exists() or not any(job.runs.iterdir())


# --------------------------------------------------------------------------
# Fast commands
# --------------------------------------------------------------------------


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "import rlhf_plug.cli as c\n"
        "c.build_parser()\n"
        "try:\n"
        "    c.main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print('TORCH', 'torch' in sys.modules, 'transformers' in sys.modules, 'trl' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert "usage: rlhf-plug" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "TORCH False False False"


def test_plugins_command_does_not_import_torch():
    status, modules = heavy_imports("plugins")
    assert status == 0 and "torch" not in modules, modules


@pytest.mark.parametrize("sub", ["run", "validate", "label", "report"])
def test_subcommand_help_does_not_import_heavy_libraries(sub):
    assert heavy_imports(sub, "--help") == (0, [])


@pytest.mark.parametrize("args", [["--help"], ["validate", "--help"], ["run", "--help"]])
def test_help(args):
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "usage: rlhf-plug" in proc.stdout
    if args == ["--help"]:
        for sub in ("run", "validate", "plugins", "recipes"):
            assert sub in proc.stdout
    else:
        assert "--set" in proc.stdout


def test_no_command_is_a_usage_error():
    proc = cli()
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def test_version_via_console_script():
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which("rlhf-plug", path=path)
    assert exe is not None, "the rlhf-plug console script is not installed"
    from rlhf_plug import __version__

    proc = subprocess.run([exe, "--version"], env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"rlhf-plug {__version__}"
    proc = subprocess.run([exe, "recipes"], env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert "sft-rm" in proc.stdout


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if "│" in line:
            rows.append([cell.strip() for cell in line.strip().strip("│").split("│")])
    return rows


def test_plugins_lists_every_family_and_the_stages():
    proc = cli("plugins")
    assert proc.returncode == 0, proc.stderr
    rows = _table_rows(proc.stdout)
    components = {(r[0], r[1]) for r in rows if len(r) == 4 and r[0] in FAMILIES}
    assert {family for family, _ in components} == set(FAMILIES)
    assert {("stage", "sft"), ("stage", "reward"), ("data_source", "builtin"), ("evaluator", "rm_accuracy")} <= components
    plugin_names = {r[0] for r in rows if len(r) == 3}
    assert "rlhf_plug_plugins.stages.sft" in plugin_names
    assert "rlhf_register_stages" in proc.stdout


def test_plugins_with_a_plugin_module(tmp_path):
    (tmp_path / "cli_extra_plugin.py").write_text(
        "from rlhf_plug import hookimpl\n\n"
        "class Echo:\n    '''Echo reward.'''\n\n"
        "@hookimpl\ndef rlhf_register_reward_functions(register):\n    register('echo', Echo)\n",
        encoding="utf-8",
    )
    proc = cli("-p", "cli_extra_plugin", "plugins", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = _table_rows(proc.stdout)
    assert ["reward_function", "echo", "cli_extra_plugin", "Echo reward."] in rows


def test_missing_plugin_module_is_one_line_error():
    assert_one_line_error(cli("-p", "no_such_rlhf_plugin_mod", "plugins"), "no_such_rlhf_plugin_mod")


def test_recipes_lists_bundled():
    proc = cli("recipes")
    assert proc.returncode == 0, proc.stderr
    rows = _table_rows(proc.stdout)
    assert any(r[0] == "sft-rm" and "sft -> reward" in r[1] for r in rows), proc.stdout


def test_validate_unknown_key(tmp_path):
    text = sft_recipe(tmp_path / "runs").replace("name: cli-test\n", "name: cli-test\nseeed: 3\n")
    write_recipe(tmp_path / "recipe.yaml", text)
    assert_one_line_error(cli("validate", "recipe.yaml", cwd=tmp_path), "recipe.yaml:2", "seeed", "did you mean 'seed'")


def test_validate_unknown_key_absolute_path(tmp_path):
    path = write_recipe(tmp_path / "my.yaml", sft_recipe(tmp_path / "runs").replace("      args:", "      argz:"))
    assert_one_line_error(cli("validate", str(path)), f"{path}:8", "argz", "did you mean 'args'")


def test_validate_wrong_type(tmp_path):
    text = sft_recipe(tmp_path / "runs").replace("name: cli-test\n", "name: cli-test\nseed: abc\n")
    write_recipe(tmp_path / "recipe.yaml", text)
    assert_one_line_error(cli("validate", "recipe.yaml", cwd=tmp_path), "recipe.yaml:2", "seed", "'abc'")


def test_validate_bad_override(tmp_path):
    write_recipe(tmp_path / "recipe.yaml", sft_recipe(tmp_path / "runs"))
    proc = cli("validate", "recipe.yaml", "--set", "seeed=1", cwd=tmp_path)
    assert_one_line_error(proc, "--set seeed=1", "did you mean 'seed'")
    assert_one_line_error(cli("validate", "recipe.yaml", "--set", "seed", cwd=tmp_path), "--set seed", "KEY=VALUE")


def test_validate_missing_recipe(tmp_path):
    assert_one_line_error(cli("validate", "nope.yaml", cwd=tmp_path), "nope.yaml", "sft-rm")


def test_debug_shows_traceback(tmp_path):
    text = sft_recipe(tmp_path / "runs").replace("name: cli-test\n", "name: cli-test\nseeed: 3\n")
    write_recipe(tmp_path / "recipe.yaml", text)
    proc = cli("--debug", "validate", "recipe.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert "RecipeError" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("error: ")
    assert "seeed" in proc.stderr.splitlines()[-1]
