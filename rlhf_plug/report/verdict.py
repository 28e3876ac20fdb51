"""The report's opening verdict: did each stage improve on its held-out figure, beyond the noise?

The noise is the binomial standard error of a rate measured on n held-out items (pairs for a
reward model's accuracy, prompts for a policy's win-rate over SFT); a change counts only when
it is more than twice that. A loss has no noise estimate here (its per-example spread is not
recorded), so its verdict says only which way it went.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rlhf_plug.report.load import RunOutput, StageOutput


def _rate_noise(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-9) / n) if n > 0 else float("inf")


def _loss(stage: StageOutput) -> str | None:
    r = stage.results
    before, after = r.get("eval_loss_before"), r.get("eval_loss_after")
    if before is None or after is None:
        return None
    word = "improved" if after < before else "did not improve"
    return f"held-out loss {before:.3g} → {after:.3g}: **{word}** (no noise estimate for a loss)"


def _accuracy(stage: StageOutput) -> str | None:
    r = stage.results
    before, after = r.get("eval_rm_accuracy_before"), r.get("eval_rm_accuracy_after")
    if before is None or after is None:
        return None
    n = int(r.get("eval_pairs") or 0)
    band = 2 * _rate_noise(after, n) if n else None
    if band is None:
        return f"held-out pair accuracy {before:.3f} → {after:.3f} (held-out size not recorded)"
    if after - before > band:
        word = "improved"
    elif before - after > band:
        word = "got worse"
    else:
        word = "no change beyond noise"
    chance = " — still within noise of chance (0.5)" if abs(after - 0.5) <= band else ""
    return f"held-out pair accuracy {before:.3f} → {after:.3f} on {n} pairs (±{band:.3f} at 2σ): **{word}**{chance}"


def _win_rate(stage: StageOutput) -> str | None:
    r = stage.results
    n = int(r.get("eval_prompts") or 0)
    rates = {k[len("eval_win_rate/") : -len("_after")]: v for k, v in r.items() if k.startswith("eval_win_rate/") and k.endswith("_after")}
    if not rates or not n:
        return None
    band = 2 * _rate_noise(0.5, n)
    parts = []
    for judge, rate in rates.items():
        word = "beats SFT" if rate > 0.5 + band else ("worse than SFT" if rate < 0.5 - band else "no clear difference from SFT")
        parts.append(f"{judge} win-rate {rate:.3f}: **{word}**")
    return f"on {n} held-out prompts (±{band:.3f} at 2σ around 0.5): " + "; ".join(parts)


#: Verdict functions, tried in order; the first that has figures for a stage speaks for it.
VERDICTS: list[Callable[[StageOutput], str | None]] = [_win_rate, _accuracy, _loss]


def verdict(run: RunOutput) -> str:
    lines = ["## Verdict", ""]
    for stage in run.stages:
        said = next((v for v in (f(stage) for f in VERDICTS) if v), None)
        lines.append(f"- **{stage.name}**: {said or 'no held-out figures before and after training'}")
    return "\n".join(lines)
