"""``toxicity``: a judge with its own model, trained by somebody else, that works offline.

It wraps ``alt-profanity-check``: a linear SVM on character and word n-grams, trained on
about 200,000 human-labelled comments, whose weights ship inside the PyPI wheel (nothing is
downloaded at run time). It returns the probability that the text is offensive, negated, so
that higher is better, as every reward function here. It is an optional extra:
``pip install "rlhf-plug[judges]"``.

This file is also the pattern for a judge that carries a model of its own: import the model
lazily in ``__init__`` (not at plugin import), say which extra to install when it is missing
(``check_installed``, which ``rlhf-plug validate`` calls too), and score a batch at a time.
"""

from __future__ import annotations

from typing import Literal

from rlhf_plug import UserError, hookimpl

EXTRA = "judges"
PACKAGE = "alt-profanity-check"


class Toxicity:
    """Minus the probability that a completion is offensive (alt-profanity-check; extra: judges)."""

    def __init__(self, text: Literal["completion", "prompt_and_completion"] = "completion"):
        self.check_installed()
        from profanity_check import predict_prob

        self._predict = predict_prob
        self.text = text
        self.__name__ = "toxicity"

    @staticmethod
    def check_installed() -> None:
        import importlib.util

        if importlib.util.find_spec("profanity_check") is None:
            raise UserError(
                f"reward function 'toxicity' needs the optional extra '{EXTRA}' ({PACKAGE} is not installed): "
                f'pip install "rlhf-plug[{EXTRA}]"'
            )

    def __call__(self, prompts, completions, **columns) -> list[float]:
        from rlhf_plug_plugins.rewards.annotator import to_text

        texts = [to_text(c) for c in completions]
        if self.text == "prompt_and_completion":
            texts = [f"{to_text(p)} {t}" for p, t in zip(prompts, texts)]
        return [-float(p) for p in self._predict(texts)]


@hookimpl
def rlhf_register_reward_functions(register):
    register("toxicity", Toxicity)
