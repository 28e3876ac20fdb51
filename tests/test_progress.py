"""Progress when stdout is not a terminal: plain lines, not an invisible bar."""

from __future__ import annotations

import io

from rich.console import Console

from rlhf_plug.progress import PlainProgress


def test_plain_lines_every_few_steps_with_that_steps_metrics():
    out = io.StringIO()
    progress = PlainProgress(Console(file=out, width=200), "reward", total=40)
    for step in range(1, 41):
        progress.update(completed=step)  # a TRL trainer: the step ends, then its metrics arrive
        progress.update(metrics=f"loss {1 / step:.3g}")
    progress.stop()
    lines = out.getvalue().splitlines()
    assert len(lines) == 20, "one line per total // 20 steps"
    assert lines[0].startswith("reward: step 2/40  elapsed 0:00:00  ETA ") and lines[0].endswith("loss 0.5")
    assert lines[-1].startswith("reward: step 40/40") and lines[-1].endswith("loss 0.025")


def test_a_long_line_is_not_wrapped_at_a_log_files_width():
    """A console that is not a terminal is 80 columns wide: a line with several metrics must stay one line."""
    out = io.StringIO()
    progress = PlainProgress(Console(file=out, width=80), "sft", total=2)
    metrics = "loss 0.6667  mean_token_accuracy 0.8596  entropy 1.234  grad_norm 0.5"
    progress.update(completed=1, metrics=metrics)
    progress.update(completed=2, metrics=metrics)
    progress.stop()
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("sft: step ") and line.endswith(metrics) for line in lines), lines


def test_a_resumed_stage_counts_eta_from_where_it_started():
    out = io.StringIO()
    progress = PlainProgress(Console(file=out, width=200), "ppo", total=4, completed=2)
    progress.update(completed=3, metrics="reward 1")
    progress.stop()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("ppo: step 3/4  elapsed 0:00:00  ETA 0:00:00  reward 1")


def test_terminal_eta_with_minute_long_steps():
    """rich's default 30 s speed window holds one sample when steps take a minute: the ETA must still show."""
    from types import SimpleNamespace

    from rlhf_plug.progress import make_progress

    now = [0.0]
    console = Console(file=io.StringIO(), force_terminal=True, width=120, get_time=lambda: now[0])
    progress, task = make_progress(SimpleNamespace(is_main_process=True, console=console, name="ppo"), total=10)
    try:
        for step in range(1, 4):
            now[0] += 60.0
            progress.update(task, completed=step)
        assert progress.tasks[0].time_remaining == 7 * 60.0
    finally:
        progress.stop()
