"""Bundled recipes (shipped as the ``rlhf_plug_recipes`` package)."""

from __future__ import annotations

from pathlib import Path

from rlhf_plug.errors import RecipeError


def recipes_dir() -> Path:
    import rlhf_plug_recipes

    return Path(rlhf_plug_recipes.__file__).parent


def bundled_recipes() -> list[Path]:
    return sorted(recipes_dir().glob("*.yaml"))


def find_recipe(name_or_path: str) -> Path:
    """A path to an existing file, or the name of a bundled recipe (with or without ``.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir():
        raise RecipeError(f"{path}: is a folder, not a recipe file")
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    candidate = recipes_dir() / f"{stem}.yaml"
    if path.parent == Path(".") and candidate.is_file():
        return candidate
    names = ", ".join(p.stem for p in bundled_recipes())
    raise RecipeError(f"{name_or_path}: recipe file not found (bundled recipes: {names})")


def find_bundled(name: str) -> Path:
    """A bundled recipe by name (a one-line error listing the names otherwise)."""
    candidate = recipes_dir() / f"{name.removesuffix('.yaml')}.yaml"
    if candidate.is_file() and "/" not in name:
        return candidate
    names = ", ".join(p.stem for p in bundled_recipes())
    raise RecipeError(f"{name}: no bundled recipe of that name (bundled recipes: {names})")


def copy_recipe(name: str, dest: str) -> Path:
    """Copy a bundled recipe to ``dest`` (a file, or a folder to put NAME.yaml in); never overwrite."""
    import shutil

    source = find_bundled(name)
    target = Path(dest)
    if target.is_dir():
        target = target / source.name
    if target.exists():
        raise RecipeError(f"{target}: already exists; choose another destination")
    if not target.parent.is_dir():
        raise RecipeError(f"{target.parent}: no such folder")
    shutil.copyfile(source, target)
    return target


def describe(path: Path) -> tuple[str, str, str]:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    stages = " -> ".join(next(iter(s)) for s in data.get("stages", []) if isinstance(s, dict) and s)
    return str(data.get("name", path.stem)), stages, str(data.get("description", "")).strip().split("\n")[0]
