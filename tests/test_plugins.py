"""The plugin manager, the component registries and the lifecycle hooks."""

from __future__ import annotations

import importlib.metadata
import inspect
import sys
from pathlib import Path

import pytest

from rlhf_plug import hookimpl, hookspecs
from rlhf_plug.errors import PluginError
from rlhf_plug.plugins import (
    DISABLE_AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    EXTRA_PLUGINS_ENV,
    check_pending,
    get_plugin_manager,
    register_module,
)
from rlhf_plug.registry import FAMILIES, Registries

TESTS_DIR = Path(__file__).resolve().parent


def registries_with(pm, *plugins) -> Registries:
    """Register inline plugins as p, p2, p3... and collect the registries."""
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name="p" if i == 0 else f"p{i + 1}")
    return Registries(pm)




# --------------------------------------------------------------------------
# Defaults and registries
# --------------------------------------------------------------------------


def test_defaults_register_every_family(registries):
    assert set(FAMILIES) == {"stage", "data_source", "reward_function", "loss", "kl_controller", "evaluator"}
    for family in FAMILIES:
        assert registries[family].names(), f"no default {family}"
    assert {"sft", "reward"} <= set(registries["stage"].names())
    assert {"file", "hub", "builtin"} <= set(registries["data_source"].names())
    assert "simulated_annotator" in registries["reward_function"].names()
    assert "ppo_clip" in registries["loss"].names()
    assert {"fixed", "adaptive"} <= set(registries["kl_controller"].names())
    assert "rm_accuracy" in registries["evaluator"].names()


def test_defaults_are_attributed_and_documented(registries):
    for family in FAMILIES:
        for name in registries[family].names():
            component = registries.get(family, name)
            assert component.family == family and component.name == name
            assert component.plugin.startswith("rlhf_plug_plugins."), component.plugin
            assert component.help, f"{family} '{name}' has no help line"
    assert registries.get("stage", "sft").config is not None  # stages validate with a config model


def test_default_manager_has_no_entry_point_plugins(pm):
    assert pm.distributions == {}
    names = {name for name, _ in pm.list_name_plugin()}
    import rlhf_plug_plugins

    assert names == set(rlhf_plug_plugins.DEFAULT_PLUGINS)


def test_inline_plugin_registers_components(pm):
    class Politeness:
        """Rewards saying please."""

        def __init__(self, bonus: float = 1.0):
            self.bonus = bonus

    class P:
        @hookimpl
        def rlhf_register_reward_functions(self, register):
            register("politeness", Politeness)
            register("custom_help", Politeness, help="explicit help")

    registries = registries_with(pm, P())
    component = registries.get("reward_function", "politeness")
    assert component.plugin == "p"
    assert component.help == "Rewards saying please."
    assert registries.get("reward_function", "custom_help").help == "explicit help"
    assert "length_penalty" in registries["reward_function"].names()  # defaults still there
    built = component.build({"bonus": 2})
    assert isinstance(built, Politeness) and built.bonus == 2.0


def test_component_with_is_validated_against_the_signature(registries):
    from rlhf_plug.validation import KeyPathError

    adaptive = registries.get("kl_controller", "adaptive")
    assert adaptive.build({"init": 0.2, "target": 3}).target == 3.0
    with pytest.raises(KeyPathError, match="did you mean 'target'"):
        adaptive.validate({"targte": 3}, ("x",))
    with pytest.raises(KeyPathError, match="greater than 0"):
        adaptive.validate({"target": -1})
    with pytest.raises(KeyPathError, match=r"init \(0.1\) must lie within \[min_beta, max_beta\] = \[0.2, inf\]"):
        adaptive.validate({"init": 0.1, "min_beta": 0.2}, ("ppo", "kl", "with"))


def test_duplicate_name_names_both_plugins(pm):
    class P:
        @hookimpl
        def rlhf_register_losses(self, register):
            register("my_loss", lambda: None)

    class P2:
        @hookimpl
        def rlhf_register_losses(self, register):
            register("my_loss", lambda: None)

    with pytest.raises(PluginError) as info:
        registries_with(pm, P(), P2())
    message = str(info.value)
    assert "'my_loss'" in message
    assert "'p'" in message and "'p2'" in message


