"""Values passed through to TRL and peft config classes, checked before any model loads.

A stage's ``args:`` go to a TRL config dataclass and ``lora:`` to ``peft.LoraConfig``. Those
classes check little at construction (``learning_rate: [1]`` or ``max_steps: ten`` fail only
after the model has loaded, with a traceback), so ``rlhf-plug validate`` checks each value
against the field's type annotation (with pydantic, lax as YAML users expect: ``"3"`` is an
int) and a few counts that must be positive, then builds the config so its own
``__post_init__`` checks run too. Errors name the key.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

#: Fields that must be above zero.
POSITIVE = {"learning_rate"}
#: Fields that are counts of at least one.
AT_LEAST_ONE = {"per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps", "r"}


def field_types(config_class: type) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(config_class)
    except Exception:  # an annotation that does not resolve: no type checks, the keys are still checked
        hints = {}
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(config_class) if f.init}


def value_problem(name: str, value: Any, annotation: Any) -> str | None:
    """Why ``value`` cannot be ``name: annotation``, or None."""
    import pydantic

    try:
        checked = pydantic.TypeAdapter(annotation).validate_python(value)
    except pydantic.ValidationError as exc:
        return exc.errors()[0]["msg"][:1].lower() + exc.errors()[0]["msg"][1:] + f" (got {value!r})"
    except Exception:  # a type pydantic cannot build a validator for: leave it to the config class
        return None
    if isinstance(checked, float) and not math.isfinite(checked):
        return f"must be a finite number (got {value!r})"
    if name in POSITIVE and isinstance(checked, (int, float)) and not checked > 0:
        return f"must be greater than 0 (got {value!r})"
    if name in AT_LEAST_ONE and isinstance(checked, (int, float)) and checked < 1:
        return f"must be at least 1 (got {value!r})"
    if name == "max_steps" and isinstance(checked, int) and (checked == 0 or checked < -1):
        return f"must be a positive number of steps, or -1 to train for num_train_epochs (got {value!r})"
    return None


def check_values(config_class: type, values: dict) -> tuple[str, str] | None:
    """The first ``(key, problem)`` of ``values`` against ``config_class``'s fields, or None."""
    types = field_types(config_class)
    for name, value in values.items():
        problem = value_problem(name, value, types.get(name, Any))
        if problem:
            return name, problem
    return None
