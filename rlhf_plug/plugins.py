"""Build the plugin manager: defaults, then entry points, then named modules.

1. The default plugins of ``rlhf_plug_plugins`` (registered under fixed names,
   so an entry point can't register them twice).
2. Installed distributions' entry points in the group ``rlhf_plug``, unless
   ``RLHF_PLUG_DISABLE_PLUGIN_AUTOLOAD`` is set (for reproducible runs/tests).
3. Modules named in ``RLHF_PLUG_PLUGINS`` (comma-separated), in a recipe's
   ``plugins:`` list, or with ``-p module`` on the command line.

Finally ``check_pending()`` turns a misspelled hook name into an error.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import functools
from collections.abc import Iterable, Mapping

import pluggy

from rlhf_plug import hookspecs
from rlhf_plug.errors import PluginError, UserError

ENTRY_POINT_GROUP = "rlhf_plug"
DISABLE_AUTOLOAD_ENV = "RLHF_PLUG_DISABLE_PLUGIN_AUTOLOAD"
EXTRA_PLUGINS_ENV = "RLHF_PLUG_PLUGINS"


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, remembering which distribution provided each plugin."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        #: plugin name -> "distribution version" for entry-point plugins
        self.distributions: dict[str, str] = {}

    def register(self, plugin: object, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        if registered is not None:
            _translate_lifecycle_errors(self, plugin)
        return registered

    def source(self, name: str) -> str:
        """Where a registered plugin came from: "distribution version", "built-in" or "module"."""
        return self.distributions.get(name, "built-in" if name.startswith("rlhf_plug_plugins.") else "module")


def get_plugin_manager(
    modules: Iterable[str] = (), *, autoload: bool | None = None, recipe_modules: Mapping[str, str] | None = None
) -> PluginManager:
    """Return a fresh, checked plugin manager.

    :param modules: extra plugin modules to import and register by name.
    :param autoload: load entry points; defaults to "unless the env var
        ``RLHF_PLUG_DISABLE_PLUGIN_AUTOLOAD`` is set".
    :param recipe_modules: a recipe's ``plugins:`` modules, each with where it is written
        (``recipe.yaml:3: plugins[0]``), which their errors name; loaded after ``modules``.
    """
    pm = PluginManager()
    _register_defaults(pm)
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        _register_entry_points(pm)
    extra = [m.strip() for m in os.environ.get(EXTRA_PLUGINS_ENV, "").split(",") if m.strip()]
    for module_name in [*extra, *modules]:
        register_module(pm, module_name)
    for module_name, where in (recipe_modules or {}).items():
        try:
            register_module(pm, module_name)
        except PluginError as exc:
            raise PluginError(f"{where}: {exc}") from exc.__cause__
    check_pending(pm)
    return pm


def register_module(pm: pluggy.PluginManager, module_name: str) -> None:
    """Import ``module_name`` and register it as a plugin (once)."""
    if pm.get_plugin(module_name) is not None:
        return
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(
            f"plugin module '{module_name}' could not be imported: {exc} (it must be importable: installed, "
            "or its folder on PYTHONPATH, e.g. PYTHONPATH=. for a module in the working directory)"
        ) from exc
    except Exception as exc:
        raise PluginError(f"plugin module '{module_name}' failed while importing: {type(exc).__name__}: {exc}") from exc
    except SystemExit as exc:  # a plugin must not end the command (exit 0 would look like success)
        raise PluginError(f"plugin module '{module_name}' called sys.exit({exc.code!r}) while importing") from exc
    if pm.is_registered(module):  # already loaded, e.g. through its entry point
        return
    _register(pm, module, module_name)


def check_pending(pm: pluggy.PluginManager) -> None:
    """Fail if a plugin implements a hook that doesn't exist (e.g. a typo)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginError(f"plugin '{name}' implements an unknown hook: {exc}") from exc


def _register_defaults(pm: PluginManager) -> None:
    import rlhf_plug_plugins

    for module_name in rlhf_plug_plugins.DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        _register(pm, module, module_name)


def _register_entry_points(pm: PluginManager) -> None:
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:
                dist_name = dist.metadata["name"]
                raise PluginError(
                    f"plugin '{ep.name}' (entry point of {dist_name}) failed to load: {type(exc).__name__}: {exc}"
                ) from exc
            if pm.is_registered(plugin):
                continue
            _register(pm, plugin, ep.name)
            pm.distributions[ep.name] = f"{dist.metadata['name']} {dist.version}"


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin '{name}' is invalid: {exc}") from exc
    except ValueError as exc:  # already registered under another name
        raise PluginError(f"plugin '{name}' could not be registered: {exc}") from exc


#: Broadcast hooks whose implementations' errors become one-line :class:`PluginError`\ s naming the plugin.
LIFECYCLE_HOOKS = frozenset({"rlhf_configure", "rlhf_stage_start", "rlhf_stage_end", "rlhf_step_end", "rlhf_evaluate"})


def _translate_lifecycle_errors(pm: pluggy.PluginManager, plugin: object) -> None:
    """Wrap ``plugin``'s lifecycle hook implementations so an error says which plugin and hook raised it.

    A ``wrapper=True`` hookimpl would see the exception but not which implementation raised it, so each
    implementation is wrapped instead (pluggy calls ``impl.function`` with positional arguments).
    Wrappers (generators) are left as they are.
    """
    for caller in pm.get_hookcallers(plugin) or ():
        if caller.name not in LIFECYCLE_HOOKS:
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                impl.function = _naming_errors(impl.function, impl.plugin_name, caller.name)


def _naming_errors(function, plugin_name: str, hook_name: str):
    @functools.wraps(function)
    def call(*args):
        try:
            return function(*args)
        except UserError:
            raise
        except (Exception, SystemExit) as exc:
            what = f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
            raise PluginError(f"plugin '{plugin_name}' failed in {hook_name}: {what}") from exc

    return call
