"""KL controllers: the β of the per-token KL penalty."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rlhf_plug import hookimpl


class FixedKL:
    """Constant β."""

    def __init__(self, init: float = 0.1):
        self.value = float(init)

    def update(self, observed_kl: float, n_steps: int) -> None:
        """β stays where it is."""

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLOptions(BaseModel):
    """Options of the ``adaptive`` controller (its ``with:`` mapping)."""

    model_config = ConfigDict(extra="forbid")
    init: float = 0.1
    target: float = Field(6.0, gt=0)
    horizon: int = Field(10000, gt=0)
    min_beta: float = Field(0.0, ge=0)
    max_beta: float = Field(math.inf, gt=0)

    @model_validator(mode="after")
    def _init_within_bounds(self):
        if not self.min_beta <= self.init <= self.max_beta:
            raise ValueError(f"init ({self.init}) must lie within [min_beta, max_beta] = [{self.min_beta}, {self.max_beta}]")
        return self


class AdaptiveKL(FixedKL):
    """Adaptive β (Ziegler et al. 2019): steer the observed KL towards a target.

    ``min_beta`` and ``max_beta`` bound β; neither is in Ziegler et al., and
    both are off by default. A floor keeps β from decaying while the policy
    has not moved yet (KL near 0 early on), so a short horizon can react
    quickly once KL passes the target without first collapsing β.
    """

    def __init__(self, options: AdaptiveKLOptions | None = None, **kwargs):
        options = options or AdaptiveKLOptions(**kwargs)
        super().__init__(options.init)
        self.target, self.horizon = options.target, options.horizon
        self.min_beta, self.max_beta = options.min_beta, options.max_beta

    def update(self, observed_kl: float, n_steps: int) -> None:
        """``e = clip(KL/target − 1, −0.2, 0.2)``; ``β ← clip(β·(1 + e·n/horizon), min_beta, max_beta)``."""
        error = min(max(observed_kl / self.target - 1.0, -0.2), 0.2)
        self.value = min(max(self.value * (1.0 + error * n_steps / self.horizon), self.min_beta), self.max_beta)


@hookimpl
def rlhf_register_kl_controllers(register):
    register("fixed", FixedKL)
    register("adaptive", AdaptiveKL, config=AdaptiveKLOptions)
