"""Report section "Training curves": one PNG per stage with a small grid of metric-vs-step plots.

Which metrics are plotted depends on the stage type (``CURVES``); a stage type
not listed there gets its ``loss`` (and held-out ``eval_loss``) if it logs one.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_plug import hookimpl


@dataclass(frozen=True)
class Curve:
    """One subplot: training-step keys as lines, held-out keys as points, a baseline as a dashed line."""

    title: str
    ylabel: str
    train: tuple[str, ...] = ()  # "reward/*" means every train key starting with "reward/"
    eval: tuple[str, ...] = ()
    # (split, key, label): the key's last value in that split as a dashed line, e.g. the SFT baseline or a target
    baseline: tuple[str, str, str] | None = None
    chance: float | None = None
    smooth: bool = True  # False for values that are not noisy (a controller's state)
    nonnegative: bool = False
    if_all_zero: str | None = None  # said in the title when every value is 0, so a flat line is not read as a bug


LOSS = Curve("Loss", "loss", train=("loss",), eval=("eval_loss",))

CURVES: dict[str, list[Curve]] = {
    "sft": [Curve("SFT loss", "cross-entropy (nats/token)", train=("loss",), eval=("eval_loss",))],
    "reward": [
        Curve("Reward-model loss", "−log σ(r_chosen − r_rejected) (nats)", train=("loss",)),
        Curve("Pair accuracy", "fraction of pairs ranked right", train=("accuracy",), eval=("rm_accuracy",),
              chance=0.5, nonnegative=True),
    ],
    "ppo": [
        Curve("Reward", "reward per response", train=("reward", "reward/*"), eval=("reward",),
              baseline=("eval", "reference_reward", "SFT model, held-out")),
        Curve("KL to the SFT model", "KL per response (nats)", train=("kl",), eval=("kl",),
              baseline=("train", "kl_target", "KL controller's target")),
        Curve("KL coefficient β", "β", train=("beta",), smooth=False),
        Curve("Policy entropy", "entropy (nats/token)", train=("entropy",)),
        Curve("Clip fraction", "fraction of tokens clipped", train=("clipfrac",), nonnegative=True,
              if_all_zero="always 0: one update per rollout, so the ratio is 1"),
        Curve("Sampler vs trainer log-prob gap", "|log p_sampler − log π_old| (nats/token)",
              train=("logprob_gap_mean", "logprob_gap_max"), smooth=False, nonnegative=True),
    ],
}


def panels(stage, curves: list[Curve]):
    from rlhf_plug.report.plots import Panel, Series

    out = []
    for curve in curves:
        train, title = _expand(stage, curve)
        series = [Series(label, *stage.series(key, "train"), smooth=curve.smooth) for key, label in train]
        series += [Series("held-out", *stage.series(key, "eval"), points=True) for key in curve.eval]
        reference = (curve.chance, "chance") if curve.chance is not None else None
        if curve.baseline is not None:
            split, key, label = curve.baseline
            _, values = stage.series(key, split)
            reference = (values[-1], label) if values else reference
        if curve.if_all_zero and series and not any(v for s in series for v in s.values):
            title = f"{title}\n({curve.if_all_zero})"
        if any(s.values for s in series):
            out.append(Panel(title, curve.ylabel, series, reference=reference, nonnegative=curve.nonnegative))
    return out


def _expand(stage, curve: Curve) -> tuple[list[tuple[str, str]], str]:
    """(key, legend label) for each train key, and the panel title.

    ``reward`` plus a single ``reward/<name>`` is one series (the total of one component is that component),
    named in the title instead.
    """
    present = stage.keys("train")
    found = []
    for key in curve.train:
        if key.endswith("/*"):
            found += sorted(k for k in present if k.startswith(key[:-1]))
        elif key in present:
            found.append(key)
    if len(found) == 2 and "/" in found[1] and "/" not in found[0]:
        return [(found[0], "train")], f"{curve.title}: {found[1].split('/', 1)[1]}"
    if len(found) == 1:
        return [(found[0], "train")], curve.title
    return [(k, k.split("/", 1)[1] if "/" in k else "total") for k in found], curve.title


@hookimpl
def rlhf_report_sections(stage, report):
    from rlhf_plug.report.plots import curves_png

    grid = panels(stage, CURVES.get(stage.kind, [LOSS]))
    if not grid:
        return None
    path, markdown = report.image(f"{stage.name}-training-curves.png", f"{stage.name} training curves")
    curves_png(path, f"{stage.name}: training curves", grid)
    return [("Training curves", f"{markdown}\n\nFrom `{stage.name}/metrics.jsonl`.")]
