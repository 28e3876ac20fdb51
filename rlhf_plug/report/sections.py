"""The report's own sections: the run header, a stage's results table, and how to reproduce the run.

Stage-specific sections (curves, win-rates, samples) come from plugins through
the ``rlhf_report_sections`` hook; the default ones are in ``rlhf_plug_plugins.report_*``.
"""

from __future__ import annotations

import difflib
import shlex

from rlhf_plug.recipe import to_yaml
from rlhf_plug.report.load import RUN_INFO_FILE, RunOutput, StageOutput, parse_recipe, stage_entry
from rlhf_plug.report.markdown import code, fenced, results_tables, table

NOT_RECORDED = f"not recorded (this run has no {RUN_INFO_FILE}: it was made by an older rlhf-plug)"


def header(run: RunOutput, generated: str) -> str:
    info = run.info or {}
    stages = ", ".join(f"{s.name} ({s.kind})" if s.kind and s.kind != s.name else s.name for s in run.stages)
    lines = [
        f"# Run report: {run.name}",
        "",
        f"- folder: `{run.path}`",
        f"- completed stages: {stages}",
    ]
    if run.info is None:
        lines.append(f"- status, times and command: {NOT_RECORDED}")
    else:
        missing = [s["name"] for s in info.get("stages", []) if s.get("name") not in {st.name for st in run.stages}]
        lines.append(f"- status: **{info.get('status', 'unknown')}**" + (f" ({info['error']})" if info.get("error") else ""))
        if missing:
            lines.append(f"- not completed: {', '.join(missing)} (this report covers the completed stages only)")
        lines.append(f"- started {info.get('started') or '?'}, finished {info.get('finished') or '?'}")
    lines.append(f"- report generated {generated}; write it again with `rlhf-plug report {run.path}`")
    return "\n".join(lines)


def stage_heading(index: int, stage: StageOutput) -> str:
    kind = f" ({stage.kind} stage)" if stage.kind else ""
    return f"## Stage {index}: {stage.name}{kind}"


def stage_results(stage: StageOutput) -> str:
    return f"From `{stage.name}/results.json`.\n\n{results_tables(stage.results)}"


def reproduce(run: RunOutput) -> str:
    info = run.info or {}
    command = shlex.join(info["command"]) if info.get("command") else None
    seed = info.get("seed", run.recipe.get("seed"))
    parts = [
        "## Reproducing this run",
        "",
        f"- command: `{command}`" if command else f"- command: {NOT_RECORDED}",
        f"- seed: {seed if seed is not None else _default_seed()}",
        f"- python {info['python']} on {info.get('platform', '?')}, {info.get('processes', 1)} process(es), "
        f"accelerator: {info.get('accelerator', '?')}" if info.get("python") else f"- platform: {NOT_RECORDED}",
        "",
        "### Versions",
        "",
        table(("library", "version"), info["versions"].items()) if info.get("versions") else f"Library versions: {NOT_RECORDED}.",
        "",
        "### Plugins",
        "",
        table(("plugin", "from"), info["plugins"].items()) if info.get("plugins") else f"Plugins: {NOT_RECORDED}.",
        "",
        "### Recipe",
        "",
        "The resolved recipe (after `--set`), as the last stage wrote it to its `recipe.yaml`:",
        "",
        fenced(run.recipe_text or "# no recipe.yaml found", "yaml"),
    ]
    parts += _recipe_differences(run)
    return "\n".join(parts)


def _recipe_differences(run: RunOutput) -> list[str]:
    """Stages trained with other settings than the recipe shown (copied from another run, or rerun with other --set).

    Compares what affects a stage: the top-level keys and the stage's own entry; stages with the same
    difference are listed together.
    """
    by_diff: dict[str, list[str]] = {}
    for stage in run.stages:
        if stage.recipe_text is None or stage.recipe_text == run.recipe_text:
            continue
        mine, theirs = _stage_view(run.recipe, stage.name), _stage_view(parse_recipe(stage), stage.name)
        if mine != theirs:
            diff = difflib.unified_diff(to_yaml(mine).splitlines(), to_yaml(theirs).splitlines(),
                                        "recipe above", "recipe.yaml of the stage", lineterm="", n=1)
            by_diff.setdefault("\n".join(diff), []).append(stage.name)
    out = []
    for diff, names in by_diff.items():
        which = ", ".join(code(n) for n in names)
        out += ["", f"{'Stages' if len(names) > 1 else 'Stage'} {which} ran with different settings "
                "(top-level keys and the stage's own entry compared):", "", fenced(diff, "diff")]
    return out


def _stage_view(recipe: dict, name: str) -> dict:
    entry = stage_entry(recipe, name)
    return {**{k: v for k, v in recipe.items() if k != "stages"}, "stages": [entry] if entry else []}


def _default_seed() -> str:
    from rlhf_plug.recipe import Recipe

    return f"{Recipe.model_fields['seed'].default} (the recipe default)"
