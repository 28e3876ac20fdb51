"""Recipes: YAML files that compose plugins into a run.

Loading is strict: unknown keys and wrong types are errors that name the file,
the line and the key. Stage sections are validated by the stage that owns them,
component ``with:`` sections by the component.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from rlhf_plug.errors import PluginError, RecipeError
from rlhf_plug.validation import KeyPathError, validate_model

Quantization = Literal["auto", "4bit", "none"]
ReportTo = str | list[str]  # tracker names; checked by each stage against its library (rlhf_plug.tracking)
DEFAULT_MODEL = "smollm2-135m-instruct"


class RecipeRelative:
    """Marker: a component option that is a path, resolved from the recipe file's folder."""


#: Annotate a component's path option with this (``def __init__(self, path: RecipePath)``): a
#: relative path written in a recipe file is taken from the folder of that file (as docker
#: compose does); one given with ``--set`` is taken from the working directory.
RecipePath = Annotated[str, RecipeRelative()]


class Strict(BaseModel):
    # allow_inf_nan: 1e400 reads as inf, and a learning rate of inf or .nan would train a NaN model
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class ComponentRef(Strict):
    """``{use: name, with: {...}}``: pick a registered component and configure it."""

    use: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class DataRef(ComponentRef):
    """A data source plus how to read it."""

    columns: dict[str, str] = Field(default_factory=dict, description="canonical column -> column in the data")
    format: str = Field("auto", description="auto, or a format name from rlhf_plug.data.FORMATS")
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    limit: int | None = Field(None, gt=0, description="use at most this many rows (before ranking expansion)")
    roles: Literal["sharegpt"] | dict[str, str] | None = Field(
        None, description="rename message roles: sharegpt (human -> user; gpt, bot, model -> assistant), "
        "or a mapping such as {human: user}",
    )


#: Names that become folders (the recipe's, a stage's): one plain path component, never ``..`` or ``/``.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class Recipe(Strict):
    """The top level of a recipe file."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    model: str = DEFAULT_MODEL
    quantization: Quantization = "auto"
    seed: int = 42
    output_dir: str = "runs"
    report_to: ReportTo = Field(
        "none",
        description="experiment trackers for every stage, as TRL's report_to: none, all, tensorboard, wandb, "
        "trackio, mlflow, ... or a list; a stage's own `report_to:` overrides it (rlhf_plug.tracking)",
    )
    plugins: list[str] = Field(default_factory=list)
    datasets: dict[str, DataRef] = Field(
        default_factory=dict,
        description="named data sources; a stage's `data: {use: NAME}` takes one (its own keys win), so one "
        "`--set datasets.NAME=...` changes every stage that reads it",
    )
    stages: list[dict[str, Any]] = Field(min_length=1)


@dataclass
class StageSpec:
    """One validated stage entry of a recipe."""

    kind: str  # registered stage name, e.g. "sft"
    name: str  # output folder name, unique in the recipe
    config: Any  # the stage's validated config model
    path: tuple  # key path in the recipe, for error messages
    index: int


@dataclass
class RecipeSource:
    """Where a recipe came from, for error messages."""

    file: str
    lines: dict[tuple, int] = field(default_factory=dict)
    overrides: dict[tuple, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # one-line notes about how overrides were applied

    def locate(self, path: tuple) -> str:
        """``file:line`` (or ``--set k=v``) for the deepest known prefix of ``path``."""
        for end in range(len(path), -1, -1):
            prefix = tuple(path[:end])
            if prefix in self.overrides:
                return f"--set {shown(self.overrides[prefix])}"
            if prefix in self.lines:
                return f"{self.file}:{self.lines[prefix]}"
        return self.file

    def locate_section(self, path: tuple) -> str:
        """Like :meth:`locate`, but a ``--set`` anywhere inside the section at ``path`` is named instead."""
        inside = [item for prefix, item in self.overrides.items() if tuple(prefix[: len(path)]) == tuple(path)]
        return f"--set {shown(inside[-1])}" if inside else self.locate(path)

    def from_override(self, path: tuple) -> bool:
        return any(tuple(path[:end]) in self.overrides for end in range(len(path), -1, -1))

    def resolve_path(self, value: str, path: tuple) -> str:
        """A recipe-relative path (see :data:`RecipePath`) as the run should open it."""
        if Path(value).expanduser().is_absolute():
            return value
        if self.from_override(path) or not Path(self.file).is_file():
            return os.path.abspath(Path(value).expanduser())  # from the working directory, fixed now
        return str(Path(self.file).parent / value)

    def error(self, path: tuple, message: str) -> RecipeError:
        return RecipeError(f"{self.locate(path)}: {dotted(path)}: {message}" if path else f"{self.file}: {message}")


@dataclass
class LoadedRecipe:
    recipe: Recipe
    stages: list[StageSpec]
    source: RecipeSource
    data: dict  # the resolved mapping (overrides applied), as written to runs/

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.name == name)


def dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------
# Reading YAML with line numbers
# --------------------------------------------------------------------------


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-5`` as a float (YAML 1.2), as users expect, and refuses aliases
    to mappings and lists: they are how a few hundred bytes expand to gigabytes (or recurse
    forever, ``x: &x [*x]``). Aliases to plain values stay allowed; a recipe shares data
    sources with its ``datasets:`` section instead."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and not isinstance(target, yaml.ScalarNode):
                raise yaml.composer.ComposerError(
                    None, None,
                    f"alias *{event.anchor} repeats a mapping or list; recipes allow aliases to plain values only",
                    event.start_mark,
                )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        """A key written twice in one mapping is an error naming both lines: PyYAML would keep the last one
        silently, so a second ``args:`` would drop every setting of the first (merge keys ``<<`` may repeat)."""
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key_node.start_mark.line + 1
                if key_node.value in seen:
                    first = seen[key_node.value]
                    where = f"twice on line {line}" if first == line else f"on lines {first} and {line}"
                    raise yaml.constructor.ConstructorError(
                        None, None,
                        f"key '{shown(key_node.value)}' appears {where} in one mapping; YAML would keep only the "
                        "second, so write it once",
                        key_node.start_mark,
                    )
                seen[key_node.value] = line
        return super().construct_mapping(node, deep)


def shown(text: str, limit: int = 160) -> str:
    """``text`` cut to ``limit`` characters for an error line (a 5 MB ``--set`` value is not echoed whole)."""
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text):,} characters)"


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """Parse one ``--set`` value as YAML (numbers, booleans, lists...); text that is not valid YAML is an error."""
    try:
        value = yaml.load(text, Loader=RecipeLoader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"invalid YAML value {shown(text)!r}: {problem} (quote text that is meant as a string)") from None
    if _mapping_without_spaces(text, value):
        raise RecipeError(
            f"invalid YAML mapping {shown(text)!r}: YAML needs a space after each colon (e.g. '{{r: 16}}'); "
            "quote the value if it is meant as text"
        )
    return value


#: ``key:value`` with no space after the colon: YAML reads it as one string (``r:16``), or inside
#: braces as a key with no value (``{r:16}``); either way, a mapping that was meant and lost.
_KEY_COLON_VALUE = re.compile(r"[A-Za-z_][\w-]*:(?![\s/\\:])")


def _mapping_without_spaces(text: str, value: Any) -> bool:
    if isinstance(value, str):
        return not text.lstrip().startswith(("'", '"')) and _KEY_COLON_VALUE.match(value) is not None
    if isinstance(value, dict):
        return any(v is None and isinstance(k, str) and _KEY_COLON_VALUE.match(k) for k, v in value.items())
    return False


def parse_assignment(item: str, flag: str) -> tuple[str, Any]:
    """A command-line ``KEY=VALUE``: the key and the value parsed as YAML; ``flag`` names the option in errors."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"{flag} {shown(item)}: expected KEY=VALUE")
    try:
        return key.strip(), parse_value(raw)
    except RecipeError as exc:
        raise RecipeError(f"{flag} {shown(item)}: {exc}") from None


