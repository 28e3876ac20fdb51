"""The labelling state every request shares: the prompts, their answers, the team and the output files.

One lock guards "is this prompt still to do for this annotator?" together with
the append (or the undo's rewrite), so two annotators submitting at the same
moment never interleave a line, and a form sent twice is written once. The
methods are plain functions of (annotator, form data): the web app is a thin
layer over them.
"""

from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from rlhf_plug.errors import DataError
from rlhf_plug.labeling.sampling import Samples
from rlhf_plug.labeling.web.forms import FormError, Submission
from rlhf_plug.labeling.web.team import Team


@dataclass
class Progress:
    done: int  # ranked or skipped
    skipped: int
    total: int


class AnswerBank:
    """The answers shown for each prompt, made once (sampled or read) and the same for every annotator.

    One worker thread makes them, one prompt at a time (one model). What a page is waiting for goes
    first; prompts made ahead for later pages (:meth:`prepare_in_background`) wait their turn. A plain
    lock around ``generate`` would not do: a thread that releases it and takes it again at once can
    keep a waiting page out for the whole queue.
    """

    NOW, LATER = 0, 1

    def __init__(self, prompts: list[Any], sampler, k: int):
        self.prompts, self._sampler, self._k = prompts, sampler, k
        self._made: dict[int, Samples] = {}
        self._failed: dict[int, Exception] = {}
        self._changed = threading.Condition()
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()  # first come, first served within a priority
        self._worker: threading.Thread | None = None
        self._closing = False

    def get(self, index: int) -> Samples:
        with self._changed:
            if index not in self._made:
                self._ask(index, self.NOW)
                self._changed.wait_for(lambda: index in self._made or index in self._failed or self._closing)
            if index in self._failed:
                raise self._failed[index]
            if index not in self._made:
                raise RuntimeError("the server is stopping")
            return self._made[index]

    def prepare_in_background(self, indices: list[int]) -> None:
        """Sample ahead of the annotators (in this order), so a page seldom waits for the model."""
        with self._changed:
            for index in indices:
                self._ask(index, self.LATER)

    def close(self, wait: float = 60.0) -> None:
        """Stop making answers (a model stops after its current token) and let the worker end."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        stop = getattr(self._sampler, "stop", None)
        if stop is not None:
            stop.set()
        if self._worker is not None:
            self._queue.put((-1, -1, -1))  # wakes a worker waiting for work
            self._worker.join(wait)

    def _ask(self, index: int, priority: int) -> None:
        self._queue.put((priority, next(self._order), index))
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="label-sampling", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            _, _, index = self._queue.get()
            with self._changed:
                if self._closing:
                    return
                if index in self._made or index in self._failed:
                    continue
            try:
                made = self._sampler.sample(self.prompts[index], self._k, index)
            except Exception as exc:  # shown to the page that asked (and to every later one)
                with self._changed:
                    self._failed[index] = exc
                    self._changed.notify_all()
                continue
            with self._changed:
                if self._closing:  # cut short by close(): not the answers to show
                    return
                self._made[index] = made
                self._changed.notify_all()


class Desk:
    def __init__(self, bank: AnswerBank, team: Team, store, criteria: list[str]):
        self.bank, self.team, self.store, self.criteria = bank, team, store, criteria
        self.lock = threading.Lock()
        self.queues = {name: team.assigned(name, len(bank.prompts)) for name in team.names}
        self.history: dict[str, list[tuple[str, int]]] = {name: [] for name in team.names}  # this server's submissions

    def pending(self, annotator: str) -> list[int]:
        return [i for i in self.queues[annotator] if not self.store.done(self.bank.prompts[i], annotator)]

    def current(self, annotator: str) -> int | None:
        """The first prompt still to do for ``annotator``, or None when all are done."""
        return next(iter(self.pending(annotator)), None)

    def progress(self, annotator: str) -> Progress:
        queue = self.queues[annotator]
        key = self.store.key_of
        skipped = sum(key({"prompt": self.bank.prompts[i], "annotator": annotator}) in self.store.skipped.keys for i in queue)
        return Progress(len(queue) - len(self.pending(annotator)), skipped, len(queue))

    def submit(self, annotator: str, answer: Submission) -> None:
        with self.lock:
            prompt, samples = self._open_item(annotator, answer.item)
            if len(answer.order) != len(samples.completions):
                raise FormError("the ranking does not match the answers shown; reload the page")
            extra = {"annotator": annotator, **answer.columns(), "timestamp": _now()}
            try:
                self.store.add_ranking(prompt, samples.completions, answer.order, extra)
            except DataError as exc:  # e.g. two identical answers: the reward stage would refuse the row
                raise FormError(f"this prompt cannot be saved ({exc}); please skip it") from None
            self.history[annotator].append(("ranked", answer.item))

    def skip(self, annotator: str, item: int) -> None:
        with self.lock:
            prompt, _ = self._open_item(annotator, item)
            self.store.add_skip(prompt, {"annotator": annotator, "timestamp": _now()})
            self.history[annotator].append(("skipped", item))

    def undo(self, annotator: str) -> int | None:
        """Take back this annotator's last submission of this server session; the prompt it was for, or None."""
        with self.lock:
            if not self.history[annotator]:
                return None
            kind, item = self.history[annotator].pop()
            log = self.store.rankings if kind == "ranked" else self.store.skipped
            log.remove_last(self.store.key_of({"prompt": self.bank.prompts[item], "annotator": annotator}))
            return item

    def _open_item(self, annotator: str, item: int) -> tuple[Any, Samples]:
        if item not in self.queues[annotator]:
            raise FormError(f"prompt {item + 1} is not one of yours; reload the page")
        prompt = self.bank.prompts[item]
        if self.store.done(prompt, annotator):
            raise FormError(f"prompt {item + 1} is already done (sent twice, or from another tab); here is your next one")
        return prompt, self.bank.get(item)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
