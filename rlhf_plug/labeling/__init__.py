"""``rlhf-plug label``: collect rankings of sampled completions, best first.

A session loads prompts from a data source, samples K completions per prompt
(:mod:`.sampling`), has them ranked by a person in the terminal
(:mod:`.terminal`, keystrokes parsed by :mod:`.keystrokes`) or by a reward
function (:mod:`.annotator`), and appends each ranking to a JSON Lines file in
the *rankings* format that the reward stage reads as it is (:mod:`.store`).
Nothing here imports torch until a model is loaded.
"""

from rlhf_plug.labeling.session import LabelOptions, run_labeling

__all__ = ["LabelOptions", "run_labeling"]
