"""How rollouts are sampled: the ``generation:`` section of the ppo stage and of held-out policy evaluation."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from rlhf_plug.recipe import Strict

PositiveInt = Annotated[int, Field(gt=0)]


class GenerationArgs(Strict):
    """Sampling for rollouts. top_k 0 and top_p 1 keep the sampling distribution = softmax(logits/T)."""

    max_new_tokens: PositiveInt = 48
    temperature: Annotated[float, Field(gt=0)] = 0.7
    top_k: Annotated[int, Field(ge=0)] = 0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
