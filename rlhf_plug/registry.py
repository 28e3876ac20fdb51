"""Named component registries, one per family, filled by ``rlhf_register_*`` hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from rlhf_plug.errors import PluginError, UserError, did_you_mean
from rlhf_plug.validation import validate_kwargs, validate_model

#: family name -> registration hook name. The order is the display order.
FAMILIES: dict[str, str] = {
    "stage": "rlhf_register_stages",
    "data_source": "rlhf_register_data_sources",
    "reward_function": "rlhf_register_reward_functions",
    "loss": "rlhf_register_losses",
    "kl_controller": "rlhf_register_kl_controllers",
    "evaluator": "rlhf_register_evaluators",
}


@dataclass(frozen=True)
class Component:
    """One registered component."""

    family: str
    name: str
    factory: Callable
    plugin: str
    config: type | None = None
    help: str = ""

    def validate(self, options: dict | None, path: tuple = ()) -> Any:
        """Validate a recipe's ``with:`` mapping; return what :meth:`build` takes.

        A factory with a ``check_installed()`` static method is asked first, so a missing
        optional extra is reported by ``rlhf-plug validate``, before anything trains.
        """
        check_installed = getattr(self.factory, "check_installed", None)
        if callable(check_installed):
            check_installed()
        if self.config is not None:
            return validate_model(self.config, options or {}, path)
        return validate_kwargs(self.factory, options, path)

    def build(self, options: dict | None = None, path: tuple = ()) -> Any:
        """Validate ``options`` and call the factory (see :meth:`start`)."""
        return self.start(self.validate(options, path))

    def start(self, validated: Any) -> Any:
        """Call the factory with what :meth:`validate` returned.

        A :class:`UserError` passes through; any other exception becomes a
        :class:`PluginError` naming the component and its plugin.
        """
        try:
            return self.factory(validated) if self.config is not None else self.factory(**validated)
        except UserError:
            raise
        except Exception as exc:
            raise PluginError(
                f"{self.family.replace('_', ' ')} '{self.name}' (plugin '{self.plugin}') failed to start: {type(exc).__name__}: {exc}"
            ) from exc


@dataclass
class Registry:
    """Components of one family, by name."""

    family: str
    items: dict[str, Component] = field(default_factory=dict)

    def register(self, plugin: str, name: str, factory: Callable, *, config=None, help: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin '{plugin}' registered a {self.family} with an invalid name {name!r}")
        if not callable(factory):
            raise PluginError(f"plugin '{plugin}' registered {self.family} '{name}' with a non-callable factory")
        if name in self.items:
            other = self.items[name].plugin
            raise PluginError(
                f"{self.family} '{name}' is registered twice: by plugin '{other}' and by plugin '{plugin}'"
            )
        doc = help or (factory.__doc__ or "").strip().split("\n")[0]
        self.items[name] = Component(self.family, name, factory, plugin, config, doc)

    def get(self, name: str) -> Component:
        try:
            return self.items[name]
        except KeyError:
            available = ", ".join(sorted(self.items)) or "none"
            label = self.family.replace("_", " ")
            raise PluginError(
                f"unknown {label} '{name}'{did_you_mean(name, self.items)}; available: {available}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self.items)


class Registries:
    """All families, filled from a plugin manager's registration hooks."""

    def __init__(self, pm: pluggy.PluginManager):
        self.by_family = {family: Registry(family) for family in FAMILIES}
        for family, hook_name in FAMILIES.items():
            self._collect(pm, family, hook_name)

    def __getitem__(self, family: str) -> Registry:
        return self.by_family[family]

    def get(self, family: str, name: str) -> Component:
        return self.by_family[family].get(name)

    def _collect(self, pm: pluggy.PluginManager, family: str, hook_name: str) -> None:
        # Call each implementation ourselves, so every registration is
        # attributed to its plugin (needed to name both sides of a duplicate).
        registry = self.by_family[family]
        for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):

            def register(name, factory, *, config=None, help=None, _plugin=impl.plugin_name):
                registry.register(_plugin, name, factory, config=config, help=help)

            try:
                impl.function(register)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin '{impl.plugin_name}' failed in {hook_name}: {exc}") from exc