def test_duplicate_of_a_default_names_both_plugins(pm):
    class P:
        @hookimpl
        def rlhf_register_reward_functions(self, register):
            register("length_penalty", lambda: None)

    with pytest.raises(PluginError) as info:
        registries_with(pm, P())
    message = str(info.value)
    assert "length_penalty" in message
    assert "'p'" in message and "'rlhf_plug_plugins.rewards.builtin'" in message


def test_same_name_in_different_families_is_fine(pm):
    class P:
        @hookimpl
        def rlhf_register_evaluators(self, register):
            register("fixed", lambda: None)  # also a kl_controller

    registries = registries_with(pm, P())
    assert registries.get("evaluator", "fixed").plugin == "p"
    assert registries.get("kl_controller", "fixed").plugin == "rlhf_plug_plugins.objectives.kl_controllers"


def test_unknown_name_has_did_you_mean_and_available(registries):
    with pytest.raises(PluginError) as info:
        registries.get("reward_function", "lenght_penalty")
    message = str(info.value)
    assert "unknown reward function 'lenght_penalty'" in message
    assert "did you mean 'length_penalty'?" in message
    assert "available: " + ", ".join(registries["reward_function"].names()) in message


def test_unknown_name_without_close_match(registries):
    with pytest.raises(PluginError) as info:
        registries.get("loss", "zzzz")
    message = str(info.value)
    assert "did you mean" not in message
    assert "ppo_clip" in message and "reinforce" in message


@pytest.mark.parametrize(
    "name, factory, words",
    [("", dict, ["invalid name"]), (3, dict, ["invalid name"]), ("x", "not callable", ["non-callable", "'x'"])],
)
def test_invalid_registrations_name_the_plugin(pm, name, factory, words):
    class P:
        @hookimpl
        def rlhf_register_kl_controllers(self, register):
            register(name, factory)

    with pytest.raises(PluginError) as info:
        registries_with(pm, P())
    assert "'p'" in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_register_hook_that_raises_names_the_plugin(pm):
    class P:
        @hookimpl
        def rlhf_register_data_sources(self, register):
            raise RuntimeError("boom while registering")

    with pytest.raises(PluginError) as info:
        registries_with(pm, P())
    message = str(info.value)
    assert "'p'" in message
    assert "rlhf_register_data_sources" in message
    assert "boom while registering" in message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_misspelled_hook_fails_check_pending(pm):
    class P:
        @hookimpl
        def rlhf_register_rewards(self, register):  # should be rlhf_register_reward_functions
            register("x", dict)

    pm.register(P(), name="p")
    with pytest.raises(PluginError) as info:
        check_pending(pm)
    message = str(info.value)
    assert "'p'" in message
    assert "rlhf_register_rewards" in message


def test_misspelled_hook_in_a_module_fails_get_plugin_manager(make_module):
    module = make_module(
        "typo_plugin_mod",
        """
        from rlhf_plug import hookimpl

        @hookimpl
        def rlhf_stage_ends(stage, results):
            pass
        """,
    )
    with pytest.raises(PluginError) as info:
        get_plugin_manager([module], autoload=False)
    assert "typo_plugin_mod" in str(info.value)
    assert "rlhf_stage_ends" in str(info.value)


def test_hookimpl_with_unknown_argument_is_invalid(make_module):
    module = make_module(
        "badargs_plugin_mod",
        """
        from rlhf_plug import hookimpl

        @hookimpl
        def rlhf_register_losses(register, extra):
            pass
        """,
    )
    with pytest.raises(PluginError) as info:
        get_plugin_manager([module], autoload=False)
    assert "'badargs_plugin_mod'" in str(info.value)
    assert "extra" in str(info.value)


def test_well_formed_manager_passes_check_pending(pm):
    check_pending(pm)  # no error


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------


class FakeEntryPoint:
    def __init__(self, name, target=None, group=ENTRY_POINT_GROUP, error=None):
        self.name, self.group, self.target, self.error = name, group, target, error
        self.loaded = 0

    def load(self):
        self.loaded += 1
        if self.error is not None:
            raise self.error
        return self.target


