"""`rlhf-plug report RUN_DIR`: report.md sections, numbers, escaping, PNGs, run.json, plugin sections, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import heavy_imports, write_jsonl, temporary_files

from rlhf_plug.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HHH_JUDGES = [
    {"use": "simulated_annotator", "name": n, "with": {"criterion": n}} for n in ("helpful", "honest", "harmless")
]
# name -> (SFT mean, PPO mean, win-rate) in the final evaluation
SCORES = {"learned_rm": (1.25, 1.75, 0.8125), "simulated_annotator": (-0.125, 0.25, 0.6875)}
HHH_SCORES = {"helpful": (0.5, 0.75, 0.71875), "honest": (0.25, 0.125, 0.40625), "harmless": (0.0, 0.0, 0.5)}


def _recipe(hhh: bool) -> dict:
    judges = [{"use": "simulated_annotator"}, *(HHH_JUDGES if hhh else [])]
    return {
        "name": "fake", "seed": 7,
        "stages": [
            {"sft": {"data": {"use": "builtin", "with": {"name": "demos"}}, "args": {"max_steps": 6}}},
            {"reward": {"data": {"use": "builtin", "with": {"name": "rankings"}}, "name": "rm"}},
            {"ppo": {"reward": [{"use": "learned_rm"}], "judges": judges, "args": {"steps": 6}}},
        ],
    }


def _stage(run: Path, name: str, recipe: dict, metrics: list[dict], results: dict) -> Path:
    folder = run / name
    write_jsonl(folder / "metrics.jsonl", metrics)
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return folder


def _ppo_eval(scores: dict, step: int, after: bool) -> dict:
    record = {"step": step, "split": "eval", "kl": 2.0 if after else 0.0}
    for n, (sft, ppo, win) in scores.items():
        record |= {f"reward/{n}": ppo if after else sft, f"reference_reward/{n}": sft, f"win_rate/{n}": win if after else 0.5}
    if after and "simulated_annotator" in scores:
        record["tie_rate/simulated_annotator"] = 0.375  # 0.6875 = 0.5 wins + 0.375 / 2: 0.8 of the untied prompts
    return record


def make_run(root: Path, hhh: bool = True) -> Path:
    """A finished sft -> reward (named rm) -> ppo run, shaped like runs/instructgpt."""
    run = root / "runs" / "fake"
    recipe = _recipe(hhh)
    _stage(run, "sft", recipe, [
        {"step": 0, "split": "eval", "eval_loss": 1.9},
        *({"step": s, "split": "train", "loss": 2.0 / s, "mean_token_accuracy": 0.5} for s in range(1, 7)),
        {"step": 6, "split": "eval", "eval_loss": 0.5},
    ], {"base_model": "tiny", "eval_loss_before": 1.9, "train_loss": 0.9, "eval_loss_after": 0.5, "steps": 6})
    _stage(run, "rm", recipe, [
        {"step": 0, "split": "eval", "rm_accuracy": 0.5},
        *({"step": s, "split": "train", "loss": 0.7 - 0.01 * s, "accuracy": 0.5 + 0.05 * (s % 3)} for s in range(1, 9)),
        {"step": 8, "split": "eval", "rm_accuracy": 0.625},
    ], {"eval_rm_accuracy_before": 0.5, "eval_rm_accuracy_after": 0.625, "steps": 8})
    scores = {**SCORES, **(HHH_SCORES if hhh else {})}
    train = [{"step": s, "split": "train", "reward": 1.2 + 0.1 * s, "reward/learned_rm": 1.2 + 0.1 * s, "kl": 0.3 * s,
              "beta": 0.1 - 0.005 * s, "entropy": 0.6 - 0.05 * s, "clipfrac": 0.01 * s} for s in range(1, 7)]
    final = _ppo_eval(scores, 6, after=True)
    results = {"prompts": 20, "eval_prompts": 16, "steps": 6,
               **{f"eval_{k}_before": v for k, v in _ppo_eval(scores, 0, after=False).items() if k not in ("step", "split")},
               **{f"eval_{k}_after": v for k, v in final.items() if k not in ("step", "split")}}
    ppo = _stage(run, "ppo", recipe, [_ppo_eval(scores, 0, after=False), *train, final], results)
    rows = [{"prompt": f"prompt {i}", "reference": f"sft answer {i}", "policy": f"ppo answer {i}",
             **{f"reference_{n}": sft + 0.01 * i for n, (sft, _, _) in scores.items()},
             **{f"policy_{n}": ppo + 0.01 * i for n, (_, ppo, _) in scores.items()}} for i in range(14)]
    rows[0] |= {"prompt": "Pick one: a | b\nor c?", "policy": "a | b, <b>surely</b>"}
    write_jsonl(ppo / "samples" / "samples-step-000000.jsonl", [{**rows[0], "policy": "old sample from step 0"}])
    write_jsonl(ppo / "samples" / "samples-step-000006.jsonl", rows)
    return run


def report(run: Path, *extra: str) -> str:
    assert main([*extra, "report", str(run)]) == 0
    return (run / "report.md").read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The body under ``heading`` up to the next heading of any level."""
    start = text.index(heading + "\n") + len(heading)
    end = text.find("\n#", start)
    return text[start: end if end != -1 else len(text)]


