"""Read a finished run folder ``runs/<recipe>/``: its stages, their metrics and results, and ``run.json``.

Only light imports here (json, yaml): ``rlhf-plug report`` on a missing folder
fails before matplotlib is imported.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rlhf_plug.data import parse_jsonl
from rlhf_plug.errors import UserError
from rlhf_plug.report.markdown import is_number
from rlhf_plug.run_folder import METRICS_FILE, RESULTS_FILE

RUN_INFO_FILE = "run.json"
RECIPE_FILE = "recipe.yaml"
TABLES_DIR = "samples"  # evaluation tables written by a stage: samples/<table>-step-NNNNNN.jsonl


@dataclass
class StageOutput:
    """What one completed stage left in ``runs/<recipe>/<stage>/``."""

    name: str
    kind: str | None  # the stage type (``sft``, ``ppo``, ...), None when no recipe says
    path: Path
    results: dict
    metrics: list[dict]  # the records of metrics.jsonl, in file order
    recipe_text: str | None

    def records(self, split: str) -> list[dict]:
        """Records of one split (``train`` or ``eval``); a step logged twice keeps its last record."""
        by_step = {r.get("step"): r for r in self.metrics if r.get("split") == split}
        return [by_step[s] for s in sorted(by_step, key=lambda s: (s is None, s))]

    def keys(self, split: str) -> set[str]:
        return {k for r in self.records(split) for k in r}

    def series(self, key: str, split: str = "train") -> tuple[list[int], list[float]]:
        """Steps and values of ``key`` in ``split`` (records without it are skipped)."""
        pairs = [(r["step"], r[key]) for r in self.records(split) if is_number(r.get(key)) and is_number(r.get("step"))]
        return [p[0] for p in pairs], [float(p[1]) for p in pairs]

    def final_eval(self) -> dict[str, float]:
        """The last held-out evaluation: ``eval_<key>_after`` from results.json, else the last eval record."""
        after = {k[len("eval_"):-len("_after")]: v for k, v in self.results.items() if k.startswith("eval_") and k.endswith("_after")}
        if after:
            return after
        evals = self.records("eval")
        return {k: v for k, v in evals[-1].items() if k not in ("step", "time", "split")} if evals else {}

    def latest_table(self, table: str) -> tuple[int, Path, list[dict]] | None:
        """The newest ``samples/<table>-step-N.jsonl``: (step, path, rows), or None."""
        pattern = re.compile(rf"^{re.escape(table)}-step-(\d+)\.jsonl$")
        found = [(int(m.group(1)), p) for p in sorted((self.path / TABLES_DIR).glob("*.jsonl")) if (m := pattern.match(p.name))]
        if not found:
            return None
        step, path = max(found)
        return step, path, read_jsonl(path)


@dataclass
class RunOutput:
    """A run folder: its completed stages in recipe order, ``run.json`` if recorded, and the recipe."""

    path: Path
    stages: list[StageOutput]
    info: dict | None  # run.json, or None for runs made before it existed
    recipe_text: str  # the resolved recipe of the most recently finished stage
    recipe: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.recipe.get("name") or self.path.name)


def load_run(path: str | Path) -> RunOutput:
    """Read ``path`` (``runs/<recipe>``); a missing folder or one without completed stages is a UserError."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such run folder (expected runs/<recipe>/ as written by `rlhf-plug run`)")
    stage_dirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / RESULTS_FILE).is_file()]
    if not stage_dirs:
        raise UserError(f"{path}: not a run folder: no completed stage (no <stage>/{RESULTS_FILE} inside)")
    info = _read_json(path / RUN_INFO_FILE) if (path / RUN_INFO_FILE).is_file() else None
    stage_dirs = _this_runs_stages(stage_dirs, info)
    if not stage_dirs:
        raise UserError(f"{path}: no stage completed in the run recorded in {RUN_INFO_FILE}")
    recipe_text, recipe = _run_recipe(path, stage_dirs)
    kinds = {**_kinds_from_info(info), **_kinds_from_recipe(recipe)}
    order = list(kinds)
    stage_dirs.sort(key=lambda p: (order.index(p.name) if p.name in order else len(order), (p / RESULTS_FILE).stat().st_mtime))
    stages = [_load_stage(p, kinds.get(p.name)) for p in stage_dirs]
    return RunOutput(path, stages, info, recipe_text or "", recipe)


def _run_recipe(path: Path, stage_dirs: list[Path]) -> tuple[str | None, dict]:
    """The recipe that made the run: of the stages' recipe.yaml files, prefer one named like the run folder,
    then one listing the most of the stages present, then the newest."""
    names = {p.name for p in stage_dirs}
    candidates = []
    for folder in stage_dirs:
        text = _read_text(folder / RECIPE_FILE)
        recipe = _parse_yaml(folder / RECIPE_FILE, text)
        rank = (recipe.get("name") == path.name, len(names & set(_kinds_from_recipe(recipe))), (folder / RESULTS_FILE).stat().st_mtime)
        candidates.append((rank, text, recipe))
    _, text, recipe = max(candidates, key=lambda c: c[0])
    return text, recipe


def _this_runs_stages(stage_dirs: list[Path], info: dict | None) -> list[Path]:
    """After a finished run, only the stages it completed: a stage that failed may have left an older run's folder."""
    if not isinstance(info, dict) or info.get("status") == "running" or not isinstance(info.get("completed"), list):
        return stage_dirs
    return [p for p in stage_dirs if p.name in info["completed"]]


def _load_stage(path: Path, kind: str | None) -> StageOutput:
    results = _read_json(path / RESULTS_FILE)
    if not isinstance(results, dict):
        raise UserError(f"{path / RESULTS_FILE}: expected a JSON object of results")
    metrics_file = path / METRICS_FILE
    metrics = read_jsonl(metrics_file) if metrics_file.is_file() else []
    recipe_file = path / RECIPE_FILE
    return StageOutput(path.name, kind, path, results, metrics, _read_text(recipe_file) if recipe_file.is_file() else None)


def stage_entries(recipe: dict) -> list[tuple[str, str, dict]]:
    """``(folder name, kind, entry)`` of each well-formed ``stages:`` entry (``{kind: config}``) of a recipe."""
    out = []
    for entry in recipe.get("stages") or []:
        if isinstance(entry, dict) and len(entry) == 1:
            kind, config = next(iter(entry.items()))
            name = config.get("name") if isinstance(config, dict) else None
            out.append((str(name or kind), str(kind), entry))
    return out


def stage_entry(recipe: dict, name: str) -> dict | None:
    """The ``stages:`` entry (``{kind: config}``) of the stage whose folder is ``name``."""
    return next((entry for folder, _, entry in stage_entries(recipe) if folder == name), None)


def parse_recipe(stage: StageOutput) -> dict:
    return _parse_yaml(stage.path / RECIPE_FILE, stage.recipe_text)


def _kinds_from_recipe(recipe: dict) -> dict[str, str]:
    return {folder: kind for folder, kind, _ in stage_entries(recipe)}


def _kinds_from_info(info: dict | None) -> dict[str, str]:
    stages = (info or {}).get("stages") or []
    return {s["name"]: s["kind"] for s in stages if isinstance(s, dict) and "name" in s and "kind" in s}


def read_jsonl(path: Path) -> list[dict]:
    return parse_jsonl(_read_text(path).splitlines(), str(path))


def _read_json(path: Path):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None


def _parse_yaml(path: Path, text: str | None) -> dict:
    if not text:
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return data if isinstance(data, dict) else {}


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read: {exc.strerror}") from None
