"""Report sections comparing a policy with its reference (PPO, DPO, GRPO, RLOO... vs SFT) on held-out prompts.

Driven by what the stage wrote, not by its type: any stage whose held-out
evaluation logs ``win_rate/<judge>`` (the ``win_rate`` evaluator) gets the
win-rate and helpful/honest/harmless sections, and any stage with
``samples/samples-step-N.jsonl`` tables (the ``samples`` evaluator) gets the
reward distributions and the sample answers.
"""

from __future__ import annotations

from rlhf_plug import hookimpl
from rlhf_plug.report.markdown import change, clip, code, is_number, number, table

HHH = ("helpful", "honest", "harmless")
SAMPLE_ROWS = 12
NO_HHH = (
    "_Helpful, honest and harmless are not scored separately: the recipe has no judges named `helpful`, `honest` and "
    "`harmless` (see docs/running.md, \"The report\")._"
)
TEXT_LIMIT = 300  # characters of a prompt or answer shown in the samples table


def method(stage) -> str:
    """How the report names the stage's policy: its kind in capitals (PPO, DPO, GRPO, RLOO), else its name."""
    return stage.kind.upper() if stage.kind else stage.name


@hookimpl
def rlhf_report_sections(stage, report):
    final = stage.final_eval()
    samples = stage.latest_table("samples")
    name = method(stage)
    sections = []
    if samples is not None and scorers_in(samples[2]):
        sections.append((f"Reward distributions: SFT vs {name}", distributions(stage, samples, report)))
    if any(k.startswith("win_rate/") for k in final):
        hhh_section = hhh(stage, final)
        note = "" if hhh_section else "\n\n" + NO_HHH
        sections += [(f"Win-rate of {name} over SFT", win_rates(stage, final, report) + note), hhh_section]
    if samples is not None:
        sections.append(("Samples", sample_table(stage, samples)))
    return [s for s in sections if s is not None]


def scorers_in(rows: list[dict]) -> list[str]:
    """Reward components and judges with a score for both answers: ``reference_<name>`` and ``policy_<name>``."""
    keys = rows[0].keys() if rows else ()
    return [k[len("policy_"):] for k in keys if k.startswith("policy_") and f"reference_{k[len('policy_'):]}" in keys]


def roles(stage, names) -> dict[str, str]:
    """Each name's role: a reward component is logged per training step as ``reward/<name>``; a judge only in evaluation."""
    trained = {k[len("reward/"):] for k in stage.keys("train") if k.startswith("reward/")}
    return {n: "reward (trained on)" if n in trained else "judge (evaluation only)" for n in names}


def distributions(stage, samples, report) -> str:
    from rlhf_plug.report.plots import strips_png

    step, path, rows = samples
    names = scorers_in(rows)
    policy = method(stage)
    groups = [(name, {"SFT (reference)": _scores(rows, f"reference_{name}"), f"{policy} (policy)": _scores(rows, f"policy_{name}")})
              for name in names]
    image, markdown = report.image(f"{stage.name}-reward-distributions.png", f"reward distributions, SFT vs {policy}")
    strips_png(image, f"{stage.name}: held-out rewards at step {step} ({len(rows)} prompts)", groups)
    more = "; raise `rows` of the `samples` evaluator to plot more" if len(rows) < stage.results.get("eval_prompts", 0) else ""
    return (
        f"{markdown}\n\nEach dot is one held-out prompt's answer scored by that reward or judge; the bar is the mean. "
        f"From `{stage.name}/samples/{path.name}` ({len(rows)} rows{more})."
    )


def win_rate_cell(final: dict, judge) -> str:
    """``0.7333 ± 0.10``: the win-rate with two standard errors over the held-out prompts, when logged."""
    rate, noise = final.get(f"win_rate/{judge}"), final.get(f"win_rate_2se/{judge}")
    if not is_number(rate):
        return ""
    return f"{number(rate)} ± {float(noise):.2f}" if is_number(noise) else number(rate)


