"""Lifecycle hooks: configure, stage start/end, step end and evaluate, via a toy stage plugin."""

from __future__ import annotations

import io
import json
import sys

import pytest
from helpers import write_recipe
from rich.console import Console

from rlhf_plug import hookimpl
from rlhf_plug.errors import DataError, PluginError
from rlhf_plug.plugins import (
    get_plugin_manager,
)
from rlhf_plug.registry import Registries

# --------------------------------------------------------------------------
# Lifecycle hooks (stage start/end, steps, evaluation, configure)
# --------------------------------------------------------------------------

TOY_STAGES_SOURCE = """
from rlhf_plug import DataError, hookimpl
from rlhf_plug.stage import StageConfig

RUNS = []


class ToyConfig(StageConfig):
    steps: int = 2
    fail_check: bool = False
    fail_run: bool = False


class ToyStage:
    \"\"\"A stage that trains nothing.\"\"\"

    def __init__(self, config):
        self.config = config

    def check(self, ctx):
        if self.config.fail_check:
            raise DataError("toy.jsonl: data file not found")

    def run(self, ctx):
        RUNS.append(ctx.name)
        for step in range(1, self.config.steps + 1):
            ctx.log_metrics(step, {"loss": 1.0 / step})
        ctx.log_metrics(self.config.steps, {"eval_loss": 0.25}, evaluation=True)
        (ctx.output_dir / "artifact.txt").write_text(ctx.name)
        if self.config.fail_run:
            raise RuntimeError("toy stage crashed")
        return {"steps": self.config.steps}


@hookimpl
def rlhf_register_stages(register):
    register("toy", ToyStage, config=ToyConfig)
"""

TOY_RECIPE = """\
name: toy-run
seed: 3
output_dir: {out}
stages:
  - toy: {{}}
  - toy:
      name: second
      steps: 1
"""


class Recorder:
    def __init__(self):
        self.calls = []

    @hookimpl
    def rlhf_configure(self, recipe):
        self.calls.append(("configure", recipe.name))

    @hookimpl
    def rlhf_stage_start(self, stage):
        self.calls.append(("stage_start", stage.name))

    @hookimpl
    def rlhf_step_end(self, stage, step, metrics):
        self.calls.append(("step_end", stage.name, step, dict(metrics)))

    @hookimpl
    def rlhf_evaluate(self, stage, step, metrics):
        self.calls.append(("evaluate", stage.name, step, dict(metrics)))

    @hookimpl
    def rlhf_stage_end(self, stage, results):
        timed = {k: v for k, v in results.items() if k != "stage_seconds"}  # the one key the runner adds
        self.calls.append(("stage_end", stage.name, timed, sorted(p.name for p in stage.output_dir.iterdir())))


@pytest.fixture
def toy(make_module, tmp_path):
    """A plugin manager with the toy stage and a recording plugin."""
    module_name = make_module("toy_stages_mod", TOY_STAGES_SOURCE)
    pm = get_plugin_manager([module_name], autoload=False)
    recorder = Recorder()
    pm.register(recorder, name="recorder")
    registries = Registries(pm)
    return pm, registries, recorder, sys.modules[module_name]


def _load_toy(tmp_path, registries, text=TOY_RECIPE, overrides=()):
    from rlhf_plug.recipe import load_recipe

    path = write_recipe(tmp_path / "toy.yaml", text.format(out=json.dumps(str(tmp_path / "runs"))))
    return load_recipe(path, registries, list(overrides))


def _contexts(tmp_path, registries, pm, text):
    from rlhf_plug.runner import make_contexts

    loaded = _load_toy(tmp_path, registries, text)
    return make_contexts(loaded, registries, pm, Console(file=io.StringIO()))


