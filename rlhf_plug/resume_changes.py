"""``--resume`` continues a run only with the settings it was trained with.

Each stage folder (complete, or temporary with checkpoints) keeps the ``recipe.yaml`` it started with.
On resume, the parts of the recipe a stage depends on are compared with that record: the top-level
keys that shape training, the stage's own entry, and the named ``datasets`` it reads. Stages that have
not started yet may change freely: fixing a later stage and resuming is what ``--resume`` is for.
Import-light: no torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from rlhf_plug.recipe import shown
from rlhf_plug.run_folder import RESULTS_FILE

#: Top-level keys that change nothing a stage trains: free to change on resume (``name`` and ``output_dir``
#: only find the run folder, which is the same one or the resume would not find the stage).
FREE_KEYS = frozenset({"description", "report_to", "name", "output_dir"})
SAVED_RECIPE = "recipe.yaml"  # written into every stage folder when the stage starts
STARTED_RECIPE = "recipe.started.yaml"  # kept beside it when --allow-changes continued with other settings


def stage_changes(old: dict, new: dict, stage_name: str) -> list[str]:
    """``key: old -> new`` for every setting of ``stage_name`` that differs between two recipes."""
    before, after = _settings_of(old, stage_name), _settings_of(new, stage_name)
    return [
        f"{key}: {shown(_text(before.get(key, '(unset)')), 60)} -> {shown(_text(after.get(key, '(unset)')), 60)}"
        for key in sorted(set(before) | set(after), key=str)
        if before.get(key, _UNSET) != after.get(key, _UNSET)
    ]


def saved_recipe(stage_dir: Path) -> dict | None:
    """The recipe a stage folder started with, or None if it holds none (or an unreadable one)."""
    try:
        data = yaml.safe_load((stage_dir / SAVED_RECIPE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


_UNSET = object()


def _settings_of(data: dict, stage_name: str) -> dict[str, Any]:
    entry = _stage_entry(data, stage_name)
    settings = {k: v for k, v in {**_top_level_defaults(), **data}.items() if k not in FREE_KEYS and k not in ("stages", "datasets")}
    flat = dict(_flatten(settings, ""))
    if entry is not None:
        flat.update(_flatten(entry, f"{stage_name}."))
        for name in sorted(_datasets_used(entry, data.get("datasets") or {})):
            flat.update(_flatten(data["datasets"][name], f"datasets.{name}."))
    return flat


def _top_level_defaults() -> dict[str, Any]:
    """``seed: 42`` written out equals ``seed`` left out."""
    from pydantic_core import PydanticUndefined

    from rlhf_plug.recipe import Recipe

    return {k: f.default for k, f in Recipe.model_fields.items() if f.default is not PydanticUndefined}


def _stage_entry(data: dict, stage_name: str) -> Any:
    for entry in data.get("stages") or []:
        if not (isinstance(entry, dict) and len(entry) == 1):
            continue
        kind, config = next(iter(entry.items()))
        name = config.get("name") if isinstance(config, dict) else None
        if (name or kind) == stage_name:
            return config or {}
    return None


def _datasets_used(value: Any, datasets: dict) -> Iterator[str]:
    """Names of ``datasets`` that a stage entry takes with ``{use: NAME}``."""
    if isinstance(value, dict):
        if isinstance(value.get("use"), str) and value["use"] in datasets:
            yield value["use"]
        for child in value.values():
            yield from _datasets_used(child, datasets)
    elif isinstance(value, list):
        for child in value:
            yield from _datasets_used(child, datasets)


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from _flatten(child, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def changed_stages(root: Path, stage_names: list[str], new: dict, resumable) -> dict[str, list[str]]:
    """For each stage that ``--resume`` would skip (complete) or continue (``resumable(partial_dir)``),
    the settings that differ from the recipe it started with."""
    changes = {}
    for name in stage_names:
        complete, partial = root / name, root / f".{name}.partial"
        stage_dir = complete if (complete / RESULTS_FILE).is_file() else partial if resumable(partial) else None
        old = saved_recipe(stage_dir) if stage_dir is not None else None
        if old is not None and (differ := stage_changes(old, new, name)):
            changes[name] = differ
    return changes


def describe(changes: dict[str, list[str]], shown_keys: int = 4) -> str:
    """``sft (a: 1 -> 2, b: x -> y and 3 more)``, for a one-line error."""
    parts = []
    for stage, keys in changes.items():
        more = f" and {len(keys) - shown_keys} more" if len(keys) > shown_keys else ""
        parts.append(f"{stage} ({'; '.join(keys[:shown_keys])}{more})")
    return ", ".join(parts)