class FakeDistribution:
    def __init__(self, name, version, entry_points):
        self.metadata = {"name": name, "Name": name}
        self.version = version
        self.entry_points = entry_points


class EntryPointPlugin:
    @hookimpl
    def rlhf_register_losses(self, register):
        register("ep_loss", lambda: None)


@pytest.fixture
def fake_dists(monkeypatch):
    """Replace importlib.metadata.distributions with a list the test fills."""
    dists: list[FakeDistribution] = []
    monkeypatch.setattr(importlib.metadata, "distributions", lambda *a, **k: iter(list(dists)))
    return dists


def test_entry_point_loaded_with_autoload(fake_dists):
    ep = FakeEntryPoint("fancy", EntryPointPlugin())
    other_group = FakeEntryPoint("not_ours", group="console_scripts", error=AssertionError("must not load"))
    fake_dists.append(FakeDistribution("rlhf-plug-fancy", "1.2.3", [other_group, ep]))
    pm = get_plugin_manager(autoload=True)
    assert pm.get_plugin("fancy") is ep.target
    assert pm.distributions == {"fancy": "rlhf-plug-fancy 1.2.3"}
    assert other_group.loaded == 0
    assert Registries(pm).get("loss", "ep_loss").plugin == "fancy"


def test_entry_point_not_loaded_without_autoload(fake_dists):
    ep = FakeEntryPoint("fancy", EntryPointPlugin())
    fake_dists.append(FakeDistribution("rlhf-plug-fancy", "1.2.3", [ep]))
    pm = get_plugin_manager(autoload=False)
    assert pm.get_plugin("fancy") is None
    assert ep.loaded == 0
    assert "ep_loss" not in Registries(pm)["loss"].names()


def test_entry_point_autoload_follows_env_var(fake_dists, monkeypatch):
    fake_dists.append(FakeDistribution("rlhf-plug-fancy", "1.0", [FakeEntryPoint("fancy", EntryPointPlugin())]))
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert get_plugin_manager().get_plugin("fancy") is None
    assert get_plugin_manager(autoload=True).get_plugin("fancy") is not None  # explicit wins
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)
    assert get_plugin_manager().get_plugin("fancy") is not None


def test_entry_point_import_error_names_it(fake_dists):
    bad = FakeEntryPoint("broken_plugin", error=ImportError("No module named 'missing_dep'"))
    fake_dists.append(FakeDistribution("rlhf-plug-broken", "0.1", [bad]))
    with pytest.raises(PluginError) as info:
        get_plugin_manager(autoload=True)
    message = str(info.value)
    assert "'broken_plugin'" in message
    assert "rlhf-plug-broken" in message
    assert "missing_dep" in message


def test_entry_point_for_a_default_module_is_not_registered_twice(fake_dists):
    import rlhf_plug_plugins.rewards.builtin as rewards

    fake_dists.append(
        FakeDistribution(
            "dup", "1", [FakeEntryPoint("rewards_again", rewards), FakeEntryPoint("rlhf_plug_plugins.objectives.losses", object())]
        )
    )
    pm = get_plugin_manager(autoload=True)
    assert pm.get_plugin("rewards_again") is None
    registries = Registries(pm)  # no duplicate-name error
    assert registries.get("reward_function", "length_penalty").plugin == "rlhf_plug_plugins.rewards.builtin"


def test_plugins_command_shows_entry_point_distribution(fake_dists, monkeypatch, capsys):
    from rlhf_plug.cli import main

    fake_dists.append(FakeDistribution("rlhf-plug-fancy", "1.2.3", [FakeEntryPoint("fancy", EntryPointPlugin())]))
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "rlhf-plug-fancy 1.2.3" in out
    assert "ep_loss" in out


# --------------------------------------------------------------------------
# Plugin modules (-p, RLHF_PLUG_PLUGINS, recipe plugins:)
# --------------------------------------------------------------------------

MODULE_SOURCE = """
from rlhf_plug import hookimpl

class Shout:
    \"\"\"Reward for capital letters.\"\"\"

    def __init__(self, weight: float = 1.0):
        self.weight = weight

@hookimpl
def rlhf_register_reward_functions(register):
    register("{name}", Shout)
"""


