"""The run report: ``runs/<recipe>/report.md`` and its plots in ``runs/<recipe>/report/``.

Written at the end of ``rlhf-plug run`` and by ``rlhf-plug report RUN_DIR``.
The report is built from what the run folder holds: each stage's results
table, then the sections plugins contribute for it through the
``rlhf_report_sections`` hook (the default plugins add training curves, reward
distributions, win-rates, the helpful/honest/harmless table and sample
answers), then what is needed to reproduce the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhf_plug.errors import PluginError
from rlhf_plug.files import atomic_path, remove_tree, replace_dir
from rlhf_plug.preemption import sigterm_deferred
from rlhf_plug.report.load import RunOutput, StageOutput, load_run

REPORT_FILE = "report.md"
IMAGES_DIR = "report"

__all__ = ["IMAGES_DIR", "REPORT_FILE", "ReportContext", "RunOutput", "StageOutput", "load_run", "write_report"]


@dataclass
class ReportContext:
    """What a ``rlhf_report_sections`` implementation gets besides the stage."""

    run: RunOutput
    image_dir: Path  # a temporary folder, renamed to runs/<recipe>/report/ once the report is complete

    def image(self, filename: str, alt: str) -> tuple[Path, str]:
        """Where to save a PNG named ``filename``, and the markdown that shows it in report.md."""
        self.image_dir.mkdir(parents=True, exist_ok=True)
        return self.image_dir / filename, f"![{alt}]({IMAGES_DIR}/{filename})"


def write_report(run_dir: str | Path, pm=None) -> Path:
    """Write ``report.md`` and its PNGs for the run in ``run_dir``; returns the report's path.

    :param pm: the plugin manager whose ``rlhf_report_sections`` hooks add
        sections; by default the default plugins plus installed entry points.
    """
    run = load_run(run_dir)
    if pm is None:
        from rlhf_plug.plugins import get_plugin_manager

        pm = get_plugin_manager()
    partial = run.path / f".{IMAGES_DIR}.partial"
    remove_tree(partial)
    try:
        text = render(run, pm, ReportContext(run, partial))
        # The text is written first: if that fails, the old report and its plots stay as they were.
        # A SIGTERM waits until text and plots are both in place (or both as they were).
        with sigterm_deferred(), atomic_path(run.path / REPORT_FILE) as text_tmp:
            text_tmp.write_text(text, encoding="utf-8")
            replace_dir(partial, run.path / IMAGES_DIR)
    finally:
        remove_tree(partial)
    return run.path / REPORT_FILE


def render(run: RunOutput, pm, context: ReportContext) -> str:
    from rlhf_plug.report import sections
    from rlhf_plug.report.runinfo import now

    from rlhf_plug.report.verdict import verdict

    parts = [sections.header(run, now()), verdict(run)]
    for index, stage in enumerate(run.stages, 1):
        parts += [sections.stage_heading(index, stage), "### Results\n\n" + sections.stage_results(stage)]
        parts += [f"### {title}\n\n{body.strip()}" for title, body in plugin_sections(pm, stage, context)]
    parts.append(sections.reproduce(run))
    return "\n\n".join(parts) + "\n"


def plugin_sections(pm, stage: StageOutput, context: ReportContext) -> list[tuple[str, str]]:
    """Call each ``rlhf_report_sections`` implementation in registration order; a bad one is named in the error."""
    out = []
    for impl in pm.hook.rlhf_report_sections.get_hookimpls():
        kwargs = {"stage": stage, "report": context}
        try:
            sections = impl.function(**{name: kwargs[name] for name in impl.argnames})
        except Exception as exc:
            raise PluginError(
                f"plugin '{impl.plugin_name}' failed to write report sections for stage '{stage.name}': {type(exc).__name__}: {exc}"
            ) from exc
        for section in sections or []:
            if not (isinstance(section, (tuple, list)) and len(section) == 2 and all(isinstance(s, str) for s in section)):
                raise PluginError(
                    f"plugin '{impl.plugin_name}': rlhf_report_sections must return (title, markdown) pairs, got {section!r:.80}"
                )
            out.append(tuple(section))
    return out