def table_row(body: str, first_cell: str) -> list[str]:
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r} in:\n{body}")


@pytest.fixture(scope="module")
def hhh_report(tmp_path_factory) -> str:
    """The report of a run whose PPO stage has helpful/honest/harmless judges (rendered once for the tests that read it)."""
    return report(make_run(tmp_path_factory.mktemp("hhh")))


def test_report_has_every_section(hhh_report):
    text = hhh_report
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [
        "# Run report: fake", "## Verdict",
        "## Stage 1: sft (sft stage)", "### Results", "### Training curves",
        "## Stage 2: rm (reward stage)", "### Results", "### Training curves",
        "## Stage 3: ppo (ppo stage)", "### Results", "### Training curves", "### Reward distributions: SFT vs PPO",
        "### Win-rate of PPO over SFT", "### Helpful, honest, harmless", "### Samples",
        "## Reproducing this run", "### Versions", "### Plugins", "### Recipe",
    ]


def test_results_tables_pair_before_and_after(hhh_report):
    sft = section(hhh_report, "## Stage 1: sft (sft stage)\n\n### Results")
    assert table_row(sft, "`eval_loss`") == ["`eval_loss`", "1.9", "0.5", "-1.4"]
    assert table_row(sft, "`train_loss`") == ["`train_loss`", "0.9"]
    assert "eval_loss_before" not in sft


def test_win_rates_come_from_the_final_evaluation(hhh_report):
    body = section(hhh_report, "### Win-rate of PPO over SFT")
    assert "![win-rate of PPO over SFT](report/ppo-win-rate.png)" in body
    assert "16 held-out prompts" in body
    # a run that logged no ties leaves those columns blank
    assert table_row(body, "`learned_rm`")[:6] == ["`learned_rm`", "reward (trained on)", "1.25", "1.75", "+0.5", "0.8125"]
    assert table_row(body, "`learned_rm`")[6:] == ["", ""]
    assert table_row(body, "`simulated_annotator`")[1:] == [
        "judge (evaluation only)", "-0.125", "0.25", "+0.375", "0.6875", "0.375", "0.8"]
    assert table_row(body, "`honest`")[5] == "0.4062"


def test_hhh_table_when_judges_are_named_helpful_honest_harmless(hhh_report):
    body = section(hhh_report, "### Helpful, honest, harmless")
    assert table_row(body, "helpful") == ["helpful", "0.5", "0.75", "+0.25", "0.7188"]
    assert table_row(body, "honest") == ["honest", "0.25", "0.125", "-0.125", "0.4062"]
    assert table_row(body, "harmless") == ["harmless", "0", "0", "0", "0.5"]


def test_no_hhh_table_without_such_judges(tmp_path):
    text = report(make_run(tmp_path, hhh=False))
    assert "### Helpful, honest, harmless" not in text
    assert "| helpful |" not in text
    assert "not scored separately" in section(text, "### Win-rate of PPO over SFT")


def test_sample_rows_are_escaped_and_limited(hhh_report):
    body = section(hhh_report, "### Samples")
    assert "samples-step-000006.jsonl" in body and "old sample from step 0" not in body
    row = table_row(body, "1")
    assert row[1:4] == ["Pick one: a \\| b<br>or c?", "sft answer 0", "a \\| b, &lt;b&gt;surely&lt;/b&gt;"]
    assert row[4] == "1.25 → 1.75"  # learned_rm, SFT → PPO
    assert table_row(body, "12")[1] == "prompt 11"
    assert "prompt 12" not in body  # 14 rows, the first 12 shown
    assert "the first 12 of 14" in body


