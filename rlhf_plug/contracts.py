"""What each kind of component must be: the plugin API as types, in one place.

A registration hook (:mod:`rlhf_plug.hookspecs`) gets a :class:`Register`; the factory it registers
returns one of the component kinds below. The hook specs and :class:`rlhf_plug.stage.StageContext`
are annotated with these, and ``docs/plugins.md`` links here instead of restating them. They are
``typing.Protocol`` classes: a component need not inherit from them (duck typing, as TRL's reward
functions are plain callables), but a type checker holds it to them, and
``isinstance(obj, Stage)`` works for the ``runtime_checkable`` ones.
Import-light: no torch (tensor types are named under ``TYPE_CHECKING`` only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel

    from rlhf_plug.stage import StageContext

__all__ = [
    "DataSource",
    "Evaluator",
    "KLController",
    "Loss",
    "Register",
    "ReportSection",
    "ReportSections",
    "RewardFunction",
    "Stage",
]


class Register(Protocol):
    """``register(name, factory, *, config=None, help=None)``, given to every ``rlhf_register_*`` hook.

    ``name`` is what a recipe writes (``use: name``), unique in its family. ``factory`` builds the
    component from the recipe's ``with:`` mapping, validated against its signature, or against
    ``config`` (a pydantic model; the factory then gets one instance; required for stages).
    ``help`` is the line ``rlhf-plug plugins`` shows (default: the factory docstring's first line).
    """

    def __call__(self, name: str, factory: Callable[..., Any], *, config: type[BaseModel] | None = None,
                 help: str | None = None) -> None: ...


@runtime_checkable
class DataSource(Protocol):
    """Rows for a stage. ``load()`` returns a ``datasets.Dataset`` or an iterable of row dicts in one of
    TRL's formats or the rankings format (``docs/data-formats.md``). ``describe()`` names the source in
    error messages and is asked again after ``load()``. An optional ``notes`` attribute (one-line
    strings set by ``load()``) is printed before the data summary."""

    def describe(self) -> str: ...

    def load(self) -> Any: ...


class RewardFunction(Protocol):
    """TRL's reward-function convention: one finite float per completion, at most ±1e6.

    ``prompts`` and ``completions`` are batched (strings, or lists of chat messages); ``columns``
    holds ``completion_ids`` and the dataset's other columns, batched. Each call gets its own copy
    of the lists and dicts. An optional ``setup(context)`` runs once before a policy stage trains.
    """

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> Sequence[float]: ...


class Loss(Protocol):
    """A policy-optimisation loss of the ``ppo`` stage: ``batch`` maps names to tensors (new and old
    log-probabilities, advantages, returns, values, masks); returns the loss and its metrics. Set
    ``needs_value = False`` on a critic-free loss."""

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]: ...


class KLController(Protocol):
    """The β of the KL penalty. A controller with a set-point may also have ``target`` (nats per
    response), which the ``ppo`` stage logs as ``kl_target``."""

    value: float

    def update(self, observed_kl: float, n_steps: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Evaluator(Protocol):
    """Held-out figures. ``context`` is stage-specific: the reward stage's carries the reward model
    and pairs, a policy stage's the sampled completions of the policy and the reference
    (``docs/plugins.md``, "Evaluators")."""

    def __call__(self, context: Any) -> dict[str, float]: ...


@runtime_checkable
class Stage(Protocol):
    """A pipeline step. ``check`` validates everything possible without loading a model (``rlhf-plug
    validate``); ``run`` trains, writes its artifacts to ``ctx.output_dir`` and returns the results
    shown in the end-of-stage table and saved as ``results.json``."""

    def check(self, ctx: StageContext) -> None: ...

    def run(self, ctx: StageContext) -> dict[str, Any]: ...


#: What ``rlhf_report_sections`` returns: ``(title, markdown)`` pairs, or None.
ReportSection = tuple[str, str]
ReportSections = Iterable[ReportSection] | None
