"""Build a registered component named on the command line (as a recipe's ``use:``/``with:`` does)."""

from __future__ import annotations

from typing import Any

from rlhf_plug.errors import PluginError, RecipeError
from rlhf_plug.validation import KeyPathError


def build_component(registries, family: str, name: str, options: dict[str, Any], flags: tuple[str, str]) -> Any:
    """Look up ``name`` in ``family``, validate ``options`` and call the factory.

    ``flags`` are the options that gave the name and the options, for error messages.
    """
    from rlhf_plug.recipe import dotted

    try:
        component = registries.get(family, name)
    except PluginError as exc:  # unknown name: the message lists the known ones
        raise PluginError(f"{flags[0]}: {exc}") from None
    try:
        return component.build(options)
    except KeyPathError as exc:
        where = dotted(exc.path)
        raise RecipeError(f"{flags[1]} {where}: {exc.message}" if where else f"{flags[1]}: {exc.message}") from None
