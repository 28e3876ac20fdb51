"""User-facing errors.

Anything a user can fix by editing a recipe, a data file or a plugin raises a
:class:`UserError`. The CLI prints it as one line and exits with status 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with user input (recipe, data, plugin, reward output)."""


class RecipeError(UserError):
    """A recipe is malformed: unknown key, wrong type, bad value."""


class PluginError(UserError):
    """A plugin failed to load, or a component name is unknown or duplicated."""


class DataError(UserError):
    """A data source is missing, empty or has a bad row or column."""


class RewardError(UserError):
    """A reward function returned something unusable, or raised."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


__all__ = [
    "DataError",
    "PluginError",
    "RecipeError",
    "RewardError",
    "UserError",
    "did_you_mean",
]
