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
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    candidate = recipes_dir() / f"{stem}.yaml"
    if path.parent == Path(".") and candidate.is_file():
        return candidate
    names = ", ".join(p.stem for p in bundled_recipes())
    raise RecipeError(f"{name_or_path}: recipe file not found (bundled recipes: {names})")


def describe(path: Path) -> tuple[str, str, str]:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    stages = " -> ".join(next(iter(s)) for s in data.get("stages", []) if isinstance(s, dict) and s)
    return str(data.get("name", path.stem)), stages, str(data.get("description", "")).strip().split("\n")[0]
