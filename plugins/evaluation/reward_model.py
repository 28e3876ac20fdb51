"""Default evaluators."""

from __future__ import annotations

from rlhf_plug import hookimpl


class RMAccuracy:
    """Reward-model accuracy and mean margin on held-out chosen/rejected pairs."""

    def __init__(self, batch_size: int = 16, max_pairs: int | None = 200):
        self.batch_size = batch_size
        self.max_pairs = max_pairs

    def __call__(self, context) -> dict[str, float]:
        pairs = subset(context.pairs, self.max_pairs)
        chosen, rejected = rm_pair_scores(context, pairs, self.batch_size)
        wins = [c > r for c, r in zip(chosen, rejected)]
        margins = [c - r for c, r in zip(chosen, rejected)]
        return {"rm_accuracy": sum(wins) / len(wins), "rm_margin": sum(margins) / len(margins)}


class JudgeAgreement:
    """How often the RM prefers the same answer of a held-out pair as each judge (reward function)."""

    def __init__(self, batch_size: int = 16, max_pairs: int | None = 200):
        self.batch_size = batch_size
        self.max_pairs = max_pairs

    def __call__(self, context) -> dict[str, float]:
        if not context.judges:
            return {}
        pairs = subset(context.pairs, self.max_pairs)
        prompts, columns = _prompts(pairs), _columns(pairs)
        rm_chosen, rm_rejected = rm_pair_scores(context, pairs, self.batch_size)
        rm_prefers = [c > r for c, r in zip(rm_chosen, rm_rejected)]
        metrics = {}
        for name, judge in context.judges.items():
            chosen = judge(prompts, pairs["chosen"], **columns)
            rejected = judge(prompts, pairs["rejected"], **columns)
            judge_prefers = [c > r for c, r in zip(chosen, rejected)]
            metrics[f"{name}_agreement"] = sum(a == b for a, b in zip(rm_prefers, judge_prefers)) / len(pairs)
            metrics[f"{name}_accuracy"] = sum(judge_prefers) / len(pairs)
        return metrics


def rm_pair_scores(context, pairs, batch_size: int) -> tuple[list[float], list[float]]:
    """RM scores of each pair's chosen and rejected answer.

    Rankings repeat each answer in K−1 pairs, so every distinct
    (prompt, answer) is scored once and cached on the context.
    """
    from rlhf_plug.rm_scoring import score

    prompts = _prompts(pairs)
    texts = [(p, c) for p, c in zip(prompts, pairs["chosen"])] + [(p, r) for p, r in zip(prompts, pairs["rejected"])]
    keys = [repr(t) for t in texts]
    missing = {k: t for k, t in zip(keys, texts) if k not in context.cache}
    if missing:
        todo = list(missing.values())
        values = score(
            context.model, context.tokenizer, [p for p, _ in todo], [c for _, c in todo], batch_size,
            getattr(context, "max_length", None),
        )
        context.cache.update(zip(missing, values))
    scores = [context.cache[k] for k in keys]
    return scores[: len(pairs)], scores[len(pairs) :]


def subset(pairs, max_pairs: int | None):
    """A fixed, seeded subset so before/after figures use the same pairs."""
    if max_pairs and len(pairs) > max_pairs:
        return pairs.shuffle(seed=0).select(range(max_pairs))
    return pairs


def _prompts(pairs) -> list:
    return pairs["prompt"] if "prompt" in pairs.column_names else [""] * len(pairs)


def _columns(pairs) -> dict:
    return {c: pairs[c] for c in pairs.column_names if c not in ("prompt", "chosen", "rejected")}


@hookimpl
def rlhf_register_evaluators(register):
    register("rm_accuracy", RMAccuracy)
    register("judge_agreement", JudgeAgreement)