def win_rates(stage, final: dict, report) -> str:
    from rlhf_plug.report.plots import bars_png

    names = [k[len("win_rate/"):] for k in final if k.startswith("win_rate/")]
    role = roles(stage, names)
    rows = [(code(n), role[n], final.get(f"reference_reward/{n}"), final.get(f"reward/{n}"),
             change(final.get(f"reference_reward/{n}"), final.get(f"reward/{n}")), win_rate_cell(final, n),
             *_ties(final, n)) for n in names]
    if sum(r.startswith("reward") for r in role.values()) > 1 and "win_rate" in final:
        rows.append(("weighted training reward", "reward (sum)", final.get("reference_reward"), final.get("reward"),
                     change(final.get("reference_reward"), final.get("reward")), final["win_rate"], "", ""))
    policy = method(stage)
    image, markdown = report.image(f"{stage.name}-win-rate.png", f"win-rate of {policy} over SFT")
    bars = {f"{n} ({role[n].split(' ')[0]})": final[f"win_rate/{n}"] for n in names}
    prompts = stage.results.get("eval_prompts")
    where = f"{prompts} held-out prompts" if prompts else "the held-out prompts"
    bars_png(image, f"Win-rate of {policy} over SFT on {where}", bars, "win-rate (ties count half)", reference=(0.5, "no difference"))
    headers = ("judged by", "role", "SFT mean", f"{policy} mean", "change", f"{policy} win-rate", "ties", "win-rate without ties")
    return (
        f"{markdown}\n\nOn {where}, one answer each from the SFT model and the {policy} policy, scored by every reward "
        f"component and judge of the stage: the win-rate is how often the {policy} answer scores higher (ties count half; "
        "0.5 = no difference). Where both answers score the same (identical answers always do) nothing can be won, "
        "so the share of ties and the win-rate over the other prompts are shown too; ± is two standard errors over the prompts. "
        f"From the final evaluation in `{stage.name}/results.json`.\n\n"
        + table(headers, rows, right=(2, 3, 4, 5, 6, 7))
    )


def _ties(final: dict, name: str) -> tuple:
    """(tie share, win-rate over the prompts that did not tie); blanks when the run did not log ties."""
    ties = final.get(f"tie_rate/{name}")
    if not is_number(ties):
        return "", ""
    decisive = (final[f"win_rate/{name}"] - ties / 2) / (1 - ties) if ties < 1 else None
    return ties, "" if decisive is None else decisive


def hhh(stage, final: dict) -> tuple[str, str] | None:
    present = [n for n in HHH if f"win_rate/{n}" in final]
    if not present:
        return None
    rows = [(n, final.get(f"reference_reward/{n}"), final.get(f"reward/{n}"),
             change(final.get(f"reference_reward/{n}"), final.get(f"reward/{n}")), final[f"win_rate/{n}"]) for n in present]
    rows += [(n, "not in recipe", "", "", "") for n in HHH if n not in present]
    return ("Helpful, honest, harmless", "Each criterion scored by its own judge, on the same held-out answers.\n\n"
            + table(("criterion", "SFT mean", f"{method(stage)} mean", "change", f"{method(stage)} win-rate"), rows,
                    right=(1, 2, 3, 4)))


def sample_table(stage, samples) -> str:
    step, path, rows = samples
    names = scorers_in(rows)
    policy = method(stage)
    headers = ["#", "prompt", "SFT answer", f"{policy} answer", *(f"{n}: SFT → {policy}" for n in names)]
    body = [
        [i, *(clip(str(row.get(k, "")), TEXT_LIMIT) for k in ("prompt", "reference", "policy")),
         *(f"{number(row.get(f'reference_{n}'))} → {number(row.get(f'policy_{n}'))}" for n in names)]
        for i, row in enumerate(rows[:SAMPLE_ROWS], 1)
    ]
    shown = f"the first {SAMPLE_ROWS} of {len(rows)}" if len(rows) > SAMPLE_ROWS else f"all {len(rows)}"
    return f"Held-out prompts at step {step}, {shown} rows of `{stage.name}/samples/{path.name}`.\n\n" + table(headers, body)


def _scores(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if is_number(r.get(key))]
