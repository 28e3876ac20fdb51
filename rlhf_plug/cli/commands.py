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
        source = pm.distributions.get(name, "built-in" if name.startswith("rlhf_plug_plugins.") else "module")
        plugins.add_row(name, source, ", ".join(hooks))
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


COMMANDS = [add_run, add_validate, add_plugins, add_recipes]
