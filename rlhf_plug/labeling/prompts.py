"""Read the prompts to label from a data source given on the command line.

``--prompts`` takes a local file (``prompts.jsonl``), ``builtin:NAME``,
``hub:DATASET`` or any registered data source as a YAML mapping
(``{use: hub, with: {path: ..., split: test}}``). Sources are built through
the ``data_source`` registry, like a recipe's ``data:``.
"""

from __future__ import annotations

from typing import Any

from rlhf_plug.data import as_rows, convert_rows, prepare_rows
from rlhf_plug.errors import RecipeError
from rlhf_plug.labeling.components import build_component
from rlhf_plug.labeling.store import prompt_key

#: ``NAME:VALUE`` shorthands: data source -> the option VALUE fills.
SHORTHANDS = {"builtin": "name", "hub": "path", "file": "path"}
#: what a prompt source may contain (other columns are ignored).
PROMPT_FORMATS = ("prompt_only", "prompt_completion", "rankings")


def source_ref(spec: str) -> tuple[str, dict[str, Any]]:
    """The data source name and its options for a ``--prompts`` value."""
    text = spec.strip()
    if text.startswith("{"):
        return _mapping_ref(text)
    name, sep, value = text.partition(":")
    if sep and name in SHORTHANDS:
        return name, {SHORTHANDS[name]: value}
    return "file", {"path": text}


def _mapping_ref(text: str) -> tuple[str, dict[str, Any]]:
    from rlhf_plug.recipe import parse_value

    try:
        ref = parse_value(text)
    except RecipeError as exc:
        raise RecipeError(f"--prompts {text}: {exc}") from None
    if not isinstance(ref, dict) or not isinstance(ref.get("use"), str) or not isinstance(ref.get("with", {}), dict):
        raise RecipeError(f"--prompts {text}: expected a path, builtin:NAME, or a mapping {{use: SOURCE, with: {{...}}}}")
    extra = sorted(set(ref) - {"use", "with"})
    if extra:
        raise RecipeError(f"--prompts {text}: unknown key '{extra[0]}' (only use and with)")
    return ref["use"], dict(ref.get("with") or {})


def load_prompts(spec: str, registries, limit: int | None = None) -> tuple[list[Any], str]:
    """Distinct prompts of the source in order (the first ``limit`` of them), and its description."""
    name, options = source_ref(spec)
    source = build_component(registries, "data_source", name, options, ("--prompts", "--prompts with:"))
    where = source.describe()
    rows, fmt = prepare_rows(as_rows(source.load()), source=where, columns={}, fmt="auto", accept=PROMPT_FORMATS, limit=None)
    rows, _, _ = convert_rows(rows, fmt, PROMPT_FORMATS)
    prompts: dict[str, Any] = {}
    for row in rows:
        prompts.setdefault(prompt_key(row["prompt"]), row["prompt"])
    distinct = list(prompts.values())
    return (distinct[:limit] if limit else distinct), where
