"""How a stage shows its progress: a rich bar on a terminal, plain lines otherwise, and the
end-of-stage results table; a ``TrainerCallback`` feeds both and the lifecycle hooks. Import-light."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def numeric_logs(logs: dict | None) -> dict:
    """The numbers of a TRL log; NaN and inf stay (as floats): ``log_metrics`` records them as null, with a notice."""
    out = {}
    for key, value in (logs or {}).items():
        if finite(value) is not None:
            out[key] = value
        elif isinstance(value, float):
            out[key] = value
    return out


def attach_progress(trainer, ctx, key_metrics: tuple[str, ...] = ("loss",)) -> None:
    """Replace the trainer's printing/tqdm callbacks with our progress display; keep its tracker logs in the run folder."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from rlhf_plug.tracking import point_trainer_logs

    point_trainer_logs(trainer, ctx)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(progress_callback(ctx, key_metrics))


class PlainProgress:
    """Progress as plain lines, for output that is not a terminal (a log file, CI).

    rich draws no bar there, so a run would print nothing for minutes. One line per
    ``every`` steps (about 20 lines a stage), and always the last: step, elapsed, ETA, metrics.
    Same ``update`` / ``stop`` calls as a rich ``Progress``.
    """

    def __init__(self, console, name: str, total: int, completed: int = 0):
        import time

        self.console, self.name, self.total = console, name, total
        self.start, self.first = time.monotonic(), completed
        self.completed, self.metrics, self.printed = completed, "", completed
        self.every = max(1, total // 20)

    def update(self, task=None, completed: int | None = None, metrics: str | None = None) -> None:
        # A TRL trainer reports a step's end before its metrics: a due line waits for them.
        if completed is not None and completed != self.completed:
            if self.completed != self.printed and self.completed - self.printed >= self.every:
                self._print()  # the metrics of the previous step never came
            self.completed = completed
        if metrics is not None:
            self.metrics = metrics
        due = self.completed - self.printed >= self.every or (self.completed >= self.total > self.printed)
        if due and (metrics is not None or completed is None):
            self._print()

    def _print(self) -> None:
        self.printed = self.completed
        self.console.print(self.line(), highlight=False, markup=False, soft_wrap=True)  # one line, however long

    def line(self) -> str:
        import time

        elapsed = time.monotonic() - self.start
        done = self.completed - self.first
        eta = elapsed / done * (self.total - self.completed) if done else None
        return (
            f"{self.name}: step {self.completed}/{self.total}  elapsed {_clock(elapsed)}  "
            f"ETA {_clock(eta) if eta is not None else '-'}  {self.metrics}".rstrip()
        )

    def stop(self) -> None:
        if self.completed != self.printed:
            self._print()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def make_progress(ctx, total: int, completed: int = 0):
    """A started progress display for a stage (main process only; None elsewhere):
    a rich bar in a terminal, :class:`PlainProgress` lines otherwise."""
    if not ctx.is_main_process:
        return None, None
    if not ctx.console.is_terminal:
        return PlainProgress(ctx.console, ctx.name, total, completed), None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn(f"[bold]{ctx.name}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
        console=ctx.console,
        transient=False,
        # rich estimates speed over the last 30 s by default: with steps of a minute there is never
        # more than one sample in that window, and the ETA stays -:--:--.
        speed_estimate_period=3600,
    )
    task = progress.add_task(ctx.name, total=total, completed=completed, metrics="")
    progress.start()
    return progress, task


def metrics_line(metrics: dict, keys: tuple[str, ...]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if finite(metrics.get(k)) is not None)


def progress_callback(ctx, key_metrics: tuple[str, ...] = ("loss",)):
    """A ``TrainerCallback`` that draws a rich progress bar and reports metrics to the hooks."""
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        def __init__(self) -> None:
            self.progress = None
            self.task = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.progress, self.task = make_progress(ctx, state.max_steps, state.global_step)  # > 0 when resumed

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = numeric_logs(logs)
            evaluation = any(k.startswith("eval_") for k in logs)
            ctx.log_metrics(state.global_step, logs, evaluation=evaluation)
            if self.progress is not None and not evaluation:
                self.progress.update(self.task, metrics=metrics_line(logs, key_metrics))

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)
                self.progress.stop()
                self.progress = None

    return RichProgress()


def results_table(title: str, results: dict[str, Any]):
    """A rich table of a stage's results."""
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in results.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table