PLOTS = ["ppo-reward-distributions.png", "ppo-training-curves.png", "ppo-win-rate.png",
         "rm-training-curves.png", "sft-training-curves.png"]


def test_plots_are_valid_pngs_linked_from_the_report(tmp_path):
    run = make_run(tmp_path)
    (run / "report").mkdir()
    (run / "report" / "stale.png").write_bytes(b"old")
    text = report(run)
    assert sorted(p.name for p in (run / "report").iterdir()) == PLOTS
    for name in PLOTS:
        data = (run / "report" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
        assert f"(report/{name})" in text
    assert not temporary_files(run), "temporary files left behind"


def test_run_without_run_json_says_not_recorded(hhh_report):
    text = hhh_report
    reproduce = text[text.index("## Reproducing this run"):]
    assert "- command: not recorded" in reproduce
    assert "- seed: 7" in reproduce
    assert "Library versions: not recorded" in reproduce
    recipe = reproduce[reproduce.index("```yaml\n") + 8: reproduce.index("\n```", reproduce.index("```yaml"))]
    assert yaml.safe_load(recipe) == _recipe(True)


def test_run_json_gives_command_versions_plugins_and_status(tmp_path):
    run = make_run(tmp_path)
    info = {
        "seed": 7, "command": ["rlhf-plug", "run", "fake.yaml", "--set", "ppo.args.steps=6"], "status": "failed",
        "error": "RuntimeError: out of memory", "started": "2026-01-01T10:00:00+00:00", "finished": "2026-01-01T11:00:00+00:00",
        "stages": [{"name": n, "kind": k} for n, k in (("sft", "sft"), ("rm", "reward"), ("ppo", "ppo"), ("dpo", "dpo"))],
        "completed": ["sft", "rm", "ppo"], "python": "3.12.0", "platform": "Linux", "processes": 2, "accelerator": "cpu",
        "versions": {"torch": "2.13.0", "trl": "1.16.0"}, "plugins": {"rlhf_plug_plugins.stages.sft": "built-in"},
    }
    (run / "run.json").write_text(json.dumps(info), encoding="utf-8")
    text = report(run)
    assert "- status: **failed** (RuntimeError: out of memory)" in text
    assert "- not completed: dpo" in text
    assert "- command: `rlhf-plug run fake.yaml --set ppo.args.steps=6`" in text
    assert table_row(text, "torch") == ["torch", "2.13.0"]
    assert table_row(text, "rlhf_plug_plugins.stages.sft") == ["rlhf_plug_plugins.stages.sft", "built-in"]
    assert "2 process(es)" in text


def test_finished_run_reports_only_the_stages_it_completed(tmp_path):
    """A stage that failed leaves an older run's folder in place: it must not be reported as this run's."""
    run = make_run(tmp_path)
    info = {"status": "failed", "stages": [{"name": "sft", "kind": "sft"}, {"name": "rm", "kind": "reward"}],
            "completed": ["sft"]}
    (run / "run.json").write_text(json.dumps(info), encoding="utf-8")
    text = report(run)
    assert "## Stage 1: sft" in text and "## Stage 2" not in text
    assert "- not completed: rm" in text


def test_stage_recipe_that_differs_is_shown_as_a_diff(tmp_path):
    run = make_run(tmp_path)
    older = _recipe(True)
    older["stages"][0]["sft"]["args"]["max_steps"] = 99
    (run / "sft" / "recipe.yaml").write_text(yaml.safe_dump(older, sort_keys=False), encoding="utf-8")
    text = report(run)
    assert "Stage `sft` ran with different settings" in text
    assert "+      max_steps: 99" in text and "Stage `rm`" not in text


PLUGIN = """
from rlhf_plug import hookimpl

@hookimpl
def rlhf_report_sections(stage, report):
    if stage.kind == "ppo":
        return [("Length check", f"{stage.name}: {len(stage.records('train'))} train records")]
"""


def test_a_plugin_adds_a_section_through_rlhf_report_sections(tmp_path, make_module):
    module = make_module("report_plugin_mod", PLUGIN)
    text = report(make_run(tmp_path), "-p", module)
    ppo = text[text.index("## Stage 3: ppo"):text.index("## Reproducing")]
    assert "### Length check\n\nppo: 6 train records" in ppo
    assert ppo.index("### Samples") < ppo.index("### Length check"), "default sections come first"


def test_a_plugin_returning_junk_is_a_one_line_error(tmp_path, make_module, capsys):
    source = "from rlhf_plug import hookimpl\n\n@hookimpl\ndef rlhf_report_sections(stage):\n    return [42]\n"
    module = make_module("junk_report_mod", source)
    run = make_run(tmp_path)
    assert main(["-p", module, "report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "junk_report_mod" in err and "(title, markdown)" in err
    assert not (run / "report.md").exists() and not temporary_files(run)


@pytest.mark.parametrize("make", [lambda p: p / "nope", lambda p: p])
def test_missing_or_empty_run_dir_is_a_one_line_error(tmp_path, capsys, make):
    path = make(tmp_path)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(path) in err and "\n" not in err


def test_report_command_does_not_import_matplotlib_for_a_bad_dir(tmp_path):
    assert heavy_imports("report", str(tmp_path / "x")) == (2, [])


@pytest.mark.parametrize(("clipfrac", "noted"), [(0.0, True), (0.02, False)])
def test_clip_fraction_panel_explains_a_flat_zero_line(tmp_path, clipfrac, noted):
    from rlhf_plug.report.load import StageOutput
    from rlhf_plug_plugins.report.curves import CURVES, panels

    metrics = [{"step": s, "split": "train", "clipfrac": clipfrac * (s % 2)} for s in range(1, 5)]
    stage = StageOutput("ppo", "ppo", tmp_path, {}, metrics, None)
    (panel,) = panels(stage, [c for c in CURVES["ppo"] if c.title == "Clip fraction"])
    assert ("one update per rollout" in panel.title) is noted


@pytest.mark.parametrize(("target", "line"), [(2.0, (2.0, "KL controller's target")), (None, None)])
def test_kl_panel_draws_the_controllers_target(tmp_path, target, line):
    from rlhf_plug.report.load import StageOutput
    from rlhf_plug_plugins.report.curves import CURVES, panels

    extra = {"kl_target": target} if target is not None else {}
    metrics = [{"step": s, "split": "train", "kl": 0.5 * s, **extra} for s in range(1, 5)]
    stage = StageOutput("ppo", "ppo", tmp_path, {}, metrics, None)
    (panel,) = panels(stage, [c for c in CURVES["ppo"] if c.title == "KL to the SFT model"])
    assert panel.reference == line


def test_verdict_opens_the_report_and_weighs_the_noise(hhh_report):
    body = section(hhh_report, "## Verdict")
    assert "**sft**: held-out loss 1.9 → 0.5: **improved** (no noise estimate for a loss)" in body
    assert "**rm**: held-out pair accuracy 0.500 → 0.625 (held-out size not recorded)" in body
    # 16 prompts: 2σ of a win-rate around 0.5 is 0.25
    assert "on 16 held-out prompts (±0.250 at 2σ around 0.5)" in body
    assert "learned_rm win-rate 0.812: **beats SFT**" in body
    assert "simulated_annotator win-rate 0.688: **no clear difference from SFT**" in body


def test_verdict_of_a_reward_model_against_its_noise():
    from rlhf_plug.report.load import StageOutput
    from rlhf_plug.report.verdict import verdict

    def run_of(results):
        stage = StageOutput("reward", "reward", Path("."), results, [], None)
        return type("Run", (), {"stages": [stage]})()

    small = verdict(run_of({"eval_rm_accuracy_before": 0.5, "eval_rm_accuracy_after": 0.6, "eval_pairs": 40}))
    assert "±0.155 at 2σ" in small and "**no change beyond noise**" in small and "within noise of chance" in small
    large = verdict(run_of({"eval_rm_accuracy_before": 0.5, "eval_rm_accuracy_after": 0.6, "eval_pairs": 1000}))
    assert "**improved**" in large and "chance" not in large
    worse = verdict(run_of({"eval_loss_before": 1.0, "eval_loss_after": 1.2}))
    assert "**did not improve**" in worse


def test_ppo_curves_plot_the_sampler_trainer_gap(tmp_path):
    from rlhf_plug.report.load import StageOutput
    from rlhf_plug_plugins.report.curves import CURVES, panels

    metrics = [{"step": s, "split": "train", "logprob_gap_mean": 1e-6 * s, "logprob_gap_max": 4e-6 * s} for s in range(1, 5)]
    stage = StageOutput("ppo", "ppo", tmp_path, {}, metrics, None)
    (panel,) = panels(stage, [c for c in CURVES["ppo"] if c.title.startswith("Sampler vs trainer")])
    assert [len(s.values) for s in panel.series] == [4, 4]
    assert panel.series[1].values[-1] == pytest.approx(1.6e-5)
