"""The names of what a run folder holds, ``runs/<recipe>/``; import-free, so the runner, the report and the
labelling get them without loading the stage API.

``runs/<recipe>/<stage>/`` holds ``model/`` (the merged model the next stage loads), ``adapter/`` (LoRA),
``results.json``, ``metrics.jsonl``, ``recipe.yaml`` (the settings the stage started with) and, while it
trains, ``checkpoints/`` or ``trainer/checkpoint-N/``.
"""

MODEL_DIR = "model"  # merged full model + tokenizer: the next stage's input
ADAPTER_DIR = "adapter"  # LoRA adapter (safetensors)
RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"  # complete checkpoints: step-N/ folders (kept on failure, used by --resume)

__all__ = ["ADAPTER_DIR", "CHECKPOINTS_DIR", "METRICS_FILE", "MODEL_DIR", "RESULTS_FILE"]
