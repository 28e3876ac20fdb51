"""Every pass deterministic: no dropout anywhere, whatever the model family keeps it in.

The PPO ratio compares two passes over the same tokens, and the reference and reward
passes are references: a random mask in any of them is noise in the ratio, the KL and
the reward. TRL's ``disable_dropout_in_model`` zeroes ``nn.Dropout`` modules only, but
attention dropout is a float most families read from their config at init
(``self.attention_dropout``, used as ``dropout_p`` while the module is in train mode,
which ours stays in for gradient checkpointing). So both are zeroed here, and the
config too, for layers built later (an adapter added after loading).
"""

from __future__ import annotations

from torch import nn


def disable_dropout(model: nn.Module) -> int:
    """Zero every dropout probability in ``model``; returns how many settings were non-zero."""
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            changed += module.p != 0
            module.p = 0.0
        for name, value in list(vars(module).items()):
            if "dropout" in name and isinstance(value, float) and value != 0.0:
                setattr(module, name, 0.0)
                changed += 1
    for config in _configs(model):
        for name, value in list(config.to_dict().items()):
            if "dropout" in name and isinstance(value, float) and value != 0.0:
                setattr(config, name, 0.0)
    return changed


def _configs(model: nn.Module) -> list:
    seen = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "to_dict") and id(config) not in seen:
            seen[id(config)] = config
    return list(seen.values())
