"""KL controllers: the β of the per-token KL penalty."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

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


class AdaptiveKL(FixedKL):
    """Adaptive β (Ziegler et al. 2019): steer the observed KL towards a target."""

    def __init__(
        self, init: float = 0.1, target: Annotated[float, Field(gt=0)] = 6.0, horizon: Annotated[int, Field(gt=0)] = 10000
    ):
        super().__init__(init)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, observed_kl: float, n_steps: int) -> None:
        """``e = clip(KL/target − 1, −0.2, 0.2)``; ``β ← β·(1 + e·n/horizon)``."""
        error = min(max(observed_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


@hookimpl
def rlhf_register_kl_controllers(register):
    register("fixed", FixedKL)
    register("adaptive", AdaptiveKL)
