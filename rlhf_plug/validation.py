"""Validate user mappings against pydantic models or factory signatures.

Errors carry a dotted key path; :mod:`rlhf_plug.recipe` turns that into
``file:line``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, get_type_hints

import pydantic

from rlhf_plug.errors import RecipeError, did_you_mean


class KeyPathError(RecipeError):
    """A recipe error tied to a key path (tuple of str/int) inside the recipe."""

    def __init__(self, path: tuple, message: str):
        super().__init__(message)
        self.path = tuple(path)
        self.message = message


def validate_model(model: type[pydantic.BaseModel], data: Any, path: tuple = ()) -> pydantic.BaseModel:
    """Validate ``data`` with a pydantic model; raise :class:`KeyPathError` on the first problem."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _first_error(exc, model, data, path) from None


def validate_kwargs(factory: Callable, data: Mapping | None, path: tuple = ()) -> dict:
    """Check ``data`` against ``factory``'s signature and type annotations.

    Returns the validated (and coerced) keyword arguments.
    """
    data = dict(data or {})
    return validate_model(signature_model(factory), data, path).model_dump(exclude_unset=True)


def signature_model(factory: Callable) -> type[pydantic.BaseModel]:
    """Build a strict pydantic model from a callable's keyword parameters."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable annotations: fall back to Any
        hints = {}
    fields: dict[str, Any] = {}
    accepts_extra = False
    for param in inspect.signature(factory).parameters.values():
        if param.kind is param.VAR_KEYWORD:
            accepts_extra = True
            continue
        if param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    extra = "allow" if accepts_extra else "forbid"
    name = getattr(factory, "__name__", "Factory")
    return pydantic.create_model(  # type: ignore[call-overload]
        f"{name}Args", __config__=pydantic.ConfigDict(extra=extra, arbitrary_types_allowed=True), **fields
    )


def recipe_path_options(factory: Callable) -> list[str]:
    """Names of the factory's parameters annotated :data:`rlhf_plug.recipe.RecipePath`."""
    from rlhf_plug.recipe import RecipeRelative

    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = get_type_hints(target, include_extras=True)
    except Exception:
        return []
    return [n for n, h in hints.items() if any(isinstance(m, RecipeRelative) for m in getattr(h, "__metadata__", ()))]


def check_keys(allowed: Mapping[str, Any] | set[str], data: Mapping, path: tuple, what: str) -> None:
    """Raise for the first key of ``data`` not in ``allowed``, with a did-you-mean."""
    for key in data:
        if key not in allowed:
            raise KeyPathError((*path, key), f"unknown {what} key '{key}'{did_you_mean(str(key), allowed)}")


def _first_error(exc: pydantic.ValidationError, model, data, path: tuple) -> KeyPathError:
    # An unknown key is usually a typo of a required one: report it first.
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
    full = (*path, *loc)
    key = loc[-1] if loc else ""
    if err["type"] == "extra_forbidden":
        allowed = _field_names(model, loc[:-1])
        hint = (
            did_you_mean(str(key), allowed)
            or _one_level_down(model, loc[:-1], str(key))
            or _one_level_up(model, path, loc, str(key))
        )
        return KeyPathError(full, f"unknown key '{key}'{hint}")
    if err["type"] == "missing":
        return KeyPathError(full, f"missing required key '{key}'")
    got = err.get("input")
    shown = repr(got) if not isinstance(got, dict) else "a mapping"
    message = err["msg"][:1].lower() + err["msg"][1:]  # only the first letter: a regex in the message keeps its case
    return KeyPathError(full, f"{message} (got {shown})")


#: Pass-through mappings (``dict`` fields) and the library classes whose arguments they take.
#: Only consulted when a key is unknown, so the import costs nothing on a valid recipe.
PASS_THROUGH = {"args": ("transformers", "TrainingArguments"), "lora": ("peft", "LoraConfig")}


def _one_level_down(model, loc: tuple, key: str) -> str:
    """`` (did you mean 'args.max_steps'?)`` when ``key`` belongs one level down: in a nested
    section (``args``, ``generation``…) or a pass-through mapping (``args`` → TRL's trainer
    arguments, ``lora`` → ``peft.LoraConfig``)."""
    import dataclasses
    import importlib

    current = _model_at(model, loc)
    for name, field in getattr(current, "model_fields", {}).items():
        label = field.alias or name
        nested = _nested_model(field.annotation)
        if nested is not None and key in _field_names(nested, ()):
            return f" (did you mean '{label}.{key}'?)"
        if label in PASS_THROUGH and nested is None:
            module, cls = PASS_THROUGH[label]
            try:
                target = getattr(importlib.import_module(module), cls)
            except Exception:  # the library is missing: no hint rather than a crash
                continue
            if key in {f.name for f in dataclasses.fields(target)}:
                return f" (did you mean '{label}.{key}'?)"
    return ""


def _one_level_up(model, path: tuple, loc: tuple, key: str) -> str:
    """`` (did you mean 'stages[1].ppo.report_to'?)`` when ``key`` belongs to the section above (``args.report_to``)."""
    if len(loc) < 2 or key not in _field_names(model, loc[:-2]):
        return ""
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in (*path, *loc[:-2], key)).lstrip(".")
    return f" (did you mean '{where}'?)"


def _nested_model(annotation):
    candidates = (annotation, *getattr(annotation, "__args__", ()))
    return next((a for a in candidates if isinstance(a, type) and issubclass(a, pydantic.BaseModel)), None)


def _model_at(model, loc: tuple):
    current = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        nested = _nested_model(getattr(field, "annotation", None))
        if nested is None:
            return None
        current = nested
    return current


def _field_names(model, loc: tuple) -> list[str]:
    """Field names of the (possibly nested) model at ``loc``; best effort."""
    current = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        ann = getattr(field, "annotation", None)
        nested = [a for a in (ann, *getattr(ann, "__args__", ())) if isinstance(a, type) and issubclass(a, pydantic.BaseModel)]
        if not nested:
            break
        current = nested[0]
    fields = getattr(current, "model_fields", {})
    return [f.alias or name for name, f in fields.items()]
