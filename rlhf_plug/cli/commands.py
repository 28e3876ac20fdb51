"""Sub-commands. Each ``add_*`` function registers one on the parser."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlhf_plug.errors import UserError


def _console():
    from rich.console import Console

    return Console(highlight=False)


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="a recipe file, or the name of a bundled recipe (see `rlhf-plug recipes`)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe key, e.g. --set sft.args.max_steps=10 (repeatable)",
    )


def _load(args, console=None):
    """Plugin manager, registries and the validated recipe; notices about ``--set`` go to ``console``."""
    from rlhf_plug.bundled import find_recipe
    from rlhf_plug.plugins import get_plugin_manager
    from rlhf_plug.recipe import read_recipe, recipe_plugins, validate_recipe
    from rlhf_plug.registry import Registries

    data, source = read_recipe(find_recipe(args.recipe), args.overrides)
    if console is not None:
        from rich.markup import escape

        for notice in source.notices:
            console.print(f"[yellow]notice:[/] {escape(notice)}")
    pm = get_plugin_manager(args.plugin, recipe_modules=recipe_plugins(data, source))
    registries = Registries(pm)
    return pm, registries, validate_recipe(data, registries, source)


# --- run ---------------------------------------------------------------


def add_run(sub) -> None:
    p = sub.add_parser("run", help="run a recipe's stages")
    _recipe_args(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="skip stages that already completed")
    mode.add_argument("--overwrite", action="store_true", help="train every stage again over a completed run")
    p.add_argument("--allow-changes", action="store_true",
                   help="with --resume: continue although the recipe's settings differ from those the stages "
                   "started with (run.json records the differences)")
    p.set_defaults(handler=cmd_run)


def cmd_run(args) -> int:
    from rlhf_plug.runner import is_main_process, run_dir, run_recipe

    if args.allow_changes and not args.resume:
        raise UserError("--allow-changes goes with --resume (it lets a resumed run continue with changed settings)")
    console = _console()
    pm, registries, loaded = _load(args, console)
    results = run_recipe(loaded, registries, pm, console, resume=args.resume, overwrite=args.overwrite,
                         allow_changes=args.allow_changes)
    if is_main_process():
        _print_summary(console, results)
        console.print(f"outputs: {run_dir(loaded)}")
        if (run_dir(loaded) / "report.md").is_file():
            console.print(f"report: {run_dir(loaded) / 'report.md'}")
    return 0


#: How many before → after figures a stage shows in the run summary (results.json has them all).
SUMMARY_FIGURES = 4


def _print_summary(console, results: dict[str, dict]) -> None:
    """One row per stage: steps, its first held-out figures before → after, and its time."""
    from rich.table import Table

    table = Table(title="Run summary (every figure: the stage's results.json and the report)", header_style="bold")
    for column in ("stage", "steps", "held-out: before → after", "time"):
        table.add_column(column, overflow="fold")
    for stage, metrics in results.items():
        seconds = metrics.get("stage_seconds")
        table.add_row(
            stage, str(metrics.get("steps", "")), "\n".join(_before_after(metrics)[:SUMMARY_FIGURES]),
            _duration(seconds) if isinstance(seconds, (int, float)) else "",
        )
    console.print(table)


def _before_after(metrics: dict) -> list[str]:
    def shown(value) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    rows = []
    for key, before in metrics.items():
        if key.endswith("_before") and f"{key[:-7]}_after" in metrics:
            rows.append(f"{key[:-7].removeprefix('eval_')} {shown(before)} → {shown(metrics[key[:-7] + '_after'])}")
    return rows


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# --- validate ----------------------------------------------------------


def add_validate(sub) -> None:
    p = sub.add_parser("validate", help="check a recipe without loading a model")
    _recipe_args(p)
    p.set_defaults(handler=cmd_validate)


def cmd_validate(args) -> int:
    from rlhf_plug.runner import check_recipe

    console = _console()
    pm, registries, loaded = _load(args, console)
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
            components.add_row(family, name, c.plugin, _plain(c.help))
    console.print(components)
    return 0


def _plain(text: str) -> str:
    """A docstring line without reStructuredText markup (``code``, :class:`x`), for the terminal."""
    import re

    return re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")


# --- recipes -----------------------------------------------------------


def add_recipes(sub) -> None:
    p = sub.add_parser("recipes", help="list the bundled recipes (--path NAME: its file; --copy NAME DEST: a copy to edit)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--path", metavar="NAME", help="print the full path of a bundled recipe")
    group.add_argument("--copy", nargs=2, metavar=("NAME", "DEST"), help="copy a bundled recipe to DEST (never overwrites)")
    p.set_defaults(handler=cmd_recipes)


def cmd_recipes(args) -> int:
    from rich.table import Table

    from rlhf_plug.bundled import bundled_recipes, copy_recipe, describe, find_bundled, recipes_dir

    if args.path:
        print(find_bundled(args.path))
        return 0
    if args.copy:
        print(f"copied {find_bundled(args.copy[0])} to {copy_recipe(*args.copy)}")
        return 0
    console = _console()
    table = Table(title="Bundled recipes", header_style="bold")
    for column in ("name", "stages", "description"):
        table.add_column(column)
    for path in bundled_recipes():
        name, stages, description = describe(path)
        table.add_row(name, stages, description)
    console.print(table)
    print(f"files: {recipes_dir()}/NAME.yaml")  # plain print: a path must never be cut to fit the terminal
    print("to change one: rlhf-plug recipes --copy NAME my.yaml, edit my.yaml, then rlhf-plug run my.yaml")
    return 0


# --- label -------------------------------------------------------------


def add_label(sub) -> None:
    from rlhf_plug.labeling import LabelOptions as defaults  # light: no torch until a model is loaded
    from rlhf_plug.labeling.cli import add_stats, add_web_arguments

    p = sub.add_parser(
        "label", help="rank sampled completions (you, or a reward function) into a rankings file",
        description="Sample K completions per prompt and rank them best first; appends to a rankings JSONL "
        "that the reward stage reads as it is. Run the same command again to resume.",
    )
    # --model/--prompts/--out are checked by the session: `label stats FILE` needs none of them
    p.add_argument("--model", help="a model alias (smollm2-135m-instruct), a model dir or a stage output dir")
    p.add_argument("--prompts", help="a .jsonl/.json file, builtin:NAME, or {use: SOURCE, with: {...}}")
    p.add_argument("--out", type=Path, help="the rankings JSONL to append to (created if missing; required)")
    p.add_argument("--k", type=int, default=None, help=f"completions per prompt, 4 to 9 (default {defaults.k})")
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
    add_web_arguments(p)
    p.set_defaults(handler=cmd_label)
    add_stats(p)  # rlhf-plug label stats FILE


def cmd_label(args) -> int:
    from dataclasses import fields

    from rlhf_plug.labeling import LabelOptions, run_labeling
    from rlhf_plug.labeling.cli import check_terminal_args, cmd_web
    from rlhf_plug.plugins import get_plugin_manager
    from rlhf_plug.recipe import parse_assignment
    from rlhf_plug.registry import Registries

    if args.out is None:
        raise UserError("--out is required: the rankings file to append to (or `rlhf-plug label stats FILE`)")
    if args.k is not None and args.candidates is not None:
        raise UserError("--k: with --candidates each row is ranked with all its answers; leave out --k")
    given = {f.name: getattr(args, f.name) for f in fields(LabelOptions)}  # each option is a --flag of the same name
    given["k"] = LabelOptions.k if args.k is None else args.k
    given["annotator_with"] = dict(parse_assignment(item, "--annotator-with") for item in args.annotator_with)
    registries = Registries(get_plugin_manager(args.plugin))
    if args.web:
        return cmd_web(args, LabelOptions(**given), registries, _console())
    check_terminal_args(args)
    return run_labeling(LabelOptions(**given), registries, _console())


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
