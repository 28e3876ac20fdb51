"""Sub-commands. Each ``add_*`` function registers one on the parser."""

from __future__ import annotations

import argparse
from pathlib import Path


def _console():
    from rich.console import Console

    return Console(highlight=False)


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="a recipe file, or the name of a bundled recipe (see `rlhf-plug recipes`)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe key, e.g. --set sft.args.max_steps=10 (repeatable)",
    )


def _load(args):
    """Plugin manager, registries and the validated recipe."""
    from rlhf_plug.bundled import find_recipe
    from rlhf_plug.plugins import get_plugin_manager
    from rlhf_plug.recipe import read_recipe, recipe_plugins, validate_recipe
    from rlhf_plug.registry import Registries

    data, source = read_recipe(find_recipe(args.recipe), args.overrides)
    pm = get_plugin_manager([*args.plugin, *recipe_plugins(data, source)])
    registries = Registries(pm)
    return pm, registries, validate_recipe(data, registries, source)


# --- run ---------------------------------------------------------------


def add_run(sub) -> None:
    p = sub.add_parser("run", help="run a recipe's stages")
    _recipe_args(p)
    p.add_argument("--resume", action="store_true", help="skip stages that already completed")
    p.set_defaults(handler=cmd_run)


def cmd_run(args) -> int:
    from rlhf_plug.runner import is_main_process, run_dir, run_recipe

    console = _console()
    pm, registries, loaded = _load(args)
    results = run_recipe(loaded, registries, pm, console, resume=args.resume)
    if is_main_process():
        _print_summary(console, results)
        console.print(f"outputs: {run_dir(loaded)}")
        if (run_dir(loaded) / "report.md").is_file():
            console.print(f"report: {run_dir(loaded) / 'report.md'}")
    return 0


def _print_summary(console, results: dict[str, dict]) -> None:
    from rich.table import Table

    table = Table(title="Run summary", header_style="bold")
    for column in ("stage", "metric", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for stage, metrics in results.items():
        for key, value in metrics.items():
            table.add_row(stage, key, f"{value:.4f}" if isinstance(value, float) else str(value))
            stage = ""
    console.print(table)


# --- validate ----------------------------------------------------------


def add_validate(sub) -> None:
    p = sub.add_parser("validate", help="check a recipe without loading a model")
    _recipe_args(p)
    p.set_defaults(handler=cmd_validate)


def cmd_validate(args) -> int:
    from rlhf_plug.runner import check_recipe

    console = _console()
    pm, registries, loaded = _load(args)
    check_recipe(loaded, registries, pm, console)
    stages = " -> ".join(f"{s.name}" for s in loaded.stages)
    console.print(f"[green]ok[/] {loaded.source.file}: {loaded.recipe.name} ({stages})")
    return 0


# --- plugins -----------------------------------------------------------


def add_plugins(sub) -> None:
    p = sub.add_parser("plugins", help="list plugins, their components and hooks")
    p.set_defaults(handler=cmd_plugins)


def cmd_plugins(args) -> int:
    from rich.table import Table

    from rlhf_plug.plugins import get_plugin_manager
    from rlhf_plug.registry import FAMILIES, Registries

    console = _console()
    pm = get_plugin_manager(args.plugin)
    registries = Registries(pm)
    plugins = Table(title="Plugins", header_style="bold")
    for column in ("plugin", "from", "hooks"):
        plugins.add_column(column)
    for name, plugin in sorted(pm.list_name_plugin()):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        plugins.add_row(name, pm.source(name), ", ".join(hooks))
    console.print(plugins)
    components = Table(title="Components", header_style="bold")
    for column in ("family", "name", "plugin", "description"):
        components.add_column(column)
    for family in FAMILIES:
        for name in registries[family].names():
            c = registries.get(family, name)
            components.add_row(family, name, c.plugin, c.help)
    console.print(components)
    return 0


# --- recipes -----------------------------------------------------------


def add_recipes(sub) -> None:
    p = sub.add_parser("recipes", help="list the bundled recipes")
    p.set_defaults(handler=cmd_recipes)


def cmd_recipes(args) -> int:
    from rich.table import Table

    from rlhf_plug.bundled import bundled_recipes, describe

    console = _console()
    table = Table(title="Bundled recipes", header_style="bold")
    for column in ("name", "stages", "description", "file"):
        table.add_column(column)
    for path in bundled_recipes():
        name, stages, description = describe(path)
        table.add_row(name, stages, description, str(Path(path)))
    console.print(table)
    console.print("Copy one to change it: rlhf-plug recipes shows the file; cp it, edit, then rlhf-plug run my.yaml")
    return 0


# --- label -------------------------------------------------------------


def add_label(sub) -> None:
    from rlhf_plug.labeling import LabelOptions as defaults  # light: no torch until a model is loaded

    p = sub.add_parser(
        "label", help="rank sampled completions (you, or a reward function) into a rankings file",
        description="Sample K completions per prompt and rank them best first; appends to a rankings JSONL "
        "that the reward stage reads as it is. Run the same command again to resume.",
    )
    p.add_argument("--model", required=True, help="a model alias (smollm2-135m-instruct), a model dir or a stage output dir")
    p.add_argument("--prompts", required=True, help="a .jsonl/.json file, builtin:NAME, or {use: SOURCE, with: {...}}")
    p.add_argument("--out", required=True, type=Path, help="the rankings JSONL to append to (created if missing)")
    p.add_argument("--k", type=int, default=defaults.k, help="completions per prompt, 4 to 9 (default %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="label only the first N prompts of the source")
    p.add_argument("--seed", type=int, default=defaults.seed, help="sampling seed (prompt i uses seed + i; default %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens, help="default %(default)s")
    p.add_argument("--temperature", type=float, default=defaults.temperature, help="default %(default)s")
    p.add_argument("--annotator", metavar="REWARD_FUNCTION", help="rank with this reward function instead of a person")
    p.add_argument(
        "--annotator-with", action="append", default=[], metavar="KEY=VALUE",
        help="an option of the annotator, e.g. criterion=helpful (repeatable)",
    )
    p.add_argument("--retry-skipped", action="store_true", help="show prompts skipped in earlier sessions again")
    p.set_defaults(handler=cmd_label)


def cmd_label(args) -> int:
    from dataclasses import fields

    from rlhf_plug.labeling import LabelOptions, run_labeling
    from rlhf_plug.plugins import get_plugin_manager
    from rlhf_plug.recipe import parse_assignment
    from rlhf_plug.registry import Registries

    given = {f.name: getattr(args, f.name) for f in fields(LabelOptions)}  # each option is a --flag of the same name
    given["annotator_with"] = dict(parse_assignment(item, "--annotator-with") for item in args.annotator_with)
    return run_labeling(LabelOptions(**given), Registries(get_plugin_manager(args.plugin)), _console())


# --- report ------------------------------------------------------------


def add_report(sub) -> None:
    p = sub.add_parser("report", help="write report.md and plots for a run (its completed stages)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, e.g. runs/instructgpt")
    p.set_defaults(handler=cmd_report)


def cmd_report(args) -> int:
    from rlhf_plug.plugins import get_plugin_manager
    from rlhf_plug.report import load_run, write_report

    run = load_run(args.run_dir)  # a missing or empty folder fails here, before plugins or plots load
    plugins = [p for p in run.recipe.get("plugins") or [] if isinstance(p, str)]
    path = write_report(run.path, get_plugin_manager([*args.plugin, *plugins]))
    _console().print(f"report: {path}")
    return 0


COMMANDS = [add_run, add_validate, add_plugins, add_recipes, add_label, add_report]
