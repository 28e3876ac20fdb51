"""Run a recipe's stages in order; each stage's output folder feeds the next.

A stage writes into a temporary folder that is renamed to
``runs/<recipe>/<stage>/`` only when the stage succeeds, so a failed or
interrupted stage leaves no half-written output behind.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from pathlib import Path

from rlhf_plug.checkpoints import has_checkpoints, remove_checkpoints
from rlhf_plug.disk_space import full_disk_is_one_line
from rlhf_plug.files import nearest_existing, remove_tree, replace_dir
from rlhf_plug.recipe import LoadedRecipe, to_yaml
from rlhf_plug.run_lock import run_folder_lock
from rlhf_plug.stage import RESULTS_FILE, StageContext


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


def run_recipe(
    loaded: LoadedRecipe, registries, pm, console, *, resume: bool = False, overwrite: bool = False,
    allow_changes: bool = False,
) -> dict[str, dict]:
    """Run every stage; with ``resume``, skip stages whose output is complete.

    A run folder that holds completed stages is refused unless ``resume`` or ``overwrite``
    says what to do with it, so a finished run is never replaced by accident. ``resume`` refuses
    a recipe whose settings differ from those a skipped or continued stage started with, unless
    ``allow_changes`` (the differences are then recorded in run.json).
    """
    from rlhf_plug.distributed import check_distributed_launch, distributed_state
    from rlhf_plug.training import quiet_libraries

    quiet_libraries()
    state = distributed_state()
    check_distributed_launch(state)
    # Fail before anything is trained or written (quietly: each stage reports its data when it runs).
    check_recipe(loaded, registries, pm, type(console)(quiet=True))
    root = run_dir(loaded)
    _check_writable(loaded, root)
    with full_disk_is_one_line(root), run_folder_lock(root) if is_main_process() else nullcontext():
        changes = _changes_since_start(loaded, root, allow_changes) if resume and is_main_process() else {}
        return _run_in_folder(loaded, registries, pm, console, root, state, resume=resume, overwrite=overwrite,
                              changes=changes)


def _changes_since_start(loaded: LoadedRecipe, root: Path, allow_changes: bool) -> dict[str, list[str]]:
    """The settings a resumed stage would continue with that it did not start with; refused unless allowed."""
    from rlhf_plug.errors import RecipeError
    from rlhf_plug.resume_changes import changed_stages, describe

    changes = changed_stages(root, [s.name for s in loaded.stages], loaded.data, has_checkpoints)
    if changes and not allow_changes:
        raise RecipeError(
            f"--resume: the recipe differs from what {root} was trained with: {describe(changes)}; "
            "resume with the original settings, add --allow-changes to continue anyway (both are recorded), "
            "or use --overwrite to train again"
        )
    return changes


def _run_in_folder(loaded, registries, pm, console, root: Path, state, *, resume: bool, overwrite: bool,
                   changes: dict[str, list[str]]) -> dict[str, dict]:
    """:func:`run_recipe` once the run folder is this process's alone."""
    from rlhf_plug.preemption import sigterm_stops_training
    from rlhf_plug.report.runinfo import settle_unfinished_run, start_run_info

    previous = settle_unfinished_run(root) if is_main_process() else None
    if not (resume or overwrite):
        _refuse_completed_run(loaded, root)
    pm.hook.rlhf_configure.call_historic(kwargs={"recipe": loaded.recipe})
    all_results: dict[str, dict] = {}
    contexts = make_contexts(loaded, registries, pm, console, output_of=lambda s: root / f".{s.name}.partial")
    info = start_run_info(root, loaded, pm, previous if resume else None, changes) if is_main_process() else None
    try:
        with sigterm_stops_training():
            for ctx in contexts:
                all_results[ctx.name] = _run_stage(ctx, len(contexts), state, resume)
    except BaseException as exc:
        if info is not None:
            _finish_run(root, info, pm, console, all_results, exc)
        raise
    if info is not None:
        _finish_run(root, info, pm, console, all_results)
    return all_results


