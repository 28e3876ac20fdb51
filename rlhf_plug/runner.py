"""Run a recipe's stages in order; each stage's output folder feeds the next.

A stage writes into a temporary folder that is renamed to
``runs/<recipe>/<stage>/`` only when the stage succeeds, so a failed or
interrupted stage leaves no half-written output behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from rlhf_plug.recipe import LoadedRecipe, to_yaml
from rlhf_plug.stage import CHECKPOINTS_DIR, RESULTS_FILE, StageContext


def is_main_process() -> bool:
    """True on rank 0 (or when not distributed); reads the launcher's env, no torch import."""
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def run_dir(loaded: LoadedRecipe) -> Path:
    return Path(loaded.recipe.output_dir) / loaded.recipe.name


def make_contexts(loaded: LoadedRecipe, registries, pm, console, output_of=None) -> list[StageContext]:
    root = run_dir(loaded)
    return [
        StageContext(
            spec=spec,
            loaded=loaded,
            registries=registries,
            hooks=pm.hook,
            run_dir=root,
            output_dir=(output_of or (lambda s: root / s.name))(spec),
            console=console,
            is_main_process=is_main_process(),
        )
        for spec in loaded.stages
    ]


def check_recipe(loaded: LoadedRecipe, registries, pm, console) -> None:
    """Everything that can be checked without loading a model (``rlhf-plug validate``)."""
    for ctx in make_contexts(loaded, registries, pm, console):
        stage = registries.get("stage", ctx.kind).factory(ctx.config)
        stage.check(ctx)


def run_recipe(loaded: LoadedRecipe, registries, pm, console, *, resume: bool = False) -> dict[str, dict]:
    """Run every stage; with ``resume``, skip stages whose output is complete."""
    from rlhf_plug.training import distributed_state, quiet_libraries, results_table

    quiet_libraries()
    state = distributed_state()
    # Fail before anything is trained or written (quietly: each stage reports its data when it runs).
    check_recipe(loaded, registries, pm, type(console)(quiet=True))
    root = run_dir(loaded)
    pm.hook.rlhf_configure.call_historic(kwargs={"recipe": loaded.recipe})
    all_results: dict[str, dict] = {}
    contexts = make_contexts(loaded, registries, pm, console, output_of=lambda s: root / f".{s.name}.partial")
    for ctx in contexts:
        final = root / ctx.name
        if resume and (final / RESULTS_FILE).is_file():
            all_results[ctx.name] = json.loads((final / RESULTS_FILE).read_text())
            if ctx.is_main_process:
                console.print(f"[dim]stage {ctx.name}: already complete, skipped (--resume)[/]")
            continue
        stage = registries.get("stage", ctx.kind).factory(ctx.config)
        resuming = resume and has_checkpoints(ctx.output_dir)
        if ctx.is_main_process:
            if not resuming:
                shutil.rmtree(ctx.output_dir, ignore_errors=True)
            ctx.output_dir.mkdir(parents=True, exist_ok=True)
            (ctx.output_dir / "recipe.yaml").write_text(to_yaml(loaded.data), encoding="utf-8")
            console.rule(f"[bold]stage {ctx.spec.index + 1}/{len(contexts)}: {ctx.name}[/] ({ctx.kind})")
        state.wait_for_everyone()
        pm.hook.rlhf_stage_start(stage=ctx)
        try:
            results = stage.run(ctx)
        except BaseException:
            if ctx.is_main_process:
                _clean_up_failed(ctx, console)
            raise
        state.wait_for_everyone()
        if ctx.is_main_process:
            (ctx.output_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2), encoding="utf-8")
            _replace_dir(ctx.output_dir, final)
        state.wait_for_everyone()
        ctx.output_dir = final
        if ctx.is_main_process:
            console.print(results_table(f"{ctx.name} results", results))
        pm.hook.rlhf_stage_end(stage=ctx, results=results)
        all_results[ctx.name] = results
    return all_results


def has_checkpoints(stage_dir: Path) -> bool:
    """Stages that write complete checkpoints under ``checkpoints/`` can be continued with ``--resume``."""
    folder = stage_dir / CHECKPOINTS_DIR
    return folder.is_dir() and any(p.name.startswith("step-") for p in folder.iterdir())


def _clean_up_failed(ctx, console) -> None:
    """Remove a failed stage's output, unless it holds checkpoints to resume from."""
    if has_checkpoints(ctx.output_dir):
        console.print(
            f"[yellow]stage {ctx.name} stopped; its last good checkpoint is kept in {ctx.output_dir}/{CHECKPOINTS_DIR} "
            "- rerun with --resume to continue[/]"
        )
        return
    shutil.rmtree(ctx.output_dir, ignore_errors=True)


def _replace_dir(src: Path, dst: Path) -> None:
    """Swap ``src`` into ``dst``; an older ``dst`` is removed only after the swap."""
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    src.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