def read_yaml(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Parse a YAML file safely; return the data and a key-path -> line map."""
    path = Path(path)
    if path.is_dir():
        raise RecipeError(f"{path}: is a folder, not a recipe file")
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise RecipeError(f"{path}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); a recipe is a YAML text file") from None
    try:
        node = yaml.compose(text, Loader=RecipeLoader)
        data = yaml.load(text, Loader=RecipeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RecipeError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    lines: dict[tuple, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: yaml.Node, path: tuple, lines: dict[tuple, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, key_node.value)
            lines[key_path] = key_node.start_mark.line + 1
            _collect_lines(value_node, key_path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _collect_lines(item, (*path, i), lines)


# --------------------------------------------------------------------------
# --set overrides
# --------------------------------------------------------------------------


def apply_overrides(data: dict, overrides: list[str], source: RecipeSource) -> dict:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML).

    The first part may name a stage (``sft.args.max_steps=5``) instead of
    spelling ``stages.0.sft.args.max_steps=5``.
    """
    data = copy.deepcopy(data)
    for item in overrides:
        key, value = parse_assignment(item, "--set")
        path = _override_path(data, key.split("."))
        new_prefixes = [path[:end] for end in range(1, len(path) + 1) if not _has_path(data, path[:end])]
        _drop_options_of_replaced_component(data, path, value, item, source)
        _set_path(data, path, value, item)
        for prefix in [path, *new_prefixes]:
            source.overrides[prefix] = item
    return data


def _drop_options_of_replaced_component(data: dict, path: tuple, value: Any, item: str, source: RecipeSource) -> None:
    """``--set x.use=other``: the ``with:`` beside it belonged to the old component, so it goes (with a notice).

    A later ``--set x.with.k=v`` gives the new component its own options.
    """
    if path[-1] != "use" or not _has_path(data, path[:-1]):
        return
    parent = _get_path(data, path[:-1])
    if isinstance(parent, dict) and parent.get("use") != value and parent.get("with"):
        old = parent.pop("with")
        source.notices.append(
            f"--set {shown(item)}: dropped the options of '{parent.get('use')}' ({dotted(path[:-1])}.with: {old}); "
            f"give the new one its own with --set {item.partition('=')[0].strip()[: -len('.use')]}.with.KEY=VALUE"
        )


def _get_path(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


def _override_path(data: dict, parts: list[str]) -> tuple:
    stages = data.get("stages") if isinstance(data, dict) else None
    if parts[0] not in Recipe.model_fields and isinstance(stages, list):
        for i, entry in enumerate(stages):
            if isinstance(entry, dict) and len(entry) == 1:
                kind, cfg = next(iter(entry.items()))
                if parts[0] in (kind, (cfg or {}).get("name") if isinstance(cfg, dict) else None):
                    return ("stages", i, kind, *_indices(parts[1:]))
    return tuple(_indices(parts))


def _has_path(data: Any, path: tuple) -> bool:
    current = data
    for part in path:
        if isinstance(part, int) and isinstance(current, list) and part < len(current):
            current = current[part]
        elif isinstance(current, dict) and part in current:
            current = current[part]
        else:
            return False
    return True


def _indices(parts: list[str]) -> list:
    return [int(p) if p.isascii() and p.isdigit() else p for p in parts]


def _set_path(data: Any, path: tuple, value: Any, item: str) -> None:
    current = data
    for part in path[:-1]:
        if isinstance(part, int):
            if not isinstance(current, list) or part >= len(current):
                raise RecipeError(f"--set {shown(item)}: no list item {part} at '{part}'")
            current = current[part]
        else:
            if not isinstance(current, dict):
                raise RecipeError(f"--set {shown(item)}: '{part}' is not inside a mapping")
            current = current.setdefault(part, {})
            if current is None:
                current = {}
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(current, list) or last >= len(current):
            raise RecipeError(f"--set {shown(item)}: no list item {last}")
        current[last] = value
    elif isinstance(current, dict):
        current[last] = value
    else:
        raise RecipeError(f"--set {shown(item)}: '{last}' is not inside a mapping")


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def read_recipe(path: str | Path, overrides: list[str] = ()) -> tuple[dict, RecipeSource]:
    """Read a recipe file and apply ``--set`` overrides (no validation yet)."""
    data, lines = read_yaml(path)
    source = RecipeSource(str(path), lines)
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping with 'name' and 'stages'")
    return apply_overrides(data, list(overrides), source), source


def recipe_plugins(data: dict, source: RecipeSource) -> dict[str, str]:
    """The recipe's ``plugins:`` module names (checked before plugins load), each with where it is
    written (``recipe.yaml:3: plugins[0]``) for :func:`rlhf_plug.plugins.get_plugin_manager`'s errors."""
    plugins = data.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise source.error(("plugins",), "must be a list of module names")
    def where(i: int) -> str:
        path = ("plugins", i)
        return f"{source.locate_section(path[:1]) if source.from_override(path) else source.locate(path)}: {dotted(path)}"

    return {name: where(i) for i, name in enumerate(plugins)}


def load_recipe(path: str | Path, registries, overrides: list[str] = ()) -> LoadedRecipe:
    """Read, override and validate a recipe against the registered stages."""
    data, source = read_recipe(path, overrides)
    return validate_recipe(data, registries, source)


def validate_recipe(data: dict, registries, source: RecipeSource) -> LoadedRecipe:
    try:
        recipe = validate_model(Recipe, data)
        stages = [_validate_stage(entry, i, registries) for i, entry in enumerate(recipe.stages)]
        _check_unique_names(stages)
    except KeyPathError as exc:
        raise source.error(exc.path, exc.message) from None
    return LoadedRecipe(recipe, stages, source, data)


def _validate_stage(entry: dict, index: int, registries) -> StageSpec:
    path = ("stages", index)
    if len(entry) != 1:
        raise KeyPathError(path, f"each stage is a mapping with one key (the stage type), got {sorted(entry)}")
    kind, config = next(iter(entry.items()))
    try:
        component = registries.get("stage", kind)
    except PluginError as exc:
        raise KeyPathError((*path, kind), str(exc)) from None
    validated = component.validate(config or {}, (*path, kind))
    name = getattr(validated, "name", None) or kind
    return StageSpec(kind, name, validated, (*path, kind), index)


def _check_unique_names(stages: list[StageSpec]) -> None:
    seen: dict[str, StageSpec] = {}
    for stage in stages:
        first = seen.get(stage.name)
        if first is not None:
            raise KeyPathError(
                stage.path,
                f"stages {first.index} ({first.kind}) and {stage.index} ({stage.kind}) both write to '{stage.name}': "
                "give one a different 'name:'",
            )
        seen[stage.name] = stage


def to_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


__all__ = [
    "RecipePath",
    "ComponentRef",
    "DataRef",
    "LoadedRecipe",
    "Recipe",
    "RecipeSource",
    "StageSpec",
    "load_recipe",
]