def _check_writable(loaded: LoadedRecipe, root: Path) -> None:
    """The run folder can be made: nothing on its path is a file, and the nearest existing folder takes writes
    (a read-only mount does not). One line naming ``output_dir`` instead of a traceback from the first mkdir."""
    existing = nearest_existing(root)
    if not existing.is_dir():
        raise loaded.source.error(("output_dir",), f"{existing} is a file, so the run folder {root} cannot be made there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise loaded.source.error(("output_dir",), f"{existing} is not writable (a read-only mount?), so {root} cannot be made")


def _refuse_completed_run(loaded: LoadedRecipe, root: Path) -> None:
    from rlhf_plug.errors import RecipeError

    done = [s.name for s in loaded.stages if (root / s.name / RESULTS_FILE).is_file()]
    if done:
        raise RecipeError(
            f"{root} already holds completed stages ({', '.join(done)}): rerun with --resume to continue it, "
            "or --overwrite to train every stage again"
        )


def _run_stage(ctx: StageContext, total: int, state, resume: bool) -> dict:
    """Run one stage in its temporary folder, then swap that into ``<run>/<stage>/``; return its results.

    With ``resume``, a complete stage is skipped (its results are read back) and a stage with checkpoints continues.
    """
    from rlhf_plug.preemption import Preempted, stop_requested
    from rlhf_plug.progress import results_table

    final = ctx.run_dir / ctx.name
    if resume and (final / RESULTS_FILE).is_file():
        return _completed_results(ctx, final)
    if stop_requested():
        raise Preempted(f"stopped on SIGTERM before stage {ctx.name}")
    with full_disk_is_one_line(ctx.output_dir):
        results = _train_stage(ctx, total, state, resume, final)
    state.wait_for_everyone()
    ctx.output_dir = final
    if ctx.is_main_process:
        ctx.console.print(results_table(f"{ctx.name} results", results))
    ctx.hooks.rlhf_stage_end(stage=ctx, results=results)
    return results


def _train_stage(ctx: StageContext, total: int, state, resume: bool, final: Path) -> dict:
    """Train in the temporary folder and swap it into place; a failed stage keeps only its checkpoints."""
    stage = ctx.registries.get("stage", ctx.kind).factory(ctx.config)
    if ctx.is_main_process:
        _start_output(ctx, total, keep_checkpoints=resume and has_checkpoints(ctx.output_dir))
    state.wait_for_everyone()
    ctx.hooks.rlhf_stage_start(stage=ctx)
    started = time.monotonic()
    try:
        results = stage.run(ctx)
        results["stage_seconds"] = round(time.monotonic() - started, 1)
    except BaseException:
        if ctx.is_main_process:
            _clean_up_failed(ctx, ctx.console)
        raise
    state.wait_for_everyone()
    if ctx.is_main_process:
        (ctx.output_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2), encoding="utf-8")
        replace_dir(ctx.output_dir, final)
        remove_checkpoints(final)  # only now: the complete stage is in place
    return results


def _completed_results(ctx: StageContext, final: Path) -> dict:
    results = json.loads((final / RESULTS_FILE).read_text())
    if ctx.is_main_process:
        ctx.console.print(f"[dim]stage {ctx.name}: already complete, skipped (--resume)[/]")
    return results


def _start_output(ctx: StageContext, total: int, keep_checkpoints: bool) -> None:
    """Empty the stage's temporary folder (unless resuming from its checkpoints), save the recipe there, announce the stage."""
    from rlhf_plug.resume_changes import SAVED_RECIPE, STARTED_RECIPE

    if not keep_checkpoints:
        remove_tree(ctx.output_dir)
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    saved, text = ctx.output_dir / SAVED_RECIPE, to_yaml(ctx.loaded.data)
    started = ctx.output_dir / STARTED_RECIPE
    if saved.is_file() and saved.read_text(encoding="utf-8") != text and not started.exists():
        saved.rename(started)  # resumed with other settings (--allow-changes): keep what it started with
    saved.write_text(text, encoding="utf-8")
    ctx.console.rule(f"[bold]stage {ctx.spec.index + 1}/{total}: {ctx.name}[/] ({ctx.kind})")


def _finish_run(root: Path, info: dict, pm, console, results: dict, error: BaseException | None = None) -> None:
    """Record the end of the run in run.json and write the report of the completed stages (main process only).

    A failed run gets a report of the stages that completed; an interrupted one (Ctrl-C) only its run.json.
    A report that cannot be written is a warning: the trained stages are intact. A SIGTERM while the
    report is written leaves no report and no temporary folder, and run.json says the run was interrupted.
    """
    from rlhf_plug.preemption import Preempted, sigterm_raises
    from rlhf_plug.report import REPORT_FILE
    from rlhf_plug.report.runinfo import finish_run_info

    try:
        with sigterm_raises("while the report was written" + (" (every stage is complete)" if error is None else "")):
            try:
                finish_run_info(root, info, list(results), error)
            except OSError as exc:  # a full disk: the stages' own state is what --resume reads
                console.print(f"[yellow]run.json not updated: {exc}[/]")
                return
            if results and not isinstance(error, KeyboardInterrupt):
                _write_report(root, pm, console, error)
    except Preempted as stop:
        (root / REPORT_FILE).unlink(missing_ok=True)
        finish_run_info(root, info, list(results), error or stop)
        console.print(f"[yellow]report not written: {stop}[/]")
        if error is None:
            raise


def _write_report(root: Path, pm, console, error: BaseException | None) -> None:
    from rlhf_plug.report import REPORT_FILE, write_report

    try:
        path = write_report(root, pm)
    except Exception as exc:
        (root / REPORT_FILE).unlink(missing_ok=True)  # an older report would no longer match the stages
        console.print(f"[yellow]report not written: {type(exc).__name__}: {exc} (retry: rlhf-plug --debug report {root})[/]")
        return
    if error is not None:
        console.print(f"report of the completed stages: {path}")


def _clean_up_failed(ctx, console) -> None:
    """Remove a failed stage's output, unless it holds checkpoints to resume from."""
    if has_checkpoints(ctx.output_dir):
        console.print(
            f"[yellow]stage {ctx.name} stopped; its last good checkpoint is kept in {ctx.output_dir} "
            "- rerun with --resume to continue[/]"
        )
        return
    remove_tree(ctx.output_dir)
