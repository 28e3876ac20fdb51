"""Stop a run cleanly when a scheduler sends SIGTERM (it kills the job some seconds later).

While a run trains, :func:`sigterm_stops_training` replaces SIGTERM's default (die at once) with a
handler that only sets a flag. Training loops call :func:`stop_requested` at each step boundary; when
it says so they write a checkpoint and raise :class:`Preempted`. The run then ends as an interrupted
one (``run.json``), the command prints how to resume and exits with :data:`EXIT_STATUS`.
Import-light: torch only when several processes must agree.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: 128 + SIGTERM: what a shell reports for a job ended by SIGTERM, so schedulers and scripts see
#: "terminated", not success or a user error (Ctrl-C stays 130).
EXIT_STATUS = 128 + signal.SIGTERM

_requested = threading.Event()


class Preempted(KeyboardInterrupt):
    """Training stopped at a step boundary on SIGTERM, after writing a checkpoint.

    A ``KeyboardInterrupt``: everything that treats Ctrl-C as an interruption (run.json, the report,
    the kept checkpoints) treats this the same way.
    """


@contextmanager
def _sigterm_handled_by(handler) -> Iterator[None]:
    """``handler`` answers SIGTERM inside the block, and the previous one after it (main thread only: only
    the main thread may set signal handlers; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def sigterm_stops_training() -> Iterator[None]:
    """SIGTERM sets the flag of :func:`stop_requested` inside the block."""
    _requested.clear()
    with _sigterm_handled_by(lambda signum, frame: _requested.set()):
        yield


@contextmanager
def sigterm_raises(what: str) -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`Preempted` ("stopped on SIGTERM ``what``") where the program is,
    so ``finally`` clauses clean up. For work with no step boundary to stop at, such as writing the report;
    :func:`sigterm_deferred` protects the moves that must not be cut."""

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough: a second SIGTERM must not cut the cleanup
        raise Preempted(f"stopped on SIGTERM {what}")

    with _sigterm_handled_by(stop):
        yield


@contextmanager
def sigterm_deferred() -> Iterator[None]:
    """A SIGTERM that arrives inside the block is delivered when it ends (POSIX; elsewhere a no-op)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def stop_requested() -> bool:
    """True once SIGTERM arrived; with several processes, once it arrived at any of them.

    Every process must call this at the same step boundaries (it is a collective then), so that all
    of them stop after the same step.
    """
    local = _requested.is_set()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return local
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return local
    from accelerate import PartialState

    flag = torch.tensor([int(local)], device=PartialState().device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def resume_command(argv: list[str] | None = None) -> str:
    """The command that continues this run: the same arguments, with ``--resume`` instead of ``--overwrite``."""
    args = [a for a in (sys.argv if argv is None else argv)[1:] if a != "--overwrite"]
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(["rlhf-plug", *args])


def stop_on_sigterm_callback(ctx):
    """A ``TrainerCallback``: after a SIGTERM, save a checkpoint at the end of the step, stop, raise :class:`Preempted`."""
    from transformers import TrainerCallback

    class StopOnSigterm(TrainerCallback):
        stopped_at: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if stop_requested():
                control.should_save = True
                control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

        def on_train_end(self, args, state, control, **kwargs):
            if self.stopped_at is not None:
                raise Preempted(f"stage {ctx.name} stopped on SIGTERM after step {self.stopped_at} of {state.max_steps}, checkpoint saved")

    return StopOnSigterm()
