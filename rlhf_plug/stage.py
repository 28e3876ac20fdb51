"""What a stage plugin gets: its config base class and a :class:`StageContext`."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from rlhf_plug import data as data_mod
from rlhf_plug.errors import DataError, PluginError, UserError
from rlhf_plug.models import check_model_name, resolve_model
from rlhf_plug.recipe import (
    NAME_PATTERN,
    ComponentRef,
    DataRef,
    LoadedRecipe,
    Quantization,
    ReportTo,
    StageSpec,
    Strict,
    dotted,
)
from rlhf_plug.run_folder import ADAPTER_DIR, CHECKPOINTS_DIR, METRICS_FILE, MODEL_DIR, RESULTS_FILE
from rlhf_plug.validation import KeyPathError, check_keys

if TYPE_CHECKING:
    from pluggy import HookRelay
    from rich.console import Console

    from rlhf_plug.registry import Registries



class StageConfig(Strict):
    """Keys every training stage accepts. Stages subclass this."""

    name: str | None = Field(
        None, pattern=NAME_PATTERN,
        description="output folder under runs/<recipe>/ (a plain name: letters, digits, . _ -); defaults to the stage type",
    )
    model: str | None = Field(None, description="an earlier stage's name, a model alias, a path or a hub id")
    quantization: Quantization | None = Field(None, description="overrides the recipe's quantization")
    lora: dict[str, Any] | bool = Field(True, description="peft.LoraConfig arguments, or false for full fine-tuning")
    args: dict[str, Any] = Field(default_factory=dict, description="passed to the TRL config class as-is")
    report_to: ReportTo | None = Field(
        None, description="this stage's experiment trackers (default: the recipe's `report_to`); see rlhf_plug.tracking"
    )


@dataclass
class StageContext:
    """Everything a stage needs, and nothing global.

    ``output_dir`` is a temporary folder; the runner renames it to
    ``runs/<recipe>/<stage>/`` only if the stage succeeds.
    """

    spec: StageSpec
    loaded: LoadedRecipe
    registries: Registries  # every registered component, by family (``registries.get(family, name)``)
    hooks: HookRelay  # call a lifecycle hook: ``ctx.hooks.rlhf_step_end(stage=ctx, step=..., metrics=...)``
    run_dir: Path
    output_dir: Path
    console: Console
    is_main_process: bool = True

    # --- identity -------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def config(self) -> Any:
        return self.spec.config

    @property
    def recipe(self):
        return self.loaded.recipe

    @property
    def seed(self) -> int:
        return self.recipe.seed

    @property
    def quantization(self) -> str:
        return self.config.quantization or self.recipe.quantization

    # --- errors ---------------------------------------------------------
    def error(self, key_path: tuple, message: str) -> UserError:
        """A one-line error located at ``key_path`` inside this stage's section."""
        return self.loaded.source.error((*self.spec.path, *key_path), message)

    # --- components -----------------------------------------------------
    def component(self, family: str, ref: ComponentRef, key: tuple):
        """Look up ``ref.use`` in ``family`` and validate its ``with:``; return (component, options)."""
        try:
            component = self.registries.get(family, ref.use)
            options = component.validate(ref.with_, (*self.spec.path, *key, "with"))
            options = self._recipe_paths(component, options, (*self.spec.path, *key, "with"))
        except KeyPathError as exc:
            raise self.loaded.source.error(exc.path, exc.message) from None
        except (PluginError, UserError) as exc:  # unknown name, or a missing optional extra
            raise self.error((*key, "use"), str(exc)) from None
        return component, options

    def _recipe_paths(self, component, options, path: tuple):
        """Options annotated :data:`rlhf_plug.recipe.RecipePath`, resolved where ``path`` was written."""
        if not isinstance(options, dict):
            return options
        from rlhf_plug.validation import recipe_path_options

        for name in recipe_path_options(component.factory):
            if isinstance(options.get(name), str):
                options[name] = self.loaded.source.resolve_path(options[name], (*path, name))
        return options

    def build(self, family: str, ref: ComponentRef, key: tuple) -> Any:
        """Build a component; ``key`` is where ``ref`` sits in the stage config (for errors)."""
        component, options = self.component(family, ref, key)
        return component.start(options)

    def load_data(self, ref: DataRef, key: tuple, accept: tuple[str, ...]) -> data_mod.SplitData:
        """Build the data source at ``key``, load, validate, split (and expand rankings).

        A :class:`DataError` gets the recipe location of ``key`` in front, so it names the key too.
        """
        ref = self.named_dataset(ref, key)
        try:
            source = self.build("data_source", ref, key)
            split = data_mod.load_split(source, ref, accept=accept, seed=self.seed)
        except DataError as exc:
            path = (*self.spec.path, *key)
            raise DataError(f"{self.loaded.source.locate_section(path)}: {dotted(path)}: {exc}") from None
        if self.is_main_process:
            from rich.markup import escape

            for note in split.notes:
                self.console.print(f"  [dim]{escape(note)}[/]")  # "hub:x[train]" is not markup
        return split

    def named_dataset(self, ref: DataRef, key: tuple) -> DataRef:
        """``ref`` with the recipe's ``datasets.NAME`` filled in when ``ref.use`` names one.

        The stage's own keys win; ``with:`` mappings are merged.
        """
        shared = self.recipe.datasets.get(ref.use)
        if shared is None:
            return ref
        if ref.use in self.registries["data_source"].items:
            raise self.error((*key, "use"), f"'{ref.use}' is both a recipe dataset and a data source; rename the dataset")
        own = {name: getattr(ref, name) for name in ref.model_fields_set - {"use", "with_"}}
        return shared.model_copy(update={**own, "with_": {**self._shared_paths(ref.use, shared), **ref.with_}})

    def _shared_paths(self, name: str, shared: DataRef) -> dict:
        """The dataset's ``with:``, its path options resolved where they were written (``datasets.NAME``)."""
        options = dict(shared.with_)
        if shared.use not in self.registries["data_source"].items:
            return options  # an unknown source is reported by component() with the stage's key
        return self._recipe_paths(self.registries.get("data_source", shared.use), options, ("datasets", name, "with"))

    # --- models ---------------------------------------------------------
    def earlier_stage_dir(self, name: str) -> Path | None:
        names = [s.name for s in self.loaded.stages[: self.spec.index]]
        return self.run_dir / name if name in names else None

    def latest_stage_dir(self, kinds: tuple[str, ...]) -> Path | None:
        """The output of the most recent earlier stage of one of ``kinds``."""
        for spec in reversed(self.loaded.stages[: self.spec.index]):
            if spec.kind in kinds:
                return self.run_dir / spec.name
        return None

    def model_path(self, default_from: tuple[str, ...] = ()) -> str:
        """Resolve this stage's base model.

        ``model:`` may name an earlier stage (its merged model is used), a model
        alias, a path or a hub id. Unset, the most recent earlier stage of a
        kind in ``default_from`` is used, else the recipe's model.
        """
        return self._model_choice(default_from, resolve=True)

    def check_model(self, default_from: tuple[str, ...] = ()) -> None:
        self._model_choice(default_from, resolve=False)

    def _model_choice(self, default_from: tuple[str, ...], resolve: bool) -> str:
        name = self.config.model
        earlier = self.earlier_stage_dir(name) if name is not None else None
        if earlier is not None:
            return str(earlier / MODEL_DIR)
        if name is None:
            earlier = self.latest_stage_dir(default_from)
            if earlier is not None:
                return str(earlier / MODEL_DIR)
            name = self.recipe.model
        try:
            if resolve:
                return resolve_model(name, self.console if self.is_main_process else None)
            check_model_name(name)
            return name
        except UserError as exc:
            key = ("model",) if self.config.model else ()
            where = self.error(key, str(exc)) if key else self.loaded.source.error(("model",), str(exc))
            raise where from None

    # --- pass-through args ----------------------------------------------
    def check_args(self, config_class: type, key: str = "args") -> None:
        """Check ``args`` keys against a TRL config dataclass (with did-you-mean)."""
        import dataclasses

        from rlhf_plug.passthrough import check_values

        fields = {f.name for f in dataclasses.fields(config_class) if f.init}
        values = getattr(self.config, key)
        try:
            check_keys(fields, values, (*self.spec.path, key), config_class.__name__)
        except KeyPathError as exc:
            raise self.loaded.source.error(exc.path, exc.message) from None
        bad = check_values(config_class, values)
        if bad:
            raise self.error((key, bad[0]), f"{config_class.__name__}.{bad[0]}: {bad[1]}")
        self._build_config(config_class, key)

    def _build_config(self, config_class: type, key: str) -> None:
        """Construct the config once (in a scratch folder name, nothing is written) so its own checks run."""
        from rlhf_plug.training import trainer_config_kwargs

        try:
            config_class(**trainer_config_kwargs(self, output_dir=str(self.output_dir / "trainer")))
        except (TypeError, ValueError) as exc:
            raise self.error((key,), f"{config_class.__name__} rejected the arguments: {' '.join(str(exc).split())}") from None

    def check_lora(self, task_type: str) -> None:
        """Build the ``lora:`` section's ``peft.LoraConfig`` now, so a bad option fails before training."""
        from peft import LoraConfig

        from rlhf_plug.models import lora_config
        from rlhf_plug.passthrough import check_values

        bad = check_values(LoraConfig, self.config.lora) if isinstance(self.config.lora, dict) else None
        if bad:
            raise self.error(("lora", bad[0]), f"peft.LoraConfig.{bad[0]}: {bad[1]}")
        try:
            lora_config(self.config.lora, task_type)
        except (TypeError, ValueError) as exc:
            raise self.error(("lora",), f"peft.LoraConfig rejected it: {exc}") from None

    # --- metrics --------------------------------------------------------
    def _notice_non_finite(self, keys: list[str], step: int) -> None:
        """Say once per metric that it was not finite (logged as null), so it does not vanish without a word."""
        new = [k for k in keys if k not in self.__dict__.setdefault("_non_finite_noticed", set())]
        if new:
            self._non_finite_noticed.update(new)
            self.console.print(
                f"[yellow]notice:[/] stage {self.name}, step {step}: {', '.join(new)} not finite; "
                f"logged as null in {METRICS_FILE}", soft_wrap=True, markup=True, highlight=False,
            )

    def log_metrics(self, step: int, metrics: dict[str, float], *, evaluation: bool = False) -> None:
        """Append to ``metrics.jsonl`` and broadcast ``rlhf_step_end`` / ``rlhf_evaluate``."""
        if self.is_main_process:
            non_finite = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
            self._notice_non_finite(non_finite, step)
            record = {"step": step, "time": round(time.time(), 3), "split": "eval" if evaluation else "train", **metrics}
            record.update(dict.fromkeys(non_finite))  # null: JSON has no NaN, and a missing key would hide it
            with open(self.output_dir / METRICS_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        hook = self.hooks.rlhf_evaluate if evaluation else self.hooks.rlhf_step_end
        hook(stage=self, step=step, metrics=metrics)


__all__ = [
    "ADAPTER_DIR",
    "CHECKPOINTS_DIR",
    "METRICS_FILE",
    "MODEL_DIR",
    "RESULTS_FILE",
    "StageConfig",
    "StageContext",
]
