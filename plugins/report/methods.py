"""The report's method comparison: one row per policy stage of the run (ppo, dpo, grpo, rloo, ...).

Shown once, after the last policy stage, when a run has two or more of them. A policy stage is
one whose held-out evaluation logged ``win_rate/<judge>`` (:mod:`rlhf_plug.policy.held_out`);
every one was judged on the same held-out prompts against the same reference (the SFT model).
The *gold* judge is the scorer named ``gold``, else the first evaluation-only judge.
"""

from __future__ import annotations

from rlhf_plug import hookimpl
from rlhf_plug.report.markdown import code, is_number, number, table

from rlhf_plug_plugins.report.ppo import win_rate_cell

GOLD = "gold"
LEARNED_RM = "learned_rm"


def policy_stages(run) -> list:
    return [s for s in run.stages if any(k.startswith("win_rate/") for k in s.final_eval())]


@hookimpl
def rlhf_report_sections(stage, report):
    stages = policy_stages(report.run)
    if len(stages) < 2 or stage.name != stages[-1].name:
        return None
    return [("Method comparison", comparison(stages, report))]


def gold_judge(stage) -> str | None:
    final = stage.final_eval()
    names = [k[len("win_rate/"):] for k in final if k.startswith("win_rate/")]
    if GOLD in names:
        return GOLD
    trained = {k[len("reward/"):] for k in stage.keys("train") if k.startswith("reward/")}
    trained |= {k[len("rewards/"):-len("/mean")] for k in stage.keys("train") if k.startswith("rewards/") and k.endswith("/mean")}
    judges = [n for n in names if n not in trained]
    return judges[0] if judges else None


def comparison(stages: list, report) -> str:
    judges = _shared_judges(stages)
    headers = ["stage", "method", "gold win-rate over SFT (±2 s.e.)", "ties", "gold reward", f"{LEARNED_RM} mean",
               *(f"{j} mean" for j in judges), "KL to SFT", "wall time (s)", "peak memory (MB)"]
    rows, points = [], {}
    for s in stages:
        final, gold = s.final_eval(), gold_judge(s)
        rows.append([
            code(s.name), (s.kind or "?").upper(), win_rate_cell(final, gold), _get(final, f"tie_rate/{gold}"),
            _get(final, f"reward/{gold}"), _get(final, f"reward/{LEARNED_RM}"), *(_get(final, f"reward/{j}") for j in judges),
            _get(final, "kl"), _get(s.results, "stage_seconds"), _get(s.results, "peak_memory_mb"),
        ])
        if is_number(final.get(f"reward/{gold}")) and is_number(final.get("kl")):
            points[s.name] = (float(final["kl"]), float(final[f"reward/{gold}"]))
    reference = _reference_gold(stages)
    text = (
        "Each policy stage started from the same SFT model and was judged on the same held-out prompts, one sampled "
        "answer per prompt from the policy and one from the SFT model (the same SFT answers for every stage). "
        "Win-rate: how often the policy's answer scores higher with the gold judge (ties count half; the share of "
        "ties is shown; ± is two standard errors over the held-out prompts). KL: the policy's summed per-token log-ratio to the SFT model on its own answers. "
        f"Rewards are held-out means; `{LEARNED_RM}` is the reward model of the run. "
        f"SFT's own gold reward on these prompts: {number(reference)}.\n\n"
        + table(headers, rows, right=tuple(range(2, len(headers))))
    )
    if points:
        image, markdown = report.image("method-comparison.png", "held-out gold reward against KL to SFT, one point per method")
        scatter_png(image, points, reference)
        text = f"{markdown}\n\n{text}"
    return text


def _shared_judges(stages: list) -> list[str]:
    """Judges (besides gold and the learned RM) that every stage scored, in the first stage's order."""
    names = [[k[len("win_rate/"):] for k in s.final_eval() if k.startswith("win_rate/")] for s in stages]
    return [n for n in names[0] if n not in (GOLD, LEARNED_RM) and all(n in other for other in names[1:])]


def _reference_gold(stages: list):
    for s in stages:
        value = s.final_eval().get(f"reference_reward/{gold_judge(s)}")
        if is_number(value):
            return value
    return None


def _get(mapping: dict, key: str):
    value = mapping.get(key)
    return value if is_number(value) else ""


def scatter_png(path, points: dict[str, tuple[float, float]], reference) -> None:
    """Gold reward (y) against KL to SFT (x), a labelled point per method; SFT at KL 0."""
    from rlhf_plug.report.plots import _figure, _save

    fig, (ax,) = _figure(1, 1, 6.0, 4.0)
    for name, (kl, gold) in points.items():
        ax.scatter([kl], [gold], s=40)
        ax.annotate(name, (kl, gold), textcoords="offset points", xytext=(5, 4), fontsize=9)
    if is_number(reference):
        ax.scatter([0.0], [reference], marker="x", color="black", s=40)
        ax.annotate("SFT", (0.0, reference), textcoords="offset points", xytext=(5, -10), fontsize=9)
    ax.set_xlabel("KL to the SFT model (held-out, nats per answer)")
    ax.set_ylabel("held-out gold reward (mean)")
    ax.set_title("Gold reward against KL, one point per method")
    ax.grid(alpha=0.3)
    _save(fig, path)
