"""Experiment tracking: the recipe's ``report_to``, for every stage.

One recipe key feeds both kinds of stages (``report_to:`` at the top of the recipe, or on a stage to
override it there):

- stages that wrap a TRL trainer pass it to TRL's ``report_to`` (:func:`trl_report_to`, called by
  :func:`rlhf_plug.training.trainer_config_kwargs`);
- stages with their own loop (PPO) use accelerate's tracker API: ``Accelerator(**accelerator_kwargs(ctx))``,
  :func:`start_trackers`, ``accelerator.log(metrics, step=...)``, :func:`log_tables`, :func:`finish_trackers`.

Local files stay in the run folder: TensorBoard event files in the stage's ``logs/`` folder
(``runs/<recipe>/<stage>/logs/``), wandb's in ``runs/<recipe>/logs/``.
A tracker whose package is missing, or that the stage's library does not know, is a recipe error at
``validate`` time: TRL and accelerate would otherwise skip it with at most a debug line.

Import-light: transformers and accelerate are imported inside the functions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

LOGS_DIR = "logs"  # inside the stage folder

#: The package a tracker needs, where its name is not the tracker's.
PACKAGE = {"azure_ml": "azureml-core", "comet_ml": "comet-ml", "flyte": "flytekit"}
#: What ``pip install`` needs for a missing package, where it is not the package itself (our extras).
INSTALL = {"tensorboard": '"rlhf-plug[tracking]"'}


def requested(ctx) -> list[str]:
    """The stage's ``report_to`` (else the recipe's) as a list; ``none`` is the empty list."""
    value = _stage_value(ctx)
    if value is None:
        value = getattr(ctx.recipe, "report_to", "none")
    names = [value] if isinstance(value, str) else list(value)
    return [name for name in dict.fromkeys(names) if name != "none"]


def _stage_value(ctx):
    return getattr(ctx.config, "report_to", None)


def _error(ctx, message: str):
    """A recipe error at the ``report_to`` that applies to this stage (the stage's own, else the recipe's)."""
    if _stage_value(ctx) is not None:
        return ctx.error(("report_to",), message)
    return ctx.loaded.source.error(("report_to",), message)


def check(ctx, known: Iterable[str], available: Iterable[str], library: str) -> list[str]:
    """The requested trackers, each known to ``library`` and installed; else a one-line recipe error."""
    known, available = set(known), set(available)
    names = requested(ctx)
    for name in names:
        if name == "all":
            continue
        if name not in known:
            from rlhf_plug.errors import did_you_mean

            choices = sorted(known)
            raise _error(
                ctx,
                f"unknown tracker '{name}'{did_you_mean(name, [*choices, 'none', 'all'])}; the {ctx.kind} stage "
                f"reports through {library}, which knows: none, all, {', '.join(choices)}",
            )
        if name not in available:
            package = PACKAGE.get(name, name)
            raise _error(ctx, f"{name} needs the {package} package: pip install {INSTALL.get(name, package)}")
    return ["all"] if "all" in names else names  # the libraries take `all` alone


def trl_report_to(ctx) -> list[str]:
    """``report_to`` for a TRL config (checked against transformers' integrations)."""
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    return check(ctx, INTEGRATION_TO_CALLBACK, get_available_reporting_integrations(), "transformers' Trainer")


def accelerate_trackers(ctx) -> list[str]:
    """``log_with`` for an ``Accelerator`` (checked against accelerate's trackers)."""
    from accelerate.tracking import get_available_trackers
    from accelerate.utils import LoggerType

    known = [t.value for t in LoggerType if t is not LoggerType.ALL]
    return check(ctx, known, [str(t.value) for t in get_available_trackers()], "accelerate")


def logs_dir(ctx) -> Path:
    return Path(ctx.output_dir) / LOGS_DIR


def run_name(ctx) -> str:
    """How trackers name this stage's run: ``<recipe>/<stage>`` (the project is the recipe)."""
    return f"{ctx.recipe.name}/{ctx.name}"


# --------------------------------------------------------------------------
# TRL stages
# --------------------------------------------------------------------------


def trl_config_defaults(ctx) -> dict[str, Any]:
    """The TRL config keys we derive from the recipe: ``report_to``, ``run_name`` and ``project``."""
    return {"report_to": trl_report_to(ctx), "run_name": run_name(ctx), "project": ctx.recipe.name}


def point_trainer_logs(trainer, ctx) -> None:
    """Have TRL's tracker callbacks write inside the run folder, named after the recipe and stage.

    transformers 5 has no ``logging_dir`` argument: its TensorBoard callback writes to
    ``output_dir/runs/<date_host>`` unless told otherwise, and its wandb callback reads only the
    environment (``WANDB_DIR``, ``WANDB_PROJECT``), by default ``./wandb`` in the working directory.
    """
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.tb_writer is None:
            callback.logging_dir = str(logs_dir(ctx))
    if "wandb" in (trainer.args.report_to or ()):
        set_tracker_env("WANDB_DIR", wandb_dir(ctx))
        set_tracker_env("WANDB_PROJECT", ctx.recipe.name)


def wandb_dir(ctx) -> str:
    """wandb's local files: ``runs/<recipe>/logs/wandb/``, outside the stage folder, which is renamed
    at the end of the stage while wandb's background process may still write."""
    folder = (Path(ctx.run_dir) / LOGS_DIR).resolve()
    if ctx.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def finish_trainer_trackers(trainer) -> None:
    """End the trainer's tracker runs at the end of its stage: close TensorBoard files, and end the wandb
    run (transformers leaves it open, and the next stage's trainer would log into it)."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
            callback.tb_writer.close()
            callback.tb_writer = None
    if "wandb" in (trainer.args.report_to or ()):
        import wandb

        wandb.finish()


_SET_BY_US: dict[str, str] = {}


def set_tracker_env(name: str, value: str) -> None:
    """Set a tracker's environment variable unless the user set it (ours from an earlier stage is replaced)."""
    current = os.environ.get(name)
    if current is None or current == _SET_BY_US.get(name):
        os.environ[name] = _SET_BY_US[name] = value


# --------------------------------------------------------------------------
# Stages with their own loop: accelerate's tracker API
# --------------------------------------------------------------------------


def accelerator_kwargs(ctx) -> dict[str, Any]:
    """``Accelerator(**accelerator_kwargs(ctx))``: the stage's trackers, logging into its ``logs/`` folder."""
    names = accelerate_trackers(ctx)
    return {"log_with": names, "project_dir": str(logs_dir(ctx))} if names else {}


def start_trackers(accelerator, ctx, resumed_at: int = 0, **extra) -> None:
    """``accelerator.init_trackers``: the recipe is the project, the stage's section (plus the seed and
    ``extra``) the hyperparameters.

    ``resumed_at``: the checkpoint's step, when resuming; TensorBoard hides what the interrupted run
    logged after it (those steps run again).
    """
    if not accelerator.log_with:
        return
    name = run_name(ctx)
    init_kwargs = {
        "tensorboard": {"purge_step": resumed_at + 1} if resumed_at else {},
        "trackio": {"name": name},
        "mlflow": {"run_name": name},
    }
    if "wandb" in [str(t) for t in accelerator.log_with]:
        init_kwargs["wandb"] = {"name": name, "dir": wandb_dir(ctx)}
    hyperparameters = {"seed": ctx.seed, **ctx.config.model_dump(mode="json", by_alias=True), **extra}
    accelerator.init_trackers(ctx.recipe.name, config=flatten(hyperparameters), init_kwargs=init_kwargs)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and None as JSON text (trackers' hyperparameters are scalars)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (bool, int, float, str)):
            out[f"{prefix}{key}"] = value
        else:
            out[f"{prefix}{key}"] = json.dumps(value, default=str)
    return out


def log_tables(accelerator, tables: dict[str, list[dict]], step: int) -> None:
    """Evaluation tables (e.g. held-out samples) to the trackers that show tables; TensorBoard gets markdown text.

    Trackers without tables (mlflow, trackio, ...) get none: the tables are in the stage's ``samples/`` folder.
    """
    if not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        for name, rows in tables.items():
            if not rows:
                continue
            columns = list(dict.fromkeys(key for row in rows for key in row))
            if tracker.name == "tensorboard":
                tracker.tracker.add_text(name, markdown_table(columns, rows), global_step=step)
                tracker.tracker.flush()
            elif hasattr(tracker, "log_table"):  # wandb, clearml
                tracker.log_table(name, columns=columns, data=[[row.get(c) for c in columns] for row in rows], step=step)


def markdown_table(columns: list[str], rows: list[dict]) -> str:
    """A markdown table (what TensorBoard's text tab renders); cells on one line, ``|`` escaped."""

    def cell(value) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else str(value if value is not None else "")
        return " ".join(text.split()).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def finish_trackers(accelerator) -> None:
    """Close the trackers (flush and close files, end remote runs).

    Not ``accelerator.end_training()``: it also destroys the process group, which later stages of a
    distributed run still use.
    """
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers = []


def prefixed(metrics: dict[str, float], split: str) -> dict[str, float]:
    """``{"loss": 1}`` -> ``{"train/loss": 1}``: the names TRL's trainers give their tracker metrics."""
    return {f"{split}/{key}": value for key, value in metrics.items()}
