"""The plugin API is declared in code (issue 27): typed hook specs, component Protocols, a typed StageContext,
``__all__`` in every public module, and the default components satisfy the contracts they document."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing

import pytest

from rlhf_plug import contracts, hookspecs

PUBLIC_MODULES = ("rlhf_plug", "rlhf_plug.hookspecs", "rlhf_plug.contracts", "rlhf_plug.stage", "rlhf_plug.data",
                  "rlhf_plug.models", "rlhf_plug.recipe", "rlhf_plug.errors", "rlhf_plug.rewards", "rlhf_plug.report")


def type_namespace() -> dict:
    """What the TYPE_CHECKING blocks import, so the string annotations resolve."""
    from pluggy import HookRelay
    from pydantic import BaseModel
    from rich.console import Console

    from rlhf_plug.recipe import Recipe
    from rlhf_plug.registry import Registries
    from rlhf_plug.report import ReportContext, StageOutput
    from rlhf_plug.stage import StageContext

    stage = importlib.import_module("rlhf_plug.stage")
    return {**vars(stage), **vars(contracts), **vars(hookspecs), "Recipe": Recipe, "ReportContext": ReportContext,
            "StageOutput": StageOutput, "StageContext": StageContext, "HookRelay": HookRelay, "Console": Console,
            "Registries": Registries, "BaseModel": BaseModel, "torch": importlib.import_module("torch")}


HOOKS = [f for name, f in vars(hookspecs).items() if name.startswith("rlhf_") and callable(f)]


@pytest.mark.parametrize("hook", HOOKS, ids=lambda f: f.__name__)
def test_every_hook_spec_is_typed(hook):
    signature = inspect.signature(hook)
    assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values()), hook.__name__
    assert signature.return_annotation is not inspect.Signature.empty
    hints = typing.get_type_hints(hook, globalns=type_namespace())
    assert set(hints) == {*signature.parameters, "return"}
    for name in signature.parameters:
        assert f":param {name}:" in hook.__doc__, f"{hook.__name__} documents {name}"


def test_stage_context_fields_are_typed():
    from rlhf_plug.stage import StageContext

    hints = typing.get_type_hints(StageContext, globalns=type_namespace())
    assert all(hints[f.name] is not typing.Any for f in dataclasses.fields(StageContext)), hints


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_modules_declare_their_names(name):
    module = importlib.import_module(name)
    assert module.__all__, name
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"


def test_the_protocols_resolve():
    for name in contracts.__all__:
        obj = getattr(contracts, name)
        if isinstance(obj, type) and issubclass(obj, typing.Protocol):
            for method in (m for m in vars(obj).values() if inspect.isfunction(m)):
                typing.get_type_hints(method, globalns=type_namespace())


def test_default_components_follow_their_contracts(registries, tmp_path):
    """Every default stage class has check and run; every data source built has describe and load; every
    loss and KL controller built with its defaults has the documented shape."""
    for component in registries["stage"].items.values():
        assert callable(getattr(component.factory, "check", None)) and callable(getattr(component.factory, "run", None))
    built = registries.get("data_source", "builtin").factory(name="demos")
    assert isinstance(built, contracts.DataSource)
    for component in registries["kl_controller"].items.values():
        controller = component.factory()
        assert isinstance(controller.value, float) and callable(controller.update) and callable(controller.state_dict)
