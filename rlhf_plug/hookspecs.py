"""The rlhf-plug plugin API: every hook a plugin may implement.

Plugins implement hooks with the :data:`hookimpl` marker::

    from rlhf_plug import hookimpl

    @hookimpl
    def rlhf_register_reward_functions(register: Register) -> None:
        register("politeness", Politeness)

There are two kinds of hook.

**Registration hooks** (``rlhf_register_*``) add named components to a
family. ``register(name, factory, *, config=None, help=None)`` is provided by
the host:

- ``name``: the name a recipe uses (``use: name``). Names are unique within a
  family; registering a name twice is an error that names both plugins.
- ``factory``: a callable that builds the component. A recipe's ``with:``
  mapping is validated against the factory's signature (type annotations are
  enforced, unknown keys are errors) and passed as keyword arguments.
- ``config``: optionally a ``pydantic.BaseModel`` subclass. The ``with:``
  mapping is validated against it instead and the factory receives one model
  instance. Stages use this for their nested configuration.
- ``help``: one line shown by ``rlhf-plug plugins``; defaults to the first
  line of the factory's docstring.

Factories are called only when a run needs them, so a plugin module should
import heavy libraries (torch, transformers) inside the factory, not at the
top: ``rlhf-plug plugins`` and ``rlhf-plug validate`` then stay fast.

**Lifecycle hooks** are broadcast to every plugin during a run. Progress
displays, loggers, early stopping and reward-hacking monitors are plugins on
these hooks. Their return values are ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # as pytest's hookspec.py: the types document the hooks, and importing them costs nothing at run time
    from rlhf_plug.contracts import Register, ReportSections
    from rlhf_plug.recipe import Recipe
    from rlhf_plug.report import ReportContext, StageOutput
    from rlhf_plug.stage import StageContext

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "rlhf_plug"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --------------------------------------------------------------------------
# Registration hooks: one per component family.
# --------------------------------------------------------------------------


@hookspec
def rlhf_register_data_sources(register: Register) -> None:
    """Register data sources.

    A data source factory returns a :class:`rlhf_plug.contracts.DataSource`: an object with ``describe() -> str`` (used in
    error messages, e.g. the file path) and ``load()``, which returns a
    ``datasets.Dataset`` or a list of row dicts, with rows in one of TRL's formats (prompt/completion, ``messages``,
    chosen/rejected, prompt-only, ``text``) or the rankings format
    (``prompt`` + ``completions`` ordered best to worst). ``describe()`` is
    asked again after ``load()`` (a source may report what it really read), and
    an optional ``notes`` attribute (one-line strings set by ``load()``, e.g. a
    fallback notice) is printed before the data summary.

    :param register: ``register(name, factory, *, config=None, help=None)``.
    :return: ignored.
    """


@hookspec
def rlhf_register_reward_functions(register: Register) -> None:
    """Register reward functions.

    A reward factory returns a :class:`rlhf_plug.contracts.RewardFunction`, a callable
    ``(prompts, completions, **columns) -> list[float]`` following TRL's
    GRPO/RLOO convention: ``prompts`` and ``completions`` are batched lists
    (strings, or lists of chat messages for conversational data) and
    ``columns`` holds the other dataset columns, batched. TRL's own reward
    functions therefore work as they are. The callable may hold its own model
    and tokenizer.

    :param register: ``register(name, factory, *, config=None, help=None)``.
    :return: ignored.
    """


@hookspec
def rlhf_register_losses(register: Register) -> None:
    """Register policy-optimisation losses.

    A loss factory returns a :class:`rlhf_plug.contracts.Loss`, a callable ``(batch) -> (loss, metrics)`` where
    ``batch`` is the PPO minibatch (a mapping of tensors: new and old log
    probabilities, advantages, returns, values, masks) and ``metrics`` is a
    ``dict[str, float]`` reported each step. Set ``needs_value = False`` on the
    callable for critic-free losses.

    :param register: ``register(name, factory, *, config=None, help=None)``.
    :return: ignored.
    """


@hookspec
def rlhf_register_kl_controllers(register: Register) -> None:
    """Register KL controllers (the β of the KL penalty).

    A controller (:class:`rlhf_plug.contracts.KLController`) has ``value`` (the current β), ``update(observed_kl, n_steps)``,
    and ``state_dict()`` / ``load_state_dict(state)`` so resumed runs continue
    with the same β. A controller with a set-point may also have ``target``
    (nats per response): the PPO stage logs it as ``kl_target`` and the report
    draws it on the KL panel.

    :param register: ``register(name, factory, *, config=None, help=None)``.
    :return: ignored.
    """


@hookspec
def rlhf_register_evaluators(register: Register) -> None:
    """Register evaluators.

    An evaluator (:class:`rlhf_plug.contracts.Evaluator`) is a callable ``(context) -> dict[str, float]`` run by a stage
    on held-out data; the context is stage-specific and documented by the stage
    (for example the reward stage passes the trained reward model and the
    held-out preference pairs).

    :param register: ``register(name, factory, *, config=None, help=None)``.
    :return: ignored.
    """


@hookspec
def rlhf_register_stages(register: Register) -> None:
    """Register pipeline stages (``sft``, ``reward``, ``ppo``, ...).

    A stage factory is called with its validated config (``config=`` is
    required for stages) and returns a :class:`rlhf_plug.contracts.Stage`: an object with ``check(ctx)``, which
    validates everything possible without loading a model, and
    ``run(ctx) -> dict[str, float]``, which trains, writes its artifacts to
    ``ctx.output_dir`` and returns the results shown in the end-of-stage table.
    ``ctx`` is a :class:`rlhf_plug.stage.StageContext`.

    :param register: ``register(name, factory, *, config=..., help=None)``.
    :return: ignored.
    """


# --------------------------------------------------------------------------
# Lifecycle hooks: broadcast during a run.
# --------------------------------------------------------------------------


@hookspec(historic=True)
def rlhf_configure(recipe: Recipe) -> None:
    """Called once, after the recipe is loaded and validated, before any stage.

    Historic: plugins registered later still receive the call.

    :param recipe: the validated :class:`rlhf_plug.recipe.Recipe`.
    :return: ignored.
    """


@hookspec
def rlhf_stage_start(stage: StageContext) -> None:
    """Called before a stage starts training.

    :param stage: the :class:`rlhf_plug.stage.StageContext` of the stage.
    :return: ignored.
    """


@hookspec
def rlhf_stage_end(stage: StageContext, results: dict[str, Any]) -> None:
    """Called after a stage finished and its artifacts were written.

    :param stage: the :class:`rlhf_plug.stage.StageContext` of the stage.
    :param results: ``dict[str, float]`` shown in the end-of-stage table.
    :return: ignored.
    """


@hookspec
def rlhf_step_end(stage: StageContext, step: int, metrics: dict[str, float]) -> None:
    """Called after each logged optimisation step.

    :param stage: the :class:`rlhf_plug.stage.StageContext`.
    :param step: the global step (1-based).
    :param metrics: ``dict[str, float]`` (loss, learning rate, the stage's
        key metrics).
    :return: ignored.
    """


@hookspec
def rlhf_evaluate(stage: StageContext, step: int, metrics: dict[str, float]) -> None:
    """Called after each evaluation on held-out data.

    :param stage: the :class:`rlhf_plug.stage.StageContext`.
    :param step: the global step at which the evaluation ran (0 = before
        training).
    :param metrics: ``dict[str, float]`` of evaluation metrics.
    :return: ignored.
    """


# --------------------------------------------------------------------------
# Report hook: called by `rlhf-plug report` and at the end of `rlhf-plug run`.
# --------------------------------------------------------------------------


@hookspec
def rlhf_report_sections(stage: StageOutput, report: ReportContext) -> ReportSections:
    """Contribute sections about one stage to the run's ``report.md``.

    Called once per completed stage, in recipe order, after the stage's results
    table. Look at what the stage wrote (its ``kind``, its metric keys, its
    files) and return None when there is nothing for you to show. Sections
    appear in plugin registration order, the default plugins' first. Import
    matplotlib inside the implementation, not at module level.

    :param stage: the stage's :class:`rlhf_plug.report.StageOutput`: ``name``,
        ``kind`` (the stage type, None when unknown), ``path`` (its folder),
        ``results`` (results.json), ``metrics`` (the metrics.jsonl records),
        and the helpers ``records(split)``, ``keys(split)``,
        ``series(key, split)``, ``final_eval()`` and ``latest_table(name)``.
    :param report: the :class:`rlhf_plug.report.ReportContext`: ``run`` (the
        whole :class:`rlhf_plug.report.RunOutput`, with ``recipe`` and
        ``stages``) and ``image(filename, alt) -> (path, markdown)``: where to
        save a PNG and the markdown line that shows it.
        :mod:`rlhf_plug.report.plots` draws curves, strip plots and bar charts.
    :return: a list of ``(title, markdown)`` pairs, one per section, or None.
    """
