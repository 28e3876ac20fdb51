"""rlhf-plug: plugin-based RLHF (SFT, reward model, PPO) on Hugging Face TRL.

The public plugin API lives here and in :mod:`rlhf_plug.hookspecs`,
:mod:`rlhf_plug.stage`, :mod:`rlhf_plug.data` and :mod:`rlhf_plug.models`.
Importing this package does not import torch.
"""

from rlhf_plug.errors import DataError, PluginError, RecipeError, RewardError, UserError
from rlhf_plug.hookspecs import hookimpl, hookspec
from rlhf_plug.quiet import install_library_filters

install_library_filters()

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "PluginError",
    "RecipeError",
    "RewardError",
    "UserError",
    "__version__",
    "hookimpl",
    "hookspec",
]