def test_named_module_is_registered(make_module):
    module = make_module("shout_plugin_mod", MODULE_SOURCE.replace("{name}", "shout"))
    pm = get_plugin_manager([module], autoload=False)
    assert pm.get_plugin(module) is sys.modules[module]
    component = Registries(pm).get("reward_function", "shout")
    assert component.plugin == module
    assert component.help == "Reward for capital letters."


def test_named_module_registered_once(make_module):
    module = make_module("once_plugin_mod", MODULE_SOURCE.replace("{name}", "once"))
    pm = get_plugin_manager([module, module], autoload=False)
    register_module(pm, module)  # e.g. both -p and the recipe's plugins:
    Registries(pm)  # no duplicate error


def test_missing_module_names_it():
    with pytest.raises(PluginError) as info:
        get_plugin_manager(["no_such_plugin_module_xyz"], autoload=False)
    assert "'no_such_plugin_module_xyz'" in str(info.value)


def test_module_failing_at_import_names_it(make_module):
    module = make_module("crashing_plugin_mod", "raise RuntimeError('bad config at import')\n")
    with pytest.raises(PluginError) as info:
        get_plugin_manager([module], autoload=False)
    assert "'crashing_plugin_mod'" in str(info.value)
    assert "bad config at import" in str(info.value)


def test_env_var_adds_modules(make_module, monkeypatch):
    a = make_module("env_plugin_a", MODULE_SOURCE.replace("{name}", "env_a"))
    b = make_module("env_plugin_b", MODULE_SOURCE.replace("{name}", "env_b"))
    monkeypatch.setenv(EXTRA_PLUGINS_ENV, f" {a} , ,{b}")
    registries = Registries(get_plugin_manager(autoload=False))
    assert registries.get("reward_function", "env_a").plugin == a
    assert registries.get("reward_function", "env_b").plugin == b


def test_env_var_with_missing_module(monkeypatch):
    monkeypatch.setenv(EXTRA_PLUGINS_ENV, "definitely_missing_plugin_mod")
    with pytest.raises(PluginError, match="definitely_missing_plugin_mod"):
        get_plugin_manager(autoload=False)


def test_module_whose_factory_raises_in_register_hook(make_module):
    module = make_module(
        "raising_register_mod",
        """
        from rlhf_plug import hookimpl

        def make_factory():
            raise ValueError("cannot build the factory")

        @hookimpl
        def rlhf_register_evaluators(register):
            register("broken", make_factory())
        """,
    )
    pm = get_plugin_manager([module], autoload=False)
    with pytest.raises(PluginError) as info:
        Registries(pm)
    assert "'raising_register_mod'" in str(info.value)
    assert "cannot build the factory" in str(info.value)


# --------------------------------------------------------------------------
# Meta: every hook is documented and tested
# --------------------------------------------------------------------------


def _hookspec_names() -> list[str]:
    return sorted(
        name for name, obj in vars(hookspecs).items() if name.startswith("rlhf_") and inspect.isfunction(obj)
    )


def test_every_hook_is_documented_and_tested():
    names = _hookspec_names()
    assert set(FAMILIES.values()) <= set(names)
    assert {"rlhf_configure", "rlhf_stage_start", "rlhf_stage_end", "rlhf_step_end", "rlhf_evaluate"} <= set(names)
    for name in names:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert ":param" in doc or ":return:" in doc, f"hookspec {name} lacks :param/:return: docs"
    this_test = inspect.getsource(test_every_hook_is_documented_and_tested)
    corpus = "\n".join(p.read_text(encoding="utf-8") for p in sorted(TESTS_DIR.glob("*.py")))
    corpus = corpus.replace(this_test, "")
    untested = [name for name in names if name not in corpus]
    assert not untested, f"hooks without a test: {untested}"


def test_each_hookspec_documents_exactly_its_arguments():
    """The ``:param name:`` lines of a hookspec are its signature, no more and no fewer."""
    import re

    for name in _hookspec_names():
        spec = getattr(hookspecs, name)
        documented = re.findall(r":param (\w+):", inspect.getdoc(spec) or "")
        assert documented == list(inspect.signature(spec).parameters), f"{name}: documents {documented}"