def test_log_metrics_writes_jsonl_and_calls_step_end_and_evaluate(toy, tmp_path):
    pm, registries, recorder, _ = toy
    ctx = _contexts(tmp_path, registries, pm, TOY_RECIPE)[0]
    ctx.output_dir.mkdir(parents=True)
    ctx.log_metrics(1, {"loss": 2.0, "learning_rate": 1e-4})
    ctx.log_metrics(1, {"eval_loss": 1.5}, evaluation=True)
    assert recorder.calls == [
        ("step_end", "toy", 1, {"loss": 2.0, "learning_rate": 1e-4}),
        ("evaluate", "toy", 1, {"eval_loss": 1.5}),
    ]
    records = [json.loads(line) for line in (ctx.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in records] == [(1, "train"), (1, "eval")]
    assert records[0]["loss"] == 2.0 and records[1]["eval_loss"] == 1.5
    assert all(isinstance(r["time"], float) for r in records)


def test_log_metrics_on_other_ranks_only_broadcasts(toy, tmp_path):
    pm, registries, recorder, _ = toy
    ctx = _contexts(tmp_path, registries, pm, TOY_RECIPE)[0]
    ctx.is_main_process = False
    ctx.log_metrics(1, {"loss": 2.0})
    assert not (ctx.output_dir / "metrics.jsonl").exists()
    assert recorder.calls == [("step_end", "toy", 1, {"loss": 2.0})]


def test_run_recipe_calls_lifecycle_hooks_in_order(toy, tmp_path):
    from rlhf_plug.runner import run_recipe

    pm, registries, recorder, module = toy
    loaded = _load_toy(tmp_path, registries)
    results = run_recipe(loaded, registries, pm, Console(file=io.StringIO()))
    assert all(r.pop("stage_seconds") >= 0 for r in results.values()), "the runner records each stage's time"
    assert results == {"toy": {"steps": 2}, "second": {"steps": 1}}
    assert module.RUNS == ["toy", "second"]
    artifacts = ["artifact.txt", "metrics.jsonl", "recipe.yaml", "results.json"]
    assert recorder.calls == [
        ("configure", "toy-run"),
        ("stage_start", "toy"),
        ("step_end", "toy", 1, {"loss": 1.0}),
        ("step_end", "toy", 2, {"loss": 0.5}),
        ("evaluate", "toy", 2, {"eval_loss": 0.25}),
        ("stage_end", "toy", {"steps": 2}, artifacts),
        ("stage_start", "second"),
        ("step_end", "second", 1, {"loss": 1.0}),
        ("evaluate", "second", 1, {"eval_loss": 0.25}),
        ("stage_end", "second", {"steps": 1}, artifacts),
    ]
    root = tmp_path / "runs" / "toy-run"
    assert sorted(p.name for p in root.iterdir()) == [".lock", "report", "report.md", "run.json", "second", "toy"]  # no .partial
    assert json.loads((root / "toy" / "results.json").read_text()).keys() == {"steps", "stage_seconds"}
    lines = (root / "toy" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3


def test_run_recipe_writes_run_json_and_the_report(toy, tmp_path):
    from rlhf_plug.runner import run_recipe

    pm, registries, _, _ = toy
    run_recipe(_load_toy(tmp_path, registries), registries, pm, Console(file=io.StringIO()))
    root = tmp_path / "runs" / "toy-run"
    info = json.loads((root / "run.json").read_text())
    assert info["status"] == "completed" and info["completed"] == ["toy", "second"] and info["seed"] == 3
    assert info["stages"] == [{"name": "toy", "kind": "toy"}, {"name": "second", "kind": "toy"}]
    assert info["versions"]["trl"] not in ("", "not installed") and info["plugins"]["recorder"] == "module"
    assert info["finished"] >= info["started"]
    report = (root / "report.md").read_text()
    assert "## Stage 1: toy (toy stage)" in report and "## Stage 2: second (toy stage)" in report
    assert "- status: **completed**" in report and "- seed: 3" in report
    assert "![second training curves](report/second-training-curves.png)" in report  # the loss the toy stage logs
    assert (root / "report" / "second-training-curves.png").read_bytes().startswith(b"\x89PNG")


def test_run_recipe_resume_skips_completed_stages(toy, tmp_path):
    from rlhf_plug.runner import run_recipe

    pm, registries, recorder, module = toy
    loaded = _load_toy(tmp_path, registries)
    run_recipe(loaded, registries, pm, Console(file=io.StringIO()))
    module.RUNS.clear()
    recorder.calls.clear()
    results = run_recipe(loaded, registries, pm, Console(file=io.StringIO()), resume=True)
    assert module.RUNS == []
    assert all(r.pop("stage_seconds") >= 0 for r in results.values()), "read back from results.json"
    assert results == {"toy": {"steps": 2}, "second": {"steps": 1}}
    assert [c[0] for c in recorder.calls] == ["configure"]


def test_failed_stage_leaves_no_output(toy, tmp_path):
    from rlhf_plug.runner import run_recipe

    pm, registries, recorder, _ = toy
    loaded = _load_toy(tmp_path, registries, overrides=["second.fail_run=true"])
    with pytest.raises(RuntimeError, match="toy stage crashed"):
        run_recipe(loaded, registries, pm, Console(file=io.StringIO()))
    root = tmp_path / "runs" / "toy-run"
    assert sorted(p.name for p in root.iterdir()) == [".lock", "report", "report.md", "run.json", "toy"]  # the first stage completed
    assert ("stage_end", "second") not in [c[:2] for c in recorder.calls]
    info = json.loads((root / "run.json").read_text())
    assert info["status"] == "failed" and info["completed"] == ["toy"] and "toy stage crashed" in info["error"]
    report = (root / "report.md").read_text()  # the report covers the completed stage
    assert "## Stage 1: toy" in report and "## Stage 2" not in report and "- not completed: second" in report


def test_run_checks_every_stage_before_running_any(toy, tmp_path):
    """A data error in a later stage must stop the run before an earlier stage trains."""
    from rlhf_plug.runner import run_recipe

    pm, registries, recorder, module = toy
    loaded = _load_toy(tmp_path, registries, overrides=["second.fail_check=true"])
    with pytest.raises(DataError):
        run_recipe(loaded, registries, pm, Console(file=io.StringIO()))
    assert module.RUNS == [], "the first stage ran although the second stage's check fails"
    assert not (tmp_path / "runs" / "toy-run").exists()


def test_configure_is_historic(toy, tmp_path):
    pm, registries, recorder, _ = toy
    loaded = _load_toy(tmp_path, registries)
    pm.hook.rlhf_configure.call_historic(kwargs={"recipe": loaded.recipe})
    late = Recorder()
    pm.register(late, name="late")
    assert recorder.calls == [("configure", "toy-run")]
    assert late.calls == [("configure", "toy-run")]


def test_factory_that_raises_when_built_names_the_plugin(tmp_path, make_module, monkeypatch):
    """StageContext.build wraps a crashing factory in a PluginError naming component and plugin."""
    module = make_module(
        "raising_factory_mod",
        """
        from rlhf_plug import hookimpl

        class Broken:
            def __init__(self, path: str = "x"):
                raise OSError("disk on fire")

        @hookimpl
        def rlhf_register_data_sources(register):
            register("broken", Broken)
        """,
    )
    from rlhf_plug.recipe import DataRef

    pm = get_plugin_manager([module], autoload=False)
    registries = Registries(pm)
    sft_recipe = "name: t\noutput_dir: {out}\nstages:\n  - sft:\n      data: {{use: broken}}\n"
    ctx = _contexts(tmp_path, registries, pm, sft_recipe)[0]
    with pytest.raises(PluginError) as info:
        ctx.build("data_source", DataRef(use="broken"), ("data",))
    message = str(info.value)
    assert "'broken'" in message and "'raising_factory_mod'" in message and "disk on fire" in message
